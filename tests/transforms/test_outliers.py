"""Outlier steps: bounds against NumPy/scikit-learn, every action, drop reasons,
JSON round trips, metrics, and isolation-forest parity with scikit-learn."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError
from sklearn.ensemble import IsolationForest
from sklearn.preprocessing import RobustScaler as SkRobustScaler
from sklearn.preprocessing import StandardScaler as SkStandardScaler

from transforms import (
    Fitted,
    FittedBounds,
    FittedIsolationForest,
    IQROutliers,
    IsolationForestOutliers,
    MADOutliers,
    PercentileOutliers,
    ZScoreOutliers,
    registry,
)
from transforms.base import Quantiles
from transforms.fitting import fit_steps
from transforms.outliers.trees import CompiledForest, export_forest

INF = math.inf
NAN = math.nan

# finite values 1..9 and 60 (an outlier); plus null, NaN, +inf and -inf, which no statistic sees
DIRTY = [1.0, 2.0, None, 3.0, NAN, 4.0, 5.0, INF, 6.0, 7.0, -INF, 8.0, 9.0, 60.0]


def finite_values(values: list[float | None]) -> np.ndarray:
    arr = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return arr[np.isfinite(arr)]


def roundtrip(fitted: Fitted) -> Fitted:
    return Fitted.from_dict(json.loads(json.dumps(fitted.to_dict(), allow_nan=False)))


@pytest.fixture
def dirty() -> pl.DataFrame:
    return pl.DataFrame({"x": DIRTY, "i": [1, 2, None, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 200]})


# ---------------------------------------------------------------- bounds vs references


def test_zscore_bounds_match_numpy_and_sklearn(dirty: pl.DataFrame) -> None:
    # mean +/- t * population std of the finite values only
    f = ZScoreOutliers(columns=["x", "i"], threshold=2.0).fit(dirty)
    for j, c in enumerate(["x", "i"]):
        v = finite_values(dirty[c].to_list())
        mean, std = np.nanmean(v), np.nanstd(v, ddof=0)
        sk = SkStandardScaler().fit(v[:, None])
        assert std == pytest.approx(sk.scale_[0], rel=1e-12)
        assert f.lower[j] == pytest.approx(mean - 2 * std, rel=1e-12)
        assert f.upper[j] == pytest.approx(mean + 2 * std, rel=1e-12)


def test_iqr_bounds_match_numpy_and_sklearn(dirty: pl.DataFrame) -> None:
    # q1 - k*IQR, q3 + k*IQR with linear-interpolated quartiles of finite values
    f = IQROutliers(columns=["x", "i"], k=1.5).fit(dirty)
    for j, c in enumerate(["x", "i"]):
        v = finite_values(dirty[c].to_list())
        q1, q3 = np.nanpercentile(v, [25, 75], method="linear")
        sk = SkRobustScaler().fit(v[:, None])
        assert q3 - q1 == pytest.approx(sk.scale_[0], rel=1e-12)
        assert f.lower[j] == pytest.approx(q1 - 1.5 * (q3 - q1), rel=1e-12)
        assert f.upper[j] == pytest.approx(q3 + 1.5 * (q3 - q1), rel=1e-12)


def test_iqr_uses_one_quantile_call_per_column(dirty: pl.DataFrame) -> None:
    # all the statistics of a step are one aggregates dict; IQR: one quantile request per column
    plan = IQROutliers(columns=["x", "i"]).plan(dirty.schema, None)
    assert len(plan.aggregates) == 2
    assert all(isinstance(e, Quantiles) and e.probs == (0.25, 0.75) for e in plan.aggregates.values())


def test_mad_bounds_match_numpy(dirty: pl.DataFrame) -> None:
    # median +/- t * MAD / 0.6745
    f = MADOutliers(columns=["x"], threshold=3.5).fit(dirty)
    v = finite_values(DIRTY)
    med = np.median(v)
    mad = np.median(np.abs(v - med))
    assert f.lower[0] == pytest.approx(med - 3.5 * mad / 0.6745, rel=1e-12)
    assert f.upper[0] == pytest.approx(med + 3.5 * mad / 0.6745, rel=1e-12)
    # the modified z-score of every value agrees with the bounds
    z = 0.6745 * (v - med) / mad
    out = f.transform(pl.DataFrame({"x": v}))
    assert out["x"].to_numpy() == pytest.approx(np.clip(v, f.lower[0], f.upper[0]))
    assert np.array_equal(np.abs(z) > 3.5, (v < f.lower[0]) | (v > f.upper[0]))


def test_mad_zero_falls_back_to_mean_absolute_deviation() -> None:
    # at least half the values equal the median: MAD = 0, use 1.253314 * MeanAD (from the median)
    v = np.array([1.0, 1.0, 1.0, 1.0, 2.0, 10.0])
    f = MADOutliers(columns=["x"], threshold=3.5).fit(pl.DataFrame({"x": v}))
    med = np.median(v)
    assert np.median(np.abs(v - med)) == 0
    half = 3.5 * 1.253314 * np.mean(np.abs(v - med))
    assert (f.lower[0], f.upper[0]) == pytest.approx((med - half, med + half), rel=1e-12)


def test_percentile_bounds_match_numpy(dirty: pl.DataFrame) -> None:
    f = PercentileOutliers(columns=["x", "i"], lower=0.1, upper=0.8).fit(dirty)
    for j, c in enumerate(["x", "i"]):
        lo, hi = np.nanpercentile(finite_values(dirty[c].to_list()), [10, 80], method="linear")
        assert (f.lower[j], f.upper[j]) == pytest.approx((lo, hi), rel=1e-12)


def test_bounds_on_messy_fixture(messy: pl.DataFrame) -> None:
    # the shared messy frame: floats with null/NaN/inf, an int column; target excluded by default
    f = IQROutliers().fit(messy, target="label")
    assert f.columns == ("a", "b", "c")
    for j, c in enumerate(f.columns):
        q1, q3 = np.nanpercentile(finite_values(messy[c].to_list()), [25, 75])
        assert f.lower[j] == pytest.approx(q1 - 1.5 * (q3 - q1), rel=1e-12)


# ---------------------------------------------------------------- edge cases

ALL_DETECTORS = [ZScoreOutliers, IQROutliers, MADOutliers, PercentileOutliers]


@pytest.mark.parametrize("cls", ALL_DETECTORS)
def test_constant_column_has_equal_bounds_and_no_outliers(cls: type) -> None:
    # a constant column (even 0.1, whose mean may round): bounds equal the value, nothing outlying
    df = pl.DataFrame({"x": [0.1] * 7 + [None, NAN]})
    f = cls(columns=["x"], action="flag").fit(df)
    assert f.lower == f.upper == (0.1,)
    assert not f.transform(df)["x__outlier"].any()


@pytest.mark.parametrize("cls", ALL_DETECTORS)
def test_all_missing_column_has_infinite_bounds(cls: type) -> None:
    # no finite value: bounds (-inf, inf); nothing is outlying, clip leaves values alone (inf too)
    df = pl.DataFrame({"x": [None, NAN, INF, -INF]})
    f = cls(columns=["x"]).fit(df)
    assert (f.lower, f.upper) == ((-INF,), (INF,))
    out = f.transform(df)["x"].to_list()
    assert out[0] is None and math.isnan(out[1]) and out[2:] == [INF, -INF]
    again = roundtrip(f)
    assert again.state() == f.state()


@pytest.mark.parametrize("cls", ALL_DETECTORS)
def test_single_row_bounds_are_the_value(cls: type) -> None:
    f = cls(columns=["x"]).fit(pl.DataFrame({"x": [4.0]}))
    assert (f.lower, f.upper) == ((4.0,), (4.0,))
    assert f.transform(pl.DataFrame({"x": [1.0, 4.0, 9.0]}))["x"].to_list() == [4.0, 4.0, 4.0]


@pytest.mark.parametrize("cls", ALL_DETECTORS)
@pytest.mark.parametrize("action", ["clip", "flag", "null", "drop"])
def test_empty_frame(cls: type, action: str) -> None:
    # fitted on no rows: infinite bounds; applying to an empty frame gives an empty frame
    df = pl.DataFrame({"x": []}, schema={"x": pl.Float64})
    f = cls(columns=["x"], action=action).fit(df)
    assert (f.lower, f.upper) == ((-INF,), (INF,))
    out = f.transform(df)
    assert out.height == 0
    assert out.columns == (["x", "x__outlier"] if action == "flag" else ["x"])


# ---------------------------------------------------------------- actions


def fitted_iqr(action: str) -> FittedBounds:
    # bounds of [1..9, 60]: q1=3.25, q3=7.75 -> (-3.5, 14.5)
    f = IQROutliers(columns=["x"], action=action).fit(pl.DataFrame({"x": DIRTY}))
    assert (f.lower, f.upper) == ((-3.5,), (14.5,))
    return f


def test_clip_winsorizes_and_keeps_missing() -> None:
    # clip: values beyond the bounds become the bound; null/NaN stay; +inf -> upper, -inf -> lower
    out = fitted_iqr("clip").transform(pl.DataFrame({"x": [None, NAN, INF, -INF, -10.0, 5.0, 60.0]}))
    got = out["x"].to_list()
    assert got[0] is None and math.isnan(got[1])
    assert got[2:] == [14.5, -3.5, -3.5, 5.0, 14.5]


def test_clip_dtypes() -> None:
    # Float32 keeps its dtype; integers become Float64 (bounds need not be integers)
    df = pl.DataFrame({"f": pl.Series([1.0, 2.0, 3.0, 4.0, 100.0], dtype=pl.Float32), "i": [1, 2, 3, 4, 100]})
    out = IQROutliers(columns=["f", "i"]).fit_transform(df)
    assert out.schema == pl.Schema({"f": pl.Float32, "i": pl.Float64})
    assert out["i"].to_list() == [1.0, 2.0, 3.0, 4.0, 7.0]
    assert out["f"].to_list() == [1.0, 2.0, 3.0, 4.0, 7.0]


def test_flag_adds_boolean_column_missing_is_false() -> None:
    out = fitted_iqr("flag").transform(pl.DataFrame({"x": [None, NAN, INF, -INF, -10.0, 5.0, 60.0]}))
    assert out.columns == ["x", "x__outlier"]
    assert out.schema["x__outlier"] == pl.Boolean
    assert out["x__outlier"].to_list() == [False, False, True, True, True, False, True]
    assert out["x"].to_list()[2:] == [INF, -INF, -10.0, 5.0, 60.0]  # values untouched


def test_null_sets_outliers_to_null_and_keeps_dtype() -> None:
    df = pl.DataFrame({"x": [None, NAN, INF, 5.0, 60.0], "i": [1, 2, 3, 4, 1000]})
    f = IQROutliers(columns=["x", "i"], action="null").fit(
        pl.DataFrame({"x": DIRTY, "i": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]})
    )
    out = f.transform(df)
    got = out["x"].to_list()
    assert got[0] is None and math.isnan(got[1]) and got[2:] == [None, 5.0, None]
    assert out["i"].to_list() == [1, 2, 3, 4, None]
    assert out.schema == df.schema


def test_drop_removes_rows_and_explains_them() -> None:
    df = pl.DataFrame({"x": [1.0, 60.0, None, 5.0, 70.0], "y": [1.0, 2.0, 3.0, 500.0, 400.0]})
    f = IQROutliers(columns=["x", "y"], action="drop").fit(
        pl.DataFrame({"x": DIRTY, "y": [float(v) for v in range(14)]})
    )
    assert f.changes_rows
    assert f.step.plan(df.schema, None).changes_rows
    assert f.transform(df).to_dict(as_series=False) == {"x": [1.0, None], "y": [1.0, 3.0]}
    keep = df.select(f.keep()).to_series().to_list()
    assert keep == [True, False, True, False, False]
    reasons = df.select(f.drop_reasons()).to_series()
    assert reasons.dtype == pl.List(pl.String)
    assert reasons.to_list() == [[], ["x:iqr"], [], ["y:iqr"], ["x:iqr", "y:iqr"]]


@pytest.mark.parametrize(("cls", "method"), [(ZScoreOutliers, "zscore"), (MADOutliers, "mad")])
def test_drop_reason_names_the_method(cls: type, method: str) -> None:
    f = cls(columns=["x"], action="drop").fit(pl.DataFrame({"x": [float(v) for v in range(20)]}))
    reasons = pl.DataFrame({"x": [1e6]}).select(f.drop_reasons()).to_series().to_list()
    assert reasons == [[f"x:{method}"]]


def test_non_drop_actions_keep_every_row() -> None:
    for action in ("clip", "flag", "null"):
        f = fitted_iqr(action)
        assert f.keep() is None and f.drop_reasons() is None and not f.changes_rows


def test_dataframe_in_dataframe_out_lazy_in_lazy_out(dirty: pl.DataFrame) -> None:
    f = ZScoreOutliers(columns=["x"], action="flag").fit(dirty.lazy())
    assert isinstance(f.transform(dirty), pl.DataFrame)
    lazy = f.transform(dirty.lazy())
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(f.transform(dirty))


def test_output_schema_matches_output(dirty: pl.DataFrame) -> None:
    for action in ("clip", "flag", "null", "drop"):
        step = MADOutliers(columns=["x", "i"], action=action)
        assert step.plan(dirty.schema, None).output_schema == step.fit_transform(dirty).schema


# ---------------------------------------------------------------- JSON, metrics, registry


@pytest.mark.parametrize("cls", ALL_DETECTORS)
@pytest.mark.parametrize("action", ["clip", "flag", "null", "drop"])
def test_json_roundtrip_gives_identical_output(cls: type, action: str, messy: pl.DataFrame) -> None:
    df = messy.with_columns(empty=pl.lit(None, dtype=pl.Float64))  # an all-null column: infinite bounds
    f = cls(action=action).fit(df, target="label")
    again = roundtrip(f)
    assert again.state() == f.state()
    assert again.transform(df).equals(f.transform(df))


def test_metrics_count_outliers_and_dropped() -> None:
    df = pl.DataFrame({"x": [1.0, 60.0, None, 5.0, 70.0, INF], "y": [1.0, 2.0, 3.0, 500.0, 400.0, 1.0]})
    fit_df = pl.DataFrame({"x": DIRTY, "y": [float(v) for v in range(14)]})
    f = IQROutliers(columns=["x", "y"], action="drop").fit(fit_df)
    got = df.select(e.sum().alias(k) for k, e in f.metrics(df.schema).items()).row(0, named=True)
    assert got == {"outliers:x": 3, "outliers:y": 2, "dropped": 4}
    flag = IQROutliers(columns=["x", "y"], action="flag").fit(fit_df)
    assert set(flag.metrics(df.schema)) == {"outliers:x", "outliers:y"}


def test_registry_and_params() -> None:
    assert registry.lookup("outliers", "iqr").cls is IQROutliers
    assert registry.lookup("outliers", "zscore").cls is ZScoreOutliers
    assert registry.lookup("outliers", "mad").cls is MADOutliers
    assert registry.lookup("outliers", "percentile").cls is PercentileOutliers
    assert registry.lookup("outliers", "isolation_forest").cls is IsolationForestOutliers
    step = IQROutliers(columns=["x"], k=3.0, action="null")
    assert (step.kind, step.method) == ("outliers", "iqr")
    assert step.params() == {"name": None, "columns": ["x"], "action": "null", "k": 3.0}


def test_parameter_validation() -> None:
    with pytest.raises(ValidationError, match="lower must be < upper"):
        PercentileOutliers(lower=0.9, upper=0.1)
    with pytest.raises(ValidationError):
        ZScoreOutliers(threshold=0)
    with pytest.raises(ValidationError):
        IQROutliers(action="winsorize")
    with pytest.raises(ValidationError, match="clip needs a univariate detector"):
        IsolationForestOutliers(action="clip")
    with pytest.raises(ValidationError):
        IsolationForestOutliers(contamination=0.7)


def test_outlier_steps_fit_in_one_group(dirty: pl.DataFrame) -> None:
    # steps that read columns no earlier step writes share one pass; drop ends a group
    steps = [
        IQROutliers(columns=["x"], action="flag"),
        ZScoreOutliers(columns=["i"], action="drop"),
        MADOutliers(columns=["x"], action="flag"),
    ]
    assert fit_steps(steps, dirty.lazy(), target=None).groups == (0, 0, 1)


# ---------------------------------------------------------------- isolation forest


def blobs(n: int = 400, d: int = 3, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[: n // 20] = rng.uniform(-6, 6, size=(n // 20, d))
    return X


@pytest.mark.parametrize(
    "params",
    [
        {"n_estimators": 100, "contamination": "auto", "seed": 0},
        {"n_estimators": 50, "contamination": 0.05, "seed": 3},
        {"n_estimators": 30, "contamination": 0.1, "seed": 7, "max_samples": 64},
        {"n_estimators": 20, "contamination": 0.02, "seed": 2, "max_samples": 1000},  # > rows: all rows
    ],
)
def test_isolation_forest_parity_with_sklearn(params: dict) -> None:
    # complete data: flags equal sklearn's predict == -1, scores are bitwise equal
    X = blobs()
    df = pl.DataFrame(X, schema=["a", "b", "c"])
    f = IsolationForestOutliers(action="flag", **params).fit(df)
    sk_params = {k: v for k, v in params.items() if k != "seed"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # max_samples > rows
        sk = IsolationForest(random_state=params["seed"], **sk_params).fit(X)
    assert f.offset_ == sk.offset_ and f.max_samples_ == sk.max_samples_
    flags = f.transform(df)["__outlier"].to_numpy()
    assert np.array_equal(flags, sk.predict(X) == -1)
    assert flags.any()
    X_new = np.random.default_rng(9).normal(scale=3, size=(300, 3))
    new_flags = f.transform(pl.DataFrame(X_new, schema=["a", "b", "c"]))["__outlier"].to_numpy()
    assert np.array_equal(new_flags, sk.predict(X_new) == -1)
    forest = CompiledForest(f.trees, f.max_samples_)
    assert np.array_equal(forest.score_samples(X_new), sk.score_samples(X_new))


def test_isolation_forest_subsampled_features_are_mapped() -> None:
    # trees grown on a subset of features index the full input after export
    X = blobs(d=4)
    sk = IsolationForest(n_estimators=20, max_features=2, random_state=0).fit(X)
    forest = CompiledForest(export_forest(sk), sk.max_samples_)
    assert np.array_equal(forest.score_samples(X), sk.score_samples(X))


def test_isolation_forest_missing_rows_are_not_fitted_nor_flagged() -> None:
    # rows with null/NaN/inf are left out of the fit (so it equals sklearn on complete rows);
    # rows with null/NaN are never flagged
    X = blobs()
    df = pl.DataFrame(X, schema=["a", "b", "c"])
    dirty = pl.concat(
        [
            df.head(100),
            pl.DataFrame({"a": [None, NAN, 99.0], "b": [99.0, 99.0, INF], "c": [99.0, 99.0, 0.0]}),
            df.tail(300),
        ]
    )
    f = IsolationForestOutliers(n_estimators=40, contamination=0.05).fit(dirty)
    sk = IsolationForest(n_estimators=40, contamination=0.05, random_state=0).fit(X)
    assert f.fit_rows == 400 and f.offset_ == sk.offset_
    flags = f.transform(dirty)["__outlier"].to_list()
    assert flags[100:102] == [False, False]
    assert flags[102] is True  # +inf is extreme, and scored
    assert np.array_equal(np.array(flags[:100] + flags[103:]), sk.predict(X) == -1)


def test_isolation_forest_on_messy_frame(messy: pl.DataFrame) -> None:
    # default columns (numeric, target excluded), an int column; rows with a missing value are never flagged
    f = IsolationForestOutliers(n_estimators=20, contamination=0.1).fit(messy, target="label")
    assert f.columns == ("a", "b", "c")
    out = f.transform(messy)
    missing = messy.select(pl.col("a").is_null() | pl.col("a").is_nan()).to_series()
    assert not out["__outlier"].filter(missing).any()
    assert out["__outlier"].filter(~missing).any()
    assert roundtrip(f).transform(messy).equals(out)


def test_isolation_forest_actions_and_roundtrip() -> None:
    X = blobs(n=200)
    df = pl.DataFrame(X, schema=["a", "b", "c"]).with_columns(label=pl.lit(1))
    flag = IsolationForestOutliers(n_estimators=25, contamination=0.05).fit(df, target="label")
    assert flag.columns == ("a", "b", "c")
    outlying = flag.transform(df)["__outlier"]
    n_out = int(outlying.sum())
    assert n_out > 0

    # JSON round trip (plain JSON, no pickle): identical state and flags
    again = roundtrip(flag)
    assert isinstance(again, FittedIsolationForest) and again.state() == flag.state()
    assert again.transform(df).equals(flag.transform(df))

    null = IsolationForestOutliers(n_estimators=25, contamination=0.05, action="null").fit(df, target="label")
    out = null.transform(df)
    assert out.schema == df.schema
    assert out.filter(outlying)[["a", "b", "c"]].null_count().row(0) == (n_out, n_out, n_out)
    assert out.filter(~outlying).equals(df.filter(~outlying))

    drop = IsolationForestOutliers(n_estimators=25, contamination=0.05, action="drop").fit(df, target="label")
    assert drop.changes_rows
    lazy = drop.transform(df.lazy())
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(df.filter(~outlying))
    reasons = df.select(drop.drop_reasons()).to_series()
    assert reasons.dtype == pl.List(pl.String)
    assert reasons.filter(outlying).to_list() == [["__row:isolation_forest"]] * n_out
    assert reasons.filter(~outlying).to_list() == [[]] * (200 - n_out)
    got = df.select(e.sum().alias(k) for k, e in drop.metrics(df.schema).items()).row(0, named=True)
    assert got == {"outlying_rows": n_out}  # scored once, not once per column


def test_isolation_forest_without_complete_rows_flags_nothing() -> None:
    # no complete row at fit time: no trees; nothing is outlying
    df = pl.DataFrame({"a": [None, 1.0], "b": [2.0, NAN]})
    f = IsolationForestOutliers().fit(df)
    assert f.trees == () and roundtrip(f).state() == f.state()
    assert f.transform(pl.DataFrame({"a": [1e9], "b": [1e9]}))["__outlier"].to_list() == [False]
    empty = IsolationForestOutliers(action="drop").fit(df.clear())
    assert empty.transform(df).height == 2


def test_isolation_forest_max_fit_rows_samples_with_seed() -> None:
    # more complete rows than max_fit_rows: a seeded sample of exactly max_fit_rows rows
    df = pl.DataFrame(blobs(n=500), schema=["a", "b", "c"])
    step = IsolationForestOutliers(n_estimators=10, max_fit_rows=300, seed=5)
    f1, f2 = step.fit(df), step.fit(df)
    assert f1.fit_rows == 300 and f1 == f2
