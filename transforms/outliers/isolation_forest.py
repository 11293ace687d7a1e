"""Multivariate outliers with an isolation forest, stored as plain JSON trees.

Fitting collects the step's columns (one query, at most ``max_fit_rows`` complete
rows, sampled with ``seed`` when there are more), fits
``sklearn.ensemble.IsolationForest`` on them and exports its trees to plain
tuples (see :mod:`transforms.outliers.trees`): the fitted state is JSON, never a
pickle, and scikit-learn is not needed to apply it.

Applying scores rows with a batched ``map_batches`` over a struct of the columns:
each batch becomes a NumPy array and all trees are walked at once, one depth
level per step. The flags equal scikit-learn's ``predict(X) == -1``.

Rows with a missing value (null or NaN) in any of the step's columns are not used
for fitting and are never scored as outliers. Rows with +/-inf are scored (they
are extreme), but are not used for fitting.

>>> import polars as pl
>>> from transforms import IsolationForestOutliers
>>> df = pl.DataFrame({"x": [float(i % 10) for i in range(200)] + [100.0]})
>>> step = IsolationForestOutliers(columns=["x"], n_estimators=20, contamination=0.01)
>>> step.fit_transform(df)["__outlier"][-1]
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Literal

import numpy as np
import polars as pl
from pydantic import Field, field_validator

from transforms.base import FitData, FitPlan, Fitted, Step
from transforms.outliers.bounds import Action
from transforms.outliers.trees import CompiledForest, export_forest
from transforms.registry import register

#: the drop reason of an isolation forest step, per row
ROW_REASON = "__row:isolation_forest"


@dataclass(frozen=True)
class FittedIsolationForest(Fitted):
    """Exported trees, ``max_samples_`` and ``offset_`` of the fitted forest.

    ``trees`` is empty when no complete row was available at fit time; then
    nothing is outlying.
    """

    trees: tuple[dict[str, tuple[Any, ...]], ...]
    max_samples_: int
    offset_: float
    fit_rows: int = 0

    @property
    def action(self) -> str:
        """What is done to outlying rows: flag, null or drop."""
        return self.step.action  # type: ignore[attr-defined]

    @cached_property
    def _forest(self) -> CompiledForest:
        return CompiledForest(self.trees, self.max_samples_)

    def outlying(self) -> pl.Expr:
        """True for outlying rows (``score_samples - offset_ < 0``); rows with a missing value give False."""
        if not self.trees or not self.columns:
            return pl.repeat(False, pl.len())
        forest, offset = self._forest, self.offset_

        def score(batch: pl.Series) -> pl.Series:
            X = batch.struct.unnest().to_numpy()
            complete = ~np.isnan(X).any(axis=1)
            flags = np.zeros(len(X), dtype=bool)
            if complete.any():
                flags[complete] = forest.score_samples(X[complete]) - offset < 0
            return pl.Series(flags, dtype=pl.Boolean)

        return pl.struct([pl.col(c).cast(pl.Float64) for c in self.columns]).map_batches(
            score, return_dtype=pl.Boolean, is_elementwise=True
        )

    def apply(self, lf: pl.LazyFrame, *, train: bool = False) -> pl.LazyFrame:
        step = self.step
        if self.action == "drop":
            return lf.filter(self.keep())
        if self.action == "flag":
            return lf.with_columns(self.outlying().alias(step.flag_column))  # type: ignore[attr-defined]
        tmp = "\x1foutlier"
        return (
            lf.with_columns(self.outlying().alias(tmp))
            .with_columns(pl.when(pl.col(tmp)).then(None).otherwise(pl.col(c)).alias(c) for c in self.columns)
            .drop(tmp)
        )

    def keep(self) -> pl.Expr | None:
        return ~self.outlying() if self.action == "drop" else None

    def drop_reasons(self) -> pl.Expr | None:
        if self.action != "drop":
            return None
        return pl.when(self.outlying()).then(pl.lit([ROW_REASON])).otherwise(pl.lit([], dtype=pl.List(pl.String)))

    @property
    def changes_rows(self) -> bool:
        return self.action == "drop"

    def metrics(self, schema: pl.Schema) -> dict[str, pl.Expr]:
        """``outlying_rows``: rows the forest flags (scored once; ``rows_dropped`` covers drop)."""
        return {"outlying_rows": self.outlying()}


@register("outliers", "isolation_forest", "Multivariate outlying rows from an isolation forest (scikit-learn's).")
class IsolationForestOutliers(Step):
    """Isolation forest over the step's numeric columns; parameters follow scikit-learn.

    Fitting uses ``sklearn.ensemble.IsolationForest`` and stores its trees as
    plain JSON; applying walks them with a batched ``map_batches`` over NumPy
    (vectorized over rows and trees), with flags equal to scikit-learn's
    ``predict(X) == -1``. Rows with a null or NaN in any column are never outliers.

    Parameters
    ----------
    contamination
        ``"auto"`` (offset -0.5, as in the original paper) or the expected share
        of outliers in (0, 0.5].
    n_estimators, max_samples, seed
        As ``n_estimators``, ``max_samples`` and ``random_state`` of
        ``sklearn.ensemble.IsolationForest``.
    max_fit_rows
        At most this many complete rows are fitted on (a seeded sample if more).
    action
        ``flag`` (default: a Boolean ``flag_column``), ``null`` (null every column
        of the step on outlying rows) or ``drop``. ``clip`` is refused: a row has
        no univariate bounds to clip to.

    >>> try:
    ...     IsolationForestOutliers(action="clip")
    ... except ValueError as exc:
    ...     print("clip needs a univariate detector" in str(exc))
    True
    """

    contamination: Literal["auto"] | Annotated[float, Field(gt=0, le=0.5)] = "auto"
    n_estimators: int = Field(100, ge=1)
    max_samples: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"
    seed: int = 0
    max_fit_rows: int = Field(100_000, ge=1)
    action: Action = "flag"
    flag_column: str = "__outlier"

    fitted_class = FittedIsolationForest

    @field_validator("action")
    @classmethod
    def _no_clip(cls, value: str) -> str:
        if value == "clip":
            raise ValueError(
                "clip needs a univariate detector (zscore, iqr, mad, percentile); "
                "isolation_forest supports action flag, null or drop"
            )
        return value

    def plan(self, schema: pl.Schema, target: str | None) -> FitPlan:
        cols = self.resolve_columns(schema, target)

        def rows(lf: pl.LazyFrame) -> pl.LazyFrame:
            return (
                lf.select(pl.col(c).cast(pl.Float64) for c in cols)
                .filter(pl.all_horizontal(pl.col(c).is_finite() for c in cols))
                .filter(pl.int_range(pl.len()).shuffle(seed=self.seed) < self.max_fit_rows)
            )

        def finish(data: FitData) -> FittedIsolationForest:
            X = data.queries["rows"].to_numpy().astype(np.float64) if cols else np.zeros((0, 0))
            X = X[np.isfinite(X.astype(np.float32)).all(axis=1)]  # scikit-learn fits on float32
            if len(X) == 0:
                return FittedIsolationForest(step=self, columns=cols, trees=(), max_samples_=0, offset_=-0.5)
            from sklearn.ensemble import IsolationForest

            max_samples = self.max_samples if self.max_samples == "auto" else min(self.max_samples, len(X))
            forest = IsolationForest(
                n_estimators=self.n_estimators,
                max_samples=max_samples,
                contamination=self.contamination,
                random_state=self.seed,
            ).fit(X)
            offset = float(forest.offset_)
            return FittedIsolationForest(
                step=self,
                columns=cols,
                trees=export_forest(forest),
                max_samples_=int(forest.max_samples_),
                offset_=offset if math.isfinite(offset) else -0.5,
                fit_rows=len(X),
            )

        out = dict(schema)
        if self.action == "flag":
            out[self.flag_column] = pl.Boolean()
        return FitPlan(
            finish=finish,
            reads=cols,
            output_schema=pl.Schema(out),
            queries={"rows": rows} if cols else {},
            changes_rows=self.action == "drop",
        )
