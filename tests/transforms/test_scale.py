"""Scaling steps against scikit-learn, on messy data and edge cases.

Conventions checked here (and documented in the step modules):

- null and NaN are missing: statistics ignore them and they stay missing, so
  prepflow must match scikit-learn fitted on the NaN-encoded array;
- +/-inf (which scikit-learn rejects) are ignored by statistics, so prepflow
  must match scikit-learn fitted on the finite rows; what inf maps to is
  checked per step (``Case.inf_out``);
- a column with no finite value fits to a harmless state and stays missing;
- a single row matches scikit-learn; an empty frame fits and transforms to 0 rows.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest
import scipy.stats
import sklearn.preprocessing as skp
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from transforms import (
    FitError,
    Fitted,
    LogScaler,
    MaxAbsScaler,
    MinMaxScaler,
    PowerScaler,
    QuantileScaler,
    RobustScaler,
    StandardScaler,
)
from transforms.base import Step
from transforms.scale.normal import BOUNDS_THRESHOLD, CLIP_MAX, CLIP_MIN, ppf, ppf_batch, ppf_numpy
from transforms.scale.quantile import Interpolation

INF = np.inf


@dataclass(frozen=True)
class Case:
    """A prepflow step and the scikit-learn estimator it must match (per column, given the finite count)."""

    id: str
    step: Step
    sklearn: Callable[[int], object]
    tol: float = 1e-12
    # what +inf and -inf map to: floats, None (null) or "formula" (checked separately)
    inf_out: tuple[object, object] = (INF, -INF)
    positive: bool = False  # needs data > -1 (log)


class Log1p:
    """scikit-learn-like stand-in for the log step: ``np.log1p``."""

    def fit(self, x: np.ndarray) -> Log1p:
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.log1p(x)


CASES = [
    Case("standard", StandardScaler(), lambda m: skp.StandardScaler()),
    Case("standard-no-mean", StandardScaler(with_mean=False), lambda m: skp.StandardScaler(with_mean=False)),
    Case("standard-no-std", StandardScaler(with_std=False), lambda m: skp.StandardScaler(with_std=False)),
    Case("minmax", MinMaxScaler(), lambda m: skp.MinMaxScaler()),
    Case(
        "minmax-range-clip",
        MinMaxScaler(feature_range=(-2.0, 3.0), clip=True),
        lambda m: skp.MinMaxScaler(feature_range=(-2.0, 3.0), clip=True),
        inf_out=(3.0, -2.0),
    ),
    Case("robust", RobustScaler(), lambda m: skp.RobustScaler()),
    Case(
        "robust-range-unit",
        RobustScaler(quantile_range=(10.0, 90.0), unit_variance=True),
        lambda m: skp.RobustScaler(quantile_range=(10.0, 90.0), unit_variance=True),
    ),
    Case("robust-no-center", RobustScaler(with_centering=False), lambda m: skp.RobustScaler(with_centering=False)),
    Case("robust-no-scale", RobustScaler(with_scaling=False), lambda m: skp.RobustScaler(with_scaling=False)),
    Case("maxabs", MaxAbsScaler(), lambda m: skp.MaxAbsScaler()),
    Case(
        "quantile-uniform",
        QuantileScaler(n_quantiles=50),
        lambda m: skp.QuantileTransformer(n_quantiles=max(1, min(50, m))),
        inf_out=(1.0, 0.0),
    ),
    Case(
        "quantile-uniform-default",
        QuantileScaler(),
        lambda m: skp.QuantileTransformer(n_quantiles=max(1, min(1000, m))),
        inf_out=(1.0, 0.0),
    ),
    Case(
        "quantile-normal",
        QuantileScaler(n_quantiles=30, output_distribution="normal"),
        lambda m: skp.QuantileTransformer(n_quantiles=max(1, min(30, m)), output_distribution="normal"),
        inf_out=(CLIP_MAX, CLIP_MIN),
    ),
    Case("power", PowerScaler(), lambda m: skp.PowerTransformer(), tol=1e-9, inf_out=("formula", "formula")),
    Case(
        "power-raw",
        PowerScaler(standardize=False),
        lambda m: skp.PowerTransformer(standardize=False),
        tol=1e-9,
        inf_out=("formula", "formula"),
    ),
    Case("log", LogScaler(), lambda m: Log1p(), tol=1e-15, inf_out=(INF, None), positive=True),
]


def _frame(n: int, seed: int, *, positive: bool = False) -> pl.DataFrame:
    """``a`` normal (nulls and NaN), ``b`` skewed with ties (NaN), ``c`` Int64 with ties (nulls)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(1.0, 2.0, n)
    a[rng.random(n) < 0.05] = np.nan
    if positive:
        a = np.abs(a)
    b = np.round(rng.lognormal(0.0, 1.0, n), 1)
    b[rng.random(n) < 0.05] = np.nan
    c = rng.integers(0, 15, n)
    return pl.DataFrame({"a": a, "b": b, "c": c}).with_columns(
        pl.when(pl.int_range(n) % 11 == 3).then(None).otherwise(pl.col("a")).alias("a"),
        pl.when(pl.int_range(n) % 13 == 5).then(None).otherwise(pl.col("c")).alias("c"),
    )


def _test_frame(train: pl.DataFrame, seed: int, *, positive: bool = False) -> pl.DataFrame:
    """The training rows plus new values inside, at and beyond each column's fitted range."""
    rng = np.random.default_rng(seed)
    below = 0.5 if positive else 1.0  # log1p needs values > -1; the positive frame's min is >= 0
    new = {}
    for c in train.columns:
        col = train[c].cast(pl.Float64).fill_nan(None)
        mn, mx = float(col.min()), float(col.max())
        new[c] = np.concatenate([rng.uniform(mn, mx, 20), [mn, mx, mx + 3.0, mn - below]])
    extra = pl.DataFrame(new).with_columns(pl.col("c").ceil().cast(pl.Int64))
    return pl.concat([train, extra])


def _sklearn(case: Case, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Fit scikit-learn column by column (so n_quantiles can follow each column's finite count)."""
    out = np.empty_like(test, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j in range(train.shape[1]):
            est = case.sklearn(int(np.isfinite(train[:, j]).sum()))
            est.fit(train[:, [j]])
            out[:, j] = est.transform(test[:, [j]].copy())[:, 0]
    return out


def _np(frame: pl.DataFrame) -> np.ndarray:
    """Float64 array with null -> NaN."""
    return frame.select(pl.all().cast(pl.Float64)).to_numpy()


def _close(got: np.ndarray, ref: np.ndarray, tol: float) -> None:
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol, equal_nan=True)


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def case(request) -> Case:
    return request.param


def test_parity_with_nulls_and_nan(case):
    train = _frame(150, 1, positive=case.positive)
    test = _test_frame(train, 2, positive=case.positive)
    fitted = case.step.fit(train)
    got = fitted.transform(test)
    _close(_np(got), _sklearn(case, _np(train), _np(test)), case.tol)
    # missing stays missing, and of the same kind (null stays null, NaN stays NaN)
    for c in test.columns:
        assert got[c].is_null().equals(test[c].is_null())
        if test[c].dtype.is_float():
            assert got[c].is_nan().fill_null(False).equals(test[c].is_nan().fill_null(False))


def test_infinities_are_ignored_by_fit_and_clamped_or_propagated(case):
    finite_rows = _frame(80, 3, positive=case.positive).select("a", "b")
    inf_rows = pl.DataFrame({"a": [INF, -INF], "b": [INF, -INF]})
    train = pl.concat([finite_rows, inf_rows])
    fitted = case.step.fit(train)
    # statistics ignore inf: same as scikit-learn fitted on the finite rows
    _close(_np(fitted.transform(finite_rows)), _sklearn(case, _np(finite_rows), _np(finite_rows)), case.tol)
    out = fitted.transform(inf_rows)
    for c in ("a", "b"):
        got = out[c].to_list()
        if case.inf_out[0] == "formula":  # power: the Yeo-Johnson formula's limits, then standardization
            i = fitted.columns.index(c)
            lmbda, mean, scale = fitted.lambdas[i], fitted.mean[i], fitted.scale[i]
            with np.errstate(all="ignore"):
                want = (scipy.stats.yeojohnson(np.array([INF, -INF]), lmbda) - mean) / scale
            np.testing.assert_allclose(got, want, rtol=1e-12)
        else:
            assert got == list(case.inf_out)


def test_constant_column(case, request):
    train = pl.DataFrame({"k": [3.0] * 7, "a": [0.5, 1.0, 2.0, 2.0, 4.0, 8.0, 9.0]})
    test = pl.DataFrame({"k": [3.0, 2.0, 5.0], "a": [1.0, 0.1, 20.0]})
    got = case.step.fit(train).transform(test)
    _close(_np(got), _sklearn(case, _np(train), _np(test)), case.tol)


def test_all_null_column_fits_to_a_harmless_state_and_stays_missing(case):
    train = pl.DataFrame({"x": [None, None, None], "y": [1.0, 2.0, 4.0]}, schema={"x": pl.Float64, "y": pl.Float64})
    fitted = case.step.fit(train)
    json.dumps(fitted.to_dict(), allow_nan=False)  # no NaN leaks into the state
    out = fitted.transform(pl.DataFrame({"x": [None, float("nan")], "y": [1.0, 2.0]}))
    assert out["x"][0] is None and np.isnan(out["x"][1])
    new = fitted.transform(pl.DataFrame({"x": [0.5], "y": [1.0]}))["x"][0]
    if isinstance(case.step, QuantileScaler):
        assert new is None  # no quantiles: nothing to map a value to
    elif isinstance(case.step, LogScaler):
        assert new == np.log1p(0.5)
    else:
        assert new == 0.5  # identity


def test_single_row(case, request):
    train = pl.DataFrame({"x": [2.5], "n": [7]})
    test = pl.DataFrame({"x": [2.5, 0.0, 4.0], "n": [7, 1, 9]})
    got = case.step.fit(train).transform(test)
    _close(_np(got), _sklearn(case, _np(train), _np(test)), case.tol)


def test_empty_frame(case):
    empty = pl.DataFrame(schema={"f": pl.Float64, "i": pl.Int64, "s": pl.Float32, "name": pl.String})
    fitted = case.step.fit(empty)
    assert fitted.columns == ("f", "i", "s")
    out = fitted.transform(empty)
    assert out.height == 0
    assert out.schema == pl.Schema({"f": pl.Float64, "i": pl.Float64, "s": pl.Float32, "name": pl.String})
    lazy = fitted.transform(empty.lazy())
    assert lazy.collect_schema() == out.schema and lazy.collect().height == 0


def test_frame_kind_in_is_frame_kind_out_and_lazy_never_collects(case, monkeypatch):
    train = _frame(60, 4, positive=case.positive)
    fitted = case.step.fit(train)
    eager = fitted.transform(train)
    assert isinstance(eager, pl.DataFrame)

    def refuse(*args, **kwargs):
        raise AssertionError("transform collected a LazyFrame")

    with monkeypatch.context() as m:
        m.setattr(pl.LazyFrame, "collect", refuse)
        lazy = fitted.transform(train.lazy())
    assert isinstance(lazy, pl.LazyFrame)
    assert_frame_equal(lazy.collect(), eager)


def test_json_round_trip_gives_identical_output(case):
    train = _frame(60, 5, positive=case.positive)
    fitted = case.step.fit(train)
    again = Fitted.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert again.to_dict() == fitted.to_dict()
    assert_frame_equal(again.transform(train), fitted.transform(train))


def test_dtypes_float_kept_int_to_float64(case):
    train = pl.DataFrame({"f32": [1.0, 2.0, 4.0]}, schema={"f32": pl.Float32}).with_columns(i=pl.Series([1, 2, 5]))
    out = case.step.fit(train).transform(train)
    assert out.schema == pl.Schema({"f32": pl.Float32, "i": pl.Float64})


def test_default_columns_skip_target_and_non_numeric(case):
    df = pl.DataFrame({"x": [1.0, 2.0, 3.0], "label": [0, 1, 0], "s": ["a", "b", "c"]})
    fitted = case.step.fit(df, target="label")
    assert fitted.columns == ("x",)
    out = fitted.transform(df)
    assert out["label"].equals(df["label"]) and out["s"].equals(df["s"])


# --- quantile -------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(st.integers(0, 6), min_size=1, max_size=40),
    n_quantiles=st.sampled_from([1, 2, 5, 1000]),
    normal=st.booleans(),
)
def test_quantile_matches_sklearn_with_ties(values, n_quantiles, normal):
    """Repeated values exercise the tie handling and NumPy's exact percentile rounding."""
    x = np.asarray(values, dtype=np.float64) / 4
    dist = "normal" if normal else "uniform"
    test = np.concatenate([x, np.arange(-2, 30) / 4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = skp.QuantileTransformer(n_quantiles=min(n_quantiles, x.size), output_distribution=dist).fit(x[:, None])
    ref = sk.transform(test[:, None])[:, 0]
    fitted = QuantileScaler(n_quantiles=n_quantiles, output_distribution=dist).fit(pl.DataFrame({"x": x}))
    assert np.array_equal(np.asarray(fitted.quantiles[0]), sk.quantiles_[:, 0])
    _close(fitted.transform(pl.DataFrame({"x": test}))["x"].to_numpy(), ref, 1e-12)


def test_quantile_default_n_quantiles_on_more_rows_than_quantiles():
    rng = np.random.default_rng(11)
    x = np.round(rng.normal(size=2500), 2)
    for dist in ("uniform", "normal"):
        sk = skp.QuantileTransformer(output_distribution=dist).fit(x[:, None])
        got = QuantileScaler(output_distribution=dist).fit_transform(pl.DataFrame({"x": x}))["x"].to_numpy()
        _close(got, sk.transform(x[:, None])[:, 0], 1e-12)


def test_quantile_subsample_is_seeded_and_drawn_from_the_data():
    x = np.random.default_rng(12).normal(size=3000)
    df = pl.DataFrame({"x": x})
    one = QuantileScaler(n_quantiles=100, subsample=500, seed=3).fit(df)
    assert one.quantiles == QuantileScaler(n_quantiles=100, subsample=500, seed=3).fit(df).quantiles
    assert one.quantiles != QuantileScaler(n_quantiles=100, subsample=500, seed=4).fit(df).quantiles
    full = QuantileScaler(n_quantiles=100, subsample=3000).fit(df).quantiles[0]
    assert set(one.quantiles[0][:1] + one.quantiles[0][-1:]) <= set(x.tolist())
    assert np.max(np.abs(np.asarray(one.quantiles[0][5:-5]) - np.asarray(full[5:-5]))) < 0.35
    assert len(one.quantiles[0]) == 100


def test_quantile_rejects_more_quantiles_than_subsample():
    with pytest.raises(ValueError, match="cannot exceed subsample"):
        QuantileScaler(n_quantiles=100, subsample=10)


def test_quantile_metrics_count_values_out_of_range():
    df = pl.DataFrame({"x": [0.0, 1.0, 2.0]})
    fitted = QuantileScaler().fit(df)
    new = pl.DataFrame({"x": [-1.0, 0.5, 3.0, float("inf"), float("nan"), None]})
    assert new.select(e.sum().alias(k) for k, e in fitted.metrics(new.schema).items()).row(0, named=True) == {
        "out_of_range:x": 3
    }


def _sklearn_probabilities(x: np.ndarray, q: np.ndarray, normal: bool) -> np.ndarray:
    """scikit-learn's ``_transform_col`` before the ppf: two ``np.interp`` and its bounds rule."""
    r = np.linspace(0.0, 1.0, q.size)
    u = x.copy()
    finite = ~np.isnan(x)
    with np.errstate(all="ignore"):
        u[finite] = 0.5 * (np.interp(x[finite], q, r) - np.interp(-x[finite], -q[::-1], -r[::-1]))
        if normal:
            lower, upper = x - BOUNDS_THRESHOLD < q[0], x + BOUNDS_THRESHOLD > q[-1]
        else:
            lower, upper = x == q[0], x == q[-1]
    u[upper] = 1.0
    u[lower] = 0.0
    return u


def _quantile_sets() -> list[np.ndarray]:
    rng = np.random.default_rng(21)
    sets = [
        rng.normal(size=1000),  # continuous: the grid search takes one or two rounds
        rng.lognormal(0.0, 4.0, 1000),  # skewed: most quantiles in a few buckets
        np.round(rng.normal(size=300), 1),  # many repeats
        rng.integers(0, 3, 50).astype(float),  # a few values, long runs of repeats
        np.r_[rng.normal(size=200), -1e300, 1e300, 1e300],  # an outlier at each end: no useful grid
        np.r_[rng.normal(size=100), -1.7e308, 1.7e308],  # a span that overflows: one bucket
        1e12 + np.round(rng.normal(size=200) * 1e4),  # x == q[-1] is not within BOUNDS_THRESHOLD of it
        np.array([2.5]),
        np.array([3.0, 3.0, 3.0]),
        np.array([-1.0, 4.0]),
    ]
    return [np.maximum.accumulate(np.sort(q)) for q in sets]


@pytest.mark.parametrize("normal", [False, True], ids=["uniform", "normal"])
@pytest.mark.parametrize("q", _quantile_sets(), ids=lambda q: f"n{q.size}-{q[0]:.3g}..{q[-1]:.3g}")
def test_quantile_interpolation_is_sklearns_bit_for_bit(q, normal):
    """One grid-accelerated search replaces two np.interp calls without changing a bit."""
    rng = np.random.default_rng(q.size)
    picks = rng.choice(q, 200)
    with np.errstate(over="ignore"):
        x = np.r_[
            q,  # every quantile, repeats included
            np.nextafter(picks, np.inf),
            np.nextafter(picks, -np.inf),
            np.interp(rng.uniform(0, q.size - 1, 2000), np.arange(q.size), q),  # inside segments
            q[0] - np.abs(q[0]) / 8 - rng.uniform(0, 2, 20),  # beyond the ends
            q[-1] + np.abs(q[-1]) / 8 + rng.uniform(0, 2, 20),
            [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e308, -1e308],
        ]
    got = Interpolation(q, normal=normal).probabilities(x)
    assert np.array_equal(got, _sklearn_probabilities(x, q, normal), equal_nan=True)


@pytest.mark.parametrize("dist", ["uniform", "normal"])
def test_quantile_transform_equals_sklearn_exactly_on_continuous_data(dist):
    rng = np.random.default_rng(5)
    x = rng.lognormal(0.0, 1.5, 6000)
    x[rng.random(x.size) < 0.05] = np.nan
    sk = skp.QuantileTransformer(output_distribution=dist).fit(x[:, None])
    fitted = QuantileScaler(output_distribution=dist).fit(pl.DataFrame({"x": x}))
    assert np.array_equal(np.asarray(fitted.quantiles[0]), sk.quantiles_[:, 0])
    new = np.r_[x, rng.lognormal(0.0, 2.0, 2000)]
    got = fitted.transform(pl.DataFrame({"x": new}))["x"].to_numpy()
    assert np.array_equal(got, sk.transform(new[:, None])[:, 0], equal_nan=True)


def test_quantile_transform_streams_batch_by_batch():
    x = np.random.default_rng(6).normal(size=300_000)
    x[::17] = np.nan
    df = pl.DataFrame({"x": x}).with_columns(pl.when(pl.int_range(pl.len()) % 13 == 0).then(None).otherwise("x"))
    fitted = QuantileScaler(output_distribution="normal").fit(df)
    eager = fitted.transform(df)
    assert_frame_equal(fitted.transform(df.lazy()).collect(engine="streaming"), eager)
    assert eager["x"].null_count() == df["x"].null_count()


# --- the inverse normal CDF (AS 241) ---------------------------------------------------------------


def test_ppf_matches_scipy_over_the_whole_range():
    p = np.concatenate(
        [
            np.geomspace(1e-300, 0.5, 3000),
            1.0 - np.geomspace(1e-16, 0.5, 1000),
            np.linspace(0.001, 0.999, 999),
            [0.075, 0.425 + 0.5, 0.5 - 0.425, np.exp(-25.0)],  # region borders
        ]
    )
    ref = scipy.stats.norm.ppf(p)
    got = pl.DataFrame({"p": p}).select(ppf(pl.col("p")).alias("z"))["z"].to_numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-14, atol=0)
    np.testing.assert_allclose(ppf_numpy(p), got, rtol=1e-15, atol=0)
    assert np.array_equal(ppf_batch(p), ref)  # what scikit-learn's norm.ppf evaluates


def test_ppf_edges():
    p = [0.0, 1.0, 0.5, -0.1, 1.1, float("nan"), None]
    got = pl.DataFrame({"p": p}, schema={"p": pl.Float64}).select(ppf(pl.col("p")).alias("z"))["z"].to_list()
    assert got[:3] == [-INF, INF, 0.0] and all(np.isnan(v) for v in got[3:6]) and got[6] is None
    assert scipy.stats.norm.ppf(1e-7 - np.spacing(1)) == CLIP_MIN
    assert scipy.stats.norm.ppf(1 - (1e-7 - np.spacing(1))) == CLIP_MAX


# --- power ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [-5.0, 0.0])
def test_power_matches_sklearn_on_skewed_data_of_either_sign(shift):
    rng = np.random.default_rng(13)
    x = np.concatenate([rng.lognormal(0, 1, 120) + shift, -rng.lognormal(0, 0.5, 30) + shift])
    for standardize in (True, False):
        sk = skp.PowerTransformer(standardize=standardize)
        ref = sk.fit_transform(x[:, None])[:, 0]
        fitted = PowerScaler(standardize=standardize).fit(pl.DataFrame({"x": x}))
        assert fitted.lambdas[0] == pytest.approx(sk.lambdas_[0], rel=1e-12)
        _close(fitted.transform(pl.DataFrame({"x": x}))["x"].to_numpy(), ref, 1e-9)


@pytest.mark.parametrize("lmbda", [0.0, 2.0, 0.5, -1.5, 3.5])
def test_yeo_johnson_branches_match_scipy(lmbda):
    from transforms.scale.power import yeo_johnson

    x = np.concatenate([-np.geomspace(1e-12, 50, 200), [0.0], np.geomspace(1e-12, 50, 200)])
    got = pl.DataFrame({"x": x}).select(yeo_johnson(pl.col("x"), lmbda).alias("y"))["y"].to_numpy()
    np.testing.assert_allclose(got, scipy.stats.yeojohnson(x, lmbda), rtol=1e-13, atol=1e-300)


# --- log ------------------------------------------------------------------------------------------


def test_log_refuses_values_at_or_below_minus_one():
    with pytest.raises(FitError) as err:
        LogScaler(columns=["x"]).fit(pl.DataFrame({"x": [1.0, -3.2, 2.0]}))
    assert str(err.value) == (
        "scale/log: column 'x' has values <= -1 (min -3.2); log1p is undefined there. Shift or clip the column first."
    )
    with pytest.raises(FitError, match=r"^my_log: column 'n' has values <= -1 \(min -1\)"):
        LogScaler(name="my_log").fit(pl.DataFrame({"n": [-1, 0, 5]}))


def test_log_apply_nulls_invalid_values_and_reports_them():
    fitted = LogScaler().fit(pl.DataFrame({"x": [0.0, 1.0]}))
    new = pl.DataFrame({"x": [-1.0, -2.0, -0.5, float("-inf"), float("inf"), float("nan"), None]})
    out = fitted.transform(new)["x"].to_list()
    assert out[:2] == [None, None] and out[2] == np.log1p(-0.5) and out[3] is None and out[4] == INF
    assert np.isnan(out[5]) and out[6] is None
    assert new.select(e.sum().alias(k) for k, e in fitted.metrics(new.schema).items()).row(0, named=True) == {
        "invalid_log_input:x": 3
    }


@pytest.mark.parametrize("n", [1, 50, 999, 5_000])
def test_the_fit_subsample_is_a_seeded_sample_of_the_non_null_values(n: int) -> None:
    """``drop_nulls().sample`` draws the very rows that sampling the non-null positions would."""
    from transforms.base import Quantiles
    from transforms.fitting import subsampled

    rng = np.random.default_rng(n)
    x = rng.normal(size=3_001)
    x[rng.random(x.size) < 0.3] = np.nan
    frame = pl.DataFrame({"a": x}).with_columns(pl.col("a").fill_nan(None))
    a = pl.col("a")
    got = frame.select(subsampled(Quantiles(a, (0.5,), subsample=n, seed=11))).to_series()
    positions = a.is_not_null().arg_true().sample(n=pl.min_horizontal(a.count(), n), seed=11)
    assert got.equals(frame.select(a.gather(positions)).to_series())
    assert got.len() == min(n, frame["a"].count()) and got.null_count() == 0
