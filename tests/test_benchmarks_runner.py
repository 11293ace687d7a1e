"""The benchmark runner's targets and the benchmark data's format, without running a benchmark."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from benchmarks.data import dataset, generate
from benchmarks.runner import Result, Run, targets


def _result(case: int, variant: str, seconds: float, peak_rss: int) -> Result:
    run = Run(seconds=seconds, process_s=seconds + 0.5, peak_rss=peak_rss, compute_s=seconds / 2)
    return Result(case, variant, 1000, [run])


def test_the_scan_variant_gets_its_own_case_2_and_case_7_target_lines() -> None:
    """Expect: with the scan variant (d') measured, case 2's time and RSS and case 7's apply against the floor
    are given for it too, each its own ratio and verdict; without it, no scan line at all."""
    results = [
        _result(2, "sklearn", 30.0, 4000),
        _result(2, "prepflow", 3.3, 2000),
        _result(2, "scan", 2.4, 1200),
        _result(7, "floor", 2.0, 900),
        _result(7, "prepflow", 2.0, 2000),
        _result(7, "scan", 3.0, 1200),
    ]
    found = targets(results)
    by_name = {t.name: t for t in found if t.limit != 0.5}  # the 0.5x lines of every case repeat some names
    assert by_name["case 2 prepflow on a scan, time / sklearn"].value == pytest.approx(0.08)
    assert by_name["case 2 prepflow on a scan, time / sklearn"].met
    assert by_name["case 2 prepflow on a scan, peak RSS / sklearn"].value == pytest.approx(0.3)
    assert by_name["case 2 prepflow time / sklearn"].met is False  # 0.11: the in-memory line stays its own
    scan7 = by_name["case 7 prepflow on a scan, seconds / floor seconds"]
    assert scan7.value == pytest.approx(1.5) and scan7.met is False
    assert "NOT met" in scan7.line()

    without = [r for r in results if r.variant != "scan"]
    assert not [t for t in targets(without) if "on a scan" in t.name]


def test_the_benchmark_parquet_is_uncompressed_like_the_npy_files(tmp_path: Path) -> None:
    """Expect: every column chunk of the generated Parquet input is uncompressed (as ``X.npy`` is, so that no
    variant pays for decoding what scikit-learn reads raw)."""
    ds = generate(dataset(2_000, 0, tmp_path), progress=False)
    meta = pq.ParquetFile(ds.parquet).metadata
    chunks = [meta.row_group(g).column(c) for g in range(meta.num_row_groups) for c in range(meta.num_columns)]
    codecs = {chunk.compression for chunk in chunks}
    assert codecs == {"UNCOMPRESSED"}
