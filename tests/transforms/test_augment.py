"""Augmentation: training-only rows, seeds, the mark column, parity with imbalanced-learn."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import polars as pl
import pytest
from imblearn.over_sampling import SMOTE as ImbSMOTE
from imblearn.over_sampling import RandomOverSampler as ImbOversampler
from sklearn.neighbors import NearestNeighbors

from transforms import (
    MARK_COLUMN,
    SMOTE,
    ColumnError,
    ConfigError,
    FitError,
    Fitted,
    GaussianNoise,
    Mixup,
    Pipeline,
    RandomOversampler,
    StandardScaler,
)


@pytest.fixture
def data() -> pl.DataFrame:
    """600 rows, 3 imbalanced classes (400/150/50), two float features, an int, a string id."""
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], [400, 150, 50])
    return pl.DataFrame(
        {
            "id": [f"r{i}" for i in range(600)],
            "f1": rng.normal(y, 1.0),
            "f2": rng.normal(-y, 0.5),
            "n": rng.integers(0, 20, 600),
            "y": y,
        }
    )


def binary(data: pl.DataFrame) -> pl.DataFrame:
    return data.filter(pl.col("y") < 2)


STEPS = [
    GaussianNoise(copies=2, seed=3),
    RandomOversampler(seed=3),
    SMOTE(seed=3),
    Mixup(seed=3, copies=2),
]
IDS = ["gaussian_noise", "oversample", "smote", "mixup"]


def classes(df: pl.DataFrame) -> dict:
    return dict(df.group_by("y").len().iter_rows())


def imblearn_classes(sampler, df: pl.DataFrame, cols: list[str]) -> dict:
    _, y = sampler.fit_resample(df.select(cols).to_numpy(), df["y"].to_numpy())
    return dict(Counter(y.tolist()))


@pytest.mark.parametrize("step", STEPS, ids=IDS)
def test_serving_returns_the_frame_unchanged(data, step):
    fitted = step.fit(data, target="y")
    floats = data.with_columns(pl.col("n", "y").cast(pl.Float64))  # mixup writes mixed columns as floats
    expected = floats if isinstance(step, Mixup) else data
    assert fitted.transform(data).equals(expected)
    assert fitted.transform(data.drop("y")).equals(expected.drop("y"))  # serving needs no target


@pytest.mark.parametrize("step", STEPS, ids=IDS)
def test_training_appends_rows_after_the_originals(data, step):
    out = step.fit(data, target="y").transform(data, train=True)
    assert out.height > data.height and out.columns == data.columns
    original = out.head(data.height)
    if isinstance(step, Mixup):
        original = original.with_columns(pl.col("n", "y").cast(pl.Int64))
    assert original.equals(data)


@pytest.mark.parametrize("step", STEPS, ids=IDS)
def test_seeded_and_reproducible(data, step):
    one = step.fit(data, target="y").transform(data, train=True)
    assert one.equals(step.fit(data, target="y").transform(data, train=True))
    other = step.model_copy(update={"seed": 4}).fit(data, target="y").transform(data, train=True)
    assert not one.equals(other)


@pytest.mark.parametrize("step", STEPS, ids=IDS)
def test_mark_column_in_both_modes(data, step):
    fitted = step.model_copy(update={"mark": True}).fit(data, target="y")
    served = fitted.transform(data)
    assert served.columns == [*data.columns, MARK_COLUMN] and not served[MARK_COLUMN].any()
    out = fitted.transform(data, train=True)
    assert out[MARK_COLUMN].dtype == pl.Boolean
    assert out[MARK_COLUMN].to_list() == [False] * data.height + [True] * (out.height - data.height)


def test_second_augment_keeps_the_first_mark(data):
    pipe = Pipeline([RandomOversampler(mark=True), GaussianNoise()], target="y")
    out = pipe.fit(data).transform(data, train=True)
    assert out.columns == [*data.columns, MARK_COLUMN]
    assert out.height == 2 * 1200 and out[MARK_COLUMN].sum() == 1200 - 600 + 1200


@pytest.mark.parametrize("step", STEPS, ids=IDS)
def test_eager_and_lazy(data, step):
    fitted = step.fit(data.lazy(), target="y")
    lazy = fitted.transform(data.lazy(), train=True)
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(fitted.transform(data, train=True))


@pytest.mark.parametrize("step", STEPS, ids=IDS)
def test_json_round_trip(data, step):
    fitted = step.fit(data, target="y")
    again = Fitted.from_dict(json.loads(json.dumps(fitted.to_dict(), allow_nan=False)))
    assert again.to_dict() == fitted.to_dict() and again.state() == fitted.state()
    assert again.transform(data, train=True).equals(fitted.transform(data, train=True))


# -- oversample ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.5, 0.55, 0.7, 1.0])
def test_oversample_counts_equal_imblearn(data, ratio):
    df = binary(data)
    ours = RandomOversampler(target="y", ratio=ratio).fit_transform(df)
    _, y = ImbOversampler(sampling_strategy=ratio, random_state=0).fit_resample(
        df.select("f1").to_numpy(), df["y"].to_numpy()
    )
    assert classes(ours) == dict(Counter(y.tolist()))


def test_oversample_multiclass_equals_imblearn_not_majority(data):
    ours = RandomOversampler(target="y").fit_transform(data)
    _, y = ImbOversampler(sampling_strategy="not majority").fit_resample(
        data.select("f1").to_numpy(), data["y"].to_numpy()
    )
    assert classes(ours) == dict(Counter(y.tolist())) == {0: 400, 1: 400, 2: 400}


def test_oversample_copies_whole_rows_of_the_class(data):
    out = RandomOversampler(target="y").fit_transform(data).tail(600)
    assert out.join(data, on=data.columns, how="anti").height == 0  # every new row is an original row
    assert out.select(pl.col("id").str.slice(1).cast(pl.Int64).ge(400)).to_series().sum() == 250 + 350


def test_oversample_string_categorical_and_null_labels():
    df = pl.DataFrame({"x": range(6), "y": ["a", "a", "a", "b", None, None]})
    # null labels are kept but never sampled
    assert RandomOversampler(target="y").fit_transform(df)["y"].value_counts().sort("y").rows() == [
        (None, 2),
        ("a", 3),
        ("b", 3),
    ]
    cat = df.with_columns(pl.col("y").cast(pl.Categorical))
    assert RandomOversampler(target="y").fit_transform(cat).height == 8


# -- smote ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.5, 0.55, 1.0])
def test_smote_counts_equal_imblearn(data, ratio):
    df = binary(data)
    ours = SMOTE(target="y", ratio=ratio, columns=["f1", "f2"]).fit_transform(df)
    _, y = ImbSMOTE(sampling_strategy=ratio, random_state=0).fit_resample(
        df.select("f1", "f2").to_numpy(), df["y"].to_numpy()
    )
    assert classes(ours) == dict(Counter(y.tolist()))


def test_smote_multiclass_counts_equal_imblearn(data):
    ours = SMOTE(target="y", columns=["f1", "f2"]).fit_transform(data)
    assert classes(ours) == imblearn_classes(ImbSMOTE(), data, ["f1", "f2"])


@pytest.mark.parametrize("k", [1, 5])
def test_smote_points_lie_on_segments_to_nearest_neighbours(data, k):
    cols = ["f1", "f2"]
    out = SMOTE(target="y", columns=cols, k_neighbors=k, seed=11).fit_transform(data)
    new = out.tail(out.height - data.height)
    for label in (1, 2):
        members = data.filter(pl.col("y") == label)
        x = members.select(cols).to_numpy()
        neighbours = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x, return_distance=False)[:, 1:]
        made = new.filter(pl.col("y") == label)
        # the string id is copied from the seed row: it tells which sample each point started from
        seed_pos = made.join(members.with_row_index("pos"), on="id", how="left")["pos"].to_numpy()
        start = x[seed_pos]
        towards = x[neighbours[seed_pos]] - start[:, None, :]  # (points, k, features)
        step = made.select(cols).to_numpy() - start
        u = np.einsum("pkf,pf->pk", towards, step) / np.einsum("pkf,pkf->pk", towards, towards)
        residual = np.linalg.norm(step[:, None, :] - u[..., None] * towards, axis=2)
        on_segment = (residual < 1e-9) & (u >= -1e-12) & (u <= 1 + 1e-12)
        assert on_segment.any(axis=1).all()
        assert (made["n"].to_numpy() == members["n"].to_numpy()[seed_pos]).all()  # not a feature: copied


def test_smote_statistically_like_imblearn(data):
    # same recipe, different random streams: the synthetic minority points have close moments
    df = binary(data)
    cols = ["f1", "f2"]
    ours = SMOTE(target="y", columns=cols, seed=5).fit_transform(df).tail(250).select(cols).to_numpy()
    x, _ = ImbSMOTE(random_state=5).fit_resample(df.select(cols).to_numpy(), df["y"].to_numpy())
    theirs = x[len(df) :]
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours.mean(axis=0), theirs.mean(axis=0), atol=0.15)
    np.testing.assert_allclose(ours.std(axis=0), theirs.std(axis=0), rtol=0.2)


def test_smote_integer_features_keep_their_dtype(data):
    out = SMOTE(target="y", columns=["f1", "n"]).fit_transform(data)
    assert out.schema == data.schema


def test_smote_k_capped_by_class_size():
    df = pl.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 10.0, 12.0], "y": [0, 0, 0, 0, 1, 1]})
    out = SMOTE(target="y").fit_transform(df)  # k=5 but class 1 has 2 rows: k becomes 1
    assert out.tail(2)["x"].is_between(10.0, 12.0).all()


def test_smote_errors(data):
    with pytest.raises(ConfigError, match=r"augment/smote: needs a target column; set `target:` on the step"):
        SMOTE().fit(data)
    with pytest.raises(ConfigError, match="augment/oversample: needs a target column"):
        RandomOversampler().fit(data)
    with pytest.raises(FitError, match="single-class target"):
        SMOTE(target="y").fit(data.filter(pl.col("y") == 0))
    # no rows at all (e.g. every row quarantined): nothing to balance, so nothing is added
    empty = SMOTE(target="y").fit(data.head(0))
    assert empty.transform(data.head(0), train=True).height == 0
    one = pl.DataFrame({"x": [0.0, 1.0, 2.0], "y": [0, 0, 1]})
    with pytest.raises(FitError, match="class 1 of 'y' has a single row"):
        SMOTE(target="y").fit(one)
    holes = data.with_columns(pl.when(pl.col("id") == "r590").then(float("nan")).otherwise(pl.col("f1")).alias("f1"))
    with pytest.raises(FitError, match=r"'f1' has 1 missing or infinite value\(s\) in minority class 2; impute first"):
        SMOTE(target="y").fit(holes)
    # missing values in the majority class are fine: no point is generated from it
    SMOTE(target="y").fit(data.with_columns(pl.when(pl.col("id") == "r0").then(None).otherwise(pl.col("f1"))))
    with pytest.raises(ColumnError, match="target 'f1' has dtype Float64"):
        SMOTE(target="f1").fit(data)
    with pytest.raises(ColumnError, match="'nope' is not in the data"):
        SMOTE(target="nope").fit(data)


def test_pipeline_target_and_fit_on_augmented_rows(data):
    # the scaler after SMOTE is fitted on the augmented rows (training mode while fitting)
    pipe = Pipeline([SMOTE(columns=["f1", "f2"]), StandardScaler(columns=["f1"])], target="y")
    fitted = pipe.fit(data)
    out = fitted.transform(data, train=True)
    assert out.height == 1200
    assert abs(out["f1"].mean()) < 1e-9 and abs(out["f1"].std(ddof=0) - 1) < 1e-9
    assert fitted.transform(data.drop("y")).height == 600


# -- gaussian noise ------------------------------------------------------------------------------------


def test_noise_scale_relative_to_column_std(data):
    big = pl.concat([data] * 20)
    out = GaussianNoise(columns=["f1", "f2"], std=0.1).fit_transform(big)
    noise = out.tail(big.height).select("f1", "f2").to_numpy() - big.select("f1", "f2").to_numpy()
    expected = 0.1 * big.select(pl.col("f1", "f2").std(ddof=0)).to_numpy()[0]
    np.testing.assert_allclose(noise.std(axis=0), expected, rtol=0.05)
    assert abs(noise.mean()) < 0.01


def test_noise_defaults_missing_integers_and_copies(data):
    df = data.with_columns(
        pl.when(pl.col("id") == "r1").then(None).otherwise(pl.col("f1")).alias("f1"),
        pl.when(pl.col("id") == "r2").then(float("nan")).otherwise(pl.col("f2")).alias("f2"),
    )
    fitted = GaussianNoise(copies=3).fit(df, target="y")
    assert fitted.columns == ("f1", "f2", "n")  # numeric, target excluded
    out = fitted.transform(df, train=True)
    assert out.height == 4 * 600 and out.schema == df.schema  # integer columns get rounded noise
    copies = out.tail(1800)
    assert copies["f1"].null_count() == 3 and copies["f2"].is_nan().sum() == 3  # missing stays missing
    assert copies["y"].equals(pl.concat([df["y"]] * 3)) and copies["id"].equals(pl.concat([df["id"]] * 3))


def test_noise_constant_and_empty_columns():
    df = pl.DataFrame({"c": [2.0, 2.0], "e": pl.Series([None, None], dtype=pl.Float64)})
    assert GaussianNoise().fit_transform(df).rows() == [(2.0, None)] * 4  # no spread: no noise
    empty = df.head(0)
    assert GaussianNoise().fit_transform(empty).height == 0


# -- mixup ---------------------------------------------------------------------------------------------


def test_mixup_mixes_features_and_labels_alike():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    df = pl.DataFrame({"x": x, "twice": 2 * x, "y": (x > 0).astype(np.int64), "tag": ["a"] * 100 + ["b"] * 100})
    out = Mixup(target="y", copies=3, alpha=0.4).fit_transform(df)
    assert out.schema["y"] == pl.Float64 and out.height == 800
    new = out.tail(600)
    np.testing.assert_allclose(new["twice"], 2 * new["x"], rtol=1e-12, atol=1e-12)  # one weight per row
    assert new["y"].is_between(0.0, 1.0).all() and new["x"].is_between(x.min(), x.max()).all()
    assert set(new["tag"]) == {"a", "b"}  # copied from the row with the larger weight


def test_mixup_one_hot_target_columns():
    rng = np.random.default_rng(2)
    k = rng.integers(0, 3, 90)
    df = pl.DataFrame({"f": rng.normal(size=90), **{f"y_{c}": (k == c).astype(np.uint8) for c in range(3)}})
    labels = ["y_0", "y_1", "y_2"]
    fitted = Mixup(target_columns=labels).fit(df)
    assert fitted.columns == ("f",)
    new = fitted.transform(df, train=True).tail(90)
    np.testing.assert_allclose(new.select(pl.sum_horizontal(labels)).to_series(), 1.0)


def test_mixup_missing_propagates_and_errors():
    df = pl.DataFrame({"f": [1.0, None, 3.0, 4.0], "y": [0, 1, 0, 1]})
    new = Mixup(target="y", seed=1).fit_transform(df).tail(4)
    assert new["f"].null_count() >= 1  # a missing value in either row of a pair stays missing
    with pytest.raises(ColumnError, match="one-hot encode it and set `target_columns`"):
        Mixup(target="s").fit(pl.DataFrame({"f": [1.0], "s": ["a"]}))
    assert Mixup().fit_transform(df.head(0)).height == 0


def test_smote_interpolates_what_one_pass_over_all_rows_does() -> None:
    """Expect: the feature-by-feature, column-major interpolation equals x_i + u * (x_nn - x_i) over all rows
    at once, bit for bit."""
    from transforms.augment import smote as smote_module

    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 3)) * [1.0, 1e3, 1e-3]
    n = 100_003
    new, seeds = smote_module.smote_samples(x, n, 4, np.random.default_rng(9))
    # the reference: the same draws, in the same order, then one pass
    ref_rng = np.random.default_rng(9)
    rows = ref_rng.integers(0, len(x), size=n)
    neighbours = NearestNeighbors(n_neighbors=5).fit(x).kneighbors(x, return_distance=False)[:, 1:]
    picks = neighbours[rows, ref_rng.integers(0, 4, size=n)]
    u = ref_rng.random(n)[:, None]
    want = x[rows] + u * (x[picks] - x[rows])
    np.testing.assert_array_equal(seeds, rows)
    np.testing.assert_array_equal(new, want)
    assert new.flags.f_contiguous


@pytest.mark.parametrize("step", ["smote", "oversample"])
def test_class_balancing_makes_its_rows_a_chunk_at_a_time(
    monkeypatch: pytest.MonkeyPatch, data: pl.DataFrame, step: str
) -> None:
    """Expect: with chunks of 64 rows, the new rows come as frames of at most 64 rows (per class), each
    class's rows with its own seeds, still valid (on a segment of the class / copies of its rows) and
    the same on every run; lazily, a projection, a filter and a head of them equal the eager ones."""
    from transforms.augment import _base
    from transforms.augment import oversample as oversample_module
    from transforms.augment import smote as smote_module

    module = smote_module if step == "smote" else oversample_module
    monkeypatch.setattr(module, "CHUNK_ROWS", 64)
    frames: list[int] = []
    real = _base.new_rows_source

    def counting(seeds, schema, make):
        return real(seeds, schema, lambda df: (frames.append(f.height) or f for f in make(df)))

    monkeypatch.setattr(_base, "new_rows_source", counting)
    pipe = (
        SMOTE(target="y", columns=["f1", "f2"], k_neighbors=3, seed=2)
        if step == "smote"
        else RandomOversampler(target="y", seed=2)
    )
    fitted = pipe.fit(data)
    out = fitted.transform(data, train=True)
    added = out.height - data.height
    assert added == 250 + 350  # classes 1 and 2 grow to 400
    assert frames == [64, 64, 64, 58, *[64] * 5, 30]  # 250 rows, then 350, 64 at a time
    assert out.equals(fitted.transform(data, train=True))
    new = out.tail(added)
    assert new["y"].value_counts(sort=True).rows() == [(2, 350), (1, 250)]
    for label in (1, 2):
        rows, made = data.filter(pl.col("y") == label), new.filter(pl.col("y") == label)
        for c in ("f1", "f2"):
            assert rows[c].min() <= made[c].min() and made[c].max() <= rows[c].max()
        if step == "oversample":
            assert made.join(rows, on=data.columns, how="anti").height == 0  # whole rows copied
    lazy = fitted.transform(data.lazy(), train=True)
    assert lazy.select("f1", "y").collect().equals(out.select("f1", "y"))
    assert lazy.filter(pl.col("y") == 2).collect().equals(out.filter(pl.col("y") == 2))
    assert lazy.head(700).collect().equals(out.head(700))
