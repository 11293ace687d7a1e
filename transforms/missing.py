"""Expressions for missing values: Polars null and floating NaN are both missing.

Statistics ignore missing values and also ignore +/-inf (scikit-learn rejects
infinite input; prepflow keeps them in the data but never lets them poison a mean
or a quantile).

>>> import polars as pl
>>> df = pl.DataFrame({"x": [1.0, None, float("nan"), float("inf")]})
>>> df.select(is_missing("x", pl.Float64)).to_series().to_list()
[False, True, True, False]
>>> df.select(finite("x", pl.Float64)).to_series().to_list()
[1.0, None, None, None]
"""

from __future__ import annotations

import polars as pl


def as_null(name: str, dtype: pl.DataType) -> pl.Expr:
    """The column with NaN turned into null (a no-op for non-float columns)."""
    col = pl.col(name)
    return col.fill_nan(None) if dtype.is_float() else col


def is_missing(name: str, dtype: pl.DataType) -> pl.Expr:
    """True where the value is null, or NaN for float columns."""
    col = pl.col(name)
    return (col.is_null() | col.is_nan()).fill_null(True) if dtype.is_float() else col.is_null()


def finite(name: str, dtype: pl.DataType) -> pl.Expr:
    """The column with null, NaN and +/-inf all turned into null: what statistics see."""
    col = pl.col(name)
    if dtype.is_float():
        return pl.when(col.is_finite()).then(col)
    return col


def float_dtype(dtype: pl.DataType) -> pl.DataType:
    """The float dtype a numeric transform writes: float columns keep theirs."""
    return dtype if dtype.is_float() else pl.Float64()
