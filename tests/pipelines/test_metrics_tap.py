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
from pipelines.metrics_tap import MetricColumns
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


def test_the_sink_adds_up_every_row_it_writes_and_writes_no_metric_column(tmp_path: Path) -> None:
    """Expect: sunk through :meth:`MetricColumns.sink`, the written file is the plain output (no hidden
    column) and the metrics are added up over every row, once."""
    spec = parse_spec({"steps": [{"kind": "impute", "method": "mean", "columns": ["a"]}]}, source="test")
    df = _frame(5_000, 0)
    fitted = engine.fit(spec, df)
    metrics = MetricColumns()
    query = engine.transformed(fitted.steps, df.lazy(), train=False, metrics=metrics)
    out = tmp_path / "out.parquet"
    metrics.sink(query, lambda q: q.sink_parquet(out, lazy=True)).collect(engine="streaming")
    assert pl.read_parquet(out).equals(engine.transformed(fitted.steps, df.lazy(), train=False).collect())
    assert metrics.frames()[0].to_dicts() == [{"__rows": 5_000, "imputed:a": df["a"].is_nan().sum()}]


def test_a_query_with_only_hidden_columns_is_still_counted() -> None:
    """Expect: with no written column to carry the sums, the sink adds them up with a batch function."""
    metrics = MetricColumns()
    fitted = engine.fit(parse_spec({"steps": [{"kind": "impute", "method": "mean"}]}, source="t"), _frame(50, 0))
    query = engine.transformed(fitted.steps, _frame(20, 0).lazy(), train=False, metrics=metrics)
    hidden_only = query.select(pl.col("^__metric.*$"))
    assert metrics.sink(hidden_only, lambda q: q.collect(engine="streaming")).width == 0
    assert metrics.rows_out == 20 and metrics.frames()[0]["imputed:a"].item() == _frame(20, 0)["a"].is_nan().sum()


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
from pipelines import engine, io, validation
from pipelines.metrics_tap import MetricColumns
from transforms.pipeline import FittedPipeline

fitted, source, train, out = FittedPipeline.load(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", sys.argv[4]
metrics, batches = MetricColumns(), {"output": [], "dropped": []}
add, attach_dropped = metrics.add, metrics.attach_dropped
metrics.add = lambda batch: (batches["output"].append(batch.height), add(batch))[1]
metrics.attach_dropped = lambda q, f: attach_dropped(q, f).map_batches(
    lambda b: (batches["dropped"].append(b.height), b)[1], streamable=True
)
clean = pl.scan_parquet(source).with_row_index(engine.ROW)
dropped, columns = engine.steps_dropped(fitted, clean, clean, train=train, metrics=metrics)
query = engine.transformed(fitted.steps, clean, train=train, metrics=metrics)
metrics.sink(query, lambda q: q.sink_parquet(out, lazy=True)).collect(engine="streaming")
if dropped is not None:
    engine.quarantine_of([dropped], columns).sink_parquet(out + ".q.parquet")
steps = engine.step_metrics(fitted, metrics.frames(), metrics.keys)
print(json.dumps({"batches": batches, "steps": steps, "rows_out": metrics.rows_out, "keys": metrics.keys}))
"""


@pytest.mark.parametrize("steps", ["keep rows", "drop rows"])
@pytest.mark.parametrize("train", [False, True])
def test_metric_columns_over_many_batches_equal_the_whole_tables(
    tmp_path: Path, train: bool, steps: str, stage_queries
) -> None:
    """Expect: streamed in ~10 batches (``POLARS_IDEAL_MORSEL_SIZE=100``, a fresh process), the output with
    the metrics as columns beside it is the plain output (no metric column written), and the metrics added up
    batch by batch, over the output's rows and (with a drop step) over the quarantine pass's dropped rows,
    equal the in-memory plan's whole-table metric queries (rows per stage included), for every step kind."""
    spec = parse_spec({"steps": KEEP_ROWS if steps == "keep rows" else STEPS}, source="test")
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
    output = plan.output.collect()
    assert len(got["batches"]["output"]) >= 8 and sum(got["batches"]["output"]) == output.height
    assert got["keys"] == [*plan.metric_keys[:-1], []]
    fit_free = [{k: v for k, v in s.items() if not k.startswith("fit_group")} for s in json.loads(json.dumps(whole))]
    assert got["steps"] == fit_free
    assert got["rows_out"] == output.height
    assert pl.read_parquet(tmp_path / "out.parquet").equals(output)
    assert any(s.get("unknown", {}).get("city") for s in whole) and any(s.get("outliers") for s in whole)
    if steps == "drop rows":  # each dropped row was added up once, in the quarantine pass
        assert sum(s["rows_dropped"] for s in whole) == sum(got["batches"]["dropped"]) > 0
        assert output.height < table.height
        quarantined = pl.read_parquet(tmp_path / "out.parquet.q.parquet")
        assert quarantined.height == table.height - output.height
        assert quarantined.drop(engine.ROW, engine.REASONS, engine.STAGE).equals(
            table[quarantined[engine.ROW].to_list()]
        )
    else:
        assert output.height == table.height and not got["batches"]["dropped"]


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
