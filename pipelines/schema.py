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
from typing import Any, Literal

import pandera.polars as pa
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
    "ge": pa.Check.ge,
    "gt": pa.Check.gt,
    "le": pa.Check.le,
    "lt": pa.Check.lt,
    "eq": pa.Check.eq,
    "ne": pa.Check.ne,
    "in_range": lambda a: pa.Check.in_range(**_range(a, "in_range")),
    "isin": pa.Check.isin,
    "notin": pa.Check.notin,
    "str_matches": pa.Check.str_matches,
    "str_contains": pa.Check.str_contains,
    "str_startswith": pa.Check.str_startswith,
    "str_endswith": pa.Check.str_endswith,
    "str_length": lambda a: pa.Check.str_length(
        **{k: v for k, v in _range(a, "str_length").items() if k in ("min_value", "max_value")}
    ),
}
"""Check names a spec may use, each mapped to the pandera built-in check."""


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

    def compile(self, name: str) -> pa.Column:
        return pa.Column(
            DTYPES[self.dtype] if self.dtype else None,
            checks=[CHECKS[k](a) for k, a in self.checks.items()],
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

    def compile(self) -> pa.DataFrameSchema:
        """The pandera schema (imports the user's model when ``model`` is set)."""
        if self.model is not None:
            return load_model(self.model)
        return pa.DataFrameSchema(
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
    if not (isinstance(obj, type) and issubclass(obj, pa.DataFrameModel)):
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
