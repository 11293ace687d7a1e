"""Log scaler: ``log1p(x)``, for skewed non-negative columns.

Fitting checks the column's finite minimum: ``log1p`` is undefined at and below
-1, so a column with such a value raises :class:`~transforms.errors.FitError`
naming the step, the column and the minimum. At apply time a value <= -1
(``-inf`` included) becomes null, and the step's metric
``invalid_log_input:<col>`` counts them so the engine can report it. Null and
NaN stay missing; ``+inf`` stays ``+inf``. Numerics match ``np.log1p``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from transforms.base import FitData, FitPlan, Fitted, Stat, Step
from transforms.errors import FitError
from transforms.missing import finite, float_dtype
from transforms.registry import register


@dataclass(frozen=True)
class FittedLog(Fitted):
    """``log1p`` per column; no learned numbers (the fit only validates the data)."""

    def apply(self, lf: pl.LazyFrame, *, train: bool = False) -> pl.LazyFrame:
        schema = lf.collect_schema()
        exprs = []
        for c in self.columns:
            x = pl.col(c).cast(pl.Float64)
            # NaN compares greater than any number in Polars, so it stays NaN
            exprs.append(pl.when(x > -1.0).then(x.log1p()).cast(float_dtype(schema[c])).alias(c))
        return lf.with_columns(exprs)

    def metrics(self, schema: pl.Schema) -> dict[str, pl.Expr]:
        """``invalid_log_input:<col>``: values <= -1 (``-inf`` included), written as null."""
        return {f"invalid_log_input:{c}": pl.col(c) <= -1 for c in self.columns}


@register("scale", "log", "Natural log of 1 + x; fitting fails on values <= -1.")
class LogScaler(Step):
    """``log1p`` of each column (``np.log1p``); see the module docstring.

    Examples
    --------
    >>> import polars as pl
    >>> from transforms import LogScaler
    >>> LogScaler(columns=["x"]).fit_transform(pl.DataFrame({"x": [0.0, 1.0, None]}))["x"].to_list()
    [0.0, 0.6931471805599453, None]
    >>> LogScaler(columns=["x"]).fit(pl.DataFrame({"x": [0.0, -2.0]}))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    transforms.errors.FitError: scale/log: column 'x' has values <= -1 (min -2.0); log1p is undefined there. ...
    """

    fitted_class = FittedLog

    def plan(self, schema: pl.Schema, target: str | None) -> FitPlan:
        cols = self.resolve_columns(schema, target)
        aggs = {c: Stat(finite(c, schema[c]), "min") for c in cols}

        def finish(data: FitData) -> FittedLog:
            for c in cols:
                low = data.aggregates[c]
                if low is not None and low <= -1:
                    raise FitError(
                        f"{self.label}: column '{c}' has values <= -1 (min {low!r}); "
                        "log1p is undefined there. Shift or clip the column first."
                    )
            return FittedLog(step=self, columns=cols)

        out_schema = pl.Schema({c: (float_dtype(t) if c in cols else t) for c, t in schema.items()})
        return FitPlan(finish=finish, reads=cols, output_schema=out_schema, aggregates=aggs)
