"""Exact k nearest neighbours of every row among the rows, by the cheaper of two searches.

A k-d tree (``scipy.spatial.cKDTree``) is fast when the data have few effective
dimensions (correlated features, repeated values, a few dense clusters) and slower
than brute force on data that fill their space (10 independent Gaussian features:
1.7x brute force at 20k rows; 16 of them: 6x). Brute force (:func:`brute_force`)
costs about the same on any data. Both are exact, so which runs is a matter of
speed: it is decided from the data, deterministically, by a cost model instead of
a fixed number of features.

The model builds the tree (cheap) and, for a sample of rows, counts the points in
the leaves whose boxes reach the row's true k-th neighbour (found by brute force
for the sample): a tree search visits at least those. With ``f`` that share of the
rows and ``d`` features, the tree's search costs about ``2 * f * d`` times brute
force's where the two are close (measured at 20k rows: 8 Gaussian features,
``f * d`` 0.42, the tree 0.91x brute force; 6 effective features in 16, 0.32,
0.68x; 10 Gaussian features, 1.2, 1.8x); the tree runs when ``f * d <= 0.45``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from transforms.threads import budget, native_threads, parallel_map

if TYPE_CHECKING:
    from scipy.spatial import cKDTree
    from scipy.spatial._ckdtree import cKDTreeNode

#: rows the cost model probes
_PROBES = 64
#: the tree runs when (share of rows in reached leaves) x (features) is at most this
_TREE_MAX_COST = 0.45
#: points per k-d tree leaf (scipy's default)
_LEAFSIZE = 16
#: brute force: float64 values per block of rows (8 MB), and values per row sampled for a row's bound
_BLOCK_VALUES = 1 << 20
_SAMPLE = 2048


def nearest_neighbours(x: np.ndarray, k: int, *, workers: int | None = None) -> np.ndarray:
    """The indices of the ``k`` nearest rows of each row of ``x`` (itself excluded), nearest first.

    As ``NearestNeighbors(n_neighbors=k + 1).kneighbors(x)[:, 1:]`` (imbalanced-learn's
    SMOTE): with duplicate rows a row's own index may be among the ``k``. Requires
    ``k < len(x)``. ``workers``: threads of the search, the tree's or the brute force's (default:
    :func:`transforms.threads.budget`, Polars' thread pool size). Inside a Polars batch function
    pass it in: there ``pl.thread_pool_size()`` answers 1 (measured: the search then took 1.2-1.4 s
    instead of 0.5-0.6 s).

    >>> x = np.array([[0.0], [1.0], [3.0], [7.0]])
    >>> nearest_neighbours(x, 2).tolist()
    [[1, 2], [0, 2], [1, 0], [2, 1]]
    """
    from scipy.spatial import cKDTree  # imported on use: keeps `import transforms` light

    workers = workers or budget()
    with native_threads(workers):  # the cost model's BLAS: the same budget
        tree = cKDTree(x, leafsize=_LEAFSIZE)
        if tree_cost(x, tree, k) <= _TREE_MAX_COST:
            _, idx = tree.query(x, k=k + 1, workers=workers)
            return np.asarray(idx[:, 1:], dtype=np.intp)
    return brute_force(x, k, workers=workers)


def brute_force(x: np.ndarray, k: int, *, workers: int | None = None) -> np.ndarray:
    """:func:`nearest_neighbours` by brute force, in blocks of rows on ``workers`` threads.

    For a block of rows, one matrix product gives ``|y|^2 - 2 x.y`` against every row
    ``y`` (the squared distance less ``|x|^2``, which does not change a row's order;
    scikit-learn's brute force ranks by the same). A row's ``k + 1`` nearest are among
    the values at most the ``(k + 1)``-th smallest of an evenly spaced sample of its
    values (an upper bound of the true one): a few hundred candidates of the block's
    ``block x n`` values, sorted by value then index. Memory: a block of about
    :data:`_BLOCK_VALUES` float64 values per thread, never the ``n x n`` matrix.
    scikit-learn's ``NearestNeighbors(algorithm="brute")`` gives the same neighbours; this
    takes 0.66-0.82x its time (20k rows, 4 to 32 features), without its import (150 MB RSS).

    >>> brute_force(np.array([[0.0], [1.0], [3.0], [7.0]]), 2).tolist()
    [[1, 2], [0, 2], [1, 0], [2, 1]]
    """
    n, d = x.shape
    kk = k + 1
    # (-2x, 1) @ (y; |y|^2) = |y|^2 - 2 x.y for every pair, in one product
    left = np.empty((n, d + 1))
    left[:, :d] = -2.0 * x
    left[:, d] = 1.0
    right = np.empty((d + 1, n))
    right[:d] = x.T
    right[d] = np.einsum("ij,ij->i", x, x)
    out = np.empty((n, kk), dtype=np.intp)
    block = max(1, min(n, _BLOCK_VALUES // n))
    stride = max(1, min(n // _SAMPLE, n // kk))  # a sample of at least k + 1 values per row
    positions = np.arange(kk)

    def search(start: int) -> None:
        stop = min(n, start + block)
        values = left[start:stop] @ right
        bound = np.partition(values[:, ::stride], kk - 1, axis=1)[:, kk - 1]
        flat = np.flatnonzero(values <= bound[:, None])
        rows, cols = np.divmod(flat, n)
        order = np.lexsort((cols, values.ravel()[flat], rows))
        first = np.searchsorted(rows, np.arange(stop - start))
        out[start:stop] = cols[order[first[:, None] + positions]]

    with native_threads(1):  # one BLAS thread per block, the blocks on the budget's threads
        parallel_map(search, range(0, n, block), workers=workers or budget())
    return out[:, 1:]


def tree_cost(x: np.ndarray, tree: cKDTree, k: int) -> float:
    """The k-d tree search's estimated cost as a share of brute force's (see the module's docstring)."""
    starts = np.sort(_leaf_starts(tree.tree))
    points = x[tree.indices]
    lo = np.minimum.reduceat(points, starts, axis=0)
    hi = np.maximum.reduceat(points, starts, axis=0)
    sizes = np.diff(np.append(starts, len(x)))
    probes = x[np.linspace(0, len(x) - 1, min(_PROBES, len(x))).astype(np.intp)]
    # squared distance of each probe to its k-th neighbour (itself is the 0th); an estimate, so
    # the GEMM form's rounding does not matter
    d2 = (probes**2).sum(axis=1)[:, None] + (x**2).sum(axis=1)[None, :] - 2.0 * (probes @ x.T)
    radius = np.partition(d2, k, axis=1)[:, k]
    box = np.zeros((len(probes), len(starts)))  # squared distance of each probe to each leaf's box
    for j in range(x.shape[1]):
        gap = np.maximum(lo[:, j][None, :] - probes[:, j][:, None], 0.0)
        gap += np.maximum(probes[:, j][:, None] - hi[:, j][None, :], 0.0)
        box += gap * gap
    reached = box <= radius[:, None]
    share = float((reached @ sizes).mean()) / len(x)
    return share * x.shape[1]


def _leaf_starts(root: cKDTreeNode) -> np.ndarray:
    """The first position (in the tree's index order) of every leaf under ``root``."""
    starts, stack = [], [root]
    while stack:
        node = stack.pop()
        if node.split_dim == -1:
            starts.append(node.start_idx)
        else:
            stack += [node.lesser, node.greater]
    return np.asarray(starts, dtype=np.intp)
