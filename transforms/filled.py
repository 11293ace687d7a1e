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


def _lerp(a: float, b: float, v: np.float64, j: int) -> float:
    """NumPy's ``_lerp`` between order statistics ``j`` (``a``) and ``j + 1`` (``b``) at index ``v``."""
    gamma = v - np.float64(j)
    diff = np.float64(b) - np.float64(a)
    return float(np.float64(b) - diff * (1 - gamma)) if gamma >= 0.5 else float(np.float64(a) + diff * gamma)


def _floors(size: int, probs: Sequence[float]) -> list[tuple[np.float64, int]]:
    out = []
    for p in probs:
        v = np.float64(size - 1) * np.float64(p)
        out.append((v, min(math.floor(v), size - 1)))
    return out


def quantiles_of(
    values: np.ndarray, plain: Mapping[str, Sequence[float]], filled: Mapping[str, Filled]
) -> dict[str, list[float] | None]:
    """Quantiles of ``values`` (``plain``) and of ``values`` plus ``k`` copies of a fill (``filled``).

    ``values``: 1-D float64, finite, not modified. Each result equals ``np.quantile(...,
    method="linear")`` on the corresponding multiset (None when it is empty).
    """
    n = values.size
    ranks: set[int] = set()
    for probs in plain.values():
        for _, j in _floors(n, probs):
            ranks |= {j, j + 1}
    for probs, k, _ in filled.values():
        for _, j in _floors(n + k, probs):
            ranks |= {j, j + 1, j - k, j + 1 - k}
    wanted = sorted(r for r in ranks if 0 <= r < n)
    part = np.partition(values, wanted) if wanted else values

    def stat(i: int) -> float:
        return float(part[i])

    done: dict[str, list[float] | None] = {}
    for key, probs in plain.items():
        done[key] = None if n == 0 else [_quantile(stat, n, v, j) for v, j in _floors(n, probs)]
    for key, (probs, k, fill_of) in filled.items():
        fill = fill_of(done)
        if fill is None or k == 0:
            done[key] = None if n == 0 else [_quantile(stat, n, v, j) for v, j in _floors(n, probs)]
            continue
        m = float(fill)
        below, equal = int(np.count_nonzero(values < m)), int(np.count_nonzero(values == m))

        def combined(i: int, m: float = m, below: int = below, k: int = k, top: int = below + equal) -> float:
            if i < below:
                return stat(i)
            return m if i < top + k else stat(i - k)

        done[key] = [_quantile(combined, n + k, v, j) for v, j in _floors(n + k, probs)]
    return done


def _quantile(stat: Callable[[int], float], size: int, v: np.float64, j: int) -> float:
    if v >= size - 1:
        return stat(size - 1)
    return _lerp(stat(j), stat(j + 1), v, j)
