"""Impute steps: scikit-learn parity, fill/group references, schema, JSON round trip, metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError
from sklearn.impute import KNNImputer as SkKNNImputer
from sklearn.impute import SimpleImputer as SkSimpleImputer

from transforms import ColumnError, ConfigError, FillImputer, Fitted, GroupImputer, KNNImputer, SimpleImputer, registry
from transforms.base import schema_of

NAN = float("nan")
INF = float("inf")


def _numeric_frame(n: int = 200, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    a = np.round(rng.normal(10, 3, n), 1)  # rounded: ties for most_frequent
    b = rng.integers(0, 5, n).astype(float)
    a[rng.random(n) < 0.2] = np.nan
    b[rng.random(n) < 0.2] = np.nan
    df = pl.DataFrame({"a": a, "b": b, "const": np.full(n, 7.0)})
    # nulls as well as NAN
    return df.with_columns(pl.when(pl.int_range(pl.len()) % 7 == 0).then(None).otherwise(pl.col("a")).alias("a"))


def _np(df: pl.DataFrame, cols: list[str]) -> np.ndarray:
    return np.array(df.select(cols).to_numpy(), dtype=np.float64)


def _roundtrip(fitted: Fitted) -> Fitted:
    return Fitted.from_dict(json.loads(json.dumps(fitted.to_dict(), allow_nan=False)))


def _metrics(fitted: Fitted, df: pl.DataFrame) -> dict[str, int]:
    return df.select(e.sum().alias(k) for k, e in fitted.metrics(df.schema).items()).row(0, named=True)


# --------------------------------------------------------------------------- SimpleImputer


@pytest.mark.parametrize("strategy", ["mean", "median", "most_frequent", "constant"])
def test_simple_numeric_parity(strategy: str) -> None:
    train, test = _numeric_frame(seed=1), _numeric_frame(seed=2)
    cols = ["a", "b", "const"]
    fitted = SimpleImputer(strategy=strategy).fit(train)
    sk = SkSimpleImputer(strategy=strategy).fit(_np(train, cols))
    statistics = np.asarray(sk.statistics_, dtype=float)
    np.testing.assert_allclose(np.array(fitted.values, dtype=float), statistics, rtol=1e-13)
    out = fitted.transform(test)
    assert out.schema == test.schema
    np.testing.assert_allclose(_np(out, cols), sk.transform(_np(test, cols)), rtol=1e-13)


def test_simple_statistics_exact_for_median_and_mode() -> None:
    df = pl.DataFrame({"x": [3.0, 1.0, None, 2.0, 2.0, NAN, 1.0, 10.0]})
    assert SimpleImputer(strategy="median").fit(df).values == (2.0,)
    assert SimpleImputer(strategy="most_frequent").fit(df).values == (1.0,)  # tie 1/2: smallest
    assert SimpleImputer(strategy="mean").fit(df).values == (19.0 / 6,)


@pytest.mark.parametrize("strategy", ["most_frequent", "constant"])
def test_simple_string_parity(strategy: str) -> None:
    train = pl.DataFrame({"s": ["b", None, "a", "c", "b", "a", None, "c"]})
    test = pl.DataFrame({"s": [None, "z", None]})
    fitted = SimpleImputer(columns=["s"], strategy=strategy).fit(train)
    sk = SkSimpleImputer(strategy=strategy, missing_values=None).fit(train.to_numpy().astype(object))
    assert list(fitted.values) == list(sk.statistics_)
    out = fitted.transform(test)
    assert out["s"].to_list() == sk.transform(test.to_numpy().astype(object))[:, 0].tolist()
    assert out.schema == test.schema


def test_simple_constant_fill_values_and_dtypes() -> None:
    df = pl.DataFrame({"i": [1, None], "f": [None, 2.0], "s": [None, "x"], "flag": [None, True]})
    out = SimpleImputer(columns=["i", "f"], strategy="constant").fit_transform(df)
    assert out.schema == df.schema
    assert out["i"].to_list() == [1, 0] and out["f"].to_list() == [0.0, 2.0]
    assert SimpleImputer(columns=["s"], strategy="constant").fit_transform(df)["s"].to_list() == ["missing_value", "x"]
    assert SimpleImputer(columns=["flag"], strategy="constant").fit_transform(df)["flag"].to_list() == [False, True]
    assert SimpleImputer(columns=["s"], strategy="constant", fill_value="?").fit_transform(df)["s"].to_list() == [
        "?",
        "x",
    ]
    out = SimpleImputer(columns=["i"], strategy="constant", fill_value=0.5).fit_transform(df)
    assert out.schema["i"] == pl.Float64 and out["i"].to_list() == [1.0, 0.5]
    with pytest.raises(ConfigError, match="fill_value"):
        SimpleImputer(columns=["i", "s"], strategy="constant", fill_value="?").fit(df)


def test_simple_categorical_and_boolean_most_frequent() -> None:
    df = pl.DataFrame({"c": ["x", "y", "y", None], "flag": [True, None, False, True]}).with_columns(
        pl.col("c").cast(pl.Categorical)
    )
    out = SimpleImputer(columns=["c", "flag"], strategy="most_frequent").fit_transform(df)
    assert out.schema == df.schema
    assert out["c"].cast(pl.String).to_list() == ["x", "y", "y", "y"]
    assert out["flag"].to_list() == [True, True, False, True]


def test_simple_inf_is_kept_and_ignored_by_statistics() -> None:
    df = pl.DataFrame({"x": [1.0, INF, -INF, None, 3.0, NAN]})
    for strategy, expected in [("mean", 2.0), ("median", 2.0), ("most_frequent", 1.0)]:
        fitted = SimpleImputer(strategy=strategy).fit(df)
        assert fitted.values == (expected,)
        assert fitted.transform(df)["x"].to_list() == [1.0, INF, -INF, expected, 3.0, expected]


def test_simple_all_missing_column_is_kept_unchanged() -> None:
    df = pl.DataFrame({"x": [None, NAN, INF], "i": pl.Series([None, None, None], dtype=pl.Int64)})
    for strategy in ["mean", "median", "most_frequent"]:
        fitted = SimpleImputer(strategy=strategy).fit(df)
        assert fitted.values == (None, None)
        out = fitted.transform(df)
        assert out["x"].is_nan().to_list() == [None, True, False]
        assert out["i"].null_count() == 3
    assert SimpleImputer(strategy="mean").fit(df).transform(df).schema["i"] == pl.Float64


def test_simple_int_columns() -> None:
    df = pl.DataFrame({"i": [1, 2, None, 2]})
    out = SimpleImputer(strategy="mean").fit_transform(df)
    assert out.schema["i"] == pl.Float64 and out["i"].to_list() == [1.0, 2.0, 5 / 3, 2.0]
    out = SimpleImputer(strategy="most_frequent").fit_transform(df)
    assert out.schema["i"] == pl.Int64 and out["i"].to_list() == [1, 2, 2, 2]
    f32 = pl.DataFrame({"x": pl.Series([1.0, None], dtype=pl.Float32)})
    assert SimpleImputer(strategy="median").fit_transform(f32).schema["x"] == pl.Float32


def test_simple_single_row_and_empty_frame() -> None:
    one = pl.DataFrame({"x": [4.0]})
    fitted = SimpleImputer(strategy="median").fit(one)
    assert fitted.values == (4.0,)
    assert fitted.transform(pl.DataFrame({"x": [None]}, schema={"x": pl.Float64}))["x"].to_list() == [4.0]
    empty = pl.DataFrame(schema={"x": pl.Float64, "s": pl.String})
    for strategy in ["mean", "median", "most_frequent"]:
        fitted = SimpleImputer(columns=["x"], strategy=strategy, add_indicator=True).fit(empty)
        assert fitted.values == (None,)
        out = fitted.transform(empty)
        assert out.height == 0 and out.schema == pl.Schema({"x": pl.Float64, "s": pl.String, "x__missing": pl.Boolean})


def test_simple_errors_and_registry() -> None:
    df = pl.DataFrame({"s": ["a", None]})
    with pytest.raises(ColumnError, match="numeric"):
        SimpleImputer(columns=["s"], strategy="mean").fit(df)
    with pytest.raises(ValidationError):
        SimpleImputer(strategy="mean", fill_value=1)
    for method in ["mean", "median", "most_frequent", "constant"]:
        entry = registry.lookup("impute", method)
        assert entry.cls is SimpleImputer and entry.fixed == {"strategy": method}
        assert SimpleImputer(strategy=method).method == method


def test_simple_one_fit_plan_batches_all_columns() -> None:
    df = _numeric_frame()
    plan = SimpleImputer(strategy="median").plan(df.schema, None)
    assert set(plan.aggregates) == {"a", "b", "const"} and not plan.queries


# --------------------------------------------------------------------------- indicator, metrics, frames, JSON

STEPS = [
    SimpleImputer(strategy="mean", add_indicator=True),
    SimpleImputer(strategy="median", add_indicator=True),
    SimpleImputer(strategy="most_frequent", add_indicator=True),
    SimpleImputer(strategy="constant", fill_value=-1.0, add_indicator=True),
    FillImputer(direction="forward", add_indicator=True),
    FillImputer(direction="backward", by="g", order_by="t", limit=2, add_indicator=True),
    GroupImputer(by="g", strategy="mean", add_indicator=True),
    GroupImputer(by=["g", "h"], add_indicator=True),
    KNNImputer(n_neighbors=3, weights="distance", add_indicator=True),
]


def _mixed_frame(seed: int = 0, n: int = 60) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    x[rng.random(n) < 0.3] = np.nan
    y = rng.integers(0, 10, n).astype(float)
    y[rng.random(n) < 0.3] = np.nan
    return pl.DataFrame(
        {
            "g": rng.choice(["p", "q", "r"], n),
            "h": rng.integers(0, 2, n).astype(np.int32),
            "t": rng.permutation(n),
            "x": x,
            "y": y,
        }
    ).with_columns(
        pl.when(pl.col("t") % 5 == 0).then(None).otherwise(pl.col("x")).alias("x"),
        pl.col("t").cast(pl.Float64),
    )


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.label)
def test_indicator_schema_frames_roundtrip_metrics(step) -> None:
    train, test = _mixed_frame(0), _mixed_frame(1)
    fitted = step.fit(train)
    out = fitted.transform(test)
    assert isinstance(out, pl.DataFrame)
    # schema predicted by the plan, indicators appended in column order
    assert out.schema == step.plan(train.schema, None).output_schema
    assert out.columns[-2:] == ["x__missing", "y__missing"]
    for c in ["x", "y"]:
        expected = test[c].is_null() | test[c].is_nan().fill_null(True)
        assert out[f"{c}__missing"].to_list() == expected.to_list()
    assert out.select(pl.col("x", "y").is_nan().any()).row(0) == (False, False)
    # LazyFrame -> LazyFrame
    lazy = fitted.transform(test.lazy())
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(out)
    assert schema_of(lazy) == out.schema
    # JSON round trip gives identical output
    again = _roundtrip(fitted)
    assert again == fitted or again.to_dict() == fitted.to_dict()
    assert again.transform(test).equals(out)
    # metrics: missing values of the input
    missing = {c: test[c].is_null() | test[c].is_nan().fill_null(True) for c in fitted.columns}
    expected = {f"imputed:{c}": int(m.sum()) for c, m in missing.items()}
    assert _metrics(fitted, test) == expected
    # no leftover helper columns, row count kept
    assert out.height == test.height


def test_default_columns_leave_out_target_and_keys() -> None:
    df = _mixed_frame()
    assert SimpleImputer().fit(df, target="y").columns == ("h", "t", "x")
    assert FillImputer(by="g", order_by="t").fit(df).columns == ("h", "x", "y")
    assert GroupImputer(by="h").fit(df).columns == ("t", "x", "y")
    with pytest.raises(ColumnError, match="by"):
        GroupImputer(by="h", columns=["h", "x"]).fit(df)
    with pytest.raises(ColumnError, match="order_by"):
        FillImputer(order_by="nope").fit(df)


# --------------------------------------------------------------------------- FillImputer


def _fill_reference(x: list, keys: list | None, order: list | None, direction: str, limit: int | None) -> list:
    """Straightforward per-row reference: walk each group in (stable) order."""
    n = len(x)
    idx = sorted(range(n), key=lambda i: order[i]) if order is not None else list(range(n))
    if direction == "backward":
        idx = idx[::-1]
    out = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in x]
    last: dict = {}
    run: dict = {}
    for i in idx:
        k = keys[i] if keys is not None else None
        if out[i] is not None:
            last[k], run[k] = out[i], 0
        elif k in last:
            run[k] += 1
            if limit is None or run[k] <= limit:
                out[i] = last[k]
    return out


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("by", [None, "g"])
@pytest.mark.parametrize("order_by", [None, "t"])
@pytest.mark.parametrize("limit", [None, 1])
def test_fill_matches_reference(direction: str, by: str | None, order_by: str | None, limit: int | None) -> None:
    rng = np.random.default_rng(3)
    n = 300
    x = rng.normal(size=n)
    x[rng.random(n) < 0.5] = np.nan
    g = rng.choice(["a", "b", None], n).tolist()
    t = rng.integers(0, 40, n)  # many ties: stable order expected
    df = pl.DataFrame({"g": g, "t": t, "x": x}).with_columns(
        pl.when(pl.col("t") % 3 == 0).then(None).otherwise(pl.col("x")).alias("x")
    )
    step = FillImputer(columns=["x"], direction=direction, by=by, order_by=order_by, limit=limit)
    out = step.fit_transform(df)
    expected = _fill_reference(
        df["x"].to_list(), g if by else None, df["t"].to_list() if order_by else None, direction, limit
    )
    assert out["x"].to_list() == expected
    assert out.drop("x").equals(df.drop("x"))  # order and other columns untouched


def test_fill_any_dtype_and_leading_missing() -> None:
    df = pl.DataFrame({"s": [None, "a", None, "b", None]})
    assert FillImputer(columns=["s"]).fit_transform(df)["s"].to_list() == [None, "a", "a", "b", "b"]
    assert FillImputer(columns=["s"], direction="backward").fit_transform(df)["s"].to_list() == [
        "a",
        "a",
        "b",
        "b",
        None,
    ]
    assert FillImputer(columns=["s"]).fit(df).reads() == ("s",)
    assert FillImputer(columns=["s"], by="s2", order_by="o").model_dump()["by"] == "s2"


def test_fill_reads_include_keys() -> None:
    df = _mixed_frame()
    fitted = FillImputer(columns=["x"], by=["g", "h"], order_by="t").fit(df)
    assert fitted.reads() == ("x", "g", "h", "t")
    assert FillImputer(columns=["x"], by=["g", "h"], order_by="t").plan(df.schema, None).reads == ("x", "g", "h", "t")
    with pytest.raises(ColumnError, match="lacks"):
        fitted.transform(df.drop("t"))


# --------------------------------------------------------------------------- GroupImputer


def _group_reference(train: pl.DataFrame, test: pl.DataFrame, by: list[str], col: str, strategy: str) -> list:
    """NumPy reference: per-group statistic of finite values, else the global one."""
    stat = np.mean if strategy == "mean" else np.median

    def finite(values: np.ndarray) -> np.ndarray:
        return values[np.isfinite(values)]

    values = np.array(train[col].to_numpy(), dtype=float)
    glob = stat(finite(values)) if finite(values).size else None
    keys = list(zip(*(train[k].to_list() for k in by), strict=True))
    groups: dict = {}
    for key in set(keys):
        mask = np.array([k == key for k in keys])
        vals = finite(values[mask])
        if vals.size:
            groups[key] = stat(vals)
    out = []
    test_keys = list(zip(*(test[k].to_list() for k in by), strict=True))
    for key, v in zip(test_keys, test[col].to_list(), strict=True):
        if v is None or math.isnan(v):
            v = groups.get(key, glob)
        out.append(None if v is None else float(v))
    return out


@pytest.mark.parametrize("strategy", ["mean", "median"])
@pytest.mark.parametrize("by", [["g"], ["g", "h"]])
def test_group_matches_reference(strategy: str, by: list[str]) -> None:
    train, test = _mixed_frame(0, 200), _mixed_frame(1, 100)
    # an all-missing group in train for y, and groups unseen at fit time in test
    train = train.with_columns(pl.when(pl.col("g") == "r").then(None).otherwise(pl.col("y")).alias("y"))
    test = test.with_columns(pl.when(pl.col("t") < 10).then(pl.lit("new")).otherwise(pl.col("g")).alias("g"))
    fitted = GroupImputer(columns=["x", "y"], by=by, strategy=strategy).fit(train)
    out = fitted.transform(test)
    for c in ["x", "y"]:
        np.testing.assert_allclose(
            np.array(out[c].to_list(), dtype=float),
            np.array(_group_reference(train, test, by, c, strategy), dtype=float),
            rtol=1e-12,
        )
    assert out.drop("x", "y").equals(test.drop("x", "y"))


def test_group_null_keys_inf_and_int_columns() -> None:
    train = pl.DataFrame(
        {"k": ["a", "a", None, None, "b"], "v": [1, 3, 10, None, None], "w": [INF, 2.0, 4.0, 6.0, 8.0]}
    )
    test = pl.DataFrame({"k": [None, "a", "b", "c"], "v": [None, None, None, None], "w": [None, INF, NAN, None]})
    fitted = GroupImputer(by="k", strategy="mean").fit(train)
    out = fitted.transform(test)
    assert out.schema["v"] == pl.Float64
    # null key is a group; "b" has no v -> global mean (14 / 3); "c" is unseen
    assert out["v"].to_list() == [10.0, 2.0, 14 / 3, 14 / 3]
    assert out["w"].to_list() == [5.0, INF, 8.0, 5.0]
    assert fitted.keys == ((None, "a", "b"),)


def test_group_categorical_key_and_all_missing_column() -> None:
    train = pl.DataFrame({"k": ["a", "b", "a"], "v": [1.0, 2.0, None], "e": [None, NAN, None]}).with_columns(
        pl.col("k").cast(pl.Categorical)
    )
    fitted = GroupImputer(by="k").fit(train)
    out = fitted.transform(train)
    assert out["v"].to_list() == [1.0, 2.0, 1.0]
    assert out["e"].null_count() == 3
    assert _roundtrip(fitted).transform(train).equals(out)


# --------------------------------------------------------------------------- KNNImputer


def _knn_frames(seed: int = 0, n: int = 80) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)

    def make(m: int) -> pl.DataFrame:
        data = rng.normal(size=(m, 4))
        data[:, 3] = np.round(data[:, 3] * 2)  # ties in distance
        data[rng.random((m, 4)) < 0.25] = np.nan
        return pl.DataFrame(data, schema=["a", "b", "c", "d"])

    train = make(n).with_columns(pl.when(pl.col("a") > 1).then(None).otherwise(pl.col("b")).alias("b"))
    return train, make(n // 2)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("n_neighbors", [1, 3, 5])
def test_knn_sklearn_parity(weights: str, n_neighbors: int) -> None:
    train, test = _knn_frames()
    cols = ["a", "b", "c", "d"]
    fitted = KNNImputer(n_neighbors=n_neighbors, weights=weights).fit(train)
    expected = SkKNNImputer(n_neighbors=n_neighbors, weights=weights).fit(_np(train, cols)).transform(_np(test, cols))
    np.testing.assert_array_equal(_np(fitted.transform(test), cols), expected)
    np.testing.assert_array_equal(_np(_roundtrip(fitted).transform(test), cols), expected)


def test_knn_empty_column_inf_and_sampling() -> None:
    train, test = _knn_frames(1)
    train = train.with_columns(pl.lit(None, dtype=pl.Float64).alias("e"))
    test = test.with_columns(pl.Series("e", [1.0, None] * (test.height // 2)))
    fitted = KNNImputer(n_neighbors=2).fit(train)
    out = fitted.transform(test)
    sk = SkKNNImputer(n_neighbors=2).fit(_np(train, list("abcde"))).transform(_np(test, list("abcde")))
    np.testing.assert_array_equal(_np(out, list("abcd")), sk)  # sklearn drops the empty column "e"
    assert out["e"].to_list() == test["e"].to_list()  # we keep it, unchanged
    # inf: not missing, kept; ignored in the reference set
    inf_train = train.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(INF).otherwise(pl.col("a")).alias("a"))
    assert KNNImputer().fit(inf_train).reference[0][0] is None
    inf_test = test.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(INF).otherwise(pl.col("a")).alias("a"))
    assert KNNImputer().fit(train).transform(inf_test)["a"][0] == INF
    # a sample of max_fit_rows rows, seeded, in data order
    small = KNNImputer(max_fit_rows=10, seed=3).fit(train)
    assert len(small.reference) == 10
    assert small.reference == KNNImputer(max_fit_rows=10, seed=3).fit(train).reference
    all_rows = KNNImputer().fit(train).reference
    positions = [all_rows.index(r) for r in small.reference]
    assert positions == sorted(positions)


def test_knn_int_columns_single_row_and_empty() -> None:
    df = pl.DataFrame({"i": [1, None, 3], "f": [1.0, 1.0, 3.0]})
    out = KNNImputer(n_neighbors=1).fit_transform(df)
    assert out.schema["i"] == pl.Float64 and out["i"].to_list() == [1.0, 1.0, 3.0]
    one = KNNImputer().fit(pl.DataFrame({"a": [1.0], "b": [2.0]}))
    assert one.transform(pl.DataFrame({"a": [None, 5.0], "b": [7.0, None]})).rows() == [(1.0, 7.0), (5.0, 2.0)]
    empty = pl.DataFrame(schema={"a": pl.Float64})
    fitted = KNNImputer().fit(empty)
    assert fitted.reference == ()
    assert fitted.transform(pl.DataFrame({"a": [None, 1.0]}))["a"].to_list() == [None, 1.0]
    assert fitted.transform(empty).height == 0


def test_fit_groups_key_columns_are_not_written() -> None:
    from transforms.fitting import fit_steps

    df = _mixed_frame()
    steps = [
        FillImputer(columns=["x"], by="g", order_by="t"),
        GroupImputer(columns=["y"], by="g"),  # reads g, which the fill only orders by: same pass
        SimpleImputer(columns=["x"], strategy="mean"),  # reads x, which the fill writes: next pass
    ]
    result = fit_steps(steps, df.lazy(), target=None)
    assert result.groups == (0, 0, 1)
    filled = steps[0].fit(df).transform(df)
    assert result.fitted[2].values == (filled["x"].mean(),)
