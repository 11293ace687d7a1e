"""Each step's metrics added up over the batches of a streaming query, in the same pass as the output.

The streaming regime writes the output with one streaming query. Collecting the
steps' metrics (values imputed, outliers clipped, unknown categories, rows per
stage) in a second query means a second pass over the input: reading and decoding
it again, and computing every step again. A step's metrics are per-row counts
summed over its input (:meth:`transforms.base.Fitted.metrics`), so sums over the
batches are the metrics of the whole table. :class:`MetricColumns` computes each
step's per-row counts as columns at that step's input; they ride beside the rows
through the later steps and are added up and dropped just before the sink, so the
steps run once and the counts cost a few Boolean columns per batch.

Rows an augmentation step adds copy the columns of the rows they were made from,
these counts included, and exist only from the next stage on: a hidden column
(:data:`BORN`) holds each row's first stage (0 for the input's rows), set on the
added rows from the step's :data:`~transforms.augment._base.ADDED_COLUMN`
(:meth:`MetricColumns.after`), and a stage adds up only the rows born at or
before it.

A step that drops rows takes the counts of the earlier steps with them. The
streaming regime queries those rows anyway, to quarantine them: there the counts
ride beside the dropped rows and are added up the same way
(:meth:`MetricColumns.attach_dropped`), and a stage's totals are those of the rows
that reached the output plus those of the rows dropped at or after it.

>>> import polars as pl
>>> from pipelines import engine
>>> from transforms import Pipeline, SimpleImputer
>>> fitted = Pipeline([SimpleImputer(strategy="mean")]).fit(pl.DataFrame({"x": [1.0, None, 3.0]}))
>>> lf = pl.LazyFrame({"x": [None, 2.0, None, 4.0]})
>>> metrics = MetricColumns()
>>> query = engine.transformed(fitted.steps, lf, train=False, metrics=metrics)
>>> metrics.sink(query, lambda q: q.collect(engine="streaming"))["x"].to_list()
[2.0, 2.0, 2.0, 4.0]
>>> metrics.frames()[0].to_dicts(), metrics.rows_out
([{'__rows': 4, 'imputed:x': 2}], 4)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import polars as pl

from transforms.augment._base import ADDED_COLUMN
from transforms.base import ROWS, Fitted

#: prefix of the metric columns that ride beside the output (never written)
PREFIX = "__metric"
#: hidden column: the first stage a row reached (0: a row of the input; s + 1: added by step s)
BORN = PREFIX + "born"

T = TypeVar("T")


def _through(query: pl.LazyFrame, fn: Callable[[pl.DataFrame], pl.DataFrame], schema: pl.Schema) -> pl.LazyFrame:
    """``query`` passed batch by batch through ``fn`` (streamable), nothing pushed down past it.

    The totals need every row and every column that reaches ``fn``: no predicate, projection
    or slice of a later part of the query may be moved before it.
    """
    return query.map_batches(
        fn, schema=schema, streamable=True, predicate_pushdown=False, projection_pushdown=False, slice_pushdown=False
    )


class MetricColumns:
    """Each step's metrics as columns at its input, added up batch by batch beside the rows and dropped.

    :meth:`before` is the hook that adds them at each step's input
    (:func:`pipelines.engine.transformed`, :func:`pipelines.engine.steps_dropped`): a
    step's columns are named by the order in which it was first seen, the same in every
    query built with this object. :meth:`sink` puts the adding up on the output query
    (streaming), :meth:`add` does it on a collected output (in memory), and
    :meth:`attach_dropped` on the rows a step drops. A row counts in the stages from the
    one it was born at (:data:`BORN`): :meth:`after` must follow every step.

    ``frames()`` and ``keys``: one one-row frame per stage (``__rows`` and the step's
    metrics), the last with the output's row count, for :func:`pipelines.engine.step_metrics`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # Polars may run batches on several threads
        self._steps: list[Fitted] = []
        self._names: list[list[str]] = []
        self.keys: list[list[str]] = [[]]
        self._totals: list[dict[str, int]] = [{ROWS: 0}]

    def before(self, f: Fitted, schema: pl.Schema) -> list[pl.Expr]:
        """The metric columns of step ``f`` at its input (``schema``), named ``__metric<stage>:<key>``."""
        metrics = f.metrics(schema)
        stage = self._stage(f)
        if stage is None:
            stage = len(self._steps)
            self._steps.append(f)
            self._names.append([f"{PREFIX}{stage}:{key}" for key in metrics])
            self.keys = [*self.keys[:-1], list(metrics), []]
            self._totals = [dict.fromkeys([ROWS, *k], 0) for k in self.keys]
        columns = [e.alias(n) for e, n in zip(metrics.values(), self._names[stage], strict=True)]
        if f.adds_rows and BORN not in schema:  # the stage of the rows it adds: after()
            columns.append(pl.lit(0, pl.UInt16).alias(BORN))
        return columns

    def after(self, f: Fitted, stage: pl.LazyFrame) -> pl.LazyFrame:
        """``stage``, the output of step ``f``, with the rows ``f`` added born at the next stage.

        The rows ``f`` added are those it marked (:func:`pipelines.engine.marked`); the mark is left for
        :func:`pipelines.engine.added_rows_unindexed`, which drops it.
        """
        schema = stage.collect_schema()
        if ADDED_COLUMN not in schema or BORN not in schema:
            return stage
        born = pl.lit(self._stage(f) + 1, pl.UInt16)  # type: ignore[operator]
        return stage.with_columns(pl.when(pl.col(ADDED_COLUMN)).then(born).otherwise(pl.col(BORN)).alias(BORN))

    def frames(self) -> list[pl.DataFrame]:
        """The totals so far: one one-row frame per stage (``__rows`` and the step's metrics)."""
        return [pl.DataFrame({key: [value] for key, value in totals.items()}) for totals in self._totals]

    @property
    def rows_out(self) -> int:
        """Rows after the last step."""
        return self._totals[-1][ROWS]

    def sink(self, query: pl.LazyFrame, write: Callable[[pl.LazyFrame], T]) -> T:
        """``write(query)``, ``query`` (built with :meth:`before`) with its metric columns added up batch by
        batch on the way and dropped.

        ``write`` sinks or collects the query it is given as it is (``lambda q: io.sink(q, path)``). The
        adding up is a column expression on the first written column, each batch's Python call as short as
        the sums (a batch function, which must keep every later filter, projection and slice above it, costs
        ~0.4 s per 10M rows where the whole sink takes 3); a filter or projection put between it and the
        sink could skip it.
        """
        schema = query.collect_schema()
        hidden = self._hidden()
        shown = [c for c in schema if c not in hidden]
        if not shown:  # no column to carry the sums: a batch function
            return write(self._adding(query, self.add))
        counted = [c for c in schema if c in hidden]

        def tap(series: Sequence[pl.Series]) -> pl.Series:
            self.add(pl.DataFrame(series))  # the first column counts the rows
            return series[0]

        carrier = pl.map_batches([shown[0], *counted], tap, return_dtype=schema[shown[0]], is_elementwise=True)
        return write(query.with_columns(carrier.alias(shown[0])).drop(counted))

    def attach_dropped(self, query: pl.LazyFrame, f: Fitted) -> pl.LazyFrame:
        """``query``, the rows step ``f`` drops, with the metric columns of ``f`` and the steps before it added up.

        Those rows reached every stage up to ``f``'s, and no later one.
        """
        stage = self._stage(f)
        if stage is None:
            raise ValueError(f"{f.step.label}: its metric columns were never added (before)")
        return self._adding(query, lambda batch: self._add(batch, stage + 1))

    def add(self, batch: pl.DataFrame) -> pl.DataFrame:
        """Add up the metric columns of ``batch``, rows of the output; the batch without them."""
        return self._add(batch, len(self._totals))

    def _stage(self, f: Fitted) -> int | None:
        """The stage of step ``f`` (the order :meth:`before` first saw it in), None if never seen."""
        return next((i for i, seen in enumerate(self._steps) if seen is f), None)

    def _hidden(self) -> set[str]:
        return {BORN, *(n for names in self._names for n in names)}

    def _adding(self, query: pl.LazyFrame, fn: Callable[[pl.DataFrame], pl.DataFrame]) -> pl.LazyFrame:
        hidden = self._hidden()
        kept = pl.Schema({k: v for k, v in query.collect_schema().items() if k not in hidden})
        return _through(query, fn, kept)

    def _add(self, batch: pl.DataFrame, stages: int) -> pl.DataFrame:
        """Add ``batch``'s rows and metric columns to the first ``stages`` stages' totals."""
        names = self._names[:stages]
        if BORN in batch.columns:  # a row counts from the stage it was born at on
            born = batch.get_column(BORN)
            reached = [born <= t for t in range(stages)]
            rows = [int(mask.sum()) for mask in reached]
            per_stage = zip(reached, names, strict=False)  # the output's stage has no metric columns
            counts = [[batch.get_column(n).filter(mask).sum() for n in stage] for mask, stage in per_stage]
        else:
            rows = [batch.height] * stages
            counts = [[batch.get_column(n).sum() for n in stage] for stage in names]
        with self._lock:
            stage_totals = zip(self._totals[:stages], self.keys, [*counts, []], rows, strict=False)
            for totals, keys, values, n in stage_totals:
                totals[ROWS] += n
                for key, value in zip(keys, values, strict=True):
                    totals[key] += value
        return batch.drop([BORN, *(n for stage in names for n in stage)], strict=False)
