"""k-nearest-neighbours imputation, exactly as ``sklearn.impute.KNNImputer``.

The fit keeps up to ``max_fit_rows`` rows of the selected columns as the
reference set (a seeded random subset, in data order, when there are more). They
are stored in the fitted JSON state, so **the artifact grows with
max_fit_rows** (about ``max_fit_rows x columns`` numbers).

The transform is the one impute step that is not a pure Polars expression: it
is a batched ``map_batches`` over a struct of the columns that turns the batch
into a column-major NumPy matrix (as ``DataFrame.to_numpy()`` gives) and calls
scikit-learn's ``KNNImputer`` fitted on the stored reference rows (fitting it
only stores them). The batch is the whole frame (``is_elementwise=False``): with
equidistant neighbours scikit-learn's choice depends on BLAS rounding, which
depends on the batch, so smaller engine-chosen batches could change results
between runs. Under the streaming engine this step therefore sees its whole
input at once; the distance matrix is computed in scikit-learn's memory-bounded
chunks.

Null and NaN are missing and get imputed. +/-inf is not missing: it stays in the
output, and is left out of the reference set and of distances (scikit-learn
rejects it). A column with no value in the reference set stays missing
(scikit-learn drops it).

>>> import polars as pl
>>> from transforms import KNNImputer
>>> df = pl.DataFrame({"a": [1.0, 2.0, 3.0, 10.0], "b": [1.0, 2.0, None, 10.0]})
>>> KNNImputer(n_neighbors=2).fit_transform(df)["b"].to_list()
[1.0, 2.0, 1.5, 10.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field

from transforms.base import FitData, FitPlan
from transforms.impute._common import FittedImpute, ImputeStep, output_schema
from transforms.missing import finite, float_dtype
from transforms.registry import register
from transforms.threads import budget, native_threads

_QUERY = "reference"


def _impute_batch(
    batch: pl.Series,
    *,
    reference: np.ndarray,
    n_neighbors: int,
    weights: str,
    columns: tuple[str, ...],
    workers: int,
    **_: Any,
) -> pl.Series:
    """Impute one batch (a struct Series of Float64 fields) against ``reference``.

    The distances' BLAS runs on ``workers`` threads (Polars' budget, read where the plan is built).
    Extra keywords (Polars passes ``return_dtype``) are ignored.
    """
    from sklearn.impute import KNNImputer as _SkKNN

    # column-major, like DataFrame.to_numpy(): BLAS rounding (and so the choice among
    # equidistant neighbours) depends on the layout, and this is the one users feed sklearn
    X = np.asfortranarray(batch.struct.unnest().to_numpy(), dtype=np.float64)
    missing = np.isnan(X)
    out = X
    if reference.shape[0] and missing.any():
        imputer = _SkKNN(n_neighbors=n_neighbors, weights=weights, keep_empty_features=True).fit(reference)
        infinite = np.isinf(X)
        with native_threads(workers):
            filled = imputer.transform(np.asfortranarray(np.where(infinite, np.nan, X)) if infinite.any() else X)
        empty = np.isnan(reference).all(axis=0)
        out = np.where(missing & ~empty, filled, X)
    frame = pl.DataFrame({c: out[:, j] for j, c in enumerate(columns)}, schema=dict.fromkeys(columns, pl.Float64))
    return frame.to_struct(batch.name)


@dataclass(frozen=True)
class FittedKNNImputer(FittedImpute):
    """The reference rows (None: missing or infinite) the neighbours are taken from."""

    reference: tuple[tuple[float | None, ...], ...]

    def apply(self, lf: pl.LazyFrame, *, train: bool = False) -> pl.LazyFrame:
        schema = lf.collect_schema()
        cols = self.columns
        if not cols:
            return lf
        step: KNNImputer = self.step  # type: ignore[assignment]
        ref = np.asfortranarray(np.array(self.reference, dtype=np.float64).reshape(len(self.reference), len(cols)))
        fn = partial(
            _impute_batch,
            reference=ref,
            n_neighbors=step.n_neighbors,
            weights=step.weights,
            columns=cols,
            workers=budget(),  # here, not in the batch function: there Polars answers 1
        )
        tmp = "__prepflow_knn"
        while tmp in schema:
            tmp = f"_{tmp}"
        knn = pl.struct([pl.col(c).cast(pl.Float64) for c in cols]).map_batches(
            fn, return_dtype=pl.Struct(dict.fromkeys(cols, pl.Float64)), is_elementwise=False
        )
        exprs = []
        for c in cols:
            f = pl.col(tmp).struct.field(c)
            # a null that could not be imputed stays null (NumPy only knows NaN)
            exprs.append(
                pl.when(pl.col(c).is_null()).then(f.fill_nan(None)).otherwise(f).cast(float_dtype(schema[c])).alias(c)
            )
        return lf.with_columns(knn.alias(tmp), *self.indicator_exprs(schema)).with_columns(exprs).drop(tmp)


@register("impute", "knn", "Fill missing values from the k nearest reference rows (scikit-learn's KNNImputer).")
class KNNImputer(ImputeStep):
    """Fill missing values with the (weighted) mean of the k nearest fitted rows.

    Distances are NaN-aware Euclidean over the selected columns, as in
    ``sklearn.impute.KNNImputer`` whose results this step reproduces exactly.
    Numeric columns only; they become float (integers -> Float64).

    Parameters
    ----------
    n_neighbors
        Number of neighbouring rows used for each value.
    weights
        ``uniform`` (plain mean) or ``distance`` (weighted by inverse distance).
    max_fit_rows
        The most reference rows kept; a larger input is sampled with ``seed``.
        The rows are stored in the fitted artifact, which grows with this number.
    seed
        Seed of that sample.
    add_indicator
        Also add a Boolean ``<col>__missing`` column per selected column.

    Examples
    --------
    >>> import polars as pl
    >>> train = pl.DataFrame({"a": [0.0, 1.0, 5.0], "b": [0.0, 2.0, 50.0]})
    >>> fitted = KNNImputer(n_neighbors=1).fit(train)
    >>> fitted.transform(pl.DataFrame({"a": [4.0], "b": [None]})).rows()
    [(4.0, 50.0)]
    """

    fitted_class = FittedKNNImputer
    n_neighbors: int = Field(default=5, ge=1)
    weights: Literal["uniform", "distance"] = "uniform"
    max_fit_rows: int = Field(default=10_000, ge=1)
    seed: int = 0

    def plan(self, schema: pl.Schema, target: str | None) -> FitPlan:
        cols = self.resolve_columns(schema, target)
        rows = [finite(c, schema[c]).cast(pl.Float64).alias(c) for c in cols]

        def query(lf: pl.LazyFrame) -> pl.LazyFrame:
            # a seeded random subset of exactly min(n, max_fit_rows) rows, in data order
            return lf.select(rows).filter(pl.int_range(pl.len()).shuffle(seed=self.seed) < self.max_fit_rows)

        def finish(data: FitData) -> FittedKNNImputer:
            reference = tuple(data.queries[_QUERY].rows()) if cols else ()
            return FittedKNNImputer(step=self, columns=cols, reference=reference)

        dtypes = {c: float_dtype(schema[c]) for c in cols}
        out = output_schema(schema, cols, dtypes, add_indicator=self.add_indicator, step=self.label)
        return FitPlan(finish=finish, reads=cols, output_schema=out, queries={_QUERY: query} if cols else {})
