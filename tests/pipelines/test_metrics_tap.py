"""The metrics tap: metrics added up over batches equal the metrics of the whole table."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipelines import engine
from pipelines.metrics_tap import MetricsTap
from pipelines.spec import parse_spec

# every step kind with metrics, a row filter in the middle (rows per stage change) and unknown categories
STEPS = [
    {"kind": "impute", "method": "median", "columns": ["a"]},
    {"kind": "impute", "method": "knn", "columns": ["b", "d"], "n_neighbors": 3},
    {"kind": "outliers", "method": "zscore", "columns": ["b"], "threshold": 2.5, "action": "drop"},
    {"kind": "outliers", "method": "iqr", "columns": ["a"], "k": 1.0, "action": "clip"},
    {"kind": "outliers", "method": "isolation_forest", "columns": ["a", "b"], "seed": 1, "n_estimators": 20},
    {"kind": "scale", "method": "quantile", "columns": ["d"], "n_quantiles": 50},
    {"kind": "scale", "method": "log", "columns": ["e"]},
    {"kind": "encode", "method": "onehot", "columns": ["city"]},
    {"kind": "encode", "method": "ordinal", "columns": ["size"]},
]


def _frame(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, n)
    a[rng.integers(0, n, n // 10)] = np.nan
    return pl.DataFrame(
        {
            "a": a,
            "b": rng.standard_t(3, n),
            "d": rng.lognormal(0, 1, n),
            "e": rng.exponential(1, n) if seed == 0 else rng.normal(0, 1, n),  # <= -1 when applied: invalid log input
            "city": rng.choice(["paris", "lyon", "nice"] if seed == 0 else ["paris", "lyon", "oslo"], n).tolist(),
            "size": rng.choice(["S", "M"] if seed == 0 else ["S", "M", "XL"], n).tolist(),
        }
    ).with_columns(pl.when(pl.int_range(n) % 7 == 0).then(None).otherwise(pl.col("d")).alias("d"))


@pytest.mark.parametrize("train", [False, True])
def test_metrics_summed_over_batches_equal_the_whole_tables(train: bool) -> None:
    """Expect: each step's metrics and rows per stage from the tap, fed the table in uneven batches,
    equal the in-memory plan's metric queries on the whole table."""
    spec = parse_spec({"steps": STEPS}, source="test")
    fitted = engine.fit(spec, _frame(600, 0))
    source = _frame(1_000, 1).lazy().with_row_index(engine.ROW)
    plan = engine.plan_execution(fitted, source, source, train=train)
    whole = engine.step_metrics(fitted, pl.collect_all(plan.metrics), plan.metric_keys)

    tap = MetricsTap(fitted, source.collect_schema(), train=train)
    table = source.collect()
    for start, stop in [(0, 1), (1, 250), (250, 251), (251, 700), (700, 1_000)]:
        assert tap(table[start:stop]).equals(table[start:stop])  # the batch passes unchanged
    assert tap.keys == plan.metric_keys
    assert engine.step_metrics(fitted, tap.frames(), tap.keys) == whole
    assert tap.rows_out == plan.output.collect().height
    assert any(s.get("unknown", {}).get("city") for s in whole)  # the data exercises the metrics
    assert any(s["rows_dropped"] for s in whole)


def test_the_tap_sees_every_row_of_a_streaming_query_once() -> None:
    """Expect: attached to a scan that a streaming query filters and projects downstream, the tap still
    counts every row and column of the source (no pushdown through it), and the query's result is unchanged."""
    spec = parse_spec({"steps": [{"kind": "impute", "method": "mean", "columns": ["a"]}]}, source="test")
    df = _frame(5_000, 0)
    fitted = engine.fit(spec, df)
    tap = MetricsTap(fitted, df.schema, train=False)
    out = tap.attach(df.lazy()).filter(pl.col("b") > 0).select("b").collect(engine="streaming")
    assert out.equals(df.filter(pl.col("b") > 0).select("b"))
    assert tap.frames()[0].to_dicts() == [{"__rows": 5_000, "imputed:a": df["a"].is_nan().sum()}]
