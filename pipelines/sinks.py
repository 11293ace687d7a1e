"""Streaming outputs: frames appended batch by batch to temporary files, published atomically.

A streamed run cannot hold its output in memory, so it appends each batch to a
temporary file next to the target (Parquet and Arrow IPC through PyArrow's
incremental writers, CSV and NDJSON through the open file). :class:`StreamedOutputs`
publishes everything at the end, side files first and the main output last
(fsynced, then renamed), or removes every temporary file if anything failed: a
failed run leaves no partial file. A target that received no rows is not
written, except the main output (written with its schema).

>>> import tempfile, pathlib, polars as pl
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with StreamedOutputs(d / "out.parquet") as outs:
...     outs.append(d / "out.parquet", pl.DataFrame({"x": [1.0]}))
...     outs.append(d / "out.parquet", pl.DataFrame({"x": [2.0]}))
>>> pl.read_parquet(d / "out.parquet")["x"].to_list()
[1.0, 2.0]
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import ipc

from pipelines import io


class _Appender:
    """Appends frames of one schema to one temporary file."""

    def __init__(self, target: Path, tmp: Path, first: pl.DataFrame) -> None:
        self.target, self.tmp, self.schema, self.rows = target, tmp, first.schema, 0
        self.kind = target.suffix.lower()
        self._writer: Any = None
        self._fh: IO[bytes] | None = None
        if self.kind == ".parquet":
            self._writer = pq.ParquetWriter(tmp, first.to_arrow().schema, compression="zstd")
        elif self.kind in (".arrow", ".ipc", ".feather"):
            self._writer = ipc.new_file(str(tmp), first.to_arrow().schema)
        elif self.kind in (".csv", ".ndjson", ".jsonl"):
            self._fh = open(tmp, "wb")  # noqa: SIM115 - closed in close()
        else:
            raise ValueError(f"no streaming writer for '{self.kind}'")

    def append(self, df: pl.DataFrame) -> None:
        if df.schema != self.schema:
            df = df.cast(dict(self.schema))  # a batch whose column is all null can come back as another dtype
        if self._writer is not None:
            table = df.to_arrow()
            if isinstance(self._writer, pq.ParquetWriter):
                self._writer.write_table(table)
            else:
                self._writer.write(pa.Table.from_batches(table.to_batches(), schema=self._writer.schema))
        elif self.kind == ".csv":
            df.write_csv(self._fh, include_header=self.rows == 0)
        else:
            df.write_ndjson(self._fh)
        self.rows += df.height

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None


class StreamedOutputs:
    """Outputs written batch by batch, published together (see the module docstring).

    ``main`` is the target that appears last, and is written even with no rows.
    """

    def __init__(self, main: Path) -> None:
        self.main = Path(main)
        self._open: dict[Path, _Appender] = {}
        self._texts: dict[Path, str] = {}

    def __enter__(self) -> StreamedOutputs:
        io.clean_stale_temp_files(self.main.parent)
        return self

    def append(self, target: Path, df: pl.DataFrame) -> None:
        """Append ``df`` to ``target``'s temporary file (created on first use)."""
        target = Path(target)
        if target not in self._open:
            if target.parent != self.main.parent:
                io.clean_stale_temp_files(target.parent)
            self._open[target] = _Appender(target, io.tmp_path(target), df)
        self._open[target].append(df)

    def rows(self, target: Path) -> int:
        """Rows appended to ``target`` so far."""
        appender = self._open.get(Path(target))
        return 0 if appender is None else appender.rows

    def text(self, target: Path, text: str) -> None:
        """A small text file (report, fitted artifact) published with the frames."""
        self._texts[Path(target)] = text

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        failed = exc_type is not None
        try:
            for appender in self._open.values():
                appender.close()
        except BaseException:
            failed = True
            raise
        finally:
            if failed:
                for appender in self._open.values():
                    appender.tmp.unlink(missing_ok=True)
        if failed:
            return
        if self.main not in self._open:
            raise ValueError(f"{self.main}: the main output received no frame (append an empty frame with its schema)")
        frames = {t: a.tmp for t, a in self._open.items() if a.rows or t == self.main}
        for t, a in self._open.items():
            if t not in frames:
                a.tmp.unlink(missing_ok=True)
        io.publish(frames, self._texts, main=self.main)
