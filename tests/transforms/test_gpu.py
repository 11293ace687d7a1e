"""CPU parity of the GPU path: the device code evaluated with NumPy against the Polars path.

Every GPU-capable step (and chains of them, fused into one kernel per column) runs
on frames with nulls, NaN, +/-inf, constant and all-null columns, Float32 and
integer columns, and 0-row frames. Imputation, clipping, null-out, flags, drops,
ordinal codes and every count are compared for equality; affine scaling too
(the same IEEE operations in the same order); log and Yeo-Johnson to 1e-12
relative (libm and CUDA's log1p/exp/log may differ in the last ulp).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from transforms import (
    IQROutliers,
    LogScaler,
    MADOutliers,
    MaxAbsScaler,
    MinMaxScaler,
    OrdinalEncoder,
    PercentileOutliers,
    Pipeline,
    PowerScaler,
    RobustScaler,
    SimpleImputer,
    StandardScaler,
    ZScoreOutliers,
)
from transforms.gpu.execute import run
from transforms.gpu.planner import plan_steps

NUMERIC = ["a", "b", "f32", "i", "const", "empty", "small"]


def messy(n: int = 300, seed: int = 0) -> pl.DataFrame:
    """Floats with nulls, NaN, +/-inf and outliers; Float32; Int64 and Int8 with nulls; constant; all-null."""
    rng = np.random.default_rng(seed)
    a = rng.normal(10, 3, n)
    a[rng.random(n) < 0.05] = np.nan
    a[:3] = [1e6, -1e6, np.inf]
    b = rng.lognormal(1, 1, n)
    b[5] = -np.inf
    b[6] = np.inf
    f32 = rng.normal(-2, 0.7, n).astype(np.float32)
    f32[7] = np.nan
    ints = rng.integers(-50, 50, n)
    small = rng.integers(0, 5, n).astype(np.int8)
    codes = rng.integers(0, 6, n)
    df = pl.DataFrame(
        {
            "a": a,
            "b": b,
            "f32": pl.Series(f32, dtype=pl.Float32),
            "i": ints,
            "const": np.full(n, 4.5),
            "empty": pl.Series([None] * n, dtype=pl.Float64),
            "small": pl.Series(small, dtype=pl.Int8),
            "code": codes,
            "s": rng.choice(["x", "y"], n).tolist(),
        }
    )
    idx = pl.int_range(pl.len())
    return df.with_columns(
        pl.when(idx % 7 == 0).then(None).otherwise(pl.col("a")).alias("a"),
        pl.when(idx % 11 == 0).then(None).otherwise(pl.col("b")).alias("b"),
        pl.when(idx % 5 == 0).then(None).otherwise(pl.col("f32")).alias("f32"),
        pl.when(idx % 13 == 0).then(None).otherwise(pl.col("i")).alias("i"),
        pl.when(idx % 17 == 0).then(None).otherwise(pl.col("small")).alias("small"),
        pl.when(idx % 19 == 0).then(None).otherwise(pl.col("code")).alias("code"),
    )


def assert_same(gpu: pl.DataFrame, ref: pl.DataFrame, *, rel: float = 0.0) -> None:
    """Same columns, dtypes, null masks, NaN positions; values equal (or within ``rel``, relative to max(|ref|, 1))."""
    assert gpu.columns == ref.columns
    assert gpu.schema == ref.schema
    assert gpu.height == ref.height
    for c in ref.columns:
        g, r = gpu[c], ref[c]
        assert g.is_null().to_list() == r.is_null().to_list(), c
        if r.dtype.is_float():
            gv = g.fill_null(0).to_numpy()
            rv = r.fill_null(0).to_numpy()
            assert np.array_equal(np.isnan(gv), np.isnan(rv)), c
            ok = ~np.isnan(rv)
            if rel == 0.0:
                assert np.array_equal(gv[ok], rv[ok]), (c, gv[ok][gv[ok] != rv[ok]][:5], rv[ok][gv[ok] != rv[ok]][:5])
            else:
                fin = ok & np.isfinite(rv)
                assert np.array_equal(gv[ok & ~fin], rv[ok & ~fin]), c
                err = np.abs(gv[fin] - rv[fin]) / np.maximum(np.abs(rv[fin]), 1.0)
                assert err.max(initial=0.0) <= rel, (c, err.max())
        else:
            assert g.to_list() == r.to_list(), c


def check(steps: list, df: pl.DataFrame, *, train: bool = False, rel: float = 0.0, chunks=(None, 16, 24)) -> None:
    """Fit on ``df``; the NumPy-evaluated GPU path equals ``FittedPipeline.transform`` and the Polars metrics."""
    fitted = Pipeline(steps).fit(df)
    ref = fitted.transform(df, train=train)
    polars = run(fitted, df, plan_steps(fitted, df.schema, backend="polars"), train=train)
    plan = plan_steps(fitted, df.schema, backend="numpy", train=train)
    assert all(p.where == "gpu" for p in plan.placements), [p.reason for p in plan.placements]
    for chunk in chunks:
        gpu = run(fitted, df, plan, train=train, chunk=chunk)
        assert_same(gpu.output, ref, rel=rel)
        assert [s.metrics for s in gpu.steps] == [s.metrics for s in polars.steps]
        assert [(s.rows_in, s.rows_out) for s in gpu.steps] == [(s.rows_in, s.rows_out) for s in polars.steps]
        assert [d.index for d in gpu.dropped] == [d.index for d in polars.dropped]
        for g, p in zip(gpu.dropped, polars.dropped, strict=True):
            assert_same(g.frame, p.frame)
    empty = df.clear()
    out = run(fitted, empty, plan_steps(fitted, empty.schema, backend="numpy"), train=train)
    assert_same(out.output, fitted.transform(empty, train=train))


@pytest.mark.parametrize("strategy", ["mean", "median", "most_frequent", "constant"])
@pytest.mark.parametrize("indicator", [False, True])
def test_simple_impute(strategy: str, indicator: bool) -> None:
    check([SimpleImputer(columns=NUMERIC, strategy=strategy, add_indicator=indicator)], messy())


@pytest.mark.parametrize("fill", [-1, 2.5, 0])
def test_constant_fill_values(fill: float) -> None:
    check([SimpleImputer(columns=NUMERIC, strategy="constant", fill_value=fill)], messy())


@pytest.mark.parametrize("cls", [ZScoreOutliers, IQROutliers, MADOutliers, PercentileOutliers])
@pytest.mark.parametrize("action", ["clip", "flag", "null", "drop"])
def test_outliers(cls: type, action: str) -> None:
    check([cls(columns=NUMERIC, action=action)], messy())


@pytest.mark.parametrize(
    "step",
    [
        StandardScaler(columns=NUMERIC),
        StandardScaler(columns=NUMERIC, with_mean=False),
        MinMaxScaler(columns=NUMERIC),
        MinMaxScaler(columns=NUMERIC, feature_range=(-2.0, 3.0), clip=True),
        RobustScaler(columns=NUMERIC),
        RobustScaler(columns=NUMERIC, quantile_range=(10.0, 90.0), unit_variance=True),
        MaxAbsScaler(columns=NUMERIC),
    ],
    ids=lambda s: f"{s.label}",
)
def test_affine_scalers_exact(step) -> None:
    check([step], messy())


def test_log_scaler() -> None:
    df = messy().with_columns(pl.col("b").clip(0.0), pl.col("small").abs())
    fitted = Pipeline([LogScaler(columns=["b", "small", "const", "empty"])]).fit(df)
    # applied to new data with values <= -1 (and -inf): null, counted
    new = df.with_columns(pl.when(pl.int_range(pl.len()) % 4 == 0).then(-3.0).otherwise(pl.col("b")).alias("b"))
    ref = fitted.transform(new)
    gpu = run(fitted, new, plan_steps(fitted, new.schema, backend="numpy"), chunk=40)
    assert_same(gpu.output, ref, rel=1e-12)
    polars = run(fitted, new, plan_steps(fitted, new.schema, backend="polars"))
    assert gpu.steps[0].metrics == polars.steps[0].metrics
    assert gpu.steps[0].metrics["invalid_log_input:b"] > 0


@pytest.mark.parametrize("standardize", [True, False])
def test_power_scaler(standardize: bool) -> None:
    check(
        [PowerScaler(columns=["a", "b", "f32", "i", "const", "empty", "small"], standardize=standardize)],
        messy(),
        rel=1e-12,
    )


def test_ordinal_integer_codes() -> None:
    df = messy()
    fitted = Pipeline([OrdinalEncoder(columns=["code", "small"], missing_value=-2)]).fit(df.head(150))
    new = df.with_columns(pl.col("code") + pl.int_range(pl.len()) % 3)  # unseen codes
    gpu = run(fitted, new, plan_steps(fitted, new.schema, backend="numpy"), chunk=32)
    assert_same(gpu.output, fitted.transform(new))
    polars = run(fitted, new, plan_steps(fitted, new.schema, backend="polars"))
    assert gpu.steps[0].metrics == polars.steps[0].metrics
    check([OrdinalEncoder(columns=["code"])], df)


def test_fused_chain_with_drops() -> None:
    """Impute -> clip -> drop -> scale -> null-out -> power: blocks around the drops, counts after drops."""
    steps = [
        SimpleImputer(columns=["a", "i", "f32"], strategy="median", add_indicator=True),
        IQROutliers(columns=["a", "b"], k=1.0, action="clip"),
        ZScoreOutliers(columns=["a", "f32"], threshold=1.5, action="drop"),
        RobustScaler(columns=["a", "b", "i"]),
        MADOutliers(columns=["b", "small"], action="null"),
        PercentileOutliers(columns=["i", "f32"], lower=0.1, upper=0.9, action="drop"),
        PercentileOutliers(columns=["small"], action="flag"),
        StandardScaler(columns=["a", "small"]),
    ]
    check(steps, messy(500))


def test_benchmark_pipeline() -> None:
    cols = ["a", "b", "f32", "i"]
    steps = [SimpleImputer(columns=cols, strategy="median"), IQROutliers(columns=cols), RobustScaler(columns=cols)]
    check(steps, messy(1000), chunks=(None, 8, 1000, 4096))


def test_sliced_input_with_offset() -> None:
    """Arrow arrays with a non-zero (and non-multiple-of-8) offset are read correctly."""
    df = messy(200)
    fitted = Pipeline([SimpleImputer(columns=NUMERIC, strategy="mean"), StandardScaler(columns=NUMERIC)]).fit(df)
    part = df.slice(13, 150)
    gpu = run(fitted, part, plan_steps(fitted, part.schema, backend="numpy"), chunk=16)
    assert_same(gpu.output, fitted.transform(part))


def test_untouched_and_string_columns_pass_through() -> None:
    df = messy()
    fitted = Pipeline([ZScoreOutliers(columns=["a"], action="drop", threshold=1.0)]).fit(df)
    gpu = run(fitted, df, plan_steps(fitted, df.schema, backend="numpy"), chunk=64)
    assert_same(gpu.output, fitted.transform(df))
    assert gpu.output["s"].dtype == pl.String


def test_float32_precision_error_bound() -> None:
    """precision: float32 (float32 compute, results cast back): the documented bound on well-scaled data.

    Measured here (NumPy float32 math): impute/clip/affine <= 2.5e-7, Yeo-Johnson <= 1.1e-6,
    log1p <= 1.1e-7, relative to max(|y|, 1); asserted with margin.
    """
    rng = np.random.default_rng(3)
    n = 20000
    df = pl.DataFrame({"x": rng.normal(5.0, 2.0, n), "y": rng.lognormal(0.0, 1.0, n), "z": rng.lognormal(0.0, 1.0, n)})
    cases = [
        (
            [
                SimpleImputer(columns=["x", "y"], strategy="median"),
                IQROutliers(columns=["x", "y"]),
                RobustScaler(columns=["x"]),
                StandardScaler(columns=["y"]),
            ],
            1e-6,
        ),
        ([PowerScaler(columns=["y"])], 5e-6),
        ([LogScaler(columns=["z"])], 1e-6),
    ]
    for steps, bound in cases:
        fitted = Pipeline(steps).fit(df)
        ref = fitted.transform(df)
        out = run(fitted, df, plan_steps(fitted, df.schema, backend="numpy", precision="float32")).output
        assert out.schema == ref.schema
        worst = 0.0
        for c in ("x", "y", "z"):
            err = np.abs(out[c].to_numpy() - ref[c].to_numpy()) / np.maximum(np.abs(ref[c].to_numpy()), 1.0)
            worst = max(worst, float(err.max()))
        assert 0.0 < worst <= bound, (steps[0].label, worst)
    assert not math.isnan(float(out["x"].sum()))
