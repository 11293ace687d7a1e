"""Group-wise imputation: fill a missing value with its group's mean or median.

The fit runs one ``group_by(by).agg(...)`` query for the per-group statistics and,
in the same pass, the global statistics as one-row aggregates. A missing value is
filled with its group's value; when the group was not seen at fit time, or had no
finite value in that column, the global value is used instead. A column with no
finite value at all stays missing (as null).

Null group keys form a group of their own (as in Polars ``group_by``): rows with a
null key are filled from the rows that had a null key at fit time. Statistics
ignore null, NaN and +/-inf; +/-inf values stay in the data as they are.

>>> import polars as pl
>>> from transforms import GroupImputer
>>> df = pl.DataFrame({"g": ["a", "a", "b", "b", "c"], "x": [1.0, None, 10.0, None, None]})
>>> fitted = GroupImputer(columns=["x"], by="g", strategy="mean").fit(df)
>>> fitted.transform(df)["x"].to_list()
[1.0, 1.0, 10.0, 10.0, 5.5]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import polars as pl
import polars.selectors as cs

from transforms import columns as _columns
from transforms.base import FitData, FitPlan
from transforms.errors import ColumnError
from transforms.impute._common import FittedImpute, ImputeStep, check_present, names, output_schema
from transforms.missing import as_null, finite, float_dtype
from transforms.registry import register

_QUERY = "groups"


def _is_categorical(dtype: pl.DataType) -> bool:
    return isinstance(dtype, (pl.Categorical, pl.Enum))


def _key_ok(dtype: pl.DataType) -> bool:
    return dtype.is_integer() or dtype in (pl.String, pl.Boolean) or _is_categorical(dtype)


def _free_name(base: str, taken: set[str]) -> str:
    name = base
    while name in taken:
        name = f"_{name}"
    return name


@dataclass(frozen=True)
class FittedGroupImputer(FittedImpute):
    """Per-group fill values and the global fallback.

    ``keys`` holds one tuple per ``by`` column (categorical keys as strings);
    ``group_values`` one tuple per imputed column, aligned with ``keys`` (None:
    the group had no finite value); ``global_values`` one value per column.
    """

    keys: tuple[tuple[Any, ...], ...]
    group_values: tuple[tuple[float | None, ...], ...]
    global_values: tuple[float | None, ...]

    def reads(self, *, train: bool = False) -> tuple[str, ...]:
        return (*self.columns, *names(self.step.by))  # type: ignore[attr-defined]

    def _stats(self, schema: pl.Schema, value_names: list[str]) -> pl.LazyFrame:
        """The group statistics as a small literal frame, keys in the input's dtypes."""
        by = names(self.step.by)  # type: ignore[attr-defined]
        frame = pl.DataFrame(
            [
                *(
                    pl.Series(k, list(v), dtype=pl.String if _is_categorical(schema[k]) else schema[k])
                    for k, v in zip(by, self.keys, strict=True)
                ),
                *(pl.Series(n, list(v), dtype=pl.Float64) for n, v in zip(value_names, self.group_values, strict=True)),
            ]
        )
        cats = [k for k in by if _is_categorical(schema[k])]
        if cats:
            # a key that is no category of the input (an Enum changed) can match no row: drop it
            known = [pl.col(k).cast(schema[k], strict=False).is_not_null() | pl.col(k).is_null() for k in cats]
            frame = frame.filter(known).with_columns(pl.col(k).cast(schema[k]) for k in cats)
        return frame.lazy()

    def apply(self, lf: pl.LazyFrame, *, train: bool = False) -> pl.LazyFrame:
        schema = lf.collect_schema()
        taken = set(schema.names())
        tmp = []
        for i in range(len(self.columns)):
            tmp.append(_free_name(f"__prepflow_group_{i}", taken))
            taken.add(tmp[-1])
        by = names(self.step.by)  # type: ignore[attr-defined]
        joined = lf.join(
            self._stats(schema, tmp), on=list(by), how="left", nulls_equal=True, maintain_order="left", validate="m:1"
        )
        exprs = []
        for c, t, g in zip(self.columns, tmp, self.global_values, strict=True):
            out_t = float_dtype(schema[c])
            x = as_null(c, schema[c]).cast(out_t).fill_null(pl.col(t).cast(out_t))
            if g is not None:
                x = x.fill_null(pl.lit(g).cast(out_t))
            exprs.append(x.alias(c))
        return joined.with_columns([*exprs, *self.indicator_exprs(schema)]).drop(tmp)


@register("impute", "group", "Fill missing values with the mean or median of their group (by), else the global one.")
class GroupImputer(ImputeStep):
    """Fill missing values with a per-group mean or median, falling back to the global one.

    Parameters
    ----------
    by
        Column(s) defining the groups: integer, string, boolean or categorical.
        A null key is a group of its own.
    strategy
        ``median`` (default; linear interpolation) or ``mean``.
    add_indicator
        Also add a Boolean ``<col>__missing`` column per selected column.

    Numeric columns only; the default columns are the numeric ones except the
    target and ``by``. Integer columns become Float64. The fitted state holds one
    value per group and column, so its size grows with the number of groups.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"g": [1, 1, 2, 2], "x": [1.0, 3.0, 10.0, None]})
    >>> new = pl.DataFrame({"g": [1, 2, 3], "x": [None, None, None]})
    >>> GroupImputer(by="g").fit(df).transform(new)["x"].to_list()  # group 3 is unseen: global median
    [2.0, 10.0, 3.0]
    """

    fitted_class = FittedGroupImputer
    by: str | list[str]
    strategy: Literal["mean", "median"] = "median"

    def resolve_columns(self, schema: pl.Schema, target: str | None) -> tuple[str, ...]:
        """Numeric columns to fill; the ``by`` columns are left out of the default and may not be selected."""
        by = names(self.by)
        if not by:
            raise ColumnError(f"{self.label}: by needs at least one column")
        check_present(by, schema, what="by", step=self.label)
        for k in by:
            if not _key_ok(schema[k]):
                raise ColumnError(
                    f"{self.label}: by column '{k}' has dtype {schema[k]}; group keys must be integer, "
                    "string, boolean or categorical"
                )
        default = cs.numeric() - cs.by_name(*by, require_all=False)
        cols = _columns.resolve(self.columns, schema, target=target, default=default, step=self.label)
        clash = [c for c in cols if c in by]
        if clash:
            raise ColumnError(f"{self.label}: column '{clash[0]}' is a by column and cannot be imputed")
        bad = [c for c in cols if not schema[c].is_numeric()]
        if bad:
            raise ColumnError(
                f"{self.label}: column '{bad[0]}' has dtype {schema[bad[0]]}; this step needs numeric columns"
            )
        return cols

    def _stat(self, c: str, dtype: pl.DataType) -> pl.Expr:
        x = finite(c, dtype)
        return x.mean() if self.strategy == "mean" else x.quantile(0.5, "linear")

    def plan(self, schema: pl.Schema, target: str | None) -> FitPlan:
        cols = self.resolve_columns(schema, target)
        by = names(self.by)
        keys = [pl.col(k).cast(pl.String) if _is_categorical(schema[k]) else pl.col(k) for k in by]
        stats = [self._stat(c, schema[c]).cast(pl.Float64).alias(c) for c in cols]

        def query(lf: pl.LazyFrame) -> pl.LazyFrame:
            out = lf.group_by(keys).agg(stats)
            if cols:  # groups with no value in any column would only repeat the global fallback
                out = out.filter(pl.any_horizontal(pl.col(c).is_not_null() for c in cols))
            return out.sort(by, nulls_last=False)

        def finish(data: FitData) -> FittedGroupImputer:
            groups = data.queries[_QUERY]
            glob = tuple(None if data.aggregates[c] is None else float(data.aggregates[c]) for c in cols)
            return FittedGroupImputer(
                step=self,
                columns=cols,
                keys=tuple(tuple(groups[k].to_list()) for k in by),
                group_values=tuple(tuple(groups[c].to_list()) for c in cols),
                global_values=glob,
            )

        dtypes = {c: float_dtype(schema[c]) for c in cols}
        out = output_schema(schema, cols, dtypes, add_indicator=self.add_indicator, step=self.label)
        return FitPlan(
            finish=finish,
            reads=(*cols, *by),
            writes=cols,
            output_schema=out,
            aggregates={c: self._stat(c, schema[c]) for c in cols},
            queries={_QUERY: query},
        )
