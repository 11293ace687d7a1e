"""Simple imputation: fill missing values with one fitted value per column.

``impute/mean``, ``impute/median``, ``impute/most_frequent`` and ``impute/constant``
share :class:`SimpleImputer` (``strategy`` fixed by the method), like
``sklearn.impute.SimpleImputer``. Null and NaN are both missing; the statistics
ignore missing values and also +/-inf (which stay in the data as they are: they
are not missing).

Differences from scikit-learn, on purpose:

- a column with no non-missing (finite) value at fit time is kept and left
  unchanged (still missing); scikit-learn drops it (``keep_empty_features=False``).
- ``mean`` and ``median`` write float columns: an integer column becomes Float64
  (Float32 stays Float32), whether or not it had missing values, so the output
  schema never depends on the data. ``most_frequent`` and ``constant`` keep the
  dtype, except that a float ``fill_value`` turns an integer column into Float64.
- ``add_indicator`` adds ``<col>__missing`` for every selected column, not only
  those with missing values at fit time.

>>> import polars as pl
>>> from transforms import SimpleImputer
>>> df = pl.DataFrame({"x": [1.0, None, 3.0, float("nan")], "s": ["a", "b", None, "b"]})
>>> SimpleImputer(columns=["x"], strategy="median").fit_transform(df)["x"].to_list()
[1.0, 2.0, 3.0, 2.0]
>>> SimpleImputer(columns=["s"], strategy="most_frequent").fit_transform(df)["s"].to_list()
['a', 'b', 'b', 'b']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import polars as pl
from pydantic import model_validator

from transforms.base import Aggregate, FitData, FitPlan, Quantiles, Stat
from transforms.errors import ColumnError, ConfigError
from transforms.impute._common import FittedImpute, ImputeStep, output_schema
from transforms.missing import finite
from transforms.registry import register

Strategy = Literal["mean", "median", "most_frequent", "constant"]
FillValue = bool | int | float | str | None

_DEFAULT_FILL = {"numeric": 0, "string": "missing_value", "boolean": False}


def _family(dtype: pl.DataType) -> str | None:
    """``numeric``, ``string`` (String, Categorical, Enum), ``boolean``, or None (unsupported)."""
    if dtype.is_integer() or dtype.is_float():
        return "numeric"
    if dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return "string"
    if dtype == pl.Boolean:
        return "boolean"
    return None


def _out_dtype(strategy: str, dtype: pl.DataType, value: Any) -> pl.DataType:
    """The dtype a column has after imputation (see the module docstring)."""
    if strategy in ("mean", "median") or (dtype.is_integer() and isinstance(value, float)):
        return dtype if dtype.is_float() else pl.Float64()
    return dtype


@dataclass(frozen=True)
class FittedSimpleImputer(FittedImpute):
    """One fill value per column (None: the column had no value at fit and stays as is)."""

    values: tuple[Any, ...]

    def apply(self, lf: pl.LazyFrame, *, train: bool = False) -> pl.LazyFrame:
        schema = lf.collect_schema()
        exprs = [fn(pl.col(c)).alias(c) for c, fn in self._fills(schema).items()]
        return lf.with_columns([*exprs, *self.indicator_exprs(schema)])

    def columnwise(self, schema: pl.Schema) -> dict[str, Callable[[pl.Expr], pl.Expr]] | None:
        """Column-wise unless ``add_indicator`` adds columns."""
        return None if getattr(self.step, "add_indicator", False) else self._fills(schema)

    def _fills(self, schema: pl.Schema) -> dict[str, Callable[[pl.Expr], pl.Expr]]:
        strategy = self.step.strategy  # type: ignore[attr-defined]

        def filler(value: Any, dtype: pl.DataType) -> Callable[[pl.Expr], pl.Expr]:
            out_t = _out_dtype(strategy, dtype, value)

            def fn(x: pl.Expr) -> pl.Expr:
                x = x if out_t == dtype else x.cast(out_t)
                if value is None:
                    return x
                fill = pl.lit(value).cast(out_t)
                # NaN and null both take the fill: two fills, not NaN -> null (a when/then) then one
                return (x.fill_nan(fill) if dtype.is_float() else x).fill_null(fill)

            return fn

        return {c: filler(value, schema[c]) for c, value in zip(self.columns, self.values, strict=True)}


@register(
    "impute",
    "constant",
    "Fill missing values with fill_value (default 0 for numbers, 'missing_value' for strings).",
    strategy="constant",
)
@register(
    "impute",
    "most_frequent",
    "Fill missing values with the most frequent value (smallest on ties); numeric, string or boolean columns.",
    strategy="most_frequent",
)
@register("impute", "median", "Fill missing values with the column median (finite values only).", strategy="median")
@register("impute", "mean", "Fill missing values with the column mean (finite values only).", strategy="mean")
class SimpleImputer(ImputeStep):
    """Fill missing values (null or NaN) with a per-column statistic or a constant.

    Parameters follow ``sklearn.impute.SimpleImputer``.

    Parameters
    ----------
    strategy
        ``mean`` or ``median`` (numeric columns), ``most_frequent`` (ties: the
        smallest value) or ``constant`` (numeric, string, categorical or boolean
        columns). Fixed by the YAML method.
    fill_value
        The value for ``constant``: default 0 for numeric columns,
        ``"missing_value"`` for string and categorical columns, False for boolean
        columns. Must match the kind of every selected column.
    add_indicator
        Also add a Boolean ``<col>__missing`` column per selected column.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"n": [1, None, 4]})
    >>> fitted = SimpleImputer(strategy="mean", add_indicator=True).fit(df)
    >>> fitted.transform(df).rows()
    [(1.0, False), (2.5, True), (4.0, False)]
    >>> SimpleImputer(strategy="constant", fill_value=-1).fit_transform(df)["n"].to_list()
    [1, -1, 4]
    """

    fitted_class = FittedSimpleImputer
    accepts: ClassVar[str] = "any"

    strategy: Strategy = "mean"
    fill_value: FillValue = None

    @model_validator(mode="after")
    def _check_fill_value(self) -> SimpleImputer:
        if self.fill_value is not None and self.strategy != "constant":
            raise ValueError(f"fill_value applies only to strategy 'constant', not '{self.strategy}'")
        return self

    def resolve_columns(self, schema: pl.Schema, target: str | None) -> tuple[str, ...]:
        """Selected columns; ``mean``/``median`` need numeric ones, the others numeric, string or boolean."""
        cols = super().resolve_columns(schema, target)
        numeric_only = self.strategy in ("mean", "median")
        for c in cols:
            family = _family(schema[c])
            if family is None or (numeric_only and family != "numeric"):
                need = "numeric columns" if numeric_only else "numeric, string, categorical or boolean columns"
                raise ColumnError(f"{self.label}: column '{c}' has dtype {schema[c]}; this step needs {need}")
        return cols

    def _constant(self, column: str, dtype: pl.DataType) -> Any:
        family = _family(dtype)
        value = self.fill_value
        if value is None:
            return _DEFAULT_FILL[family]  # type: ignore[index]
        ok = {
            "numeric": isinstance(value, (int, float)) and not isinstance(value, bool),
            "string": isinstance(value, str),
            "boolean": isinstance(value, bool),
        }[family]  # type: ignore[index]
        if not ok:
            raise ConfigError(f"{self.label}: fill_value={value!r} does not fit column '{column}' of dtype {dtype}")
        return value

    def _aggregate(self, column: str, dtype: pl.DataType) -> Aggregate:
        if self.strategy == "mean":
            return Stat(finite(column, dtype), "mean")
        if self.strategy == "median":
            return Quantiles(finite(column, dtype), (0.5,))
        x = pl.col(column).cast(pl.String) if isinstance(dtype, (pl.Categorical, pl.Enum)) else finite(column, dtype)
        return Stat(x, "mode")

    def plan(self, schema: pl.Schema, target: str | None) -> FitPlan:
        cols = self.resolve_columns(schema, target)
        constants: dict[str, Any] = {}
        aggs: dict[str, Aggregate] = {}
        for c in cols:
            if self.strategy == "constant":
                constants[c] = self._constant(c, schema[c])
                dtype = schema[c]
                if isinstance(dtype, pl.Enum) and constants[c] not in dtype.categories:
                    raise ConfigError(f"{self.label}: fill_value {constants[c]!r} is not a category of column '{c}'")
            else:
                aggs[c] = self._aggregate(c, schema[c])

        def finish(data: FitData) -> FittedSimpleImputer:
            values = []
            for c in cols:
                if c in constants:
                    values.append(constants[c])
                    continue
                v = data.aggregates[c]
                if isinstance(v, list):  # a Quantiles answer
                    v = v[0]
                if v is not None and self.strategy in ("mean", "median"):
                    v = float(v)
                values.append(v)
            return FittedSimpleImputer(step=self, columns=cols, values=tuple(values))

        probe = {c: constants.get(c) for c in cols}
        dtypes = {c: _out_dtype(self.strategy, schema[c], probe[c]) for c in cols}
        out = output_schema(schema, cols, dtypes, add_indicator=self.add_indicator, step=self.label)
        # a Float64 column filled with its median or mean only has its holes filled: declared,
        # so that a quantile step after this one is fitted in the same pass (transforms.filled)
        fills = {
            c: c
            for c in cols
            if self.strategy in ("median", "mean") and schema[c] == pl.Float64 and out.get(c) == pl.Float64
        }
        return FitPlan(finish=finish, reads=cols, output_schema=out, aggregates=aggs, fills=fills)
