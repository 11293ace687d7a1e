"""Validation at the edges with pandera, and the quarantine of rows that fail.

Input validation splits failures in two:

* **schema-level** (a missing column, a dtype that is wrong and not coerced, an
  extra column under ``strict``) stop the run: :class:`DataError`, exit 1;
* **row-level** (a value out of range, a null where none is allowed, a bad
  category, a value that cannot be coerced to the declared dtype) move the row to
  the quarantine — its original values, ``__row`` (position in the input),
  ``__reasons`` (``column:check`` strings) and ``__stage`` (``input``) — and the
  clean rows go on. With ``on_invalid_rows: fail`` any row-level failure stops
  the run instead, with a table of the first failures.

Pandera skips data checks on LazyFrames by default; validation here always runs
with ``ValidationDepth.SCHEMA_AND_DATA`` and ``lazy=True`` (every failure at once).
Coercion is done here, value by value, so that a value that cannot be cast is
a row-level failure naming the row, not a failure of the whole column.

Floating NaN is *missing*, like null (as everywhere in prepflow): checks skip it,
and a column that is not ``nullable`` fails on it. The values themselves are not
changed: a NaN stays NaN in the output and in the quarantine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from pipelines.errors import DataError

if TYPE_CHECKING:
    import pandera.polars as pa

ROW = "__row"
REASONS = "__reasons"
STAGE = "__stage"
SCHEMA_INDEX = "index"


@dataclass(frozen=True)
class Validated:
    """Clean rows (coerced), their input positions, the quarantined rows and every failure."""

    clean: pl.DataFrame
    rows: pl.Series
    quarantine: pl.DataFrame | None
    failures: pl.DataFrame


def _failure_frame(rows: list[dict]) -> pl.DataFrame:
    schema = {"column": pl.String, "check": pl.String, "index": pl.Int64, "failure_case": pl.String}
    return pl.DataFrame(rows, schema=schema)


def _coerce(df: pl.DataFrame, schema: pa.DataFrameSchema) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cast declared columns value by value; values that cannot be cast are failures."""
    casts, failures = [], []
    for name, col in schema.columns.items():
        if name not in df.columns or col.dtype is None or not (schema.coerce or col.coerce):
            continue
        target = col.dtype.type
        if df.schema[name] == target:
            continue
        cast = pl.col(name).cast(target, strict=False)
        casts.append(cast.alias(name))
        bad = df.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("index"), pl.col(name).cast(pl.String).alias("v"))
        bad = bad.filter(df.select((pl.col(name).is_not_null() & cast.is_null()).alias("m"))["m"])
        failures.extend(
            {"column": name, "check": f"coerce({target})", "index": i, "failure_case": v}
            for i, v in zip(bad["index"], bad["v"], strict=True)
        )
    return (df.with_columns(casts) if casts else df), _failure_frame(failures)


def _nan_as_null(df: pl.DataFrame) -> pl.DataFrame:
    """NaN as null in float columns, so that checks skip it and ``nullable`` decides."""
    floats = [c for c, t in df.schema.items() if t.is_float()]
    return df.with_columns(pl.col(floats).fill_nan(None)) if floats else df


def _run_pandera(df: pl.DataFrame, schema: pa.DataFrameSchema) -> pl.DataFrame:
    """Every pandera failure of ``df`` (empty frame when it passes)."""
    import pandera.polars as pa  # on first use: a spec without a schema never imports pandera
    from pandera.config import ValidationDepth, config_context

    df = _nan_as_null(df)
    local = schema.set_coerce(False) if hasattr(schema, "set_coerce") else schema
    with config_context(validation_depth=ValidationDepth.SCHEMA_AND_DATA):
        try:
            local.validate(df, lazy=True)
        except pa.errors.SchemaErrors as exc:
            fc = exc.failure_cases
            return fc.select(
                pl.col("column").cast(pl.String),
                pl.col("check").cast(pl.String),
                pl.col("index").cast(pl.Int64),
                pl.col("failure_case").cast(pl.String),
            )
        except pa.errors.SchemaError as exc:  # raised by some schema-level checks even when lazy
            return _failure_frame([{"column": None, "check": str(exc).splitlines()[0], "index": None}])
    return _failure_frame([])


def _short(text: str | None, limit: int = 200) -> str | None:
    """The first line of a failure case, at most ``limit`` characters (Polars errors run long)."""
    if text is None:
        return None
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= limit else line[: limit - 3] + "..."


def schema_problems(failures: pl.DataFrame) -> list[str]:
    """Readable lines for schema-level failures (those with no row index)."""
    out = []
    for r in failures.filter(pl.col("index").is_null()).unique(maintain_order=True).iter_rows(named=True):
        check, col, case = r["check"], r["column"], _short(r["failure_case"])
        if check == "column_in_dataframe":
            out.append(f"column '{case}' is missing")
        elif check == "column_in_schema":
            out.append(f"column '{case}' is not in the schema (strict: true)")
        elif check and check.startswith("dtype("):
            expected = check[6:-1].strip("'\"")  # pandera writes dtype('Float64')
            out.append(f"column '{col}' has dtype {case}, expected {expected}")
        elif check == "column_ordered":
            out.append(f"columns are not in the declared order (first out of place: '{case}')")
        else:
            out.append(f"column '{col}': {check} failed ({case})")
    return out


def failure_table(failures: pl.DataFrame, limit: int = 10) -> str:
    """The first row-level failures as aligned text lines."""
    rows = failures.filter(pl.col("index").is_not_null()).sort("index", "column", "check").head(limit)
    lines = [
        f"  row {r['index']}: {r['column']}:{r['check']} (value {r['failure_case']!s})"
        for r in rows.iter_rows(named=True)
    ]
    more = failures.filter(pl.col("index").is_not_null()).height - rows.height
    return "\n".join(lines + ([f"  ... and {more} more"] if more > 0 else []))


def check(df: pl.DataFrame, schema: pa.DataFrameSchema) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Coerce and validate: the coerced frame and every failure (schema- and row-level)."""
    coerced, coerce_failures = _coerce(df, schema)
    failures = pl.concat([coerce_failures, _run_pandera(coerced, schema)])
    return coerced, failures


def validate_input(
    df: pl.DataFrame, schema: pa.DataFrameSchema, *, on_invalid_rows: str = "quarantine", source: str = "input"
) -> Validated:
    """Validate the input; quarantine (or fail on) invalid rows; raise on schema-level failures."""
    coerced, failures = check(df, schema)
    problems = schema_problems(failures)
    if problems:
        raise DataError(f"{source}: does not match the input schema: " + "; ".join(problems))
    row_failures = failures.filter(pl.col("index").is_not_null())
    positions = pl.int_range(pl.len(), dtype=pl.UInt32).alias(ROW)
    if row_failures.height == 0:
        return Validated(coerced, coerced.select(positions).to_series(), None, failures)
    if on_invalid_rows == "fail":
        n = row_failures["index"].n_unique()
        raise DataError(
            f"{source}: {n} row(s) fail the input schema (on_invalid_rows: fail):\n{failure_table(row_failures)}"
        )
    reasons = (
        row_failures.select(
            pl.col("index").cast(pl.UInt32).alias(ROW), (pl.col("column") + ":" + pl.col("check")).alias("r")
        )
        .unique()
        .group_by(ROW)
        .agg(pl.col("r").sort().alias(REASONS))
    )
    indexed = df.with_columns(positions)
    quarantine = indexed.join(reasons, on=ROW, how="inner").with_columns(pl.lit("input").alias(STAGE)).sort(ROW)
    keep = ~pl.int_range(pl.len(), dtype=pl.UInt32).is_in(reasons[ROW].implode())
    clean = coerced.filter(keep)
    rows = indexed.filter(keep)[ROW]
    return Validated(clean, rows, quarantine, failures)


def validate_output(df: pl.DataFrame, schema: pa.DataFrameSchema, *, source: str = "output") -> None:
    """Raise :class:`DataError` if the pipeline's output fails its schema (nothing is written then)."""
    _, failures = check(df, schema)
    if failures.height:
        problems = schema_problems(failures)
        rows = failures.filter(pl.col("index").is_not_null())
        parts = problems + ([f"{rows['index'].n_unique()} row(s) fail:\n{failure_table(rows)}"] if rows.height else [])
        raise DataError(f"{source}: the pipeline's output fails the output schema: " + "; ".join(parts))
