"""Choosing the memory regime: in memory, or streamed when the input is large against available memory.

``apply`` (serving) also streams when the spec leaves ``engine.streaming`` unset and
nothing needs the whole table (:func:`serving_streams`): it reads, transforms and
writes each row once, and streamed the three overlap in a few batches of memory.

>>> import tempfile, pathlib
>>> from pipelines.engine_spec import EngineSpec
>>> f = pathlib.Path(tempfile.mkdtemp()) / "in.parquet"
>>> _ = f.write_bytes(bytes(10))
>>> choose_regime(EngineSpec(streaming="auto"), f)[0]
False
>>> choose_regime(EngineSpec(), f, override=True)
(True, '--streaming on the command line')
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import psutil

from pipelines.engine_spec import EngineSpec

PathLike = str | os.PathLike[str]

#: in-memory size of a table against its file: Parquet decompresses; CSV text is about its binary size
_EXPANSION = {".parquet": 3.0, ".csv": 1.0}


def estimated_bytes(input_path: PathLike) -> int:
    """A rough in-memory size of the input: uncompressed Parquet sizes, or file sizes times a factor."""
    p = Path(input_path)
    files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else []
    if not files:
        files = [Path(f) for f in glob.glob(str(input_path), recursive=True)]
    total = 0
    for f in files:
        if f.suffix.lower() == ".parquet":
            try:
                import pyarrow.parquet as pq

                meta = pq.ParquetFile(f).metadata
                total += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
                continue
            except Exception:
                pass
        total += int(f.stat().st_size * _EXPANSION.get(f.suffix.lower(), 1.5))
    return total


#: inputs Polars reads in column batches with the row count in their metadata
_COLUMNAR = (".parquet", ".arrow", ".ipc", ".feather")


def serving_streams(settings: EngineSpec, input_path: PathLike, *, has_schema: bool) -> str | None:
    """Why ``apply`` streams when the spec leaves ``engine.streaming`` unset, or None: in memory.

    It streams when the input is columnar (Parquet, Arrow IPC; a CSV is read whole,
    so that a malformed line is named), the artifact has no input or output schema
    (a streamed schema check spills the clean rows to disk, or reads the output
    back) and the backend is Polars (the GPU runs in memory). Streamed, ``apply``
    on 10M rows took 5.0 s and 0.8 GB against 5.8-6.8 s and 2.1 GB in memory
    (``benchmarks/README.md``, case 7).

    >>> from pipelines.engine_spec import EngineSpec
    >>> serving_streams(EngineSpec(), "new.parquet", has_schema=False)
    'apply streams a columnar input with no schema to check (engine.streaming unset)'
    >>> serving_streams(EngineSpec(), "new.csv", has_schema=False) is None
    True
    """
    text = str(input_path)
    columnar = glob.has_magic(text) or Path(text).is_dir() or Path(text).suffix.lower() in _COLUMNAR
    if "streaming" in settings.model_fields_set or settings.backend != "polars" or has_schema or not columnar:
        return None
    return "apply streams a columnar input with no schema to check (engine.streaming unset)"


def choose_regime(
    settings: EngineSpec, input_path: PathLike, override: bool | None = None, *, serving: str | None = None
) -> tuple[bool, str]:
    """Whether to stream, and why (for the report); ``serving``: :func:`serving_streams`' reason, if any."""
    if override is not None:
        return override, f"--{'' if override else 'no-'}streaming on the command line"
    if serving is not None:
        return True, serving
    if settings.streaming is True:
        return True, "engine.streaming: true in the spec"
    if settings.streaming is False:
        said = "streaming" in settings.model_fields_set
        return False, "engine.streaming: false in the spec" if said else "engine.streaming: false (the default)"
    need = estimated_bytes(input_path)
    available = psutil.virtual_memory().available
    limit = settings.memory_fraction * available
    mb = 1 << 20
    verdict = "exceeds" if need > limit else "is within"
    reason = (
        f"engine.streaming: auto: the input's estimated in-memory size {need / mb:.0f} MB {verdict} "
        f"{settings.memory_fraction:g} x {available / mb:.0f} MB available"
    )
    return need > limit, reason
