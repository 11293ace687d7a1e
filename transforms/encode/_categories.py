"""Shared fitting of categorical encoders: the categories of each column and their counts.

Encoders accept string, categorical, enum, integer and boolean columns; by
default string, categorical and enum columns, the target excluded. Categories
are sorted like scikit-learn's (``numpy.unique``: code-point order for strings,
numeric order for integers, False before True); categorical and enum values are
compared as strings. Null is never a category.

>>> import polars as pl
>>> counts = category_counts(pl.DataFrame({"c": ["b", "a", None, "b"]}), "c", pl.String)
>>> counts
(('a', 'b'), (1, 2), 1)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import polars as pl
import polars.selectors as cs

from transforms.base import Step
from transforms.errors import ColumnError


def string_like() -> cs.Selector:
    """String, categorical and enum columns: what encoders encode by default."""
    return cs.string() | cs.categorical() | cs.enum()


def is_categorical(dtype: pl.DataType) -> bool:
    """Categorical or enum: values are compared as strings."""
    return dtype == pl.Categorical or isinstance(dtype, pl.Enum)


def values_of(name: str, dtype: pl.DataType) -> pl.Expr:
    """The column as its comparable values (categorical and enum as strings)."""
    return pl.col(name).cast(pl.String) if is_categorical(dtype) else pl.col(name)


def counts_query(name: str, dtype: pl.DataType) -> Callable[[pl.LazyFrame], pl.LazyFrame]:
    """A fit query: each distinct value of the column (null included) and its count."""

    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.group_by(values_of(name, dtype).alias("value")).agg(pl.len().alias("n"))

    return build


def category_counts(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> tuple[tuple[Any, ...], tuple[int, ...], int]:
    """Sorted categories of ``name`` in ``frame``, their counts, and the null count."""
    answer = counts_query(name, dtype)(frame.lazy()).collect()
    return from_counts(answer)


def from_counts(answer: pl.DataFrame) -> tuple[tuple[Any, ...], tuple[int, ...], int]:
    """Sorted categories, their counts and the null count from a :func:`counts_query` answer."""
    known = answer.filter(pl.col("value").is_not_null()).sort("value")
    nulls = answer.filter(pl.col("value").is_null())["n"].sum()
    return tuple(known["value"].to_list()), tuple(int(n) for n in known["n"]), int(nulls)


class CategoricalStep(Step):
    """Base of encoders: default and accepted columns."""

    default_columns: ClassVar[Callable[[], cs.Selector]] = string_like
    accepts: ClassVar[str] = "any"

    def resolve_columns(self, schema: pl.Schema, target: str | None) -> tuple[str, ...]:
        """String-like, integer and boolean columns only; floats are rejected."""
        cols = super().resolve_columns(schema, target)
        for c in cols:
            dtype = schema[c]
            if not (dtype in (pl.String, pl.Boolean) or dtype.is_integer() or is_categorical(dtype)):
                raise ColumnError(
                    f"{self.label}: column '{c}' has dtype {dtype}; this step encodes string, categorical, "
                    "integer or boolean columns"
                )
        return cols
