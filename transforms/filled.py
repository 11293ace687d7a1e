"""Quantiles of a column after a constant fill, from the column before it: one selection, not two.

An imputer that fills a column's missing values with one constant ``m`` (its median or
mean) turns the finite values ``a`` (``n`` of them) and ``k`` missing ones into the
multiset ``a + k * [m]``. Its sorted order is known without building it: the ``L`` values
below ``m``, then ``m`` (``E`` equal values plus the ``k`` fills), then the rest, so its
``i``-th order statistic is ``a_(i)`` below ``L``, ``m`` up to ``L + E + k``, ``a_(i - k)``
beyond. A later step's quantiles of the filled column (a robust scaler's, an IQR clip's)
therefore come from the raw column's order statistics at ranks ``i`` or ``i - k``: the
fit engine places all of them, with the imputer's own median ranks, in one
``np.partition`` of the raw values, instead of a median pass and then a pass over a
materialised filled column. The interpolation is NumPy's (``np.quantile(method="linear")``),
so the numbers are bit for bit those of ``np.quantile`` on the filled column.

>>> a = np.array([5.0, 1.0, 3.0])
>>> filled = np.array([5.0, 1.0, 3.0, 3.0, 3.0])  # two values filled with the median, 3
>>> out = quantiles_of(a, {"median": (0.5,)}, {"iqr": ((0.25, 0.75), 2, lambda done: done["median"][0])})
>>> out["iqr"] == [float(q) for q in np.quantile(filled, (0.25, 0.75))], out["median"]
(True, [3.0])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

#: a filled request: its probabilities, the number of values filled, and the fill value
#: (from the results of the plain requests computed first; None: nothing was filled)
Filled = tuple[Sequence[float], int, Callable[[Mapping[str, list[float] | None]], Any]]


def order_quantile(stat: Callable[[int], Any], size: int, p: float) -> float:
    """``np.quantile(values, p, method="linear")`` from ``stat(i)``, the ``i``-th order statistic of ``size`` values.

    NumPy's virtual index ``(size - 1) p`` and its ``_lerp``, exactly (``size`` > 0).

    >>> ordered = [1.0, 2.0, 4.0]
    >>> order_quantile(ordered.__getitem__, 3, 0.75) == float(np.quantile(ordered, 0.75))
    True
    """
    v = np.float64(size - 1) * np.float64(p)
    j = math.floor(v)
    if v >= size - 1:
        return float(stat(size - 1))
    a, b = np.float64(stat(j)), np.float64(stat(j + 1))
    gamma = v - np.float64(j)
    diff = b - a
    return float(b - diff * (1 - gamma)) if gamma >= 0.5 else float(a + diff * gamma)


def quantiles_of(
    values: np.ndarray, plain: Mapping[str, Sequence[float]], filled: Mapping[str, Filled], *, owned: bool = False
) -> dict[str, list[float] | None]:
    """Quantiles of ``values`` (``plain``) and of ``values`` plus ``k`` copies of a fill (``filled``).

    ``values``: 1-D float64, finite; reordered in place when ``owned`` (no copy), else not
    modified. Each result equals ``np.quantile(..., method="linear")`` on the corresponding
    multiset (None when it is empty).
    """
    n = values.size
    ranks: set[int] = set()
    for probs in plain.values():
        ranks |= {r for p in probs for j in [_floor(n, p)] for r in (j, j + 1)}
    for probs, k, _ in filled.values():
        ranks |= {r for p in probs for j in [_floor(n + k, p)] for r in (j, j + 1, j - k, j + 1 - k)}
    wanted = sorted(r for r in ranks if 0 <= r < n)
    part = values if owned or not wanted else values.copy()
    if len(wanted) > 64 and len(wanted) * 1000 > n:  # many ranks of few values (1000 quantiles of a subsample)
        part.sort()
    elif wanted:
        select_ranks(part, wanted)

    def stat(i: int) -> float:
        return float(part[i])

    done: dict[str, list[float] | None] = {}
    for key, probs in plain.items():
        done[key] = None if n == 0 else [order_quantile(stat, n, p) for p in probs]
    for key, (probs, k, fill_of) in filled.items():
        fill = fill_of(done)
        if fill is None or k == 0:
            done[key] = None if n == 0 else [order_quantile(stat, n, p) for p in probs]
            continue
        m = float(fill)
        below, equal = int(np.count_nonzero(values < m)), int(np.count_nonzero(values == m))

        def combined(i: int, m: float = m, below: int = below, k: int = k, top: int = below + equal) -> float:
            if i < below:
                return stat(i)
            return m if i < top + k else stat(i - k)

        done[key] = [order_quantile(combined, n + k, p) for p in probs]
    return done


def select_ranks(a: np.ndarray, ranks: Sequence[int]) -> None:
    """Reorder ``a`` (1-D, writable, no NaN) in place so that ``a[r]`` is its ``r``-th smallest value for each rank.

    What ``a.partition(ranks)`` guarantees, several times faster for many ranks: NumPy
    selects one rank after another over the rest of the array (9 ranks of 9.5M values:
    0.24 s, against 0.055 s for one). Here each selection splits the array, the ranks
    below it are selected in the left part and those above in the right, so the work is
    about the array's size per level of a balanced split; the rank just above a selected
    one is the right part's minimum, swapped into place.

    >>> a = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 0.0])
    >>> select_ranks(a, [1, 2, 4])
    >>> [float(a[r]) for r in (1, 2, 4)]
    [1.0, 2.0, 4.0]
    """
    stack = [(0, a.size, sorted(set(ranks)))]
    while stack:
        lo, hi, rs = stack.pop()
        if not rs:
            continue
        mid = rs[len(rs) // 2]
        a[lo:hi].partition(mid - lo)
        left = [r for r in rs if r < mid]
        right = [r for r in rs if r > mid]
        start = mid + 1
        if right and right[0] == start:
            tail = a[start:hi]
            i = int(np.argmin(tail))
            tail[0], tail[i] = tail[i], tail[0]
            right, start = right[1:], start + 1
        stack.append((lo, mid, left))
        stack.append((start, hi, right))


def _floor(size: int, p: float) -> int:
    """The lower order statistic NumPy's linear interpolation reads for ``p`` (at most ``size - 1``)."""
    return min(math.floor(np.float64(size - 1) * np.float64(p)), size - 1)
