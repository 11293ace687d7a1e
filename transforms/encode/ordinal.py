"""Ordinal encoding as Polars expressions: sorted categories to ``0..n-1``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from transforms.base import FitData, FitPlan, Fitted
from transforms.encode._categories import CategoricalStep, counts_query, from_counts, values_of
from transforms.errors import FitError
from transforms.registry import register


@dataclass(frozen=True)
class FittedOrdinal(Fitted):
    """Sorted categories per column; category ``k`` is encoded as ``k``."""

    categories: tuple[tuple[Any, ...], ...]

    def _encode(self, i: int, dtype: pl.DataType) -> pl.Expr:
        step: OrdinalEncoder = self.step  # type: ignore[assignment]
        c, cats = self.columns[i], self.categories[i]
        x = values_of(c, dtype)
        coded = (
            x.replace_strict(list(cats), list(range(len(cats))), default=step.unknown_value, return_dtype=pl.Int64)
            if cats
            else pl.lit(step.unknown_value, pl.Int64)
        )
        return pl.when(x.is_null()).then(pl.lit(step.missing_value, pl.Int64)).otherwise(coded).alias(c)

    def apply(self, lf: pl.LazyFrame, *, train: bool = False) -> pl.LazyFrame:
        schema = lf.collect_schema()
        return lf.with_columns(self._encode(i, schema[c]) for i, c in enumerate(self.columns))

    def metrics(self, schema: pl.Schema) -> dict[str, pl.Expr]:
        """``unknown:<col>``: non-null values not seen at fit."""
        out = {}
        for i, c in enumerate(self.columns):
            if c in schema:
                x = values_of(c, schema[c])
                known = list(self.categories[i])
                out[f"unknown:{c}"] = x.is_not_null() & ~x.is_in(known) if known else x.is_not_null()
        return out


@register("encode", "ordinal", "Sorted categories to integers 0..n-1 (unknown_value for unseen ones).")
class OrdinalEncoder(CategoricalStep):
    """Encode each category as its position among the sorted fitted categories (Int64).

    Matches ``sklearn.preprocessing.OrdinalEncoder(handle_unknown=
    "use_encoded_value", unknown_value=-1)``.

    Parameters
    ----------
    unknown_value
        Code of values not seen at fit.
    missing_value
        Code of nulls; None keeps them null.

    A code that is also a category's (``0 <= code < n_categories``) is a
    :class:`~transforms.FitError`, as in scikit-learn.
    columns
        Default: string, categorical and enum columns, except the target.

    >>> import polars as pl
    >>> fitted = OrdinalEncoder().fit(pl.DataFrame({"c": ["b", "a", "b"]}))
    >>> fitted.transform(pl.DataFrame({"c": ["a", "b", "z", None]}))["c"].to_list()
    [0, 1, -1, None]
    """

    unknown_value: int = -1
    missing_value: int | None = None

    fitted_class = FittedOrdinal

    def plan(self, schema: pl.Schema, target: str | None) -> FitPlan:
        cols = self.resolve_columns(schema, target)
        queries = {str(i): counts_query(c, schema[c]) for i, c in enumerate(cols)}

        def finish(data: FitData) -> FittedOrdinal:
            cats = tuple(from_counts(data.queries[str(i)])[0] for i in range(len(cols)))
            for c, values in zip(cols, cats, strict=True):
                for name in ("unknown_value", "missing_value"):
                    code = getattr(self, name)
                    if code is not None and 0 <= code < len(values):
                        raise FitError(
                            f"{self.label}: {name}={code} is also the code of category {values[code]!r} "
                            f"of column '{c}'; use a negative value"
                        )
            return FittedOrdinal(step=self, columns=cols, categories=cats)

        out_schema = pl.Schema({c: (pl.Int64() if c in cols else t) for c, t in schema.items()})
        return FitPlan(finish=finish, reads=cols, output_schema=out_schema, queries=queries, writes=cols)
