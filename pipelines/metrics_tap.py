"""Each step's metrics added up over the batches of a streaming query as they pass through it.

The streaming regime writes the output with one streaming query. Collecting the
steps' metrics (values imputed, outliers clipped, unknown categories, rows per
stage) in a second query means a second pass over the input: reading and decoding
it again, and computing every step again. A :class:`MetricsTap` on the query's
source computes them on each batch instead, as the batch goes by unchanged. A
step's metrics are counts, sums over the rows of its input
(:meth:`transforms.base.Fitted.metrics`), so the sums over the batches are the
metrics of the whole table.

>>> import polars as pl
>>> from transforms import Pipeline, SimpleImputer
>>> fitted = Pipeline([SimpleImputer(strategy="mean")]).fit(pl.DataFrame({"x": [1.0, None, 3.0]}))
>>> lf = pl.LazyFrame({"x": [None, 2.0, None, 4.0]})
>>> tap = MetricsTap(fitted, lf.collect_schema(), train=False)
>>> out = tap.attach(lf).with_columns(pl.col("x") * 2).collect(engine="streaming")
>>> tap.frames()[0].to_dicts()
[{'__rows': 4, 'imputed:x': 2}]
>>> tap.rows_out
4
"""

from __future__ import annotations

import threading

import polars as pl

from transforms.base import ROWS
from transforms.pipeline import FittedPipeline


class MetricsTap:
    """A pass-through batch function that adds up each step's metrics over the batches it sees.

    ``frames()`` and ``keys`` have the shape of an execution plan's collected metric
    queries (one one-row frame per stage, the last with the output's row count), for
    :func:`pipelines.engine.step_metrics`.
    """

    def __init__(self, fitted: FittedPipeline, schema: pl.Schema, *, train: bool) -> None:
        self.fitted, self.train = fitted, train
        self.keys: list[list[str]] = []
        self._exprs: list[list[pl.Expr]] = []
        stage = pl.LazyFrame(schema=schema)
        for f in fitted.steps:  # the aggregations depend only on the schema: built once
            aggregations = f.metric_aggregations(stage.collect_schema())
            self.keys.append([k for k in aggregations if k != ROWS])
            self._exprs.append(list(aggregations.values()))
            stage = f.apply(stage, train=train)
        self.keys.append([])
        self._exprs.append([pl.len().alias(ROWS)])
        self._totals = [dict.fromkeys([ROWS, *keys], 0) for keys in self.keys]
        self._lock = threading.Lock()

    def __call__(self, batch: pl.DataFrame) -> pl.DataFrame:
        stage = batch.lazy()
        queries = []
        for f, exprs in zip(self.fitted.steps, self._exprs, strict=False):
            queries.append(stage.select(exprs))
            stage = f.apply(stage, train=self.train)
        queries.append(stage.select(self._exprs[-1]))
        sums = pl.collect_all(queries)
        with self._lock:  # Polars may run batches on several threads
            for totals, frame in zip(self._totals, sums, strict=True):
                for key, value in frame.row(0, named=True).items():
                    totals[key] += value
        return batch

    def attach(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        """``lf`` with the tap on it: every row passes through it once, unchanged."""
        return lf.map_batches(
            self,
            schema=lf.collect_schema(),
            streamable=True,
            predicate_pushdown=False,  # the tap must see every row and every column of the source
            projection_pushdown=False,
            slice_pushdown=False,
        )

    def frames(self) -> list[pl.DataFrame]:
        """The totals so far: one one-row frame per stage (``__rows`` and the step's metrics)."""
        return [pl.DataFrame({key: [value] for key, value in totals.items()}) for totals in self._totals]

    @property
    def rows_out(self) -> int:
        """Rows after the last step."""
        return self._totals[-1][ROWS]
