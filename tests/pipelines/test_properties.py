"""Properties of the engine on random frames with nulls, NaN and +/-inf (hypothesis).

* ``run`` conserves rows: rows in = rows out + rows quarantined - rows augmented,
  and every quarantined row is a distinct input position;
* ``apply`` of the saved fitted JSON reproduces ``run``'s output exactly (no
  augmentation in the pipeline), through the real files;
* a step never changes a column it was not given.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pipelines import commands, engine
from pipelines.spec import parse_spec, parse_step
from transforms import registry
from transforms.errors import FitError
from transforms.pipeline import FittedPipeline

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

FLOATS = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from([None, math.nan, math.inf, -math.inf, 0.0, 1.0]),
)


@st.composite
def frames(draw: st.DrawFn, min_rows: int = 1, max_rows: int = 30) -> pl.DataFrame:
    n = draw(st.integers(min_rows, max_rows))
    col = lambda elements: draw(st.lists(elements, min_size=n, max_size=n))  # noqa: E731
    return pl.DataFrame(
        {
            "a": col(FLOATS),
            "b": col(FLOATS),
            "c": col(st.one_of(st.none(), st.integers(-1000, 1000))),
            "s": col(st.one_of(st.none(), st.sampled_from(["p", "q", "r"]))),
            "label": col(st.integers(0, 1)),
        },
        schema={"a": pl.Float64, "b": pl.Float64, "c": pl.Int64, "s": pl.String, "label": pl.Int64},
    )


# pipelines without augmentation: apply must reproduce run exactly
PIPELINES: list[dict[str, Any]] = [
    {"steps": [{"kind": "impute", "method": "median", "columns": ["a", "b"]},
               {"kind": "scale", "method": "standard", "columns": ["a", "b", "c"]}]},
    {"steps": [{"kind": "outliers", "method": "iqr", "action": "drop", "columns": ["a"]},
               {"kind": "scale", "method": "robust", "columns": ["a", "b"]},
               {"kind": "encode", "method": "onehot", "columns": ["s"]}]},
    {"steps": [{"kind": "outliers", "method": "zscore", "action": "clip", "threshold": 2.0, "columns": ["a", "b"]},
               {"kind": "impute", "method": "constant", "fill_value": 0, "columns": ["a"]},
               {"kind": "scale", "method": "minmax", "columns": ["a", "b"]},
               {"kind": "encode", "method": "ordinal", "columns": ["s"]}]},
    {"input": {"schema": {"columns": {"c": {"dtype": "Int64", "nullable": True, "checks": {"ge": -500}}}}},
     "steps": [{"kind": "outliers", "method": "mad", "action": "null", "columns": ["b"]},
               {"kind": "impute", "method": "mean", "add_indicator": True, "columns": ["b"]},
               {"kind": "scale", "method": "maxabs", "columns": ["b", "c"]}]},
    {"steps": [{"kind": "outliers", "method": "percentile", "action": "drop", "lower": 0.1, "upper": 0.9,
                "columns": ["b"]},
               {"kind": "impute", "method": "most_frequent", "columns": ["s"]},
               {"kind": "scale", "method": "quantile", "n_quantiles": 10, "columns": ["a"]}]},
]  # fmt: skip
AUGMENTING: list[dict[str, Any]] = [
    {"target": "label", "steps": [{"kind": "impute", "method": "median", "columns": ["a", "b"]},
                                  {"kind": "augment", "method": "oversample", "seed": 3}]},
    {"target": "label", "steps": [{"kind": "outliers", "method": "iqr", "action": "drop", "columns": ["a"]},
                                  {"kind": "augment", "method": "gaussian_noise", "columns": ["a", "b"], "seed": 1}]},
]  # fmt: skip


def _execute(spec_data: dict[str, Any], df: pl.DataFrame) -> engine.Execution:
    spec = parse_spec(spec_data)
    validated = None
    if spec.input.schema_ is not None:
        from pipelines import validation

        validated = validation.validate_input(df, spec.input.schema_.compile())
    fitted = engine.fit(spec, validated.clean if validated else df)
    return engine.execute(fitted, df, train=True, validated=validated)


@SETTINGS
@given(df=frames(), spec=st.sampled_from(PIPELINES + AUGMENTING))
def test_run_conserves_rows(df: pl.DataFrame, spec: dict[str, Any]) -> None:
    try:
        ex = _execute(spec, df)
    except FitError:
        event("a step could not fit the data")
        return  # data a step cannot fit is an exit-1 error, not a lost row
    quarantined = ex.quarantine.height if ex.quarantine is not None else 0
    event(f"quarantined rows: {'some' if quarantined else 'none'}")
    augmented = sum(s["rows_added"] for s in ex.steps)
    assert ex.rows_in == df.height
    assert df.height == ex.output.height + quarantined - augmented
    if ex.quarantine is not None:
        rows = ex.quarantine["__row"].to_list()
        assert len(set(rows)) == len(rows) and all(0 <= r < df.height for r in rows)
        # the quarantine keeps the original values of the input rows
        original = df.with_row_index("__row").filter(pl.col("__row").is_in(rows))
        assert_frame_equal(ex.quarantine.select(original.columns), original, check_dtypes=False)


@SETTINGS
@given(df=frames(), spec=st.sampled_from(PIPELINES))
def test_apply_of_saved_fitted_json_reproduces_run(df: pl.DataFrame, spec: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        df.write_parquet(d / "in.parquet")
        (d / "spec.yaml").write_text(yaml.safe_dump(spec))
        try:
            ran = commands.run(d / "spec.yaml", d / "in.parquet", d / "run.parquet", fitted_path=d / "f.json")
        except FitError:
            event("a step could not fit the data")
            return
        event(f"quarantined rows: {'some' if ran['quarantine']['rows'] else 'none'}")
        json.loads((d / "f.json").read_text())  # plain JSON (no NaN/Infinity literals)
        applied = commands.apply(d / "f.json", d / "in.parquet", d / "apply.parquet")
        assert_frame_equal(pl.read_parquet(d / "apply.parquet"), pl.read_parquet(d / "run.parquet"))
        assert applied["rows"] == ran["rows"]
        assert applied["quarantine"]["rows"] == ran["quarantine"]["rows"]
        # and the library path gives the same frame from the same artifact
        fitted = FittedPipeline.load(d / "f.json")
        if ran["quarantine"]["rows"] == 0:
            assert_frame_equal(fitted.transform(df), pl.read_parquet(d / "run.parquet"))


def _single_steps() -> list[tuple[str, dict[str, Any], list[str]]]:
    """Every non-augmenting kind/method, as (label, step mapping, columns it is given)."""
    extra: dict[tuple[str, str], dict[str, Any]] = {
        ("impute", "constant"): {"fill_value": 0.5},
        ("impute", "group"): {"by": ["s"]},
        ("impute", "knn"): {"n_neighbors": 2},
        ("scale", "quantile"): {"n_quantiles": 10},
        ("outliers", "isolation_forest"): {"n_estimators": 5},
    }
    out = []
    for e in registry.entries():
        if e.kind == "augment":
            continue
        cols = ["s"] if e.kind == "encode" else ["a"]
        base = {"kind": e.kind, "method": e.method, "columns": cols, **extra.get((e.kind, e.method), {})}
        if e.kind == "outliers":
            actions = ["flag"] if e.method == "isolation_forest" else ["clip", "flag", "null", "drop"]
            out.extend((f"{e.kind}/{e.method}/{a}", {**base, "action": a}, cols) for a in actions)
        else:
            out.append((f"{e.kind}/{e.method}", base, cols))
    return out


SINGLE = _single_steps()


@pytest.mark.parametrize(("label", "step", "given_cols"), SINGLE, ids=[s[0] for s in SINGLE])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=frames(min_rows=2, max_rows=25))
def test_step_never_changes_columns_it_was_not_given(
    label: str, step: dict[str, Any], given_cols: list[str], df: pl.DataFrame
) -> None:
    df = df.with_row_index("rid")
    if step["method"] == "log":
        df = df.with_columns(pl.col("a").abs())
    parsed = parse_step(step, where=label)
    try:
        out = parsed.fit(df).transform(df)
    except FitError:
        event("the step could not fit the data")
        return
    untouched = [c for c in df.columns if c not in given_cols]
    assert set(untouched) <= set(out.columns), f"{label} removed a column it was not given"
    # rows may be dropped (outlier drop): compare the rows that remain, by their id
    expected = df.select(untouched).filter(pl.col("rid").is_in(out["rid"].implode()))
    assert_frame_equal(out.select(untouched), expected)


def _trailing_nulls_frame() -> pl.DataFrame:
    """Unsorted values in one chunk, then as many nulls in another (as a query on two threads splits a
    frame): a filter that drops the nulls can keep the first chunk whole, the shape that once let a
    selection reorder the caller's column in place."""
    schema = {"a": pl.Float64, "b": pl.Float64, "c": pl.Int64, "s": pl.String, "label": pl.Int64}
    values = pl.DataFrame(
        {
            "a": [3.0, 0.0, -1.0, 2.0, 0.5, 1.0],
            "b": [0.0, 0.0, 0.0, -1.0, 4.0, 0.0],
            "c": [5, -2, 7, 1, 0, 3],
            "s": ["q", "p", "r", "p", "q", "q"],
            "label": [0, 1, 0, 1, 0, 1],
        },
        schema=schema,
    )
    nulls = pl.DataFrame({"label": [1, 0, 1, 0, 1, 0]}).with_columns(
        *[pl.lit(None, dtype).alias(c) for c, dtype in schema.items() if c != "label"]
    )
    return pl.concat([values, nulls.select(list(schema))], rechunk=False)


@pytest.mark.parametrize(("label", "step", "given_cols"), SINGLE, ids=[s[0] for s in SINGLE])
def test_fit_and_transform_never_modify_the_input(label: str, step: dict[str, Any], given_cols: list[str]) -> None:
    """Expect: the input frame's bytes are the same after a step is fitted on it and applied to it (a
    selection that reordered a column's values in place once reordered the caller's column)."""
    df = _trailing_nulls_frame()
    if step["method"] == "log":
        df = df.with_columns(pl.col("a").abs())
    before = df.write_ipc(None).getvalue()
    parsed = parse_step(step, where=label)
    try:
        parsed.fit(df).transform(df)
    except FitError:
        pytest.skip("the step could not fit the data")
    assert df.write_ipc(None).getvalue() == before


def test_a_pipeline_fit_never_modifies_the_input() -> None:
    """Expect: the example Hypothesis found (median impute -> standard scale; run reordered the output
    against apply): fitting leaves the caller's frame as it was, so run and apply agree."""
    df = _trailing_nulls_frame()
    before = df.write_ipc(None).getvalue()
    spec = parse_spec(PIPELINES[0])
    fitted = engine.fit(spec, df)
    assert df.write_ipc(None).getvalue() == before
    assert_frame_equal(engine.execute(fitted, df, train=True).output, fitted.transform(df))
