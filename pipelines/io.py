"""Reading inputs and writing outputs by file extension, atomically.

Formats: ``.csv``, ``.parquet``, ``.arrow``/``.ipc``/``.feather``, ``.ndjson``/``.jsonl``;
inputs may also be a folder or a glob of Parquet files (Hive partitions are read
as columns). Outputs are written to a temporary file beside the target and renamed
into place, so a failed or killed run never leaves a partial file.

A CSV is checked before it is parsed, so that nothing is read wrongly in silence:
a header with duplicate names, a file that is not comma-separated, and rows with
more or fewer fields than the header (Polars would pad a short row, or a blank
line, with nulls) are errors that name the line. A column whose values stop
parsing as numbers after the first 10,000 rows is read as text (so that a schema
with ``coerce`` can quarantine the bad rows) rather than failing the read.

>>> import polars as pl, tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "x.parquet"
>>> write_frames({out: pl.DataFrame({"a": [1]})})
>>> scan(out).collect()["a"].to_list()
[1]
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines.errors import DataError, UsageError
from transforms.atomic import TMP_PREFIX

Scanner = Callable[[str], pl.LazyFrame]
Writer = Callable[[pl.DataFrame, Path], None]

CSV_INFER_ROWS = 10_000

#: how every Parquet output is written: zstd at level 1. Feature tables are mostly
#: float columns whose low mantissa bits do not compress: on case 7 of the benchmarks
#: (10M rows, 19 columns) level 1 writes 723.2 MB in 4.2 s where Polars' default
#: (level 3) writes 723.0 MB in 7.4 s; decompression speed does not depend on the level
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 1}

SCANNERS: dict[str, Scanner] = {
    ".csv": lambda p: pl.scan_csv(p, infer_schema_length=CSV_INFER_ROWS),
    ".parquet": pl.scan_parquet,
    ".arrow": pl.scan_ipc,
    ".ipc": pl.scan_ipc,
    ".feather": pl.scan_ipc,
    ".ndjson": pl.scan_ndjson,
    ".jsonl": pl.scan_ndjson,
}

WRITERS: dict[str, Writer] = {
    ".csv": lambda df, p: df.write_csv(p),
    ".parquet": lambda df, p: df.write_parquet(p, **PARQUET_OPTIONS),
    ".arrow": lambda df, p: df.write_ipc(p),
    ".ipc": lambda df, p: df.write_ipc(p),
    ".feather": lambda df, p: df.write_ipc(p),
    ".ndjson": lambda df, p: df.write_ndjson(p),
    ".jsonl": lambda df, p: df.write_ndjson(p),
}

SINKS: dict[str, Callable[[pl.LazyFrame, Path], pl.LazyFrame]] = {
    ".csv": lambda lf, p: lf.sink_csv(p, lazy=True),
    ".parquet": lambda lf, p: lf.sink_parquet(p, lazy=True, **PARQUET_OPTIONS),
    ".arrow": lambda lf, p: lf.sink_ipc(p, lazy=True),
    ".ipc": lambda lf, p: lf.sink_ipc(p, lazy=True),
    ".feather": lambda lf, p: lf.sink_ipc(p, lazy=True),
    ".ndjson": lambda lf, p: lf.sink_ndjson(p, lazy=True),
    ".jsonl": lambda lf, p: lf.sink_ndjson(p, lazy=True),
}


def sink(lf: pl.LazyFrame, path: Path) -> pl.LazyFrame:
    """A lazy sink of ``lf`` to ``path`` (format by extension), to run with ``collect_all``."""
    return SINKS[path.suffix.lower()](lf, path)


_OTHER_SEPARATORS = {";": "semicolon", "\t": "tab", "|": "pipe"}
_CHUNK = 1 << 22


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
    if p.suffix.lower() == ".parquet":
        _check_parquet_magic(p)
    return scanner(text)


def _check_parquet_magic(p: Path) -> None:
    """A Parquet file starts with ``PAR1`` and ends with ``PAR1`` (or ``PARE``, encrypted)."""
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(4)
        fh.seek(max(size - 4, 0))
        tail = fh.read(4)
    if head != b"PAR1":
        looks = " (it looks like text: a CSV saved under a .parquet name?)" if _looks_like_text(p) else ""
        raise DataError(f"{p}: is not a Parquet file: it does not start with the Parquet magic bytes 'PAR1'{looks}")
    if size < 12 or tail not in (b"PAR1", b"PARE"):
        raise DataError(
            f"{p}: is a truncated or incomplete Parquet file ({size} bytes, no Parquet footer): "
            "it was probably cut off while being written or copied"
        )


def _looks_like_text(p: Path) -> bool:
    with open(p, "rb") as fh:
        head = fh.read(4096)
    return b"\0" not in head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:512])


def read(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Read an input into memory, turning parse failures into :class:`DataError`."""
    lf = scan(path)
    p = Path(str(path))
    if p.suffix.lower() == ".csv" and p.is_file():
        return _read_csv(p, lf)
    try:
        return lf.collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        if p.suffix.lower() in (".ndjson", ".jsonl") and p.is_file():
            raise _ndjson_error(p, exc) from exc
        raise DataError(f"{path}: cannot be read as {p.suffix or 'Parquet'}: {first_line(exc)}") from exc


def _ndjson_error(p: Path, exc: BaseException) -> DataError:
    """Name the first line of an NDJSON file that is not a JSON object."""
    with open(p, encoding="utf-8", errors="strict") as fh:
        try:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line.rstrip("\r\n"))
                except json.JSONDecodeError as bad:
                    return DataError(f"{p}: line {number} is not valid JSON ({bad.msg} at character {bad.pos + 1})")
                if not isinstance(value, dict):
                    return DataError(f"{p}: line {number} is not a JSON object (got {type(value).__name__})")
        except UnicodeDecodeError:
            return DataError(f"{p}: is not UTF-8 text; re-encode the file as UTF-8")
    return DataError(f"{p}: cannot be read as {p.suffix}: {first_line(exc)}")


def _read_csv(p: Path, lf: pl.LazyFrame) -> pl.DataFrame:
    """Check a CSV's header and field counts, then read it (see the module docstring)."""
    header = _csv_header(p)
    if not header or header == [""]:
        raise DataError(f"{p}: the first line, the CSV header, is blank; it must name the columns")
    if len(header) == 1:
        for sep, name in _OTHER_SEPARATORS.items():
            if sep in header[0]:
                raise UsageError(
                    f"{p}: the header {header[0]!r} looks {name}-separated; prepflow reads comma-separated "
                    "CSV: convert the file (or save it as Parquet)"
                )
    seen: dict[str, int] = {}
    for i, name in enumerate(header, start=1):
        if name in seen:
            raise DataError(
                f"{p}: duplicate column name {name!r} in the CSV header (columns {seen[name]} and {i}); "
                "column names must be unique"
            )
        seen[name] = i
    _check_fields(p, len(header))
    try:
        df = lf.collect()
    except pl.exceptions.ComputeError as exc:
        if "could not parse" not in str(exc):
            raise _csv_error(p, exc) from exc
        # a value past the inference window does not parse as the inferred dtype: infer from every row
        try:
            df = pl.scan_csv(p, infer_schema_length=None).collect()
        except (pl.exceptions.PolarsError, OSError) as exc2:
            raise _csv_error(p, exc2) from exc2
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _csv_error(p, exc) from exc
    if df.height == 0:
        raise DataError(
            f"{p}: the CSV has a header but no data rows (columns: {', '.join(df.columns)}); nothing to process"
        )
    return df


def _csv_header(p: Path) -> list[str]:
    with open(p, encoding="utf-8", errors="replace", newline="") as fh:
        return next(csv.reader(fh), [])


def _csv_error(p: Path, exc: BaseException) -> DataError:
    """The clearest message for a CSV that Polars cannot read."""
    data = p.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = data.count(b"\n", 0, bad.start) + 1
        return DataError(
            f"{p}: is not UTF-8 text: invalid byte 0x{data[bad.start]:02X} at line {line} "
            f"(byte offset {bad.start}); re-encode the file as UTF-8"
        )
    return DataError(f"{p}: cannot be read as .csv: {first_line(exc)}")


def _check_fields(p: Path, expected: int) -> None:
    """Raise :class:`DataError` at the first record whose field count differs from the header's.

    Counts separators outside quotes (an RFC 4180 record may span lines inside
    quotes) per record, in chunks, with NumPy.
    """
    inside = 0  # 1 while inside a quoted field
    opened = 0  # byte offset of the last quote that opened a quoted field
    seps_carry = 0  # separators of the current, unfinished record
    record_start = 0  # byte offset where the current record starts
    record = 0  # index of the current record (0 is the header)
    offset = 0
    with open(p, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            a = np.frombuffer(chunk, dtype=np.uint8)
            seps, ends = np.flatnonzero(a == 44), np.flatnonzero(a == 10)
            quotes = np.flatnonzero(a == 34)
            if quotes.size:  # keep separators and newlines with an even number of quotes before them
                seps = seps[(np.searchsorted(quotes, seps) + inside) % 2 == 0]
                ends = ends[(np.searchsorted(quotes, ends) + inside) % 2 == 0]
                opens = quotes[inside::2]
                if opens.size:
                    opened = offset + int(opens[-1])
                inside = (inside + quotes.size) % 2
            elif inside:  # the whole chunk is inside a quoted field
                seps, ends = seps[:0], ends[:0]
            if ends.size:
                before = np.searchsorted(seps, ends)
                counts = np.diff(before, prepend=0)
                counts[0] += seps_carry
                bad = np.flatnonzero(counts + 1 != expected)
                bad = bad[record + bad > 0]  # never the header itself
                if bad.size:
                    j = int(bad[0])
                    start = record_start if j == 0 else offset + int(ends[j - 1]) + 1
                    _ragged(p, record + j, start, int(counts[j]) + 1, expected)
                record += ends.size
                record_start = offset + int(ends[-1]) + 1
                seps_carry = int(seps.size - before[-1])
            else:
                seps_carry += int(seps.size)
            offset += a.size
    if inside:
        with open(p, "rb") as fh:
            line = fh.read(opened).count(b"\n") + 1
        raise DataError(f'{p}: malformed CSV: the quoted field (") that opens on line {line} is never closed')
    if offset > record_start and record > 0 and seps_carry + 1 != expected:  # a last line with no newline
        _ragged(p, record, record_start, seps_carry + 1, expected)


def _ragged(p: Path, record: int, start: int, fields: int, expected: int) -> None:
    with open(p, "rb") as fh:
        line = fh.read(start).count(b"\n") + 1
        text = fh.readline().rstrip(b"\r\n")
    what = "is blank" if not text.strip() else f"has {fields} field(s)"
    raise DataError(
        f"{p}: ragged CSV: data row {record} (line {line}) {what}, the header has {expected}; "
        "every row must have one field per column"
    )


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


# --- atomic writes -------------------------------------------------------------------------

_STARTED = time.time()
"""When this process imported prepflow's IO: temporary files older than this may be stale."""

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TMP_NAME = re.compile(re.escape(TMP_PREFIX) + r"(?P<pid>\d+)\.(?P<host>[0-9a-f]{8})-")


def tmp_path(target: Path) -> Path:
    """``.prepflow-tmp-<pid>.<host>-<random><suffix>`` beside ``target`` (created empty, private)."""
    while True:
        tmp = target.with_name(f"{TMP_PREFIX}{os.getpid()}.{_HOST}-{secrets.token_hex(6)}{target.suffix}")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            continue
        return tmp


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else (or we cannot tell): keep its files
        return True
    return True


def clean_stale_temp_files(folder: Path) -> list[Path]:
    """Remove temporary files that killed prepflow runs left in ``folder``; returns them.

    Only files named by :func:`tmp_path` on this host, whose writing process is
    gone, and that are older than this process are removed: a concurrent run's
    files are never touched.
    """
    removed: list[Path] = []
    if os.name != "posix":
        return removed
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            m = _TMP_NAME.match(entry.name)
            if not m or m["host"] != _HOST or int(m["pid"]) == os.getpid() or _alive(int(m["pid"])):
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < _STARTED:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _commit(tmps: list[Path], targets: list[Path]) -> None:
    """Fsync every temporary file, then rename each onto its target, the first target last."""
    for tmp in tmps:
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    # the main output appears last: once it exists, every side file is in place too
    for tmp, target in reversed(list(zip(tmps, targets, strict=True))):
        os.replace(tmp, target)


@contextlib.contextmanager
def _atomic_many(targets: list[Path]) -> Iterator[list[Path]]:
    """Temporary paths for ``targets``; on success each is fsynced and renamed, the first target last."""
    tmps: list[Path] = []
    try:
        for target in targets:
            tmps.append(tmp_path(target))
        yield tmps
        _commit(tmps, targets)
    except BaseException:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise


def publish(frames: Mapping[Path, Path], texts: Mapping[Path, str], *, main: Path) -> None:
    """Publish already-written temporary files (target -> temporary path) and text files, ``main`` last.

    On any failure every temporary file is removed and no target is touched.
    """
    targets = [main, *(t for t in frames if t != main), *texts]
    tmps = [frames[main], *(tmp for t, tmp in frames.items() if t != main)]
    try:
        for target, text in texts.items():
            tmps.append(tmp_path(target))
            tmps[-1].write_text(text, encoding="utf-8")
        _commit(tmps, targets)
    except BaseException:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise


def write_frames(frames: Mapping[Path, pl.DataFrame], texts: Mapping[Path, str] | None = None) -> None:
    """Write every frame (by extension) and text file atomically, renaming all at the end.

    Everything is written to temporary files first; only when all writes succeed
    are they renamed into place, so a failure leaves none of the outputs behind.
    Stale temporary files of killed runs in the target folders are removed first.
    """
    texts = dict(texts or {})
    targets = [Path(p) for p in (*frames, *texts)]
    for folder in dict.fromkeys(t.parent for t in targets):
        clean_stale_temp_files(folder)
    with _atomic_many(targets) as tmps:
        for (path, df), tmp in zip(frames.items(), tmps, strict=False):
            WRITERS[Path(path).suffix.lower()](df, tmp)
        for text, tmp in zip(texts.values(), tmps[len(frames) :], strict=True):
            tmp.write_text(text, encoding="utf-8")
