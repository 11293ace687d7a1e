"""Fused fit groups: a quantile or moment step after a median/mean imputer is fitted from the raw columns.

The in-memory engine fits ``impute -> robust scale`` (or ``-> IQR clip``) in one group, the
later step's quantiles derived from the raw column's order statistics
(:mod:`transforms.filled`): the fitted state must be identical to fitting group by group.
``impute -> standard scale`` (or min-max, z-score) fuses too, its moments merged from the raw
column's and the fills': equal to rounding.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl
import pytest

from transforms import (
    IQROutliers,
    MinMaxScaler,
    QuantileScaler,
    RobustScaler,
    SimpleImputer,
    StandardScaler,
    ZScoreOutliers,
)
from transforms.filled import quantiles_of
from transforms.fitting import _collect, fit_steps


def _frame(n: int, seed: int) -> pl.DataFrame:
    """Nulls and NaN (half each), +inf, ties, a constant and an all-missing column; nulls and no NaN in
    ``nulls``."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for i in range(4):
        x = rng.normal(size=n) * 10.0**i
        if i % 2:
            x = np.round(x)
        x[rng.random(n) < 0.1] = np.nan
        data[f"f{i}"] = x
    data["inf"] = np.where(rng.random(n) < 0.1, np.inf, rng.normal(size=n))
    data["const"] = np.full(n, 3.0)
    data["empty"] = np.full(n, np.nan)
    df = pl.DataFrame(data)
    half = pl.int_range(pl.len()) % 2 == 0
    df = df.with_columns([pl.when(half).then(pl.col(c).fill_nan(None)).otherwise(pl.col(c)) for c in df.columns])
    gaps = rng.random(n) < 0.15
    return df.with_columns(nulls=pl.Series(rng.normal(size=n) * 5.0 + 1.0).set(pl.Series(gaps), None))


PIPELINES = {
    "median->robust": [SimpleImputer(strategy="median"), RobustScaler()],
    "mean->robust(10,90)": [SimpleImputer(strategy="mean"), RobustScaler(quantile_range=(10.0, 90.0))],
    "median->iqr->robust": [SimpleImputer(strategy="median"), IQROutliers(action="clip"), RobustScaler()],
    "median+indicator->iqr": [SimpleImputer(strategy="median", add_indicator=True), IQROutliers(k=3.0)],
    "median(2 cols)->robust": [SimpleImputer(strategy="median", columns=["f0", "f1"]), RobustScaler()],
    "median->quantile": [SimpleImputer(strategy="median"), QuantileScaler(n_quantiles=10, subsample=10)],
}
FUSED = set(PIPELINES) - {"median->quantile"}


def _state(result: Any) -> str:
    return json.dumps([f.to_dict() for f in result.fitted], sort_keys=True)


@pytest.mark.parametrize("name", list(PIPELINES))
@pytest.mark.parametrize("n", [0, 1, 2, 7, 1_001])
def test_fused_groups_fit_exactly_what_separate_groups_fit(name: str, n: int) -> None:
    steps = PIPELINES[name]
    df = _frame(n, seed=n)
    fused = fit_steps(steps, df.lazy(), target=None)
    separate = fit_steps(steps, df.lazy(), target=None, collect=lambda plans, lf, i, done: _collect(list(plans), lf))
    assert _state(fused) == _state(separate)
    assert (fused.groups[1] == 0) == (name in FUSED)  # the quantile step joined the imputer's group
    assert separate.groups[1] == 1


MOMENT_PIPELINES = {
    "mean->standard": [SimpleImputer(strategy="mean"), StandardScaler()],
    "median->standard": [SimpleImputer(strategy="median"), StandardScaler()],
    "median->minmax": [SimpleImputer(strategy="median"), MinMaxScaler()],
    "mean->zscore->standard": [SimpleImputer(strategy="mean"), ZScoreOutliers(threshold=2.0), StandardScaler()],
    "median->robust+standard(f3)": [
        SimpleImputer(strategy="median"),
        RobustScaler(columns=["f0", "f1"]),
        StandardScaler(columns=["f3", "const", "empty", "inf"]),
    ],
}


def _close(a: Any, b: Any, rel: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, rel) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=rel, abs=1e-300)
    return a == b


@pytest.mark.parametrize("name", list(MOMENT_PIPELINES))
@pytest.mark.parametrize("n", [0, 1, 2, 7, 1_001])
def test_moments_of_filled_columns_fit_what_separate_groups_fit(name: str, n: int) -> None:
    """Expect: the later step joins the imputer's group, its state equal to 1e-12 relative (Chan's merge, not
    a second pass: not bit for bit), on nulls, NaN, +inf, ties, a constant and an all-missing column."""
    steps = MOMENT_PIPELINES[name]
    df = _frame(n, seed=n + 5)
    fused = fit_steps(steps, df.lazy(), target=None)
    separate = fit_steps(steps, df.lazy(), target=None, collect=lambda plans, lf, i, done: _collect(list(plans), lf))
    assert fused.groups[1] == 0 and separate.groups[1] == 1
    assert _close(json.loads(_state(fused)), json.loads(_state(separate)), rel=1e-12)


def test_mean_fill_then_standard_scale_matches_scikit_learn() -> None:
    """Expect: the fused fit's mean and scale are scikit-learn's (SimpleImputer -> StandardScaler) to 1e-12."""
    from sklearn.impute import SimpleImputer as SkImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler as SkScaler

    df = _frame(1_001, seed=9).select("f0", "f1", "f2", "f3", "const", "nulls")
    fused = fit_steps([SimpleImputer(strategy="mean"), StandardScaler()], df.lazy(), target=None)
    sk = make_pipeline(SkImputer(strategy="mean"), SkScaler()).fit(df.fill_null(np.nan).to_numpy())
    scaler = fused.fitted[1]
    np.testing.assert_allclose(scaler.center, sk[1].mean_, rtol=1e-12)
    np.testing.assert_allclose(scaler.scale, sk[1].scale_, rtol=1e-12)
    assert fused.groups == (0, 0)


def test_a_mode_of_a_filled_column_is_not_fused() -> None:
    steps = [SimpleImputer(strategy="median"), SimpleImputer(strategy="most_frequent")]
    assert fit_steps(steps, _frame(50, seed=2).lazy(), target=None).groups == (0, 1)


def test_a_column_the_later_step_reads_but_the_imputer_did_not_fill_is_not_fused() -> None:
    steps = [SimpleImputer(strategy="median", columns=["f0"]), IQROutliers(columns=["f0", "f1"])]
    df = _frame(50, seed=3)
    assert fit_steps(steps, df.lazy(), target=None).groups == (0, 0)  # f1 is not written: no conflict
    steps = [SimpleImputer(strategy="most_frequent", columns=["f0"]), RobustScaler(columns=["f0"])]
    assert fit_steps(steps, df.lazy(), target=None).groups == (0, 1)  # a mode fill is not declared


def test_quantiles_of_filled_multisets_match_numpy_bit_for_bit() -> None:
    rng = np.random.default_rng(11)
    for trial in range(600):
        n = int(rng.integers(0, 300))
        a = rng.normal(size=n)
        if trial % 3 == 0:
            a = np.round(a * 2)  # ties, and values equal to the fill
        k = int(rng.integers(0, 400))
        probs = tuple(float(p) for p in rng.choice([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0, rng.random()], 3))
        got = quantiles_of(a.copy(), {"m": (0.5,)}, {"q": (probs, k, lambda done: done["m"][0] if done["m"] else None)})
        if n == 0:
            assert got == {"m": None, "q": None}
            continue
        median = float(np.quantile(a, 0.5))
        assert got["m"] == [median]
        assert got["q"] == [float(q) for q in np.quantile(np.concatenate([a, np.full(k, median)]), probs)]


def test_select_ranks_puts_every_asked_order_statistic_in_place() -> None:
    """Expect: a[r] equals the sorted array's r-th value for every asked rank (ties, adjacent and end ranks)."""
    from transforms.filled import select_ranks

    rng = np.random.default_rng(21)
    for trial in range(400):
        n = int(rng.integers(1, 500))
        a = rng.normal(size=n)
        if trial % 2:
            a = np.round(a * 3)  # many ties
        ranks = sorted({int(r) for r in rng.integers(0, n, size=int(rng.integers(1, 12)))} | {0, n - 1})
        if trial % 3 == 0:
            ranks = sorted(set(ranks) | {min(r + 1, n - 1) for r in ranks})  # adjacent pairs, as quantiles ask
        want = np.sort(a)
        got = a.copy()
        select_ranks(got, ranks)
        assert [got[r] for r in ranks] == [want[r] for r in ranks]
        assert sorted(got) == list(want)  # a permutation: nothing lost or duplicated


def test_plain_quantiles_match_numpy_bit_for_bit() -> None:
    """Expect: the fit's exact quantiles (selection + NumPy's interpolation) are np.quantile's, bit for bit."""
    from transforms.fitting import exact_quantiles

    rng = np.random.default_rng(13)
    for trial in range(300):
        n = int(rng.integers(1, 400))
        a = rng.lognormal(size=n) * 10.0 ** int(rng.integers(-3, 6))
        if trial % 3 == 0:
            a = np.round(a)
        probs = tuple(float(p) for p in rng.choice([0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0, rng.random()], 5))
        got = exact_quantiles(pl.DataFrame({"x": a}), {"x": probs})["x"]
        assert got == [float(q) for q in np.quantile(a, probs, method="linear")]


def test_many_quantiles_of_few_values_match_numpy_bit_for_bit() -> None:
    """Expect: 1000 quantiles of a 2,000-value subsample (sorted, not selected rank by rank) are np.quantile's."""
    from transforms.fitting import exact_quantiles

    a = np.round(np.random.default_rng(17).lognormal(size=2_000), 2)
    probs = tuple(float(p) for p in np.linspace(0, 1, 1000))
    assert exact_quantiles(pl.DataFrame({"x": a}), {"x": probs})["x"] == [float(q) for q in np.quantile(a, probs)]


def test_quantiles_of_reorders_only_an_owned_array() -> None:
    """Expect: the same quantiles either way; a borrowed array is left as it was, an owned one is reused
    (reordered in place, not copied)."""
    rng = np.random.default_rng(4)
    a = rng.normal(size=1001)
    request = ({"m": (0.5,)}, {"q": ((0.25, 0.75), 40, lambda done: done["m"][0])})
    borrowed = a.copy()
    owned = a.copy()
    assert quantiles_of(borrowed, *request) == quantiles_of(owned, *request, owned=True)
    np.testing.assert_array_equal(borrowed, a)
    assert not np.array_equal(owned, a) and sorted(owned) == sorted(a)


def test_present_values_drop_nulls_and_nan_keep_infinities() -> None:
    """Expect: the values quantiles are taken of: nulls and NaN gone, +/-inf kept, ints as float64, writable."""
    from transforms.fitting import present_values

    got = present_values(pl.Series([1.0, None, float("nan"), float("inf"), -float("inf")]))
    assert got.tolist() == [1.0, float("inf"), -float("inf")] and got.flags.writeable
    ints = present_values(pl.Series([3, None, 1], dtype=pl.Int32))
    assert ints.dtype == np.float64 and ints.tolist() == [3.0, 1.0] and ints.flags.writeable
    assert present_values(pl.Series([1.0, 2.0])).flags.writeable  # no nulls: Polars' zero-copy view is copied
