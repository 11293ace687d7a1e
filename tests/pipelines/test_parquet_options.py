"""Every Parquet output is written with ``io.PARQUET_OPTIONS`` (zstd, level 1): in memory, streamed, partitioned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

from pipelines import commands, io, partitions


@pytest.fixture()
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The keyword arguments of every ``write_parquet``/``sink_parquet`` call."""
    seen: list[dict[str, Any]] = []
    write, sink = pl.DataFrame.write_parquet, pl.LazyFrame.sink_parquet

    def spy_write(self: pl.DataFrame, path: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return write(self, path, **kwargs)

    def spy_sink(self: pl.LazyFrame, path: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return sink(self, path, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", spy_write)
    monkeypatch.setattr(pl.LazyFrame, "sink_parquet", spy_sink)
    return seen


def _job(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "in.csv"
    pl.DataFrame({"x": [1.0, None, 3.0, 4.0], "y": [0, 1, 0, 1]}).write_csv(data)
    spec = tmp_path / "spec.yaml"
    spec.write_text("steps: [{kind: impute, method: median}, {kind: scale, method: robust}]\n")
    return spec, data


@pytest.mark.parametrize("streaming", [False, True])
def test_run_writes_zstd_level_1(tmp_path: Path, calls: list[dict[str, Any]], streaming: bool) -> None:
    spec, data = _job(tmp_path)
    out = tmp_path / "out.parquet"
    commands.run(spec, data, out, streaming=streaming)
    assert calls and all(c.items() >= io.PARQUET_OPTIONS.items() for c in calls)
    assert pq.ParquetFile(out).metadata.row_group(0).column(0).compression == "ZSTD"


def test_partitioned_outputs_write_zstd_level_1(tmp_path: Path, calls: list[dict[str, Any]]) -> None:
    target = tmp_path / "part.parquet"
    partitions.write_atomic({target: pl.DataFrame({"x": [1.0]})})
    assert calls and all(c.items() >= io.PARQUET_OPTIONS.items() for c in calls)
    assert pq.ParquetFile(target).metadata.row_group(0).column(0).compression == "ZSTD"
