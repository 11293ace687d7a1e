"""Shared pieces of the impute steps: the missing-value indicator and the metrics.

Every impute step has ``add_indicator``: when true it appends one Boolean column
``<col>__missing`` per selected column (True where the input value was null or
NaN), after the existing columns and in the order of the selected columns. Unlike
scikit-learn's ``MissingIndicator(features="missing-only")`` the indicator is added
for *every* selected column, so the output schema never depends on the fit data.

>>> import polars as pl
>>> schema = pl.Schema({"x": pl.Float64, "s": pl.String})
>>> pl.DataFrame({"x": [1.0, float("nan")], "s": [None, "a"]}).select(indicators(("x", "s"), schema)).rows()
[(False, True), (True, False)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from transforms.base import Fitted, Step
from transforms.errors import ColumnError
from transforms.missing import is_missing

SUFFIX = "__missing"


def indicator_name(column: str) -> str:
    """Name of the indicator column of ``column``."""
    return f"{column}{SUFFIX}"


def indicators(columns: Sequence[str], schema: Mapping[str, pl.DataType]) -> list[pl.Expr]:
    """One Boolean ``<col>__missing`` expression per column (null or NaN is missing)."""
    return [is_missing(c, schema[c]).alias(indicator_name(c)) for c in columns]


def output_schema(
    schema: pl.Schema,
    columns: Sequence[str],
    dtypes: Mapping[str, pl.DataType],
    *,
    add_indicator: bool,
    step: str,
) -> pl.Schema:
    """``schema`` with ``dtypes`` replacing those of ``columns``, plus the indicators.

    Raises :class:`ColumnError` when an indicator name is already a column.
    """
    out = {c: dtypes.get(c, t) for c, t in schema.items()}
    if add_indicator:
        for c in columns:
            name = indicator_name(c)
            if name in out:
                raise ColumnError(f"{step}: indicator column '{name}' already exists in the data")
            out[name] = pl.Boolean()
    return pl.Schema(out)


def names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """A ``str | list[str] | None`` parameter as a tuple of names."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def check_present(columns: Sequence[str], schema: pl.Schema, *, what: str, step: str) -> None:
    """Raise :class:`ColumnError` for the first of ``columns`` not in ``schema``."""
    for c in columns:
        if c not in schema:
            raise ColumnError(f"{step}: {what} column '{c}' is not in the data; available: {', '.join(schema.names())}")


class ImputeStep(Step):
    """Base of the impute steps: adds the ``add_indicator`` parameter."""

    add_indicator: bool = False


@dataclass(frozen=True)
class FittedImpute(Fitted):
    """Base of fitted impute steps: indicator columns and ``imputed:<col>`` metrics."""

    def metrics(self, schema: pl.Schema) -> dict[str, pl.Expr]:
        """``imputed:<col>``: how many values of the step's input are missing (null or NaN)."""
        return {f"imputed:{c}": is_missing(c, schema[c]) for c in self.columns}

    def indicator_exprs(self, schema: Mapping[str, pl.DataType]) -> list[pl.Expr]:
        """The indicator expressions when ``add_indicator`` is set, else an empty list."""
        if not getattr(self.step, "add_indicator", False):
            return []
        return indicators(self.columns, schema)
