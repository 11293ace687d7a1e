"""One-hot encoding as Polars expressions: one ``<col>_<value>`` indicator per category."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field

from transforms.base import FitData, FitPlan, Fitted
from transforms.encode._categories import CategoricalStep, counts_query, from_counts, values_of
from transforms.errors import ColumnError
from transforms.registry import register

OneHotDtype = Literal["UInt8", "UInt16", "UInt32", "Int8", "Int16", "Int32", "Int64", "Float32", "Float64", "Boolean"]


def split_infrequent(
    categories: tuple[Any, ...], counts: tuple[int, ...], max_categories: int | None
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Frequent and infrequent categories, as scikit-learn's ``max_categories`` splits them.

    With more than ``max_categories`` categories, the ``max_categories - 1`` most
    frequent are kept (the other column is the last output); ties keep the
    category that sorts last, as scikit-learn's stable ``argsort`` does.

    >>> split_infrequent(("a", "b", "c", "d"), (5, 1, 3, 3), 3)
    (('a', 'd'), ('b', 'c'))
    """
    if max_categories is None or len(categories) <= max_categories:
        return categories, ()
    n_frequent = max_categories - 1
    order = np.argsort(np.asarray(counts), kind="mergesort")
    rare = set(order[: len(categories) - n_frequent].tolist())
    frequent = tuple(v for i, v in enumerate(categories) if i not in rare)
    infrequent = tuple(v for i, v in enumerate(categories) if i in rare)
    return frequent, infrequent


@dataclass(frozen=True)
class FittedOneHot(Fitted):
    """Per column: the categories that get a column, the infrequent ones, and whether nulls were seen."""

    categories: tuple[tuple[Any, ...], ...]
    infrequent: tuple[tuple[Any, ...], ...]
    has_null: tuple[bool, ...]

    def has_other(self, i: int) -> bool:
        """Whether column ``i`` gets a ``<col>__other`` column."""
        return bool(self.infrequent[i]) or self.step.handle_unknown == "other"  # type: ignore[attr-defined]

    def has_indicator(self, i: int) -> bool:
        """Whether column ``i`` gets a ``<col>__null`` column."""
        return self.has_null[i] and self.step.handle_missing == "indicator"  # type: ignore[attr-defined]

    def output_names(self, i: int) -> list[str]:
        """The columns that encode input column ``i``, in output order."""
        c = self.columns[i]
        names = [f"{c}_{v}" for v in self.categories[i]]
        if self.has_other(i):
            names.append(f"{c}__other")
        if self.has_indicator(i):
            names.append(f"{c}__null")
        return names

    def _encode(self, i: int, dtype: pl.DataType) -> list[pl.Expr]:
        x = values_of(self.columns[i], dtype)
        out_dtype = getattr(pl, self.step.dtype)  # type: ignore[attr-defined]
        exprs = [x.eq_missing(v) for v in self.categories[i]]
        if self.has_other(i):
            other = x.is_in(list(self.infrequent[i])) if self.infrequent[i] else pl.lit(False)
            if self.step.handle_unknown == "other":  # type: ignore[attr-defined]
                other = other | self._unknown(i, x)
            exprs.append(other.fill_null(False))
        if self.has_indicator(i):
            exprs.append(x.is_null())
        return [e.cast(out_dtype).alias(n) for e, n in zip(exprs, self.output_names(i), strict=True)]

    def _unknown(self, i: int, x: pl.Expr) -> pl.Expr:
        known = [*self.categories[i], *self.infrequent[i]]
        return (x.is_not_null() & ~x.is_in(known)) if known else x.is_not_null()

    def apply(self, lf: pl.LazyFrame, *, train: bool = False) -> pl.LazyFrame:
        schema = lf.collect_schema()
        index = {c: i for i, c in enumerate(self.columns)}
        exprs: list[pl.Expr] = []
        for name, dtype in schema.items():
            if name not in index or not self.step.drop_original:  # type: ignore[attr-defined]
                exprs.append(pl.col(name))
            if name in index:
                exprs.extend(self._encode(index[name], dtype))
        return lf.select(exprs)

    def metrics(self, schema: pl.Schema) -> dict[str, pl.Expr]:
        """``unknown:<col>``: non-null values not seen at fit."""
        return {
            f"unknown:{c}": self._unknown(i, values_of(c, schema[c])) for i, c in enumerate(self.columns) if c in schema
        }


@register("encode", "onehot", "One indicator column <col>_<value> per category; unknowns ignored or counted as other.")
class OneHotEncoder(CategoricalStep):
    """One-hot encode: a ``<col>_<value>`` column per category, sorted like scikit-learn.

    Values and names match ``sklearn.preprocessing.OneHotEncoder(handle_unknown=
    "ignore", sparse_output=False)`` on data without missing values. The encoded
    columns take the original's place.

    Parameters
    ----------
    handle_unknown
        ``"ignore"``: a value not seen at fit gives an all-zero row; ``"other"``:
        it sets an extra ``<col>__other`` column.
    handle_missing
        ``"indicator"``: a ``<col>__null`` column for columns that had nulls at
        fit (like scikit-learn's missing category; elsewhere a null gives an
        all-zero row); ``"ignore"``: all-zero rows.
    max_categories
        Keep the most frequent categories and count the rest in ``<col>__other``;
        as in scikit-learn the other column counts towards the limit.
    drop_original
        Drop the encoded column (default) or keep it before its indicators.
    dtype
        Polars dtype of the indicators.
    columns
        Default: string, categorical and enum columns, except the target.

    >>> import polars as pl
    >>> df = pl.DataFrame({"c": ["b", "a", None], "x": [1, 2, 3]})
    >>> OneHotEncoder().fit(df).transform(pl.DataFrame({"c": ["a", "z", None], "x": [0, 0, 0]})).rows()
    [(1, 0, 0, 0), (0, 0, 0, 0), (0, 0, 1, 0)]
    """

    handle_unknown: Literal["ignore", "other"] = "ignore"
    handle_missing: Literal["indicator", "ignore"] = "indicator"
    max_categories: int | None = Field(None, ge=1)
    drop_original: bool = True
    dtype: OneHotDtype = "UInt8"

    fitted_class = FittedOneHot

    def plan(self, schema: pl.Schema, target: str | None) -> FitPlan:
        cols = self.resolve_columns(schema, target)
        queries = {str(i): counts_query(c, schema[c]) for i, c in enumerate(cols)}

        def finish(data: FitData) -> FittedOneHot:
            categories, infrequent, has_null = [], [], []
            for i in range(len(cols)):
                cats, counts, nulls = from_counts(data.queries[str(i)])
                frequent, rare = split_infrequent(cats, counts, self.max_categories)
                categories.append(frequent)
                infrequent.append(rare)
                has_null.append(nulls > 0)
            fitted = FittedOneHot(
                step=self,
                columns=cols,
                categories=tuple(categories),
                infrequent=tuple(infrequent),
                has_null=tuple(has_null),
            )
            self._check_names(fitted, schema)
            return fitted

        return FitPlan(finish=finish, reads=cols, output_schema=None, queries=queries)

    def _check_names(self, fitted: FittedOneHot, schema: pl.Schema) -> None:
        kept = set(schema) - (set(fitted.columns) if self.drop_original else set())
        seen: set[str] = set()
        for i in range(len(fitted.columns)):
            for name in fitted.output_names(i):
                if name in kept or name in seen:
                    raise ColumnError(
                        f"{self.label}: output column '{name}' would collide with another column; "
                        "rename the column or the category"
                    )
                seen.add(name)
