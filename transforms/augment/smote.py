"""SMOTE: synthetic minority rows interpolated between near neighbours.

Generation runs in one ``LazyFrame.map_batches`` call over the rows of the
classes that grow (a ``filter`` first, so a 2% minority of a large table is all
that reaches NumPy); the original rows stream past untouched and the new rows
are appended with a lazy ``concat``. Per class:
the exact ``k`` nearest neighbours (:func:`~transforms.augment.neighbours.nearest_neighbours`:
a k-d tree or chunked brute force, whichever its cost model finds cheaper for the
data; never a full pairwise-distance matrix), then
``x_i + u * (x_nn - x_i)`` for the new rows, with
``numpy.random.default_rng(seed)``, interpolated one feature at a time into one column-major
array. Memory beyond the output: the minority rows, that array and a few index vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import polars as pl
from pydantic import Field

from transforms.augment._base import (
    AugmentStep,
    FittedClassBalance,
    class_counts_query,
    class_filter,
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
    x: np.ndarray, n: int, k: int, rng: np.random.Generator, *, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic points from the rows of ``x``, and the row each was seeded from.

    Each point is ``x[i] + u * (x[j] - x[i])`` for a random row ``i``, ``j`` one
    of the ``k`` nearest neighbours of ``i`` among the rows of ``x`` (itself
    excluded, as in imbalanced-learn) and ``u ~ U[0, 1)``. ``k`` is capped at
    ``len(x) - 1``; a single row is copied. ``workers``: threads of the neighbour search.

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


def _smote_batch(
    df: pl.DataFrame,
    *,
    columns: tuple[str, ...],
    target: str,
    classes: tuple[Any, ...],
    n_new: tuple[int, ...],
    k: int,
    seed: int,
    workers: int,
) -> pl.DataFrame:
    """The synthetic rows for every growing class of ``df`` (the filtered minority rows)."""
    rng = np.random.default_rng(seed)
    dtype = df.schema[target]
    parts = []
    for value, n in zip(classes, n_new, strict=True):
        if n <= 0:
            continue
        rows = df.filter(class_filter(target, dtype, value))
        if rows.height == 0:
            continue
        x = rows.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy()
        new, seeds = smote_samples(x, n, k, rng, workers=workers)
        copied = rows.drop(columns)[seeds]  # the seed row's other columns
        features = [keep_dtype(pl.Series(c, new[:, j]), df.schema[c]) for j, c in enumerate(columns)]
        parts.append(copied.with_columns(features).select(df.columns))
    return pl.concat(parts, how="vertical") if parts else df.clear()


@dataclass(frozen=True)
class FittedSMOTE(FittedClassBalance):
    """Balances ``target``: see :class:`FittedClassBalance` for the state."""

    def generate(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        grow = [v for v, n in zip(self.classes, self.n_new, strict=True) if n > 0]
        if not grow:
            return lf.clear()
        dtype = lf.collect_schema()[self.target]
        keep = pl.any_horizontal(class_filter(self.target, dtype, v) for v in grow)
        fn = partial(
            _smote_batch,
            columns=self.columns,
            target=self.target,
            classes=self.classes,
            n_new=self.n_new,
            k=self.step.k_neighbors,  # type: ignore[attr-defined]
            seed=self.step.seed,
            workers=budget(),  # here, not in the batch function: there Polars answers 1
        )
        return lf.filter(keep).map_batches(fn)


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
