"""Choosing the memory regime: in memory, or streamed when the input is large against available memory.

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


def choose_regime(settings: EngineSpec, input_path: PathLike, override: bool | None = None) -> tuple[bool, str]:
    """Whether to stream, and why (for the report)."""
    if override is not None:
        return override, f"--{'' if override else 'no-'}streaming on the command line"
    if settings.streaming is True:
        return True, "engine.streaming: true in the spec"
    if settings.streaming is False:
        return False, "engine.streaming: false (the default)"
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
