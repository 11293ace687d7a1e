"""Composed application: runs of column-wise steps become one projection, with the same numbers bit for bit."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from transforms import (
    IQROutliers,
    MinMaxScaler,
    OneHotEncoder,
    Pipeline,
    RobustScaler,
    SimpleImputer,
    StandardScaler,
    ZScoreOutliers,
)
from transforms.augment import SMOTE
from transforms.compose import apply_steps


def _frame(n: int = 400, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(size=n) * 10
    x[rng.random(n) < 0.1] = np.nan
    x[:3] = [np.inf, -np.inf, 1e6]
    return pl.DataFrame(
        {
            "x": pl.Series(x).set(pl.Series(rng.random(n) < 0.1), None),
            "f32": pl.Series(rng.normal(size=n), dtype=pl.Float32).set(pl.Series(rng.random(n) < 0.1), None),
            "i": pl.Series(rng.integers(-5, 50, size=n)).set(pl.Series(rng.random(n) < 0.1), None),
            "const": np.full(n, 2.5),
            "cat": rng.choice(["a", "b", "c"], size=n),
            "y": (rng.random(n) < 0.2).astype(np.int64),
        }
    )


NUM = ["x", "f32", "i", "const"]
PIPELINES = {
    "impute->clip->scale": [
        SimpleImputer(strategy="median", columns=NUM),
        IQROutliers(action="clip", columns=NUM),
        RobustScaler(columns=NUM),
    ],
    "mean->zscore clip->minmax->standard": [
        SimpleImputer(strategy="mean", columns=NUM),
        ZScoreOutliers(action="clip", threshold=2.0, columns=NUM),
        MinMaxScaler(columns=["x", "i"]),
        StandardScaler(columns=NUM),
    ],
    "indicator breaks the run": [
        SimpleImputer(strategy="median", columns=["x"], add_indicator=True),
        IQROutliers(action="clip", columns=["x", "f32"]),
        OneHotEncoder(columns=["cat"]),
        StandardScaler(columns=["x", "f32"]),
    ],
    "drop between runs": [
        SimpleImputer(strategy="constant", fill_value=0, columns=["i"]),
        StandardScaler(columns=["i"]),
        IQROutliers(action="drop", columns=["x"]),
        SimpleImputer(strategy="mean", columns=["x", "f32"]),
        RobustScaler(columns=["x"]),
    ],
    "smote inside": [
        SimpleImputer(strategy="mean", columns=["x", "f32", "i"]),
        StandardScaler(columns=["x", "f32", "i"]),
        SMOTE(target="y", columns=["x", "f32"], seed=3),
        MinMaxScaler(columns=["x", "f32"]),
    ],
}


def _one_by_one(steps, lf: pl.LazyFrame, train: bool) -> pl.LazyFrame:  # type: ignore[no-untyped-def]
    for f in steps:
        lf = f.apply(lf, train=train)
    return lf


@pytest.mark.parametrize("name", list(PIPELINES))
@pytest.mark.parametrize("train", [False, True])
def test_composed_steps_give_the_step_by_step_result_bit_for_bit(name: str, train: bool) -> None:
    df = _frame()
    fitted = Pipeline(PIPELINES[name], target="y").fit(df)
    got = apply_steps(fitted.steps, df.lazy(), train=train).collect()
    want = _one_by_one(fitted.steps, df.lazy(), train).collect()
    assert_frame_equal(got, want, check_exact=True)
    assert_frame_equal(fitted.transform(df, train=train), want, check_exact=True)


def test_a_run_of_column_wise_steps_is_one_projection() -> None:
    df = _frame()
    fitted = Pipeline(PIPELINES["impute->clip->scale"]).fit(df)
    assert apply_steps(fitted.steps, df.lazy(), train=False).explain().count("WITH_COLUMNS") == 1
    assert _one_by_one(fitted.steps, df.lazy(), False).explain().count("WITH_COLUMNS") == 3
    # an imputer that adds indicator columns is not column-wise, nor is a one-hot encoder: every
    # column-wise step there stands alone, so nothing is composed
    fitted = Pipeline(PIPELINES["indicator breaks the run"]).fit(df)
    composed = apply_steps(fitted.steps, df.lazy(), train=False).explain().count("WITH_COLUMNS")
    assert composed == _one_by_one(fitted.steps, df.lazy(), False).explain().count("WITH_COLUMNS")


def test_after_runs_after_each_applied_step_only() -> None:
    df = _frame()
    fitted = Pipeline(PIPELINES["smote inside"], target="y").fit(df)
    seen: list[str] = []

    def after(f, lf):  # type: ignore[no-untyped-def]
        seen.append(f.step.label)
        return lf

    apply_steps(fitted.steps, df.lazy(), train=True, after=after)
    assert seen == [fitted.steps[2].step.label]
