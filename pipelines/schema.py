"""Data schemas in the spec, compiled to ``pandera.polars.DataFrameSchema``.

In YAML::

    input:
      schema:
        columns:
          age:     {dtype: Float64, nullable: true, checks: {ge: 0, le: 120}}
          city:    {dtype: String, checks: {isin: [paris, lyon]}}
          id:      {dtype: Int64, unique: true}
        strict: false      # true: extra columns are an error
        coerce: true       # cast to the declared dtype where possible
        ordered: false     # true: columns must appear in this order
      on_invalid_rows: quarantine   # or: fail

or ``schema: {model: "package.module:ClassName"}`` naming a user's
``pandera.polars.DataFrameModel`` — the one place a spec imports user code.

>>> s = SchemaSpec.model_validate({"columns": {"x": {"dtype": "Float64", "checks": {"ge": 0}}}})
>>> type(s.compile()).__name__
'DataFrameSchema'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    import pandera.polars as pa


def _pa() -> Any:
    """``pandera.polars``, imported on first use: a spec without a schema never pays for it."""
    import pandera.polars

    return pandera.polars


def _builtin(name: str) -> Callable[[Any], pa.Check]:
    """``pa.Check.<name>``, looked up when a schema is compiled."""

    def check(arg: Any) -> pa.Check:
        return getattr(_pa().Check, name)(arg)

    return check


DTYPES: dict[str, pl.DataType] = {
    "Float64": pl.Float64(),
    "Float32": pl.Float32(),
    "Int64": pl.Int64(),
    "Int32": pl.Int32(),
    "Int16": pl.Int16(),
    "Int8": pl.Int8(),
    "UInt64": pl.UInt64(),
    "UInt32": pl.UInt32(),
    "UInt16": pl.UInt16(),
    "UInt8": pl.UInt8(),
    "Boolean": pl.Boolean(),
    "String": pl.String(),
    "Categorical": pl.Categorical(),
    "Date": pl.Date(),
    "Datetime": pl.Datetime("us"),
    "Time": pl.Time(),
    "Duration": pl.Duration("us"),
}
"""Dtype names a spec may use (Polars' own names)."""


def _range(arg: Any, name: str) -> dict[str, Any]:
    if isinstance(arg, list | tuple) and len(arg) == 2:
        return {"min_value": arg[0], "max_value": arg[1]}
    if isinstance(arg, dict):
        keys = {"min": "min_value", "max": "max_value", "include_min": "include_min", "include_max": "include_max"}
        unknown = set(arg) - set(keys)
        if unknown:
            raise ValueError(f"{name}: unknown key(s) {sorted(unknown)}; use min, max, include_min, include_max")
        return {keys[k]: v for k, v in arg.items()}
    raise ValueError(f"{name} takes [min, max] or {{min: .., max: ..}}, got {arg!r}")


CHECKS: dict[str, Callable[[Any], pa.Check]] = {
    **{name: _builtin(name) for name in ("ge", "gt", "le", "lt", "eq", "ne", "isin", "notin")},
    "in_range": lambda a: _pa().Check.in_range(**_range(a, "in_range")),
    **{name: _builtin(name) for name in ("str_matches", "str_contains", "str_startswith", "str_endswith")},
    "str_length": lambda a: _pa().Check.str_length(
        **{k: v for k, v in _range(a, "str_length").items() if k in ("min_value", "max_value")}
    ),
}
"""Check names a spec may use, each mapped to the pandera built-in check."""

_SET_CHECKS = ("isin", "notin")


def _values_as(dtype: pl.DataType, values: Any, check: str) -> list[Any]:
    """The values of an ``isin``/``notin`` check cast to the column's dtype (a ValueError if one cannot be)."""
    if not isinstance(values, list | tuple | set | frozenset):
        raise ValueError(f"{check} takes a list of values, got {values!r}")
    values = list(values)
    try:
        cast = pl.Series("v", values, strict=False).cast(dtype, strict=False)
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        raise ValueError(f"{check}: the values {values!r} cannot be compared with a {dtype} column") from exc
    for v, c in zip(values, cast.to_list(), strict=True):
        if v is not None and (c is None or (isinstance(v, float) and dtype.is_integer() and c != v)):
            raise ValueError(f"{check}: the value {v!r} cannot occur in a {dtype} column")
    return cast.to_list()


class ColumnSpec(BaseModel):
    """One column of a schema."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dtype: str | None = None
    nullable: bool = False
    unique: bool = False
    required: bool = True
    checks: dict[str, Any] = Field(default_factory=dict)

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, v: str | None) -> str | None:
        if v is not None and v not in DTYPES:
            from transforms.errors import did_you_mean

            raise ValueError(f"unknown dtype '{v}'{did_you_mean(v, DTYPES)}; known: {', '.join(DTYPES)}")
        return v

    @field_validator("checks")
    @classmethod
    def _known_checks(cls, v: dict[str, Any]) -> dict[str, Any]:
        from transforms.errors import did_you_mean

        for name, arg in v.items():
            if name not in CHECKS:
                raise ValueError(f"unknown check '{name}'{did_you_mean(name, CHECKS)}; known: {', '.join(CHECKS)}")
            CHECKS[name](arg)  # validates the argument's shape now, not at run time
        return v

    @model_validator(mode="after")
    def _checks_fit_dtype(self) -> ColumnSpec:
        if self.dtype is None:
            return self
        dtype = DTYPES[self.dtype]
        for name, arg in self.checks.items():
            if name.startswith("str_") and dtype not in (pl.String(), pl.Categorical()):
                raise ValueError(f"check '{name}' needs a String column, but dtype is {self.dtype}")
            if name in _SET_CHECKS:
                _values_as(dtype, arg, name)  # raises when a value cannot be of this dtype
        return self

    def _check(self, name: str, arg: Any) -> pa.Check:
        if name in _SET_CHECKS and self.dtype is not None:
            # Polars' is_in does not cast: [1, 5] against a Float64 column is an error, not a check
            arg = _values_as(DTYPES[self.dtype], arg, name)
        return CHECKS[name](arg)

    def compile(self, name: str) -> pa.Column:
        return _pa().Column(
            DTYPES[self.dtype] if self.dtype else None,
            checks=[self._check(k, a) for k, a in self.checks.items()],
            nullable=self.nullable,
            unique=self.unique,
            required=self.required,
            name=name,
        )


class SchemaSpec(BaseModel):
    """A frame schema: columns plus frame options, or a reference to a DataFrameModel."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    columns: dict[str, ColumnSpec] = Field(default_factory=dict)
    strict: bool = False
    coerce: bool = False
    ordered: bool = False
    model: str | None = None

    @model_validator(mode="after")
    def _model_or_columns(self) -> SchemaSpec:
        if self.model is not None:
            if self.columns:
                raise ValueError("give either 'model' or 'columns', not both")
            if ":" not in self.model:
                raise ValueError(f"model must be 'package.module:ClassName', got '{self.model}'")
        return self

    def compile(self, *, allow_import: bool = True) -> pa.DataFrameSchema:
        """The pandera schema (imports the user's model when ``model`` is set).

        With ``allow_import=False`` (a schema that comes from a fitted artifact
        rather than from the user's spec) a ``model`` is refused: loading an
        artifact never imports code.
        """
        if self.model is not None:
            if not allow_import:
                raise ValueError(
                    f"the schema names a Python model '{self.model}'; a fitted artifact never imports code: "
                    "validate the input with the spec instead (prepflow validate SPEC --input ...)"
                )
            return load_model(self.model)
        return _pa().DataFrameSchema(
            {name: col.compile(name) for name, col in self.columns.items()},
            strict=self.strict,
            coerce=self.coerce,
            ordered=self.ordered,
        )


def load_model(ref: str) -> pa.DataFrameSchema:
    """Import ``package.module:ClassName`` (a ``pandera.polars.DataFrameModel``) and build its schema.

    This is the only place a spec runs user code, and only when the spec names a model.
    """
    module_name, _, attr = ref.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import schema model '{ref}': {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, _pa().DataFrameModel)):
        raise ValueError(f"'{ref}' is not a pandera.polars.DataFrameModel")
    return obj.to_schema()


class InputSpec(BaseModel):
    """The ``input:`` block: schema and what to do with rows that fail it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_: SchemaSpec | None = Field(default=None, alias="schema")
    on_invalid_rows: Literal["quarantine", "fail"] = "quarantine"


class OutputSpec(BaseModel):
    """The ``output:`` block: the schema the pipeline's output must satisfy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_: SchemaSpec | None = Field(default=None, alias="schema")
