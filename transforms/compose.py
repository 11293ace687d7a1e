"""Applying fitted steps in order, runs of column-wise steps composed into one projection.

Applied one by one, ``impute -> clip -> scale`` is three ``with_columns``: Polars' in-memory
engine computes each as a whole set of new columns, and the next step reads them back. A
step that maps each of its columns through a function of that column alone
(:meth:`~transforms.base.Fitted.columnwise`) is instead composed into its predecessor's
expressions, so a run of such steps is one ``with_columns`` whose expressions are the
steps' functions nested in order: the same operations on the same values, so the same
numbers, bit for bit, with one pass and no intermediate columns. Other steps (encoders,
row filters, augmentation) run through :meth:`~transforms.base.Fitted.apply` as before.

>>> import polars as pl
>>> from transforms import IQROutliers, Pipeline, SimpleImputer, StandardScaler
>>> df = pl.DataFrame({"x": [1.0, None, 3.0, 40.0]})
>>> fitted = Pipeline([SimpleImputer(strategy="median"), IQROutliers(action="clip"), StandardScaler()]).fit(df)
>>> plan = apply_steps(fitted.steps, df.lazy(), train=False)
>>> plan.explain().count("WITH_COLUMNS")
1
>>> plan.collect().equals(fitted.steps[2].transform(fitted.steps[1].transform(fitted.steps[0].transform(df))))
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import polars as pl

from transforms.base import Fitted

#: called after each step that ran through ``apply``: ``after(step, frame) -> frame``
After = Callable[[Fitted, pl.LazyFrame], pl.LazyFrame]
#: called before each step with its input schema: ``before(step, schema) -> columns to add`` at that input
Before = Callable[[Fitted, pl.Schema], list[pl.Expr]]


def apply_steps(
    steps: Sequence[Fitted], lf: pl.LazyFrame, *, train: bool, after: After | None = None, before: Before | None = None
) -> pl.LazyFrame:
    """``lf`` with ``steps`` applied in order, runs of column-wise steps composed (see the module docstring).

    Columns that ``before`` asks for are added at the step's input: the run composed so
    far is computed first, so they see the values the step sees.
    """
    pending: dict[str, pl.Expr] = {}

    def flush(frame: pl.LazyFrame) -> pl.LazyFrame:
        return frame.with_columns(e.alias(c) for c, e in pending.items()) if pending else frame

    for f in steps:
        current = flush(lf)
        added = before(f, current.collect_schema()) if before is not None else []
        if added:
            lf, pending = current.with_columns(added), {}
            current = lf
        fns = f.columnwise(current.collect_schema())
        if fns is None:
            lf = f.apply(current, train=train)
            if after is not None:
                lf = after(f, lf)
            pending = {}
            continue
        for c, fn in fns.items():
            pending[c] = fn(pending.get(c, pl.col(c)))
    return flush(lf)
