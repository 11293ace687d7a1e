"""Power scaler: the Yeo-Johnson transform, then (by default) standardization.

Fitting follows ``sklearn.preprocessing.PowerTransformer(method="yeo-johnson")``:
the step's columns are collected (a fit query), and each column's lambda is the
maximum-likelihood estimate that scikit-learn itself computes (SciPy's Brent
optimiser) on the column's finite values; a constant column gets lambda 1
(identity; scikit-learn's constant check is defeated by a NaN in the column and
then returns an arbitrary lambda, with the same zero output). With
``standardize`` the transformed values' mean and population std are learned as
by ``StandardScaler`` (a zero std becomes 1). Box-Cox is not
offered: it needs strictly positive data, and Yeo-Johnson is its extension to
any real value.

The transform is pure Polars: four branches by the sign of ``x`` and whether
lambda is 0 or 2 (:func:`yeo_johnson`), with ``expm1`` written as Kahan's ``(u - 1) * (y / log u)``
(``u = exp y``, accurate to a few ulps) since Polars has no ``expm1``. Statistics
ignore null, NaN and +/-inf; missing values stay missing, and +/-inf go through
the formula (to +/-inf, or to its finite limit when lambda makes one). A column
with no finite value at fit time gets lambda 1, mean 0, scale 1: the identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import polars as pl

from transforms.base import FitData, FitPlan, Fitted, Step
from transforms.missing import finite, float_dtype
from transforms.registry import register
from transforms.scale.quantile import temp_names

_EPS = float(np.finfo(np.float64).eps)


def expm1(y: pl.Expr, u: pl.Expr | None = None) -> pl.Expr:
    """``exp(y) - 1`` without cancellation near 0 (Kahan's method); ``u`` is ``exp(y)`` if at hand.

    Polars does not share subexpressions inside ``when``/``then``, so callers on
    large frames pass ``y`` and ``u`` as materialised columns.
    """
    u = y.exp() if u is None else u
    return (
        pl.when(u == 1.0)
        .then(y)
        .when(u - 1.0 == -1.0)
        .then(-1.0)
        .when(u.is_infinite())
        .then(u)
        .otherwise((u - 1.0) * (y / u.log()))
    )


def _exponent(x: pl.Expr, t: pl.Expr, lmbda: float) -> pl.Expr:
    """``lmbda * log1p(x)`` for ``x >= 0``, ``(2 - lmbda) * log1p(-x)`` below; ``t = log1p(|x|)``."""
    return pl.when(x >= 0).then(t * lmbda).otherwise(t * (2.0 - lmbda))


def _combine(x: pl.Expr, t: pl.Expr, e: pl.Expr, lmbda: float) -> pl.Expr:
    """The four Yeo-Johnson branches from ``t = log1p(|x|)`` and ``e = expm1(_exponent(...))``."""
    mu = 2.0 - lmbda
    pos = t if abs(lmbda) < _EPS else e / lmbda
    neg = -t if abs(mu) <= _EPS else -e / mu
    return pl.when(x >= 0).then(pos).otherwise(neg)


def yeo_johnson(x: pl.Expr, lmbda: float) -> pl.Expr:
    """The Yeo-Johnson transform of Float64 ``x`` with parameter ``lmbda`` (as ``scipy.stats.yeojohnson``).

    ``expm1(lmbda * log1p(x)) / lmbda`` for ``x >= 0`` (``log1p(x)`` when lmbda is 0),
    ``-expm1((2 - lmbda) * log1p(-x)) / (2 - lmbda)`` below (``-log1p(-x)`` when lmbda
    is 2); both signs share one ``log1p(|x|)`` and one ``expm1``.
    """
    t = x.abs().log1p()
    return _combine(x, t, expm1(_exponent(x, t, lmbda)), lmbda)


def _fit_column(values: np.ndarray, standardize: bool) -> tuple[float, float, float]:
    """(lambda, mean, scale) exactly as ``PowerTransformer`` learns them from ``values``."""
    if values.size == 0:
        return 1.0, 0.0, 1.0
    from sklearn.preprocessing import PowerTransformer, StandardScaler

    pt = PowerTransformer(method="yeo-johnson", standardize=False).fit(values[:, None])
    lmbda = float(pt.lambdas_[0])
    if not standardize:
        return lmbda, 0.0, 1.0
    scaler = StandardScaler().fit(pt.transform(values[:, None]))
    return lmbda, float(scaler.mean_[0]), float(scaler.scale_[0])


@dataclass(frozen=True)
class FittedPower(Fitted):
    """Learned Yeo-Johnson ``lambdas`` per column, and the ``mean``/``scale`` of the result."""

    lambdas: tuple[float, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]

    def apply(self, lf: pl.LazyFrame, *, train: bool = False) -> pl.LazyFrame:
        schema = lf.collect_schema()
        standardize = cast(PowerScaler, self.step).standardize
        cols = list(zip(self.columns, self.lambdas, self.mean, self.scale, strict=True))
        # :func:`yeo_johnson` in stages (log1p(|x|), exponent, exp), so each log/exp runs once per value
        names = temp_names(schema, 3 * len(cols))
        t, y, u = names[0::3], names[1::3], names[2::3]
        x = [pl.col(c).cast(pl.Float64) for c in self.columns]
        lf = lf.with_columns([x[i].abs().log1p().alias(t[i]) for i in range(len(cols))])
        lf = lf.with_columns([_exponent(x[i], pl.col(t[i]), lm).alias(y[i]) for i, (_, lm, _, _) in enumerate(cols)])
        lf = lf.with_columns([pl.col(y[i]).exp().alias(u[i]) for i in range(len(cols))])
        exprs = []
        for i, (c, lmbda, mean, scale) in enumerate(cols):
            out = _combine(x[i], pl.col(t[i]), expm1(pl.col(y[i]), pl.col(u[i])), lmbda)
            if standardize:
                out = (out - mean) / scale
            exprs.append(out.cast(float_dtype(schema[c])).alias(c))
        return lf.with_columns(exprs).drop(names)


@register("scale", "power", "Yeo-Johnson power transform to a more Gaussian shape, then standardize.")
class PowerScaler(Step):
    """Yeo-Johnson power transform (``sklearn.preprocessing.PowerTransformer``); see the module docstring.

    Parameters
    ----------
    standardize
        Scale the transformed columns to zero mean and unit variance.

    Examples
    --------
    >>> import polars as pl
    >>> from transforms import PowerScaler
    >>> out = PowerScaler(columns=["x"]).fit_transform(pl.DataFrame({"x": [1.0, 2.0, 4.0, 8.0]}))
    >>> [round(v, 6) for v in out["x"]]
    [-1.308984, -0.488916, 0.434569, 1.363331]
    """

    standardize: bool = True

    fitted_class = FittedPower

    def plan(self, schema: pl.Schema, target: str | None) -> FitPlan:
        cols = self.resolve_columns(schema, target)

        def query(lf: pl.LazyFrame) -> pl.LazyFrame:
            return lf.select([finite(c, schema[c]).cast(pl.Float64).alias(c) for c in cols])

        def finish(data: FitData) -> FittedPower:
            frame = data.queries["values"]
            fits = [_fit_column(frame[c].drop_nulls().to_numpy(), self.standardize) for c in cols]
            return FittedPower(
                step=self,
                columns=cols,
                lambdas=tuple(f[0] for f in fits),
                mean=tuple(f[1] for f in fits),
                scale=tuple(f[2] for f in fits),
            )

        out_schema = pl.Schema({c: (float_dtype(t) if c in cols else t) for c, t in schema.items()})
        return FitPlan(finish=finish, reads=cols, output_schema=out_schema, queries={"values": query})
