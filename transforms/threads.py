"""One thread budget for Polars and the native code that runs beside it (BLAS, OpenMP).

prepflow's steps run inside Polars' thread pool, whose size ``POLARS_MAX_THREADS``
sets. The steps that call NumPy or scikit-learn (SMOTE's neighbour search, the KNN
imputer) would otherwise use BLAS's and OpenMP's own pools, sized to every core of
the machine: a job told to use one thread would use them all, and a batch function
running beside other Polars work would oversubscribe the cores. So they run under
:func:`native_threads`, which limits those pools to the same budget.

Read the budget with :func:`budget` where the plan is built, not inside a Polars
batch function: there ``pl.thread_pool_size()`` answers 1.

>>> from threadpoolctl import threadpool_info
>>> with native_threads(1):
...     all(pool["num_threads"] == 1 for pool in threadpool_info())
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import polars as pl

T = TypeVar("T")
R = TypeVar("R")


def budget() -> int:
    """Threads a step may use: the size of Polars' thread pool (``POLARS_MAX_THREADS``)."""
    return pl.thread_pool_size()


@contextmanager
def native_threads(workers: int | None = None) -> Iterator[None]:
    """Limit the BLAS and OpenMP thread pools to ``workers`` (default :func:`budget`) inside the block."""
    from threadpoolctl import threadpool_limits  # imported on use: it inspects the loaded libraries

    with threadpool_limits(limits=workers or budget()):
        yield


def parallel_map(fn: Callable[[T], R], items: Sequence[T], *, workers: int | None = None) -> list[R]:
    """``[fn(x) for x in items]`` on up to ``workers`` threads (default :func:`budget`), in order.

    For NumPy work that releases the GIL.

    >>> parallel_map(abs, [-1, 2, -3])
    [1, 2, 3]
    """
    workers = max(1, min(len(items), workers or budget()))
    if workers == 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))
