"""Affine scalers: ``(x - center) / scale + shift`` per column.

``standard``, ``minmax``, ``robust`` and ``maxabs`` differ only in the statistics
they learn; they share one fitted form, :class:`FittedAffine`. Numerics follow
scikit-learn: population std (ddof=0), linear-interpolated percentiles, and a
scale of zero (or undefined: an all-missing or empty column) becomes 1, as in
``sklearn.preprocessing._data._handle_zeros_in_scale``. A column with no finite
value at fit time gets center 0 and scale 1 (identity) rather than NaN.

>>> import polars as pl
>>> from transforms import MinMaxScaler
>>> MinMaxScaler(columns=["x"]).fit_transform(pl.DataFrame({"x": [1.0, 2.0, 5.0]}))["x"].to_list()
[0.0, 0.25, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import polars as pl
from pydantic import model_validator

from transforms.base import Aggregate, FitData, FitPlan, Fitted, Quantiles, Stat, Step, apply_columnwise
from transforms.missing import finite, float_dtype
from transforms.registry import register

_EPS = 2.220446049250313e-16


def _zero_to_one(scale: float | None) -> float:
    """scikit-learn's ``_handle_zeros_in_scale``: tiny or undefined scales become 1."""
    if scale is None or not math.isfinite(scale) or scale < 10 * _EPS:
        return 1.0
    return float(scale)


def _or(value: float | None, default: float) -> float:
    return default if value is None or not math.isfinite(value) else float(value)


@dataclass(frozen=True)
class FittedAffine(Fitted):
    """Learned ``center``, ``scale`` and ``shift`` per column; ``clip`` bounds or None."""

    center: tuple[float, ...]
    scale: tuple[float, ...]
    shift: tuple[float, ...]
    clip: tuple[float, float] | None = None

    def apply(self, lf: pl.LazyFrame, *, train: bool = False) -> pl.LazyFrame:
        return apply_columnwise(lf, self.columnwise(lf.collect_schema()))

    def columnwise(self, schema: pl.Schema) -> dict[str, Callable[[pl.Expr], pl.Expr]]:
        def affine(center: float, scale: float, shift: float, dtype: pl.DataType) -> Callable[[pl.Expr], pl.Expr]:
            def fn(x: pl.Expr) -> pl.Expr:
                out = (x.cast(pl.Float64) - center) / scale
                if shift:
                    out = out + shift
                if self.clip is not None:
                    out = out.clip(*self.clip)
                return out.cast(dtype)

            return fn

        params = zip(self.columns, self.center, self.scale, self.shift, strict=True)
        return {c: affine(center, scale, shift, float_dtype(schema[c])) for c, center, scale, shift in params}


class _AffineScaler(Step):
    """Shared planning: one set of aggregates per column, then :meth:`_state`."""

    fitted_class = FittedAffine

    def _aggregates(self, c: str, x: pl.Expr) -> dict[str, Aggregate]:
        raise NotImplementedError

    def _state(self, values: dict[str, Any]) -> tuple[float, float, float]:
        raise NotImplementedError

    def _clip(self) -> tuple[float, float] | None:
        return None

    def plan(self, schema: pl.Schema, target: str | None) -> FitPlan:
        cols = self.resolve_columns(schema, target)
        aggs = {}
        for i, c in enumerate(cols):
            for k, e in self._aggregates(c, finite(c, schema[c])).items():
                aggs[f"{i}:{k}"] = e

        def finish(data: FitData) -> FittedAffine:
            states = [
                self._state({k.split(":", 1)[1]: v for k, v in data.aggregates.items() if k.startswith(f"{i}:")})
                for i in range(len(cols))
            ]
            return FittedAffine(
                step=self,
                columns=cols,
                center=tuple(s[0] for s in states),
                scale=tuple(s[1] for s in states),
                shift=tuple(s[2] for s in states),
                clip=self._clip(),
            )

        out_schema = pl.Schema({c: (float_dtype(t) if c in cols else t) for c, t in schema.items()})
        return FitPlan(finish=finish, reads=cols, output_schema=out_schema, aggregates=aggs)


@register("scale", "standard", "Standardize to zero mean and unit variance (population std, like scikit-learn).")
class StandardScaler(_AffineScaler):
    """Standardize: ``(x - mean) / std`` with the population std (ddof=0).

    Parameters follow ``sklearn.preprocessing.StandardScaler``.
    """

    with_mean: bool = True
    with_std: bool = True

    def _aggregates(self, c: str, x: pl.Expr) -> dict[str, Aggregate]:
        return {"n": Stat(x, "count"), "mean": Stat(x, "mean"), "var": Stat(x, "var")}

    def _state(self, v: dict[str, Any]) -> tuple[float, float, float]:
        n, mean, var = v["n"], _or(v["mean"], 0.0), _or(v["var"], 0.0)
        # scikit-learn's _is_constant_feature: variance within rounding error of zero
        t = n * mean * _EPS  # t * t overflows to inf (never an error) for |mean| near float max
        constant = var <= n * _EPS * var + t * t
        scale = 1.0 if constant else _zero_to_one(math.sqrt(var))
        return (mean if self.with_mean else 0.0, scale if self.with_std else 1.0, 0.0)


@register("scale", "minmax", "Scale each column to feature_range (default [0, 1]) from its fitted min and max.")
class MinMaxScaler(_AffineScaler):
    """Scale to ``feature_range`` using the fitted min and max (``sklearn.preprocessing.MinMaxScaler``)."""

    feature_range: tuple[float, float] = (0.0, 1.0)
    clip: bool = False

    @model_validator(mode="after")
    def _check_range(self) -> MinMaxScaler:
        lo, hi = self.feature_range
        if not lo < hi:
            raise ValueError(f"feature_range must be (min, max) with min < max, got {self.feature_range}")
        return self

    def _aggregates(self, c: str, x: pl.Expr) -> dict[str, Aggregate]:
        return {"min": Stat(x, "min"), "max": Stat(x, "max")}

    def _state(self, v: dict[str, Any]) -> tuple[float, float, float]:
        lo, hi = self.feature_range
        if v["min"] is None:
            return (0.0, 1.0, 0.0)
        data_min, data_range = float(v["min"]), float(v["max"]) - float(v["min"])
        return (data_min, _zero_to_one(data_range) / (hi - lo), lo)

    def _clip(self) -> tuple[float, float] | None:
        return tuple(self.feature_range) if self.clip else None  # type: ignore[return-value]


@register("scale", "robust", "Center on the median and scale by an interquantile range (default IQR).")
class RobustScaler(_AffineScaler):
    """``(x - median) / (q_hi - q_lo)`` with linear-interpolated quantiles.

    Parameters follow ``sklearn.preprocessing.RobustScaler``; ``quantile_range``
    is in percent.
    """

    with_centering: bool = True
    with_scaling: bool = True
    quantile_range: tuple[float, float] = (25.0, 75.0)
    unit_variance: bool = False

    @model_validator(mode="after")
    def _check_range(self) -> RobustScaler:
        lo, hi = self.quantile_range
        if not 0 <= lo <= hi <= 100:
            raise ValueError(f"quantile_range must satisfy 0 <= q_min <= q_max <= 100, got {self.quantile_range}")
        return self

    def _aggregates(self, c: str, x: pl.Expr) -> dict[str, Aggregate]:
        lo, hi = self.quantile_range
        return {"q": Quantiles(x, (lo / 100, 0.5, hi / 100))}

    def _state(self, v: dict[str, Any]) -> tuple[float, float, float]:
        q = v["q"]
        if q is None or q[1] is None:
            return (0.0, 1.0, 0.0)
        q_lo, median, q_hi = (float(x) for x in q)
        scale = _zero_to_one(q_hi - q_lo)
        if self.unit_variance:
            lo, hi = self.quantile_range
            scale /= NormalDist().inv_cdf(hi / 100) - NormalDist().inv_cdf(lo / 100)
        return (median if self.with_centering else 0.0, scale if self.with_scaling else 1.0, 0.0)


@register("scale", "maxabs", "Divide by the maximum absolute value, mapping to [-1, 1] without centering.")
class MaxAbsScaler(_AffineScaler):
    """``x / max(|x|)`` (``sklearn.preprocessing.MaxAbsScaler``)."""

    def _aggregates(self, c: str, x: pl.Expr) -> dict[str, Aggregate]:
        return {"maxabs": Stat(x.abs(), "max")}

    def _state(self, v: dict[str, Any]) -> tuple[float, float, float]:
        return (0.0, _zero_to_one(v["maxabs"]), 0.0)
