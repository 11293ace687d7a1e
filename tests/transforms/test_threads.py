"""The native code beside Polars (BLAS, OpenMP) keeps to Polars' thread budget (``POLARS_MAX_THREADS``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from threadpoolctl import threadpool_info

from transforms import KNNImputer
from transforms.augment import neighbours as nb
from transforms.impute import knn as knn_module
from transforms.threads import budget, native_threads, parallel_map

ROOT = Path(__file__).resolve().parents[2]


def blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_budget_is_polars_thread_pool() -> None:
    assert budget() == pl.thread_pool_size()


def test_parallel_map_keeps_order_on_at_most_the_budget_threads() -> None:
    import threading
    import time

    seen: set[int] = set()

    def job(i: int) -> int:
        seen.add(threading.get_ident())
        time.sleep(0.01)  # every worker gets items
        return i * i

    assert parallel_map(job, list(range(20))) == [i * i for i in range(20)]
    assert 1 <= len(seen) <= budget()


def test_native_threads_limits_inside_the_block_and_restores_after() -> None:
    before = [(p["filepath"], p["num_threads"]) for p in threadpool_info()]
    with native_threads(1):
        assert {p["num_threads"] for p in threadpool_info()} == {1}
    assert [(p["filepath"], p["num_threads"]) for p in threadpool_info()] == before


def test_brute_force_neighbours_run_blas_on_the_given_workers(monkeypatch) -> None:
    """Expect: 16 independent Gaussian features take the brute-force branch (scikit-learn, BLAS), and its
    BLAS runs on ``workers`` threads, not on every core."""
    from sklearn.neighbors import NearestNeighbors

    seen: list[set[int]] = []
    kneighbors = NearestNeighbors.kneighbors

    def spy(self, *args, **kwargs):
        seen.append(blas_threads())
        return kneighbors(self, *args, **kwargs)

    monkeypatch.setattr(NearestNeighbors, "kneighbors", spy)
    x = np.random.default_rng(0).standard_normal((2000, 16))
    got = nb.nearest_neighbours(x, 5, workers=1)
    assert seen == [{1}]
    expected = NearestNeighbors(n_neighbors=6).fit(x).kneighbors(x, return_distance=False)[:, 1:]
    assert np.array_equal(got, expected)


def test_knn_imputer_reads_the_budget_where_the_plan_is_built(monkeypatch) -> None:
    """Expect: the KNN imputer's distances run under the budget read when the plan is built (inside the batch
    function Polars answers 1, which would make any budget 1); results unchanged."""
    from sklearn.impute import KNNImputer as SkKNN

    seen: list[set[int]] = []
    transform = SkKNN.transform

    def spy(self, X):
        seen.append(blas_threads())
        return transform(self, X)

    monkeypatch.setattr(SkKNN, "transform", spy)
    monkeypatch.setattr(knn_module, "budget", lambda: 1)
    rng = np.random.default_rng(1)
    a = rng.normal(size=200)
    df = pl.DataFrame({"a": a, "b": np.where(rng.random(200) < 0.2, np.nan, 2 * a)})
    out = KNNImputer(n_neighbors=3).fit_transform(df)
    assert seen == [{1}]
    expected = SkKNN(n_neighbors=3).fit_transform(df.to_numpy())
    np.testing.assert_allclose(out.to_numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.skipif(sys.platform != "linux", reason="thread counts of a child process, read from /proc")
def test_polars_max_threads_1_keeps_smote_brute_force_on_one_thread(tmp_path) -> None:
    """Expect: a job run with POLARS_MAX_THREADS=1 runs SMOTE's brute-force neighbour search with one BLAS
    thread (without the budget, BLAS takes every core: 2 on the CI-class machine)."""
    code = textwrap.dedent(
        """
        import numpy as np, polars as pl
        from threadpoolctl import threadpool_info
        from sklearn.neighbors import NearestNeighbors
        from transforms import SMOTE

        seen = []
        kneighbors = NearestNeighbors.kneighbors
        def spy(self, *a, **k):
            seen.append(sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}))
            return kneighbors(self, *a, **k)
        NearestNeighbors.kneighbors = spy
        rng = np.random.default_rng(0)
        df = pl.DataFrame({f"f{i}": rng.standard_normal(3000) for i in range(16)}).with_columns(
            y=pl.Series([1] * 300 + [0] * 2700)
        )
        SMOTE(target="y", seed=0).fit_transform(df)
        print(pl.thread_pool_size(), seen)
        """
    )
    env = {**os.environ, "POLARS_MAX_THREADS": "1"}
    cmd = [sys.executable, "-c", code]
    res = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["1", "[[1]]"]
