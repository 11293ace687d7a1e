"""Univariate outlier detectors: per-column ``(lower, upper)`` bounds, then an action.

Each detector learns bounds from the finite values of each column (null, NaN and
+/-inf are ignored, see :func:`transforms.missing.finite`); the aggregations of
all columns of a step go into one :class:`~transforms.base.FitPlan`, so the
engine computes them in a single pass. A value is *outlying* when it is not
missing and lies outside ``[lower, upper]`` (so +/-inf is outlying whenever the
bounds are finite).

``action`` says what happens to outlying values:

- ``clip`` (default): winsorize to the bounds; missing values stay missing, +inf
  becomes the upper bound. Integer columns become Float64 (bounds need not be
  integers); float columns keep their dtype.
- ``flag``: add a Boolean column ``<col>__outlier`` per column (missing -> False).
- ``null``: set outlying values to null, so a later impute step fills them.
- ``drop``: remove rows where any column is outlying; the engine writes them to
  quarantine with reasons such as ``"income:iqr"``.

A constant column gets equal bounds (nothing is outlying); a column with no
finite value gets bounds ``(-inf, inf)`` (nothing is outlying).

>>> import polars as pl
>>> from transforms import IQROutliers
>>> df = pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 100.0]})
>>> IQROutliers(columns=["x"], action="flag").fit_transform(df)["x__outlier"].to_list()
[False, False, False, False, True]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl
from pydantic import Field, model_validator

from transforms.base import Aggregate, FitData, FitPlan, Fitted, Quantiles, Stat, Step, apply_columnwise
from transforms.missing import finite, float_dtype
from transforms.registry import register

Action = Literal["clip", "flag", "null", "drop"]

#: suffix of the Boolean column the ``flag`` action adds
FLAG_SUFFIX = "__outlier"

#: 0.6745 ~ Phi^-1(0.75): makes the MAD consistent with the std under normality
MAD_CONSTANT = 0.6745
#: sqrt(pi/2): makes the mean absolute deviation consistent with the std under normality
MEANAD_CONSTANT = 1.253314


def flag_name(column: str) -> str:
    """The name of the flag column the ``flag`` action adds for ``column``."""
    return f"{column}{FLAG_SUFFIX}"


def outlying(column: str, lower: float, upper: float) -> pl.Expr:
    """True where ``column`` is not missing and outside ``[lower, upper]``.

    Works for any numeric dtype (compared as Float64); null and NaN give False.
    """
    v = pl.col(column).cast(pl.Float64)
    return (v.is_not_nan() & ((v < lower) | (v > upper))).fill_null(False)


def _bound(value: float | None, default: float) -> float:
    """A learned bound, or ``default`` (+/-inf) when the column had no finite value."""
    if value is None or math.isnan(value):
        return default
    return float(value)


@dataclass(frozen=True)
class FittedBounds(Fitted):
    """Learned ``lower`` and ``upper`` bounds per column (``-inf``/``inf`` when unknown)."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]

    @property
    def action(self) -> str:
        """What is done to outlying values: clip, flag, null or drop."""
        return self.step.action  # type: ignore[attr-defined]

    def masks(self) -> list[pl.Expr]:
        """One Boolean expression per column: True where the value is outlying."""
        return [outlying(c, lo, hi) for c, lo, hi in zip(self.columns, self.lower, self.upper, strict=True)]

    def apply(self, lf: pl.LazyFrame, *, train: bool = False) -> pl.LazyFrame:
        if not self.columns:
            return lf
        if self.action == "drop":
            return lf.filter(self.keep())
        if self.action == "flag":
            return lf.with_columns(m.alias(flag_name(c)) for c, m in zip(self.columns, self.masks(), strict=True))
        if self.action == "null":
            return lf.with_columns(
                pl.when(m).then(None).otherwise(pl.col(c)).alias(c)
                for c, m in zip(self.columns, self.masks(), strict=True)
            )
        return apply_columnwise(lf, self.columnwise(lf.collect_schema()))

    def columnwise(self, schema: pl.Schema) -> dict[str, Callable[[pl.Expr], pl.Expr]] | None:
        """Clipping is column-wise; the other actions add columns, change nulls or drop rows."""
        if self.action != "clip":
            return None

        def clip(lo: float, hi: float, dtype: pl.DataType) -> Callable[[pl.Expr], pl.Expr]:
            return lambda x: x.cast(dtype).clip(lo, hi)

        bounds = zip(self.columns, self.lower, self.upper, strict=True)
        return {c: clip(lo, hi, float_dtype(schema[c])) for c, lo, hi in bounds}

    def keep(self) -> pl.Expr | None:
        if self.action != "drop":
            return None
        return ~pl.any_horizontal(self.masks()) if self.columns else pl.lit(True)

    def drop_reasons(self) -> pl.Expr | None:
        if self.action != "drop":
            return None
        if not self.columns:
            return pl.lit([], dtype=pl.List(pl.String))
        method = self.step.method
        return pl.concat_list(
            pl.when(m).then(pl.lit(f"{c}:{method}")) for c, m in zip(self.columns, self.masks(), strict=True)
        ).list.drop_nulls()

    @property
    def changes_rows(self) -> bool:
        return self.action == "drop"

    def metrics(self, schema: pl.Schema) -> dict[str, pl.Expr]:
        """``outliers:<col>``: outlying values per column; ``dropped``: rows removed (drop only)."""
        out = dict(zip([f"outliers:{c}" for c in self.columns], self.masks(), strict=True))
        if self.action == "drop":
            out["dropped"] = ~self.keep()  # type: ignore[operator]
        return out


class _Univariate(Step):
    """Shared planning of the univariate detectors: aggregates per column, then bounds."""

    action: Action = "clip"

    fitted_class = FittedBounds

    def _aggregates(self, x: pl.Expr) -> dict[str, Aggregate]:
        """One-row aggregations of ``x`` (a column's finite values)."""
        raise NotImplementedError

    def _bounds(self, values: dict[str, Any]) -> tuple[float | None, float | None]:
        """``(lower, upper)`` from the aggregates of one column; None when it had no finite value."""
        raise NotImplementedError

    def plan(self, schema: pl.Schema, target: str | None) -> FitPlan:
        cols = self.resolve_columns(schema, target)
        aggs = {f"{i}:{k}": e for i, c in enumerate(cols) for k, e in self._aggregates(finite(c, schema[c])).items()}

        def finish(data: FitData) -> FittedBounds:
            bounds = []
            for i in range(len(cols)):
                prefix = f"{i}:"
                values = {k.removeprefix(prefix): v for k, v in data.aggregates.items() if k.startswith(prefix)}
                bounds.append(self._bounds(values))
            return FittedBounds(
                step=self,
                columns=cols,
                lower=tuple(_bound(lo, -math.inf) for lo, _ in bounds),
                upper=tuple(_bound(hi, math.inf) for _, hi in bounds),
            )

        out = dict(schema)
        if self.action == "clip":
            out.update({c: float_dtype(schema[c]) for c in cols})
        elif self.action == "flag":
            out.update({flag_name(c): pl.Boolean() for c in cols})
        return FitPlan(
            finish=finish,
            reads=cols,
            output_schema=pl.Schema(out),
            aggregates=aggs,
            changes_rows=self.action == "drop",
        )


def _quantiles(values: dict[str, Any]) -> tuple[float | None, float | None]:
    q = values["q"]
    if q is None or q[0] is None:
        return None, None
    return float(q[0]), float(q[1])


@register("outliers", "zscore", "Values more than `threshold` population standard deviations from the mean.")
class ZScoreOutliers(_Univariate):
    """Bounds ``mean +/- threshold * std`` with the population std (ddof=0).

    A constant column (min == max) gets bounds ``(min, max)``, so rounding in the
    mean never makes its values outlying.

    >>> import polars as pl
    >>> df = pl.DataFrame({"x": [0.0] * 9 + [10.0]})
    >>> ZScoreOutliers(columns=["x"], threshold=2.0).fit(df).upper
    (7.0,)
    """

    threshold: float = Field(3.0, gt=0)

    def _aggregates(self, x: pl.Expr) -> dict[str, Aggregate]:
        return {"mean": Stat(x, "mean"), "std": Stat(x, "std"), "min": Stat(x, "min"), "max": Stat(x, "max")}

    def _bounds(self, v: dict[str, Any]) -> tuple[float | None, float | None]:
        if v["mean"] is None:
            return None, None
        if v["min"] == v["max"]:
            return float(v["min"]), float(v["max"])
        half = self.threshold * float(v["std"])
        return float(v["mean"]) - half, float(v["mean"]) + half


@register("outliers", "iqr", "Tukey's fences: values outside [q1 - k*IQR, q3 + k*IQR].")
class IQROutliers(_Univariate):
    """Tukey's fences ``[q1 - k * IQR, q3 + k * IQR]`` with linear-interpolated quartiles.

    >>> import polars as pl
    >>> fitted = IQROutliers(columns=["x"]).fit(pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0]}))
    >>> fitted.lower, fitted.upper
    ((-1.0,), (7.0,))
    """

    k: float = Field(1.5, ge=0)

    def _aggregates(self, x: pl.Expr) -> dict[str, Aggregate]:
        return {"q": Quantiles(x, (0.25, 0.75))}

    def _bounds(self, v: dict[str, Any]) -> tuple[float | None, float | None]:
        q1, q3 = _quantiles(v)
        if q1 is None or q3 is None:
            return None, None
        iqr = q3 - q1
        return q1 - self.k * iqr, q3 + self.k * iqr


@register("outliers", "mad", "Modified z-score 0.6745*(x - median)/MAD above `threshold` (Iglewicz-Hoaglin).")
class MADOutliers(_Univariate):
    """Modified z-score ``0.6745 * (x - median) / MAD`` beyond ``+/- threshold``.

    MAD is the median absolute deviation from the median. When MAD is 0 (at least
    half the values equal the median), the score falls back to
    ``(x - median) / (1.253314 * MeanAD)`` with MeanAD the mean absolute deviation
    from the median (the Iglewicz-Hoaglin / IBM SPSS convention). When both are 0
    the column is constant and the bounds are ``(median, median)``.

    >>> import polars as pl
    >>> fitted = MADOutliers(columns=["x"]).fit(pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 50.0]}))
    >>> round(fitted.upper[0], 4)
    8.189
    """

    threshold: float = Field(3.5, gt=0)

    def _aggregates(self, x: pl.Expr) -> dict[str, Aggregate]:
        dev = (x - x.median()).abs()
        return {"median": x.median(), "mad": dev.median(), "meanad": dev.mean()}

    def _bounds(self, v: dict[str, Any]) -> tuple[float | None, float | None]:
        if v["median"] is None:
            return None, None
        median, mad, meanad = float(v["median"]), float(v["mad"]), float(v["meanad"])
        # modified z-score; MeanAD scaled by sqrt(pi/2) when MAD is 0
        scale = mad / MAD_CONSTANT if mad > 0 else MEANAD_CONSTANT * meanad
        half = self.threshold * scale
        return median - half, median + half


@register("outliers", "percentile", "Values below the `lower` or above the `upper` quantile (fractions in [0, 1]).")
class PercentileOutliers(_Univariate):
    """Bounds at the ``lower`` and ``upper`` quantiles (fractions, linear interpolation).

    >>> import polars as pl
    >>> df = pl.DataFrame({"x": [float(i) for i in range(101)]})
    >>> PercentileOutliers(columns=["x"], lower=0.05, upper=0.95).fit(df).upper
    (95.0,)
    """

    lower: float = Field(0.01, ge=0, le=1)
    upper: float = Field(0.99, ge=0, le=1)

    @model_validator(mode="after")
    def _check_order(self) -> PercentileOutliers:
        if not self.lower < self.upper:
            raise ValueError(f"lower must be < upper, got lower={self.lower}, upper={self.upper}")
        return self

    def _aggregates(self, x: pl.Expr) -> dict[str, Aggregate]:
        return {"q": Quantiles(x, (self.lower, self.upper))}

    def _bounds(self, v: dict[str, Any]) -> tuple[float | None, float | None]:
        return _quantiles(v)
