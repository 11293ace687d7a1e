"""Each step's metrics added up over the batches of a streaming query, in the same pass as the output.

The streaming regime writes the output with one streaming query. Collecting the
steps' metrics (values imputed, outliers clipped, unknown categories, rows per
stage) in a second query means a second pass over the input: reading and decoding
it again, and computing every step again. A step's metrics are per-row counts
summed over its input (:meth:`transforms.base.Fitted.metrics`), so sums over the
batches are the metrics of the whole table, and two ways collect them on the way:

- :class:`MetricColumns`, when every step keeps every row (scaling, imputing,
  clipping, encoding): each step's per-row counts are computed as columns at that
  step's input, ride beside the output, and are added up and dropped just before
  the sink. The steps run once; the counts cost a few Boolean columns per batch.
- :class:`MetricsTap`, when a step drops rows (the rows a later step drops would
  take the earlier steps' counts with them): a pass-through function on the
  query's source computes each stage's metrics on every batch as it goes by. It
  computes the steps a second time, inside the Polars query that runs the output
  (case 7, 10M rows: ~0.9 s more than :class:`MetricColumns`, see
  ``benchmarks/README.md``).

>>> import polars as pl
>>> from pipelines import engine
>>> from transforms import Pipeline, SimpleImputer
>>> fitted = Pipeline([SimpleImputer(strategy="mean")]).fit(pl.DataFrame({"x": [1.0, None, 3.0]}))
>>> lf = pl.LazyFrame({"x": [None, 2.0, None, 4.0]})
>>> metrics = MetricColumns(fitted.steps)
>>> query = engine.transformed(fitted.steps, lf, train=False, before=metrics.before)
>>> metrics.attach(query).collect(engine="streaming")["x"].to_list()
[2.0, 2.0, 2.0, 4.0]
>>> metrics.frames()[0].to_dicts(), metrics.rows_out
([{'__rows': 4, 'imputed:x': 2}], 4)
>>> tap = MetricsTap(fitted, lf.collect_schema(), train=False)
>>> out = tap.attach(lf).with_columns(pl.col("x") * 2).collect(engine="streaming")
>>> tap.frames()[0].to_dicts()
[{'__rows': 4, 'imputed:x': 2}]
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import polars as pl

from transforms.base import ROWS, Fitted
from transforms.pipeline import FittedPipeline

#: prefix of the metric columns that ride beside the output (never written)
PREFIX = "__metric"


class _Totals:
    """Per-stage metric totals, added up over the batches (or the tables) they are given.

    ``frames()`` and ``keys``: one one-row frame per stage (``__rows`` and the step's
    metrics), the last with the output's row count, for :func:`pipelines.engine.step_metrics`.
    """

    keys: list[list[str]]
    _totals: list[dict[str, int]]

    def __init__(self) -> None:
        self._lock = threading.Lock()  # Polars may run batches on several threads

    def _reset(self, keys: list[list[str]]) -> None:
        self.keys = [*keys, []]
        self._totals = [dict.fromkeys([ROWS, *k], 0) for k in self.keys]

    def frames(self) -> list[pl.DataFrame]:
        """The totals so far: one one-row frame per stage (``__rows`` and the step's metrics)."""
        return [pl.DataFrame({key: [value] for key, value in totals.items()}) for totals in self._totals]

    @property
    def rows_out(self) -> int:
        """Rows after the last step."""
        return self._totals[-1][ROWS]


def _through(query: pl.LazyFrame, fn: Callable[[pl.DataFrame], pl.DataFrame], schema: pl.Schema) -> pl.LazyFrame:
    """``query`` passed batch by batch through ``fn`` (streamable), nothing pushed down past it.

    The totals need every row and every column that reaches ``fn``: no predicate, projection
    or slice of a later part of the query may be moved before it.
    """
    return query.map_batches(
        fn, schema=schema, streamable=True, predicate_pushdown=False, projection_pushdown=False, slice_pushdown=False
    )


class MetricColumns(_Totals):
    """Each step's metrics as columns beside the output query, added up batch by batch and dropped.

    :meth:`before` is the hook that adds them at each step's input
    (:func:`pipelines.engine.transformed`); :meth:`attach` puts the adding up on the
    query (streaming), :meth:`add` does it on a collected output (in memory). Only for
    steps that keep every row (``changes_rows`` false): every stage then has the
    batch's rows.
    """

    @staticmethod
    def fit_for(steps: Sequence[Fitted]) -> bool:
        """Whether every step keeps every row, so that the metrics can ride as columns."""
        return not any(f.changes_rows for f in steps)

    def __init__(self, steps: Sequence[Fitted]) -> None:
        """``steps``: those the query applies (a pipeline's, or a segment of them)."""
        super().__init__()
        if not self.fit_for(steps):
            changing = [f.step.label for f in steps if f.changes_rows]
            raise ValueError(f"metric columns need steps that keep every row; these change rows: {changing}")
        self._names: list[list[str]] = []
        self._reset([])

    def before(self, f: Fitted, schema: pl.Schema) -> list[pl.Expr]:
        """The metric columns of step ``f`` at its input (``schema``), named ``__metric<step>:<key>``."""
        metrics = f.metrics(schema)
        self._names.append([f"{PREFIX}{len(self._names)}:{key}" for key in metrics])
        self._reset([*self.keys[:-1], list(metrics)])
        return [e.alias(n) for e, n in zip(metrics.values(), self._names[-1], strict=True)]

    def attach(self, query: pl.LazyFrame) -> pl.LazyFrame:
        """``query`` (built with :meth:`before`) with its metric columns added up and dropped batch by batch."""
        hidden = {n for names in self._names for n in names}
        kept = pl.Schema({k: v for k, v in query.collect_schema().items() if k not in hidden})
        return _through(query, self.add, kept)

    def add(self, batch: pl.DataFrame) -> pl.DataFrame:
        """Add up ``batch``'s metric columns; the batch without them."""
        counts = [[batch.get_column(n).sum() for n in names] for names in self._names]
        with self._lock:
            for totals, keys, values in zip(self._totals, self.keys, counts, strict=False):
                totals[ROWS] += batch.height
                for key, value in zip(keys, values, strict=True):
                    totals[key] += value
            self._totals[-1][ROWS] += batch.height
        return batch.drop([n for names in self._names for n in names])


class MetricsTap(_Totals):
    """A pass-through batch function that computes each stage's metrics on the batches it sees."""

    def __init__(self, fitted: FittedPipeline, schema: pl.Schema, *, train: bool) -> None:
        super().__init__()
        self.fitted, self.train = fitted, train
        keys: list[list[str]] = []
        self._exprs: list[list[pl.Expr]] = []
        stage = pl.LazyFrame(schema=schema)
        for f in fitted.steps:  # the aggregations depend only on the schema: built once
            aggregations = f.metric_aggregations(stage.collect_schema())
            keys.append([k for k in aggregations if k != ROWS])
            self._exprs.append(list(aggregations.values()))
            stage = f.apply(stage, train=train)
        self._exprs.append([pl.len().alias(ROWS)])
        self._reset(keys)

    def __call__(self, batch: pl.DataFrame) -> pl.DataFrame:
        stage = batch.lazy()
        queries = []
        for f, exprs in zip(self.fitted.steps, self._exprs, strict=False):
            queries.append(stage.select(exprs))
            stage = f.apply(stage, train=self.train)
        queries.append(stage.select(self._exprs[-1]))
        sums = pl.collect_all(queries)
        with self._lock:
            for totals, frame in zip(self._totals, sums, strict=True):
                for key, value in frame.row(0, named=True).items():
                    totals[key] += value
        return batch

    def attach(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        """``lf`` with the tap on it: every row passes through it once, unchanged."""
        return _through(lf, self, lf.collect_schema())
