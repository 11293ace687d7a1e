"""The run folder: frames handed from task to task, and input fingerprints for the fit cache.

Tasks hand each other paths, never frames: :func:`save` puts a frame under a
path of the run folder, :func:`load` gets it back. ``preprocess`` calls its
tasks (it does not submit them), so they all run in the flow's process, and
there the frame is handed on in memory: :func:`load` returns the very object
that was saved, with the buffers and chunk layout ``prepflow run`` would have,
and nothing is read back from disk. :func:`release` lets go of a run folder's
frames when the run ends.

The folder still holds what a task in another process would need. A frame that
cannot be read again from the input (the rows that passed the input schema, the
frames to write) is written there by :func:`save`, as Arrow IPC with its chunk
layout beside it, and read back exactly as it was: the same buffers, down to the
bytes under null values (which Parquet does not keep, and which an ``.arrow``
output writes as they are), and the same chunk layout (Polars reduces floats
chunk by chunk, so a mean over 3 chunks and over 1 can differ in the last bit).
The input itself is never copied: :func:`save_source` writes only the name of
the file it was read from and that file's fingerprint; :func:`load` reads the
file again, and fails if it has changed since.

>>> import tempfile, pathlib, polars as pl
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> df = pl.concat([pl.DataFrame({"x": [1.0, 2.0]}), pl.DataFrame({"x": [3.0]})], rechunk=False)
>>> load(save(df, d / "f.arrow")) is df
True
>>> release(d)
>>> load(d / "f.arrow")["x"].chunk_lengths()
[2, 1]
>>> len(fingerprint(d / "f.arrow"))
64
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import threading
from pathlib import Path

import polars as pl

from pipelines import io

SMALL_FILE = 64 * 2**20
SAMPLE = 2**20
PARQUET_MAGIC = b"PAR1"

_held: dict[str, pl.DataFrame] = {}
_lock = threading.Lock()


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(path)


def _layout_path(path: str | os.PathLike[str]) -> Path:
    return Path(f"{path}.layout.json")


def _hold(df: pl.DataFrame, path: str | os.PathLike[str]) -> str:
    with _lock:
        _held[_key(path)] = df
    return str(path)


def save(df: pl.DataFrame, path: str | os.PathLike[str]) -> str:
    """Write ``df`` (Arrow IPC) with its chunk layout beside it, and hold it for this process; returns the path."""
    single = all(df[name].n_chunks() == 1 for name in df.columns)
    df.write_ipc(path, record_batch_size=max(df.height, 1) if single else None)
    _layout_path(path).write_text(json.dumps({name: df[name].chunk_lengths() for name in df.columns}))
    return _hold(df, path)


def save_source(df: pl.DataFrame, path: str | os.PathLike[str], source: str, fingerprint: str) -> str:
    """Hold ``df``, read from ``source``, under ``path``; the file there only names the source and its fingerprint."""
    Path(path).write_text(json.dumps({"source": source, "fingerprint": fingerprint}))
    return _hold(df, path)


def load(path: str | os.PathLike[str]) -> pl.DataFrame:
    """The frame saved under ``path``: the one held in this process, else read back as it was saved.

    A frame saved by :func:`save_source` and no longer held is read again from
    its source file, which must still have the fingerprint it had.
    """
    with _lock:
        held = _held.get(_key(path))
    if held is not None:
        return held
    if _is_source(path):
        return _read_source(path)
    df = pl.read_ipc(path)
    layout = json.loads(_layout_path(path).read_text()) if _layout_path(path).exists() else {}
    if not df.width:
        return df
    return pl.DataFrame([_chunked(df[name], layout.get(name)) for name in df.columns])


def release(folder: str | os.PathLike[str]) -> None:
    """Let go of the frames held for the paths under ``folder`` (their files stay)."""
    prefix = os.path.join(_key(folder), "")
    with _lock:
        for key in [k for k in _held if k.startswith(prefix)]:
            del _held[key]


def scan(path: str | os.PathLike[str]) -> pl.LazyFrame:
    """A lazy scan of a frame written by :func:`save` (for counts and summaries; the layout does not matter there)."""
    with _lock:
        held = _held.get(_key(path))
    return held.lazy() if held is not None else pl.scan_ipc(path)


def _is_source(path: str | os.PathLike[str]) -> bool:
    """A note of :func:`save_source` (``.json``), as opposed to a frame written by :func:`save` (``.arrow``)."""
    return Path(path).suffix == ".json"


def _read_source(path: str | os.PathLike[str]) -> pl.DataFrame:
    note = json.loads(Path(path).read_text())
    df = io.read(note["source"])
    if fingerprint(note["source"]) != note["fingerprint"]:
        raise OSError(f"{note['source']}: changed since this run read it")
    return df


def _chunked(series: pl.Series, lengths: list[int] | None) -> pl.Series:
    if lengths is None or series.chunk_lengths() == lengths or sum(lengths) != series.len():
        return series
    whole = series.rechunk()
    if len(lengths) <= 1:
        return whole
    parts, offset = [], 0
    for n in lengths:
        parts.append(whole.slice(offset, n))
        offset += n
    return pl.concat(parts, rechunk=False)


def fingerprint(path: str | os.PathLike[str]) -> str:
    """SHA-256 over each input file's size, mtime and content digest.

    The content digest is the Parquet footer (schema, row groups and their
    statistics) for Parquet files, all bytes for other files up to 64 MiB, and
    the first and last MiB of larger ones. Folders and globs cover every file in
    them, by relative name (Hive partition values live in names).
    """
    text = str(path)
    root = Path(text)
    if glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        root = _static_prefix(text)
    elif root.is_dir():
        files = sorted(p for p in root.rglob("*.parquet") if p.is_file())
    else:
        files = [root]
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        name = f.suffix.lower() if f == root else str(f.relative_to(root) if f.is_relative_to(root) else f)
        h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        h.update(_content_digest(f, st.st_size))
    return h.hexdigest()


def _static_prefix(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard."""
    parts = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path()


def _content_digest(path: Path, size: int) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        if path.suffix.lower() == ".parquet" and size >= 12:
            fh.seek(size - 8)
            tail = fh.read(8)
            footer = int.from_bytes(tail[:4], "little")
            if tail[4:] == PARQUET_MAGIC and footer + 8 <= size:
                fh.seek(size - 8 - footer)
                h.update(fh.read(footer + 8))
                return h.digest()
            fh.seek(0)
        if size <= SMALL_FILE:
            for block in iter(lambda: fh.read(SAMPLE), b""):
                h.update(block)
        else:
            h.update(fh.read(SAMPLE))
            fh.seek(size - SAMPLE)
            h.update(fh.read(SAMPLE))
    return h.digest()
