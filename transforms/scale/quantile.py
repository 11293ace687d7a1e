"""Quantile scaler: map each column through its empirical CDF to a uniform or normal output.

Numerics follow ``sklearn.preprocessing.QuantileTransformer`` to the last bit or
two. The quantiles are the engine's exact NumPy quantiles
(:class:`~transforms.base.Quantiles`) at the very probabilities
``np.nanpercentile`` uses, made monotone with a running maximum. A value maps
to the mean of a forward and a backward ``np.interp`` (which handles repeated
quantiles), with NumPy's segment choice and arithmetic; the fitted min and max
map exactly to 0 and 1, and values beyond them are clamped. ``normal`` output
applies the inverse normal CDF (:mod:`transforms.scale.normal`) and clips to
scikit-learn's bounds (about +/-5.1993).

Differences from scikit-learn, all deliberate:

- statistics see finite values only; ``n_quantiles`` is capped at the number of
  finite values (scikit-learn caps it at the number of rows, NaN rows included;
  the two agree when nothing is missing);
- with more than ``subsample`` finite values the quantiles come from a seeded
  sample of them (``seed``), not from the draw of scikit-learn's ``resample``;
- null and NaN stay missing; ``+inf``/``-inf`` (which scikit-learn rejects)
  are clamped like any value beyond the fitted range;
- a column with no finite value at fit time has no quantiles: every value of
  it becomes missing (null; NaN stays NaN) where scikit-learn writes NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from transforms.base import Aggregate, FitData, FitPlan, Fitted, Quantiles, Stat, Step
from transforms.missing import as_null, finite, float_dtype
from transforms.registry import register
from transforms.scale.normal import BOUNDS_THRESHOLD, CLIP_MAX, CLIP_MIN, ppf, ppf_radius


def _gather(values: np.ndarray, idx: pl.Expr) -> pl.Expr:
    return pl.lit(pl.Series(values, dtype=pl.Float64)).gather(idx)


def segment(x: pl.Expr, xp: np.ndarray) -> pl.Expr:
    """The ``j`` with ``xp[j] <= x < xp[j+1]`` that ``np.interp`` picks, clamped to ``[0, len(xp) - 1]``."""
    return pl.lit(pl.Series(xp, dtype=pl.Float64)).search_sorted(x, side="right").clip(1) - 1


def _interp(x: pl.Expr, j: pl.Expr, xp: np.ndarray, fp: np.ndarray) -> pl.Expr:
    """``np.interp(x, xp, fp)`` for ``x`` in ``[xp[0], xp[-1]]`` (callers replace the rest), ``j = segment(x, xp)``.

    Same segment and arithmetic as NumPy, so the result matches it to the last bit
    or two (Polars may fuse the multiply-add).
    """
    # repeated quantiles give x/0 (no x lies inside such a segment); a slope that
    # overflows (quantiles a few subnormals apart) also becomes 0 where NumPy gives inf
    with np.errstate(all="ignore"):
        slope = np.diff(fp) / np.diff(xp)
    slope = np.append(np.where(np.isfinite(slope), slope, 0.0), 0.0)
    return _gather(fp, j) + _gather(slope, j) * (x - _gather(xp, j))


def uniform_expr(x: pl.Expr, quantiles: np.ndarray, normal: bool, j_up: pl.Expr, j_down: pl.Expr) -> pl.Expr:
    """The probability scikit-learn's ``_transform_col`` gives Float64 ``x``, before any ppf.

    ``j_up = segment(x, q)`` and ``j_down = segment(-x, -q[::-1])`` index the forward
    and backward interpolations (best materialised as columns first). ``normal``
    selects the bounds rule of normal output (within ``BOUNDS_THRESHOLD`` of the
    fitted min/max) instead of exact equality. Missing stays missing.
    """
    if quantiles.size == 0:
        return pl.when(x.is_nan()).then(x).otherwise(None)
    q, r = quantiles, np.linspace(0.0, 1.0, quantiles.size)
    u = 0.5 * (_interp(x, j_up, q, r) - _interp(-x, j_down, -q[::-1], -r[::-1]))
    if normal:
        lower, upper = x - BOUNDS_THRESHOLD < q[0], x + BOUNDS_THRESHOLD > q[-1]
    else:
        lower, upper = x == q[0], x == q[-1]
    # outside [q[0], q[-1]] both interpolations are flat (at r[0] and r[-1])
    out = pl.when(lower).then(0.0).when(upper).then(1.0).when(x < q[0]).then(0.0).when(x > q[-1]).then(r[-1])
    return pl.when(x.is_nan()).then(x).otherwise(out.otherwise(u))


def temp_names(schema: pl.Schema, n: int) -> list[str]:
    """``n`` names for intermediate columns, none of which clashes with ``schema``."""
    prefix = "__prepflow_tmp_"
    while any(name.startswith(prefix) for name in schema):
        prefix = "_" + prefix
    return [f"{prefix}{i}" for i in range(n)]


@dataclass(frozen=True)
class FittedQuantile(Fitted):
    """Learned quantiles per column (nondecreasing; empty for a column with no finite value)."""

    quantiles: tuple[tuple[float, ...], ...]

    def apply(self, lf: pl.LazyFrame, *, train: bool = False) -> pl.LazyFrame:
        schema = lf.collect_schema()
        normal = cast(QuantileScaler, self.step).output_distribution == "normal"
        temp = iter(temp_names(schema, 3 * len(self.columns)))
        searches, probs, radii, scores, drop = [], [], [], [], []
        for c, quantiles in zip(self.columns, self.quantiles, strict=True):
            x, q = pl.col(c).cast(pl.Float64), np.asarray(quantiles, dtype=np.float64)
            up, down, radius = next(temp), next(temp), next(temp)
            if q.size:
                searches += [segment(x, q).alias(up), segment(-x, -q[::-1]).alias(down)]
                drop += [up, down]
            probs.append(uniform_expr(x, q, normal, pl.col(up), pl.col(down)).alias(c))
            if normal and q.size:
                radii.append(ppf_radius(pl.col(c)).alias(radius))
                scores.append(ppf(pl.col(c), pl.col(radius)).clip(CLIP_MIN, CLIP_MAX).alias(c))
                drop.append(radius)
        # one projection per stage, so that no search or log is repeated inside an expression
        for stage in (searches, probs, radii, scores):
            lf = lf.with_columns(stage)
        return lf.drop(drop).with_columns([pl.col(c).cast(float_dtype(schema[c])) for c in self.columns])

    def metrics(self, schema: pl.Schema) -> dict[str, pl.Expr]:
        """``out_of_range:<col>``: values (+/-inf included) outside the fitted range, clamped."""
        out = {}
        for c, q in zip(self.columns, self.quantiles, strict=True):
            if q:
                x = as_null(c, schema[c])
                out[f"out_of_range:{c}"] = ((x < q[0]) | (x > q[-1])).sum()
        return out


@register("scale", "quantile", "Map each column through its quantiles to a uniform or normal distribution.")
class QuantileScaler(Step):
    """Quantile transform (``sklearn.preprocessing.QuantileTransformer``); see the module docstring.

    Parameters
    ----------
    n_quantiles
        Number of quantiles (capped at the number of finite values).
    output_distribution
        ``"uniform"`` (to [0, 1]) or ``"normal"`` (standard normal scores).
    subsample
        Most values the quantiles are computed from; more are sampled with ``seed``.
    seed
        Seed of that sample; None draws a fresh one each fit.

    Examples
    --------
    >>> import polars as pl
    >>> from transforms import QuantileScaler
    >>> df = pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 9.0, None]})
    >>> QuantileScaler(columns=["x"]).fit_transform(df)["x"].to_list()
    [0.0, 0.25, 0.5, 0.75, 1.0, None]
    >>> QuantileScaler(columns=["x"], output_distribution="normal").fit_transform(df)["x"].round(4).to_list()
    [-5.1993, -0.6745, 0.0, 0.6745, 5.1993, None]
    """

    n_quantiles: int = Field(1000, ge=1)
    output_distribution: Literal["uniform", "normal"] = "uniform"
    subsample: int = Field(10_000, ge=1)
    seed: int | None = 0

    fitted_class = FittedQuantile

    @model_validator(mode="after")
    def _check_subsample(self) -> QuantileScaler:
        if self.n_quantiles > self.subsample:
            raise ValueError(f"n_quantiles ({self.n_quantiles}) cannot exceed subsample ({self.subsample})")
        return self

    def plan(self, schema: pl.Schema, target: str | None) -> FitPlan:
        cols = self.resolve_columns(schema, target)
        n_q = self.n_quantiles
        # np.nanpercentile(values, 100 * p) takes p = (100 * p) / 100: the same probabilities
        probs = tuple((np.linspace(0.0, 1.0, n_q) * 100 / 100).tolist())
        aggs: dict[str, Aggregate] = {}
        for i, c in enumerate(cols):
            x = finite(c, schema[c])
            aggs[f"{i}:n"] = Stat(x, "count")
            aggs[f"{i}:q"] = Quantiles(x, probs, subsample=self.subsample, seed=self.seed)
            if n_q > 1:  # fewer finite values than quantiles: the quantiles come from all of them
                aggs[f"{i}:low"] = x.drop_nulls().bottom_k(n_q - 1).cast(pl.Float64).implode()

        def quantiles(v: dict[str, Any]) -> tuple[float, ...]:
            n = min(v["n"], self.subsample)
            if n == 0:
                return ()
            if n >= n_q:
                q = np.asarray(v["q"], dtype=np.float64)
            else:  # as scikit-learn: n_quantiles = n, and no sampling (n < n_quantiles <= subsample)
                q = np.nanpercentile(np.sort(np.asarray(v["low"], dtype=np.float64)), np.linspace(0.0, 1.0, n) * 100)
            return tuple(np.maximum.accumulate(q).tolist())

        def finish(data: FitData) -> FittedQuantile:
            per_col = [
                {k.split(":", 1)[1]: v for k, v in data.aggregates.items() if k.startswith(f"{i}:")}
                for i in range(len(cols))
            ]
            return FittedQuantile(step=self, columns=cols, quantiles=tuple(quantiles(v) for v in per_col))

        out_schema = pl.Schema({c: (float_dtype(t) if c in cols else t) for c, t in schema.items()})
        return FitPlan(finish=finish, reads=cols, output_schema=out_schema, aggregates=aggs)
