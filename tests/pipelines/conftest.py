"""The per-stage reference the engine's metrics are tested against.

``stage_queries(fitted, source, original, train=...)`` builds, for a fitted pipeline,
one whole-table query per stage (the step's input: ``__rows`` and its metrics, summed;
the last the output's row count), the output query and the dropped rows: what the
engine computed before metrics rode beside the output, each stage applying every
earlier step again. Metric columns, the streaming tap and the in-memory segments
must give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
import pytest

from pipelines import engine
from transforms.base import ROWS
from transforms.pipeline import FittedPipeline


@dataclass
class StageQueries:
    output: pl.LazyFrame
    metrics: list[pl.LazyFrame]
    metric_keys: list[list[str]]
    dropped: pl.LazyFrame | None


def _stage_queries(
    fitted: FittedPipeline, source: pl.LazyFrame, original: pl.LazyFrame, *, train: bool
) -> StageQueries:
    stages = [source]
    for f in fitted.steps:
        stages.append(engine.apply_step(f, stages[-1], train=train))
    metrics, keys = [], []
    for f, stage in zip(fitted.steps, stages, strict=False):
        aggregations = f.metric_aggregations(stage.collect_schema())
        keys.append([k for k in aggregations if k != ROWS])
        metrics.append(stage.select(aggregations.values()))
    metrics.append(stages[-1].select(pl.len().alias(ROWS)))
    keys.append([])
    dropped, _ = engine.steps_dropped(fitted, source, original, train=train)
    return StageQueries(engine.transformed(fitted.steps, source, train=train), metrics, keys, dropped)


@pytest.fixture
def stage_queries() -> Callable[..., StageQueries]:
    return _stage_queries
