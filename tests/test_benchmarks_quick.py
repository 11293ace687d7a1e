"""Regression guard for performance: the benchmarks' quick mode on cases 1 and 2.

Runs the quick mode (``python -m benchmarks --quick --cases 1,2``: 200k rows, one
run, each variant in its own subprocess; data in a temporary cache) for the two
variants the assertion needs, and asserts only a ratio that holds on a noisy
machine: the prepflow library is faster than scikit-learn (at 200k rows the read and two
masked fit scans keep case 1 near 0.6-0.7x; the 0.5x targets are for the full benchmark). Inside
each run the work is timed five times and the fastest kept (``repeat=5``), so a
burst of load on a shared machine does not decide the ratio. Absolute times and
the tighter targets are reported by the full benchmark (``benchmarks/README.md``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.runner import QUICK_ROWS, ratio, run_benchmarks, table


@pytest.mark.slow
def test_quick_cases_1_and_2(tmp_path: Path) -> None:
    results = run_benchmarks(
        cases=(1, 2),
        rows=QUICK_ROWS,
        runs=1,
        variants=("sklearn", "prepflow"),
        cache=tmp_path,
        timeout=120,
        repeat=5,
        echo=lambda _: None,
    )
    times = {f"case {r.case} {r.variant}": r.runs[0].detail.get("work_times") for r in results}
    report = f"{table(results)}\nwork times per run: {times}"
    assert not any(r.error for r in results), report
    # measured at 200k rows (CI, loaded 2-core machine): case 1 0.68x, case 2 0.45x scikit-learn (the read and the
    # two masked fit scans dominate at this size), so the guard asserts only that prepflow stays faster
    for case in (1, 2):
        assert ratio(results, case, "prepflow", "sklearn") < 1.0, report
    # every run is split at its read: the fastest repetition's read and computing add up to its time
    for r in results:
        run = r.runs[0]
        assert run.load_s > 0 and run.compute_s > 0 and run.rss_loaded > 0, report
        assert run.load_s + run.compute_s == pytest.approx(run.seconds, abs=1e-6), report


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_smote_memory_reports_what_each_library_adds(tmp_path: Path) -> None:
    """Expect: both libraries run case 6 at 20k rows and balance it; the report's RSS figures are ordered
    (imports <= after read <= peak) and prepflow's table rows match imbalanced-learn's."""
    from benchmarks.smote_memory import measure
    from benchmarks.smote_memory import table as memory_table

    results = measure(20_000, cache=tmp_path)
    assert set(results) == {"prepflow", "imbalanced-learn"}
    for r in results.values():
        assert 0 < r["imports"] <= r["read"] <= r["peak"], results
    assert results["prepflow"]["rows_out"] == results["imbalanced-learn"]["rows_out"] > 20_000, results
    assert "| prepflow |" in memory_table(results)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_smote_memory_runs_the_cli_streamed_and_in_memory(tmp_path: Path) -> None:
    """Expect: case 6's ``prepflow run`` in each regime, as it says, with the same rows out and a peak RSS."""
    from benchmarks.smote_memory import cli_table, measure_cli

    runs = measure_cli(20_000, cache=tmp_path)
    assert {name: r["regime"] for name, r in runs.items()} == {
        "prepflow run, streamed": "streaming",
        "prepflow run, in memory": "in_memory",
    }
    assert len({r["rows_out"] for r in runs.values()}) == 1 and runs["prepflow run, streamed"]["rows_out"] > 20_000
    assert all(r["peak"] > 0 and r["seconds"] > 0 for r in runs.values())
    assert "| prepflow run, streamed |" in cli_table(runs, 1 << 20)


@pytest.mark.slow
def test_every_variant_computes_what_scikit_learn_computes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Expect: ``python -m benchmarks --check`` passes on every case at 5k rows, every variant named in its
    report (a variant that did less work than the others would make its timings meaningless)."""
    from benchmarks.cases import LABELS, VARIANTS
    from benchmarks.check import check

    assert check(range(1, 8), rows=5_000, cache=tmp_path)
    report = capsys.readouterr().out
    for variant in (v for v in VARIANTS if v not in ("sklearn", "floor")):
        assert report.count(f"{LABELS[variant]}:") == 7, report
