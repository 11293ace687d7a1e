"""Encoders: parity with scikit-learn, nulls, unseen categories, dtypes, artifacts."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from sklearn.preprocessing import OneHotEncoder as SkOneHot
from sklearn.preprocessing import OrdinalEncoder as SkOrdinal

from transforms import (
    ColumnError,
    FitError,
    Fitted,
    OneHotEncoder,
    OrdinalEncoder,
    Pipeline,
    StandardScaler,
)

COLS = ["s", "i", "t"]


@pytest.fixture
def train() -> pl.DataFrame:
    """500 rows, no missing: strings (non-ASCII, spaces, case), integers, booleans, a float."""
    rng = np.random.default_rng(0)
    n = 500
    return pl.DataFrame(
        {
            "s": rng.choice(["b", "a", "é", "Z", "c d"], n, p=[0.4, 0.3, 0.15, 0.1, 0.05]).tolist(),
            "i": rng.integers(-3, 4, n),
            "t": rng.random(n) < 0.3,
            "x": rng.normal(size=n),
        }
    )


@pytest.fixture
def test() -> pl.DataFrame:
    """Known and unseen values ('zz', 99) in every encoded column but the boolean."""
    return pl.DataFrame({"s": ["a", "zz", "Z", "é"], "i": [0, 99, -3, 1], "t": [True, False, True, False], "x": 0.0})


def as_objects(df: pl.DataFrame) -> np.ndarray:
    return np.array(df.select(COLS).rows(), dtype=object)


@pytest.mark.parametrize("max_categories", [None, 1, 2, 3, 4])
def test_onehot_matches_sklearn(train, test, max_categories):
    ours = OneHotEncoder(columns=COLS, max_categories=max_categories).fit(train)
    sk = SkOneHot(handle_unknown="ignore", sparse_output=False, max_categories=max_categories)
    sk.fit(as_objects(train))
    out = ours.transform(test)
    encoded = out.drop("x")
    assert encoded.schema == pl.Schema(dict.fromkeys(encoded.columns, pl.UInt8()))
    np.testing.assert_array_equal(encoded.to_numpy().astype(float), sk.transform(as_objects(test)))
    if max_categories is None:  # same names; sklearn calls the other column '<col>_infrequent_sklearn'
        assert encoded.columns == list(sk.get_feature_names_out(COLS))


def test_onehot_other_matches_sklearn_infrequent_if_exist(train, test):
    # with max_categories=3 every column but the boolean has infrequent categories; there
    # "other" (unknowns and infrequent values in <col>__other) is sklearn's infrequent_if_exist
    ours = OneHotEncoder(columns=["s", "i"], max_categories=3, handle_unknown="other").fit(train)
    sk = SkOneHot(handle_unknown="infrequent_if_exist", sparse_output=False, max_categories=3)
    sk.fit(np.array(train.select("s", "i").rows(), dtype=object))
    out = ours.transform(test).drop("t", "x")
    assert out.columns == ["s_a", "s_b", "s__other", "i_-2", "i_2", "i__other"]
    np.testing.assert_array_equal(
        out.to_numpy().astype(float), sk.transform(np.array(test.select("s", "i").rows(), dtype=object))
    )


def test_ordinal_matches_sklearn(train, test):
    ours = OrdinalEncoder(columns=COLS).fit(train)
    sk = SkOrdinal(handle_unknown="use_encoded_value", unknown_value=-1).fit(as_objects(train))
    out = ours.transform(test)
    assert out.columns == test.columns and out.select(COLS).dtypes == [pl.Int64] * 3
    np.testing.assert_array_equal(out.select(COLS).to_numpy().astype(float), sk.transform(as_objects(test)))
    assert out["x"].equals(test["x"])


@pytest.mark.parametrize("dtype", [pl.Categorical(), pl.Enum(["zz", "é", "c d", "b", "a", "Z"])])
def test_categorical_and_enum_are_encoded_like_strings(train, test, dtype):
    # categories sort by their string value, never by a physical (enum) order
    cast = [pl.col("s").cast(dtype)]
    for step in (OneHotEncoder(columns=["s"]), OrdinalEncoder(columns=["s"])):
        expected = step.fit(train).transform(test)
        got = step.fit(train.with_columns(cast)).transform(test.with_columns(cast))
        assert got.equals(expected)


def test_default_columns_are_string_like_without_target(train):
    df = train.with_columns(pl.col("s").alias("label"), pl.col("s").cast(pl.Categorical).alias("c"))
    assert OneHotEncoder().fit(df, target="label").columns == ("s", "c")
    assert OrdinalEncoder().fit(df, target="label").columns == ("s", "c")


def test_onehot_nulls_indicator_only_when_seen_at_fit():
    fitted = OneHotEncoder().fit(pl.DataFrame({"a": ["x", None], "b": ["x", "y"]}))
    out = fitted.transform(pl.DataFrame({"a": [None, "x"], "b": [None, "y"]}))
    # 'a' had nulls at fit: a__null; 'b' did not: a null gives an all-zero row (like sklearn)
    assert out.columns == ["a_x", "a__null", "b_x", "b_y"]
    assert out.rows() == [(0, 1, 0, 0), (1, 0, 0, 1)]


def test_onehot_handle_missing_ignore_gives_zero_rows():
    fitted = OneHotEncoder(handle_missing="ignore").fit(pl.DataFrame({"a": ["x", None, "y"]}))
    assert fitted.transform(pl.DataFrame({"a": [None, "y"]})).rows() == [(0, 0), (0, 1)]


def test_onehot_unknown_other_column():
    fitted = OneHotEncoder(handle_unknown="other").fit(pl.DataFrame({"a": ["x", "y"]}))
    out = fitted.transform(pl.DataFrame({"a": ["z", "x", None]}))
    assert out.columns == ["a_x", "a_y", "a__other"]
    assert out.rows() == [(0, 0, 1), (1, 0, 0), (0, 0, 0)]  # null is missing, not "other"


def test_onehot_in_place_keep_original_and_dtype():
    df = pl.DataFrame({"p": [1.0, 2.0], "a": ["x", "y"], "q": [3, 4]})
    out = OneHotEncoder(drop_original=False, dtype="Boolean").fit_transform(df)
    assert out.columns == ["p", "a", "a_x", "a_y", "q"]
    assert out["a_x"].to_list() == [True, False] and out["a"].equals(df["a"])


def test_onehot_integer_and_boolean_names():
    df = pl.DataFrame({"i": [2, -1, 2], "t": [True, False, None]})
    out = OneHotEncoder(columns=["i", "t"]).fit_transform(df)
    assert out.columns == ["i_-1", "i_2", "t_False", "t_True", "t__null"]


def test_ordinal_missing_value():
    df = pl.DataFrame({"a": ["y", None, "x"]})
    assert OrdinalEncoder().fit_transform(df)["a"].to_list() == [1, None, 0]
    assert OrdinalEncoder(missing_value=-2, unknown_value=9).fit(df).transform(pl.DataFrame({"a": [None, "q"]}))[
        "a"
    ].to_list() == [-2, 9]


def test_ordinal_codes_must_not_collide():
    df = pl.DataFrame({"a": ["x", "y"]})
    with pytest.raises(FitError, match="unknown_value=1 is also the code of category 'y'"):
        OrdinalEncoder(unknown_value=1).fit(df)
    with pytest.raises(FitError, match="missing_value=0"):
        OrdinalEncoder(missing_value=0).fit(df)
    assert OrdinalEncoder(unknown_value=2).fit(df).transform(pl.DataFrame({"a": ["q"]}))["a"].to_list() == [2]


def test_empty_frame():
    # no data, no categories: one-hot writes no column (the original is dropped),
    # ordinal maps every value to unknown_value
    empty = pl.DataFrame({"a": pl.Series([], dtype=pl.String), "x": pl.Series([], dtype=pl.Float64)})
    onehot = OneHotEncoder().fit(empty)
    assert onehot.transform(empty).columns == ["x"]
    assert onehot.transform(pl.DataFrame({"a": ["q"], "x": [1.0]})).columns == ["x"]
    ordinal = OrdinalEncoder().fit(empty)
    assert ordinal.transform(pl.DataFrame({"a": ["q", None]}))["a"].to_list() == [-1, None]
    assert ordinal.transform(empty).schema == pl.Schema({"a": pl.Int64, "x": pl.Float64})


@pytest.mark.parametrize("step", [OneHotEncoder(columns=COLS, max_categories=3), OrdinalEncoder(columns=COLS)])
def test_eager_and_lazy(train, test, step):
    fitted = step.fit(train.lazy())
    lazy = fitted.transform(test.lazy())
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(fitted.transform(test))


@pytest.mark.parametrize(
    "step",
    [
        OneHotEncoder(columns=COLS, max_categories=3, handle_unknown="other"),
        OneHotEncoder(columns=["t"], dtype="Float32", drop_original=False),
        OrdinalEncoder(columns=COLS, missing_value=-5),
    ],
)
def test_json_round_trip(train, test, step):
    fitted = step.fit(train.with_columns(pl.when(pl.col("i") == 0).then(None).otherwise(pl.col("s")).alias("s")))
    again = Fitted.from_dict(json.loads(json.dumps(fitted.to_dict(), allow_nan=False)))
    assert again == fitted
    assert again.transform(test).equals(fitted.transform(test))


def test_float_columns_rejected(train):
    for step in (OneHotEncoder(columns=["x"]), OrdinalEncoder(columns=["x"])):
        with pytest.raises(ColumnError, match="'x' has dtype Float64"):
            step.fit(train)


def test_onehot_name_collision_is_an_error():
    df = pl.DataFrame({"a": ["x", "y"], "a_x": [1, 2]})
    with pytest.raises(ColumnError, match="'a_x' would collide"):
        OneHotEncoder(columns=["a"]).fit(df)


def test_metrics_count_unknown_values(train, test):
    fitted = OneHotEncoder(columns=COLS).fit(train)
    metrics = fitted.metrics(test.schema)
    got = test.select(e.sum().alias(k) for k, e in metrics.items()).row(0, named=True)
    assert got == {"unknown:s": 1, "unknown:i": 1, "unknown:t": 0}


def test_in_a_pipeline_before_a_scaler(train, test):
    pipe = Pipeline([OneHotEncoder(columns=["s"]), StandardScaler(columns=["x"])])
    fitted = pipe.fit(train)
    out = fitted.transform(test)
    assert out.columns[:5] == ["s_Z", "s_a", "s_b", "s_c d", "s_é"]
    assert fitted.fit_groups == (0, 1)  # one-hot's output is known only after fit
