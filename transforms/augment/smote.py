"""SMOTE: synthetic minority rows interpolated between near neighbours.

The new rows are a lazy source (:func:`~transforms.augment._base.new_rows_source`):
when a query first reads them, the rows of the classes that grow are collected (a
``filter``, so a 2% minority of a large table is all that reaches NumPy), and the
new rows are made from them :data:`~transforms.augment._base.CHUNK_ROWS` at a time, each chunk passed on
before the next is made. The original rows stream past untouched and the new rows
are appended with a lazy ``concat``, so a streamed run holds the minority rows, their
neighbour table and one chunk, never the table of new rows (1.96x the input's rows
when a 2% minority is balanced). Per class: the exact ``k`` nearest neighbours
(:func:`~transforms.augment.neighbours.nearest_neighbours`: a k-d tree or chunked brute
force, whichever its cost model finds cheaper for the data; never a full
pairwise-distance matrix), then ``x_i + u * (x_nn - x_i)`` for the new rows, each
chunk's draws from its own ``numpy.random.default_rng`` seeded from the step's seed,
the class and the chunk (so the rows do not depend on how the query runs),
interpolated one feature at a time into one column-major array.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import polars as pl
from pydantic import Field

from transforms.augment._base import (
    CHUNK_ROWS,
    AugmentStep,
    FittedClassBalance,
    class_counts_query,
    derive_seed,
    keep_dtype,
    n_to_add,
)
from transforms.augment.neighbours import nearest_neighbours
from transforms.base import FitData, FitPlan
from transforms.errors import ColumnError, FitError
from transforms.missing import finite
from transforms.registry import register
from transforms.threads import budget


def smote_samples(
    x: np.ndarray,
    n: int,
    k: int,
    rng: np.random.Generator,
    *,
    workers: int | None = None,
    neighbours: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic points from the rows of ``x``, and the row each was seeded from.

    Each point is ``x[i] + u * (x[j] - x[i])`` for a random row ``i``, ``j`` one
    of the ``k`` nearest neighbours of ``i`` among the rows of ``x`` (itself
    excluded, as in imbalanced-learn) and ``u ~ U[0, 1)``. ``k`` is capped at
    ``len(x) - 1``; a single row is copied. ``workers``: threads of the neighbour search;
    ``neighbours``: its result, when known (``nearest_neighbours(x, min(k, len(x) - 1))``).

    >>> x = np.array([[0.0, 0.0], [1.0, 1.0]])
    >>> new, seeds = smote_samples(x, 3, 5, np.random.default_rng(0))
    >>> bool(np.allclose(new[:, 0], new[:, 1])), seeds.shape
    (True, (3,))
    """
    m = len(x)
    rows = rng.integers(0, m, size=n)
    if m < 2:
        return x[rows].copy(), rows
    k = min(k, m - 1)
    if neighbours is None:
        neighbours = nearest_neighbours(x, k, workers=workers)
    picks = neighbours[rows, rng.integers(0, k, size=n)]
    steps = rng.random(n)
    # column-major: each feature's values are contiguous, ready to become a Series; one feature
    # at a time, so the gathers read a contiguous column and the temporary is one column
    new = np.empty((n, x.shape[1]), order="F")
    columns = np.asfortranarray(x)
    for j in range(x.shape[1]):
        feature, out = columns[:, j], new[:, j]
        start = feature[rows]
        np.take(feature, picks, out=out)
        out -= start
        out *= steps
        out += start
    return new, rows


class _LastSearch:
    """:func:`nearest_neighbours`, remembering its last input (a digest) and result.

    A query reads SMOTE's new rows each time it runs: a streamed run with steps after
    SMOTE runs one for each later fit group, the output and the quarantine, all on the
    same minority rows, so with the same neighbours, and the search is the costly part
    (18 s for 199k rows of 10 features). Each fitted step holds one (its last result),
    freed with it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._result: np.ndarray | None = None

    def __call__(self, x: np.ndarray, k: int, *, workers: int) -> np.ndarray:
        rows = np.ascontiguousarray(x.T)  # a view of the column-major x: its bytes, without a copy
        key = (k, x.shape, hashlib.blake2b(memoryview(rows).cast("B"), digest_size=16).digest())
        with self._lock:
            if key == self._key and self._result is not None:
                return self._result
        result = nearest_neighbours(x, k, workers=workers)
        with self._lock:
            self._key, self._result = key, result
        return result


@dataclass(frozen=True)
class FittedSMOTE(FittedClassBalance):
    """Balances ``target``: see :class:`FittedClassBalance` for the state."""

    def rows_maker(self) -> Callable[[pl.DataFrame], Iterator[pl.DataFrame]]:
        search = self.__dict__.get("_search")
        if search is None:  # not a field: no part of the state, its equality or its JSON
            search = _LastSearch()
            object.__setattr__(self, "_search", search)
        return partial(self._synthetic, workers=budget(), search=search)

    def _synthetic(self, df: pl.DataFrame, *, workers: int, search: _LastSearch) -> Iterator[pl.DataFrame]:
        """The synthetic rows of each growing class of ``df`` (the growing classes' rows), a chunk at a time."""
        k = self.step.k_neighbors  # type: ignore[attr-defined]
        for i, rows, n in self.growing(df):
            x = np.asfortranarray(rows.select(pl.col(c).cast(pl.Float64) for c in self.columns).to_numpy())
            knn = search(x, min(k, len(x) - 1), workers=workers) if len(x) > 1 else None
            others = rows.drop(self.columns)  # the seed row's other columns
            for chunk, start in enumerate(range(0, n, CHUNK_ROWS)):
                rng = np.random.default_rng(derive_seed(self.step.seed, i, chunk))
                new, seeds = smote_samples(x, min(CHUNK_ROWS, n - start), k, rng, neighbours=knn)
                features = [keep_dtype(pl.Series(c, new[:, j]), df.schema[c]) for j, c in enumerate(self.columns)]
                yield others[seeds].with_columns(features).select(df.columns)


@register("augment", "smote", "SMOTE: synthetic minority rows interpolated between k nearest neighbours.")
class SMOTE(AugmentStep):
    """Synthetic Minority Over-sampling (Chawla et al. 2002) on numeric feature columns.

    Class sizes follow :class:`~transforms.RandomOversampler` (imbalanced-learn's
    rule for a float ``sampling_strategy``, counts learned at fit). A synthetic
    row lies on the segment between a random minority row and one of its
    ``k_neighbors`` nearest rows of the same class (``k`` capped at the class
    size minus one). Its other columns (strings, numeric columns not in
    ``columns``, an id) copy the seed row's values; integer feature columns are
    rounded. Fitted on no rows it adds none. Fitting fails (:class:`~transforms.FitError`) on a single-class
    target, on a growing class with a single row, and on missing or infinite
    feature values in a growing class (impute first).

    Parameters
    ----------
    k_neighbors
        Nearest same-class rows a synthetic row may be drawn towards.
    ratio
        Size each minority class grows to, as a share of the majority, in (0, 1].
    columns
        Numeric features to interpolate; default: numeric, except the target.
    seed, mark, target
        See :class:`~transforms.augment.AugmentStep`; ``target`` is required
        and holds class labels (integer, string, categorical or boolean).

    >>> import polars as pl
    >>> df = pl.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 10.0, 11.0], "y": [0, 0, 0, 0, 1, 1]})
    >>> out = SMOTE(target="y", k_neighbors=1).fit_transform(df)
    >>> out["y"].to_list()
    [0, 0, 0, 0, 1, 1, 1, 1]
    >>> all(10.0 <= v <= 11.0 for v in out["x"].tail(2))
    True
    """

    k_neighbors: int = Field(5, ge=1)
    ratio: float = Field(1.0, gt=0, le=1)

    fitted_class = FittedSMOTE
    streams = True

    def plan(self, schema: pl.Schema, target: str | None) -> FitPlan:
        t = self.require_class_target(schema, target)
        cols = self.resolve_columns(schema, t)
        if t in cols:
            raise ColumnError(f"{self.label}: the target '{t}' cannot be a feature column")
        if not cols:
            raise ColumnError(f"{self.label}: no numeric feature columns to interpolate")
        missing = [finite(c, schema[c]).is_null().sum().alias(f"__m{i}") for i, c in enumerate(cols)]

        def finish(data: FitData) -> FittedSMOTE:
            frame = data.queries["counts"]
            classes = tuple(frame[t].to_list())
            counts = tuple(int(n) for n in frame["__n"])
            if not classes:  # no rows (e.g. all quarantined): nothing to balance, nothing to add
                return FittedSMOTE(step=self, columns=cols, target=t, classes=(), counts=(), n_new=())
            if len(classes) < 2:
                raise FitError(
                    f"{self.label}: single-class target '{t}' ({len(classes)} class(es)); SMOTE needs two or more"
                )
            n_new = n_to_add(counts, self.ratio)
            for row, n in zip(frame.iter_rows(named=True), n_new, strict=True):
                if n <= 0:
                    continue
                if row["__n"] < 2:
                    raise FitError(f"{self.label}: class {row[t]!r} of '{t}' has a single row; SMOTE needs two")
                for i, c in enumerate(cols):
                    if row[f"__m{i}"]:
                        raise FitError(
                            f"{self.label}: column '{c}' has {row[f'__m{i}']} missing or infinite value(s) in "
                            f"minority class {row[t]!r}; impute first"
                        )
            return FittedSMOTE(step=self, columns=cols, target=t, classes=classes, counts=counts, n_new=n_new)

        return FitPlan(
            finish=finish,
            reads=(*cols, t),
            output_schema=self.output_schema(schema),
            queries={"counts": class_counts_query(t, schema[t], missing)},
            changes_rows=True,
        )
