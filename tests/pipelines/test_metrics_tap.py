"""The metrics tap: metrics added up over batches equal the metrics of the whole table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines import engine, validation
from pipelines.metrics_tap import MetricColumns, MetricsTap
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
def test_metrics_summed_over_batches_equal_the_whole_tables(train: bool, stage_queries) -> None:
    """Expect: each step's metrics and rows per stage from the tap, fed the table in uneven batches,
    equal the in-memory plan's metric queries on the whole table."""
    spec = parse_spec({"steps": STEPS}, source="test")
    fitted = engine.fit(spec, _frame(600, 0))
    source = _frame(1_000, 1).lazy().with_row_index(engine.ROW)
    plan = stage_queries(fitted, source, source, train=train)
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


def test_every_steps_metrics_are_per_row_counts() -> None:
    """Expect: each metric of each step kind is one Boolean or integer value per input row (the report sums
    them), so that they can ride beside the output as columns."""
    spec = parse_spec({"steps": STEPS}, source="test")
    fitted = engine.fit(spec, _frame(600, 0))
    stage = _frame(300, 1).lazy()
    for f in fitted.steps:
        frame = stage.collect()
        metrics = f.metrics(frame.schema)
        if metrics:
            values = frame.select(**metrics)
            assert values.height == frame.height, f.label
            assert all(d == pl.Boolean or d.is_integer() for d in values.dtypes), f.label
        stage = f.apply(stage, train=False)


# every step keeps every row: the metrics ride beside the output as columns
KEEP_ROWS = [s for s in STEPS if s.get("action") != "drop"]
BATCHED = """\
import json, sys
import polars as pl
from pipelines import engine, validation
from pipelines.metrics_tap import MetricColumns
from transforms.pipeline import FittedPipeline

fitted, source, train, out = FittedPipeline.load(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", sys.argv[4]
metrics, batches = MetricColumns(fitted.steps), []
add = metrics.add
metrics.add = lambda batch: (batches.append(batch.height), add(batch))[1]
query = engine.transformed(fitted.steps, pl.scan_parquet(source), train=train, before=metrics.before)
metrics.attach(query).sink_parquet(out)
steps = engine.step_metrics(fitted, metrics.frames(), metrics.keys)
print(json.dumps({"batches": batches, "steps": steps, "rows_out": metrics.rows_out, "keys": metrics.keys}))
"""


@pytest.mark.parametrize("train", [False, True])
def test_metric_columns_over_many_batches_equal_the_whole_tables(tmp_path: Path, train: bool, stage_queries) -> None:
    """Expect: streamed in ~10 batches (``POLARS_IDEAL_MORSEL_SIZE=100``, a fresh process), the output with
    the metrics as columns beside it is the plain output (no metric column written), and the metrics added up
    batch by batch equal the in-memory plan's whole-table metric queries, for every step kind that keeps rows."""
    spec = parse_spec({"steps": KEEP_ROWS}, source="test")
    fitted = engine.fit(spec, _frame(600, 0))
    fitted.save(tmp_path / "f.json")
    table = _frame(1_000, 1)
    table.write_parquet(tmp_path / "in.parquet")
    env = {**os.environ, "POLARS_IDEAL_MORSEL_SIZE": "100"}
    args = [tmp_path / "f.json", tmp_path / "in.parquet", int(train), tmp_path / "out.parquet"]
    res = subprocess.run(
        [sys.executable, "-c", BATCHED, *map(str, args)], capture_output=True, text=True, env=env, check=False
    )
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)

    source = table.lazy().with_row_index(engine.ROW)
    plan = stage_queries(fitted, source, source, train=train)
    whole = engine.step_metrics(fitted, pl.collect_all(plan.metrics), plan.metric_keys)
    assert len(got["batches"]) >= 8 and sum(got["batches"]) == table.height
    assert got["keys"] == [*plan.metric_keys[:-1], []]
    fit_free = [{k: v for k, v in s.items() if not k.startswith("fit_group")} for s in json.loads(json.dumps(whole))]
    assert got["steps"] == fit_free
    assert got["rows_out"] == table.height
    assert pl.read_parquet(tmp_path / "out.parquet").equals(plan.output.collect())
    assert any(s.get("unknown", {}).get("city") for s in whole) and any(s.get("outliers") for s in whole)


def test_metric_columns_refuse_steps_that_drop_rows() -> None:
    """Expect: a pipeline with a drop step is refused, naming the step (the streamed run uses the tap there)."""
    fitted = engine.fit(parse_spec({"steps": STEPS}, source="test"), _frame(600, 0))
    with pytest.raises(ValueError, match="outliers/zscore"):
        MetricColumns(fitted.steps)


def test_in_memory_execution_with_metric_columns_equals_the_stage_queries(stage_queries) -> None:
    """Expect: in memory, a pipeline whose steps keep every row reports (metrics beside the output) the same
    step entries and output as the per-stage metric queries on the rows that passed the input schema, and
    keeps the schema's quarantine."""
    spec = parse_spec(
        {
            "input": {"schema": {"columns": {"b": {"dtype": "Float64", "checks": {"le": 2.0}}}}},
            "steps": KEEP_ROWS,
        },
        source="test",
    )
    fitted = engine.fit(spec, _frame(600, 0))
    df = _frame(1_000, 1)
    validated = validation.validate_input(df, spec.input.schema_.compile(), on_invalid_rows="quarantine")
    assert validated.quarantine is not None and validated.quarantine.height > 0
    ex = engine.execute(fitted, df, train=False, validated=validated)

    source = validated.clean.lazy().with_columns(validated.rows.alias(engine.ROW))
    plan = stage_queries(fitted, source, df.lazy().with_row_index(engine.ROW), train=False)
    assert ex.steps == engine.step_metrics(fitted, pl.collect_all(plan.metrics), plan.metric_keys)
    assert ex.output.equals(plan.output.collect())
    assert ex.quarantine is not None and ex.quarantine.height == validated.quarantine.height
    assert ex.output.height + ex.quarantine.height == df.height
