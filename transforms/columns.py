"""Column selection: names, a YAML selector, or a Polars selector.

A step's ``columns`` is resolved against the schema of the frame it is fitted on;
the fitted state keeps the resolved names, so applying a fitted pipeline never
depends on which columns happen to be present.

>>> import polars as pl
>>> schema = pl.Schema({"f_a": pl.Float64, "f_b": pl.Int64, "city": pl.String, "y": pl.Int64})
>>> resolve(None, schema, target="y")
('f_a', 'f_b')
>>> resolve(ColumnSelector(regex="^f_", exclude=["f_b"]), schema)
('f_a',)
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

import polars as pl
import polars.selectors as cs
from pydantic import BaseModel, ConfigDict, Field, SkipValidation

from transforms.errors import ColumnError, did_you_mean

DtypeGroup = Literal["numeric", "float", "integer", "string", "boolean", "categorical", "temporal"]

_DTYPE_SELECTORS = {
    "numeric": cs.numeric,
    "float": cs.float,
    "integer": cs.integer,
    "string": cs.string,
    "boolean": cs.boolean,
    "categorical": cs.categorical,
    "temporal": cs.temporal,
}


class ColumnSelector(BaseModel):
    """A declarative selector: a dtype group and/or a regex, minus some names.

    In YAML: ``columns: {dtype: numeric, regex: "^f_", exclude: [id]}``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dtype: DtypeGroup | None = None
    regex: str | None = None
    exclude: list[str] = Field(default_factory=list)

    def to_polars(self) -> cs.Selector:
        """The equivalent Polars selector."""
        sel = _DTYPE_SELECTORS[self.dtype]() if self.dtype else cs.all()
        if self.regex is not None:
            sel = sel & cs.matches(self.regex)
        if self.exclude:
            sel = sel - cs.by_name(*self.exclude, require_all=False)
        return sel


Columns = Annotated[
    Union[list[str], ColumnSelector, SkipValidation[cs.Selector], None],
    Field(union_mode="left_to_right"),
]
"""What a step's ``columns`` parameter accepts: names, a selector, or None (default)."""


def resolve(
    columns: list[str] | ColumnSelector | cs.Selector | None,
    schema: pl.Schema,
    *,
    target: str | None = None,
    default: cs.Selector | None = None,
    step: str = "step",
) -> tuple[str, ...]:
    """Resolve a ``columns`` parameter to concrete names present in ``schema``.

    ``None`` means ``default`` (all numeric columns). The pipeline's target is
    left out of every selector-based selection (None, a ``ColumnSelector`` or a
    Polars selector); only an explicit list of names can include it. Names are
    checked to exist; a missing name raises :class:`ColumnError` with a "did you
    mean" suggestion.
    """
    if isinstance(columns, list):
        missing = [c for c in columns if c not in schema]
        if missing:
            hint = did_you_mean(missing[0], schema.names())
            raise ColumnError(
                f"{step}: column '{missing[0]}' is not in the data{hint}; available: {', '.join(schema.names())}"
            )
        if len(set(columns)) != len(columns):
            raise ColumnError(f"{step}: columns are listed twice: {columns}")
        return tuple(columns)
    if columns is None:
        sel = default if default is not None else cs.numeric()
    elif isinstance(columns, ColumnSelector):
        sel = columns.to_polars()
    else:
        sel = columns
    if target is not None:
        sel = sel - cs.by_name(target, require_all=False)
    return tuple(cs.expand_selector(schema, sel))


def describe(columns: list[str] | ColumnSelector | cs.Selector | None) -> object:
    """A JSON-friendly description of a ``columns`` parameter (for specs and reports)."""
    if columns is None or isinstance(columns, list):
        return columns
    if isinstance(columns, ColumnSelector):
        return columns.model_dump(exclude_defaults=True)
    return repr(columns)
