"""The engine with an augmentation step: its rows are generated once and feed output, metrics and quarantine."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines import engine, gpu_run
from pipelines.engine_spec import EngineSpec
from pipelines.spec import parse_spec
from transforms.augment import smote as smote_module

SPEC = {
    "target": "label",
    "steps": [
        {"kind": "impute", "method": "mean", "columns": ["x", "y"]},
        {"kind": "augment", "method": "smote", "seed": 3, "columns": ["x", "y"]},
        {"kind": "scale", "method": "standard", "columns": ["x", "y"]},
        {"kind": "outliers", "method": "zscore", "threshold": 2.5, "action": "drop", "columns": ["x", "y"]},
    ],
}


def _data() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=n)
    x[rng.integers(0, n, 20)] = np.nan
    y = rng.normal(size=n) * 3
    y[5] = 40.0  # dropped by the z-score step
    return pl.DataFrame({"x": x, "y": y, "label": (rng.random(n) < 0.1).astype(np.int64)}).with_columns(
        pl.col("x").fill_nan(None)
    )


def _count_calls(monkeypatch, name: str, owner: object = smote_module) -> list[int]:
    """Calls of ``owner.<name>`` (a function of a module, or a method of a class), one item each, from now on."""
    calls: list[int] = []
    real = getattr(owner, name)

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls


def test_smote_runs_once_and_the_run_equals_the_library(monkeypatch) -> None:
    """Expect: one neighbour search per run (not one for the output and one for the metrics), and the
    output equal to the library's transform of the same fitted pipeline, with rows conserved."""
    calls = _count_calls(monkeypatch, "smote_samples")
    df = _data()
    spec = parse_spec(SPEC)
    fitted = engine.fit(spec, df)
    calls.clear()
    ex = engine.execute(fitted, df, train=True)
    assert len(calls) == 1
    assert_frame_equal(ex.output, fitted.transform(df, train=True))
    added = sum(s["rows_added"] for s in ex.steps)
    assert added > 0 and ex.quarantine is not None and ex.quarantine.height > 0
    assert df.height == ex.output.height + ex.quarantine.height - added
    # the metrics after SMOTE count the augmented rows
    assert ex.steps[2]["rows_in"] == df.height + added


def test_streamed_run_searches_neighbours_once(monkeypatch, tmp_path) -> None:
    """Expect: streamed, the later fit groups' passes, the output pass and the quarantine pass (the z-score
    step after SMOTE drops rows) each read SMOTE's new rows once, with one neighbour search among them (5
    without the step's memory of its last search); the same rows out as in memory."""
    import yaml

    from pipelines import streaming

    calls = _count_calls(monkeypatch, "nearest_neighbours")
    reads = _count_calls(monkeypatch, "__call__", smote_module._LastSearch)  # each read asks the remembered search
    df = _data()
    df.write_parquet(tmp_path / "in.parquet")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({**SPEC, "engine": {"streaming": True}}))
    report = streaming.run(tmp_path / "spec.yaml", tmp_path / "in.parquet", tmp_path / "out.parquet")
    assert len(calls) == 1
    # the fit passes of the scale and the z-score steps, the output pass, and one quarantine pass (two
    # filters of the stage, one for the input's rows and one for SMOTE's, would read it twice)
    assert len(reads) == 4
    assert report["quarantine"]["rows"] > 0 and report["rows"]["augmented"] > 0
    ex = engine.execute(engine.fit(parse_spec(SPEC), df), df, train=True)
    assert report["rows"]["out"] == ex.output.height


@pytest.mark.parametrize("regime", ["in memory", "gpu path (numpy)"])
def test_added_rows_a_later_step_drops_are_quarantined_as_they_were_dropped(regime: str) -> None:
    """Expect: rows SMOTE added and the z-score step then dropped are quarantined without ``__row`` and with
    the values they had at the dropping step (not their seed row's input values); the input's dropped rows
    keep their ``__row`` and input values."""
    df = _data().with_columns(  # the extreme row 5 in the minority: rows made from it are extreme too
        label=pl.when(pl.int_range(pl.len()) == 5).then(1).otherwise(pl.col("label"))
    )
    fitted = engine.fit(parse_spec(SPEC), df)
    if regime == "in memory":
        ex = engine.execute(fitted, df, train=True)
    else:
        ex, backend = gpu_run.execute(fitted, df, EngineSpec(), train=True, backend="numpy")
        assert backend["used"] == "numpy"
    q = ex.quarantine
    assert q is not None
    added = q.filter(pl.col(engine.ROW).is_null())
    from_input = q.filter(pl.col(engine.ROW).is_not_null())

    stage = df.lazy()
    for f in fitted.steps[:3]:
        stage = f.apply(stage, train=True)
    made = stage.collect().slice(df.height)  # SMOTE's rows follow the input's
    expected = made.filter(~fitted.steps[3].keep()).sort("x", "y")
    assert added.height == expected.height > 0
    assert_frame_equal(added.select(df.columns).sort("x", "y"), expected.select(df.columns))
    assert from_input.height > 0
    assert_frame_equal(from_input.select(df.columns), df[from_input[engine.ROW].to_list()])
