"""The in-memory engine runs each step once, also when steps drop rows (one query per segment)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines import engine
from pipelines.spec import parse_spec
from transforms.impute import knn as knn_module

SPEC = {
    "target": "label",
    "steps": [
        {"kind": "outliers", "method": "zscore", "threshold": 2.5, "action": "drop", "columns": ["x", "y"]},
        {"kind": "impute", "method": "knn", "n_neighbors": 3, "columns": ["x", "y"]},
        {"kind": "outliers", "method": "iqr", "k": 1.0, "action": "drop", "columns": ["x", "y"]},
        {"kind": "impute", "method": "mean", "columns": ["x", "y"], "add_indicator": True},
        {"kind": "scale", "method": "standard", "columns": ["x", "y"]},
    ],
}


def _data(n: int = 300) -> pl.DataFrame:
    rng = np.random.default_rng(7)
    x = rng.normal(size=n)
    y = rng.normal(size=n) * 2
    x[rng.integers(0, n, 25)] = np.nan
    y[[4, 9]] = [30.0, -25.0]  # dropped by the z-score step
    return pl.DataFrame({"x": x, "y": y, "label": (rng.random(n) < 0.3).astype(np.int64)}).with_columns(
        pl.col("x").fill_nan(None)
    )


@pytest.fixture
def knn_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = knn_module._impute_batch

    def spy(batch, **kwargs):
        calls.append(batch.len())
        return real(batch, **kwargs)

    monkeypatch.setattr(knn_module, "_impute_batch", spy)
    return calls


def test_a_step_after_a_drop_step_runs_once(knn_calls) -> None:
    """Expect: the KNN imputer (between two drop steps) imputes each row once per run; the output equals
    the library's transform; the steps' rows and the quarantine match the step-by-step counts."""
    df, spec = _data(), parse_spec(SPEC)
    fitted = engine.fit(spec, df)
    knn_calls.clear()
    ex = engine.execute(fitted, df, train=True)
    zscore_kept = ex.steps[0]["rows_out"]
    assert sum(knn_calls) == zscore_kept  # per-stage metric queries imputed them again for each later stage
    assert_frame_equal(ex.output, fitted.transform(df, train=True))
    rows = [s["rows_in"] for s in ex.steps] + [ex.steps[-1]["rows_out"]]
    stage, expected = df.lazy(), [df.height]
    for f in fitted.steps:
        stage = f.apply(stage, train=True)
        expected.append(stage.select(pl.len()).collect().item())
    assert rows == expected and rows[1] < rows[0] and rows[3] < rows[2]
    assert ex.quarantine is not None and ex.quarantine.height == df.height - ex.output.height
    assert ex.quarantine["__stage"].unique(maintain_order=True).to_list() == ["outliers/zscore", "outliers/iqr"]


def test_the_segments_give_the_per_stage_queries_metrics_and_quarantine(stage_queries) -> None:
    """Expect: step entries, output and quarantine equal to those of the per-stage plan (what the
    streaming regime builds), collected whole."""
    df, spec = _data(), parse_spec(SPEC)
    fitted = engine.fit(spec, df)
    ex = engine.execute(fitted, df, train=False)
    source = df.lazy().with_row_index(engine.ROW)
    plan = stage_queries(fitted, source, source, train=False)
    output, *frames, dropped = pl.collect_all([plan.output, *plan.metrics, plan.dropped])
    assert ex.steps == engine.step_metrics(fitted, frames, plan.metric_keys)
    assert_frame_equal(ex.output, output)
    assert_frame_equal(ex.quarantine, engine.quarantine_of([dropped], df.columns))
