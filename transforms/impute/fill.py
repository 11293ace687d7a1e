"""Forward and backward fill: carry the previous (or next) present value into missing ones.

``impute/forward`` and ``impute/backward`` share :class:`FillImputer`. The fit
learns nothing (it reads no data); the transform is one window expression per
column. NaN counts as missing and is turned into null first.

Values with nothing to carry from (the first rows of a forward fill, the last of
a backward fill, per group with ``by``) stay missing, as null. Follow the step
with a simple impute (e.g. ``impute/median``) to fill those.

>>> import polars as pl
>>> from transforms import FillImputer
>>> df = pl.DataFrame({"x": [None, 1.0, float("nan"), None, 4.0]})
>>> FillImputer(columns=["x"]).fit_transform(df)["x"].to_list()
[None, 1.0, 1.0, 1.0, 4.0]
>>> FillImputer(columns=["x"], direction="backward", limit=1).fit_transform(df)["x"].to_list()
[1.0, 1.0, None, 4.0, 4.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import polars as pl
import polars.selectors as cs
from pydantic import Field

from transforms import columns as _columns
from transforms.base import FitData, FitPlan
from transforms.errors import ColumnError
from transforms.impute._common import FittedImpute, ImputeStep, check_present, names, output_schema
from transforms.missing import as_null
from transforms.registry import register


@dataclass(frozen=True)
class FittedFillImputer(FittedImpute):
    """Forward/backward fill; no learned state beyond the columns."""

    def reads(self, *, train: bool = False) -> tuple[str, ...]:
        step: FillImputer = self.step  # type: ignore[assignment]
        return tuple(dict.fromkeys((*self.columns, *names(step.by), *names(step.order_by))))

    def apply(self, lf: pl.LazyFrame, *, train: bool = False) -> pl.LazyFrame:
        step: FillImputer = self.step  # type: ignore[assignment]
        schema = lf.collect_schema()
        by, order_by = names(step.by), names(step.order_by)
        exprs = []
        for c in self.columns:
            x = as_null(c, schema[c]).fill_null(strategy=step.direction, limit=step.limit)
            if by or order_by:
                # the row position breaks ties of order_by, so equal keys keep their input order
                order = [*order_by, pl.int_range(pl.len())] if order_by else None
                x = x.over(partition_by=list(by) or None, order_by=order)
            exprs.append(x.alias(c))
        return lf.with_columns([*exprs, *self.indicator_exprs(schema)])


@register(
    "impute",
    "forward",
    "Fill missing values with the previous present value (optionally per group, in order_by order).",
    direction="forward",
)
@register(
    "impute",
    "backward",
    "Fill missing values with the next present value (optionally per group, in order_by order).",
    direction="backward",
)
class FillImputer(ImputeStep):
    """Forward or backward fill, optionally within groups and in a given order.

    Works on columns of any dtype; the default columns are the numeric ones except
    the target and the ``by``/``order_by`` columns. The output keeps the input's
    row order.

    Parameters
    ----------
    direction
        ``forward`` (carry the previous value) or ``backward`` (the next one).
        Fixed by the YAML method.
    order_by
        Column(s) giving the order to fill in (ascending, nulls first, ties in
        input order). Default: the input's row order.
    by
        Column(s) whose groups are filled independently; a null key is a group of
        its own.
    limit
        The most consecutive missing values filled after (before) a present one.
    add_indicator
        Also add a Boolean ``<col>__missing`` column per selected column.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"t": [3, 1, 2, 1], "g": ["a", "a", "a", "b"], "x": [None, 1.0, None, None]})
    >>> FillImputer(by="g", order_by="t").fit_transform(df)["x"].to_list()
    [1.0, 1.0, 1.0, None]
    """

    fitted_class = FittedFillImputer
    accepts: ClassVar[str] = "any"

    direction: Literal["forward", "backward"] = "forward"
    order_by: str | list[str] | None = None
    by: str | list[str] | None = None
    limit: int | None = Field(default=None, ge=1)

    def resolve_columns(self, schema: pl.Schema, target: str | None) -> tuple[str, ...]:
        """Selected columns; ``by``/``order_by`` are left out of the default and may not be selected."""
        keys = (*names(self.by), *names(self.order_by))
        check_present(names(self.by), schema, what="by", step=self.label)
        check_present(names(self.order_by), schema, what="order_by", step=self.label)
        default = cs.numeric() - cs.by_name(*keys, require_all=False) if keys else cs.numeric()
        cols = _columns.resolve(self.columns, schema, target=target, default=default, step=self.label)
        clash = [c for c in cols if c in keys]
        if clash:
            raise ColumnError(f"{self.label}: column '{clash[0]}' is a by/order_by column and cannot be filled")
        return cols

    def plan(self, schema: pl.Schema, target: str | None) -> FitPlan:
        cols = self.resolve_columns(schema, target)

        def finish(data: FitData) -> FittedFillImputer:
            return FittedFillImputer(step=self, columns=cols)

        reads = tuple(dict.fromkeys((*cols, *names(self.by), *names(self.order_by))))
        out = output_schema(schema, cols, {}, add_indicator=self.add_indicator, step=self.label)
        return FitPlan(finish=finish, reads=reads, output_schema=out, writes=cols)
