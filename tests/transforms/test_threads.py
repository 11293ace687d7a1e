"""The native code beside Polars (BLAS, OpenMP) keeps to Polars' thread budget (``POLARS_MAX_THREADS``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
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


def spy_blocks(monkeypatch: pytest.MonkeyPatch, module: object) -> list[tuple[int | None, int, set[int]]]:
    """Record each brute-force search's (workers asked, threads its blocks ran on, BLAS threads in the blocks)."""
    seen: list[tuple[int | None, int, set[int]]] = []
    real = module.parallel_map  # type: ignore[attr-defined]

    def spy(fn, items, *, workers=None):
        threads: set[int] = set()
        blas: set[int] = set()

        def block(item):
            threads.add(threading.get_ident())
            blas.update(blas_threads())
            return fn(item)

        out = real(block, items, workers=workers)
        seen.append((workers, len(threads), blas))
        return out

    monkeypatch.setattr(module, "parallel_map", spy)
    return seen


@pytest.mark.parametrize("workers", [1, 2])
def test_brute_force_neighbours_keep_to_the_given_workers(monkeypatch, workers: int) -> None:
    """Expect: 16 independent Gaussian features take the brute-force branch; its blocks run on at most
    ``workers`` threads, each block's matrix product on one BLAS thread (not on every core); the neighbours
    are scikit-learn's."""
    from sklearn.neighbors import NearestNeighbors

    seen = spy_blocks(monkeypatch, nb)
    x = np.random.default_rng(0).standard_normal((2000, 16))
    got = nb.nearest_neighbours(x, 5, workers=workers)
    assert len(seen) == 1
    asked, threads, blas = seen[0]
    assert asked == workers and 1 <= threads <= workers and blas == {1}
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
    """Expect: a job run with POLARS_MAX_THREADS=1 runs SMOTE's brute-force neighbour search on one thread with
    one BLAS thread (without the budget, BLAS takes every core: 2 on the CI-class machine)."""
    code = textwrap.dedent(
        """
        import threading
        import numpy as np, polars as pl
        from threadpoolctl import threadpool_info
        from transforms import SMOTE
        from transforms.augment import neighbours

        seen = []
        real = neighbours.parallel_map
        def spy(fn, items, *, workers=None):
            threads, blas = set(), set()
            def block(item):
                threads.add(threading.get_ident())
                blas.update(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
                return fn(item)
            out = real(block, items, workers=workers)
            seen.append([workers, len(threads), sorted(blas)])
            return out
        neighbours.parallel_map = spy
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
    assert res.stdout.strip() == "1 [[1, 1, [1]]]"
