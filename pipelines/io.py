"""Reading inputs and writing outputs by file extension, atomically.

Formats: ``.csv``, ``.parquet``, ``.arrow``/``.ipc``/``.feather``, ``.ndjson``/``.jsonl``;
inputs may also be a folder or a glob of Parquet files (Hive partitions are read
as columns). Outputs are written to a temporary file beside the target and renamed
into place, so a failed or killed run never leaves a partial file.

>>> import polars as pl, tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "x.parquet"
>>> write_frames({out: pl.DataFrame({"a": [1]})})
>>> scan(out).collect()["a"].to_list()
[1]
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import polars as pl

from pipelines.errors import DataError, UsageError
from transforms.atomic import atomic_path

Scanner = Callable[[str], pl.LazyFrame]
Writer = Callable[[pl.DataFrame, Path], None]

SCANNERS: dict[str, Scanner] = {
    ".csv": lambda p: pl.scan_csv(p, infer_schema_length=10_000),
    ".parquet": pl.scan_parquet,
    ".arrow": pl.scan_ipc,
    ".ipc": pl.scan_ipc,
    ".feather": pl.scan_ipc,
    ".ndjson": pl.scan_ndjson,
    ".jsonl": pl.scan_ndjson,
}

WRITERS: dict[str, Writer] = {
    ".csv": lambda df, p: df.write_csv(p),
    ".parquet": lambda df, p: df.write_parquet(p),
    ".arrow": lambda df, p: df.write_ipc(p),
    ".ipc": lambda df, p: df.write_ipc(p),
    ".feather": lambda df, p: df.write_ipc(p),
    ".ndjson": lambda df, p: df.write_ndjson(p),
    ".jsonl": lambda df, p: df.write_ndjson(p),
}


def _known(kind: str) -> str:
    return ", ".join(SCANNERS if kind == "input" else WRITERS)


def scan(path: str | os.PathLike[str]) -> pl.LazyFrame:
    """A lazy scan of an input file, folder of Parquet files, or Parquet glob."""
    text = str(path)
    p = Path(text)
    if glob.has_magic(text):
        if not glob.glob(text, recursive=True):
            raise UsageError(f"{text}: no file matches this pattern")
        return pl.scan_parquet(text, hive_partitioning=True)
    if p.is_dir():
        if not any(p.rglob("*.parquet")):
            raise UsageError(f"{p}: is a folder with no .parquet files (a folder input must hold Parquet files)")
        return pl.scan_parquet(p / "**" / "*.parquet", hive_partitioning=True)
    if not p.exists():
        raise UsageError(f"{p}: input file not found")
    scanner = SCANNERS.get(p.suffix.lower())
    if scanner is None:
        raise UsageError(f"{p}: unsupported input format '{p.suffix}'; use one of {_known('input')}")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: the file is empty")
    return scanner(text)


def read(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Read an input into memory, turning parse failures into :class:`DataError`."""
    lf = scan(path)
    try:
        return lf.collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path}: cannot be read as {Path(str(path)).suffix or 'Parquet'}: {first_line(exc)}") from exc


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (Polars adds long hints)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_output(path: str | os.PathLike[str], *, inputs: tuple[str | os.PathLike[str] | None, ...] = ()) -> Path:
    """Check an output path before any work: known format, existing folder, not an input."""
    p = Path(path)
    if p.suffix.lower() not in WRITERS:
        raise UsageError(f"{p}: unsupported output format '{p.suffix}'; use one of {_known('output')}")
    if not p.parent.is_dir():
        raise UsageError(f"{p}: the output folder {p.parent} does not exist")
    if p.is_dir():
        raise UsageError(f"{p}: is a folder; give an output file path")
    for other in inputs:
        if other is not None and p.resolve() == Path(other).resolve():
            raise UsageError(f"{p}: the output path is the input path; refusing to overwrite the input")
    return p


def write_frames(frames: Mapping[Path, pl.DataFrame], texts: Mapping[Path, str] | None = None) -> None:
    """Write every frame (by extension) and text file atomically, renaming all at the end.

    Everything is written to temporary files first; only when all writes succeed
    are they renamed into place, so a failure leaves none of the outputs behind.
    """
    with contextlib.ExitStack() as stack:
        for path, df in frames.items():
            tmp = stack.enter_context(atomic_path(path))
            WRITERS[path.suffix.lower()](df, tmp)
        for path, text in (texts or {}).items():
            tmp = stack.enter_context(atomic_path(path))
            tmp.write_text(text, encoding="utf-8")
