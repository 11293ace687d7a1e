"""Tests of transforms.stats: mergeable Moments, Counts and QuantileSketch."""

from __future__ import annotations

import base64
import itertools
import json
from collections import Counter
from functools import reduce

import numpy as np
import polars as pl
import pytest

from transforms.errors import ArtifactError
from transforms.stats import DEFAULT_K, Counts, Moments, QuantileSketch, stat_from_dict


def json_round_trip(d: dict) -> dict:
    """Return ``d`` after strict JSON (no NaN/inf literals) text and back."""
    return json.loads(json.dumps(d, allow_nan=False))


def random_chunks(x: np.ndarray | pl.Series, rng: np.random.Generator, max_chunks: int = 12) -> list:
    """Split ``x`` at random cut points (empty chunks allowed) and shuffle the chunks."""
    k = int(rng.integers(1, max_chunks + 1))
    cuts = np.sort(rng.integers(0, len(x) + 1, k - 1))
    bounds = [0, *cuts.tolist(), len(x)]
    chunks = [x[a:b] for a, b in itertools.pairwise(bounds)]
    return [chunks[i] for i in rng.permutation(len(chunks))]


def as_nan_array(s: pl.Series) -> np.ndarray:
    """Nulls as NaN, for comparison with numpy's nan-functions."""
    return s.cast(pl.Float64).fill_null(float("nan")).to_numpy()


def assert_moments_match_numpy(m: Moments, x: np.ndarray, rel: float = 1e-12) -> None:
    finite = x[~np.isnan(x)]
    f = m.finalize()
    assert f["n"] == finite.size
    assert f["missing"] == x.size - finite.size
    assert f["mean"] == pytest.approx(np.nanmean(x), rel=rel)
    assert f["var"] == pytest.approx(np.nanvar(x), rel=rel, abs=1e-300)
    assert f["std"] == pytest.approx(np.nanstd(x), rel=rel, abs=1e-150)
    assert f["min"] == np.nanmin(x)
    assert f["max"] == np.nanmax(x)
    assert f["sum"] == pytest.approx(np.nansum(x), rel=rel)


# ---------------------------------------------------------------- Moments


@pytest.fixture
def messy_series() -> pl.Series:
    """1000 skewed floats with 10% nulls and 5% NaN."""
    rng = np.random.default_rng(7)
    x = rng.lognormal(2, 1.5, 1000)
    x[rng.random(1000) < 0.05] = np.nan
    return pl.Series("x", x).scatter(np.flatnonzero(rng.random(1000) < 0.1), None)


def test_moments_whole_column_matches_numpy_with_nulls_and_nan(messy_series: pl.Series) -> None:
    """Expect n/missing to count nulls+NaN separately, and mean/var/std/min/max/sum to equal numpy's nan-functions."""
    m = Moments().update(messy_series)
    assert m.missing == messy_series.null_count() + int(messy_series.is_nan().sum())
    assert_moments_match_numpy(m, as_nan_array(messy_series))


def test_moments_numpy_input_equals_series_input(messy_series: pl.Series) -> None:
    """Expect a float numpy array (NaN as missing) and an object array with None to give the same state as a Series."""
    x = as_nan_array(messy_series)
    from_series = Moments().update(messy_series)
    from_array = Moments().update(x)
    assert from_array.n == from_series.n and from_array.missing == from_series.missing
    assert from_array.mean == pytest.approx(from_series.mean, rel=1e-15)
    obj = np.array([1.0, None, 3.0], dtype=object)
    assert Moments().update(obj) == Moments().update(pl.Series([1.0, None, 3.0]))


@pytest.mark.parametrize("seed", range(8))
def test_moments_random_chunks_in_random_merge_order_match_numpy(messy_series: pl.Series, seed: int) -> None:
    """Expect chunk partials merged sequentially in random order, or as a tree, to match numpy to 1e-12 relative."""
    rng = np.random.default_rng(seed)
    parts = [Moments().update(c) for c in random_chunks(messy_series, rng)]
    x = as_nan_array(messy_series)
    sequential = reduce(lambda a, b: a.merge(b), parts, Moments())
    assert_moments_match_numpy(sequential, x)

    level = [Moments.from_dict(p.to_dict()) for p in parts]  # fresh copies
    while len(level) > 1:
        order = rng.permutation(len(level))
        level = [level[i] for i in order]
        level = [level[i].merge(level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    assert_moments_match_numpy(level[0], x)


def test_moments_update_in_chunks_matches_single_update(messy_series: pl.Series) -> None:
    """Expect repeated update() on the same object to equal one update over the whole column."""
    chunked = Moments()
    for c in random_chunks(messy_series, np.random.default_rng(3)):
        chunked.update(c)
    assert_moments_match_numpy(chunked, as_nan_array(messy_series))


def test_moments_constant_column_has_zero_variance() -> None:
    """Expect a constant column (0.1 repeated, not exactly representable) to give mean 0.1 and variance ~0."""
    x = np.full(10_001, 0.1)
    m = Moments()
    for c in np.array_split(x, 7):
        m.merge(Moments().update(c))
    f = m.finalize()
    assert f["mean"] == pytest.approx(0.1, rel=1e-15)
    assert f["var"] <= 1e-30
    assert f["min"] == f["max"] == 0.1


def test_moments_single_value() -> None:
    """Expect one value to give n=1, mean=min=max=sum=value, var=std=0."""
    f = Moments().update(np.array([42.5])).finalize()
    assert f == {"n": 1, "missing": 0, "mean": 42.5, "var": 0.0, "std": 0.0, "min": 42.5, "max": 42.5, "sum": 42.5}


@pytest.mark.parametrize(
    "values",
    [pl.Series([], dtype=pl.Float64), pl.Series([None, None], dtype=pl.Float64), np.array([np.nan]), pl.Series([None])],
    ids=["empty", "all-null", "all-nan", "null-dtype"],
)
def test_moments_empty_finalizes_to_none(values: pl.Series | np.ndarray) -> None:
    """Expect no valid values to give n=0 and None for every float entry, with the nulls/NaN counted in missing."""
    f = Moments().update(values).finalize()
    assert f["n"] == 0
    assert f["missing"] == len(values)
    assert all(f[k] is None for k in ("mean", "var", "std", "min", "max", "sum"))


def test_moments_merging_empty_is_identity(messy_series: pl.Series) -> None:
    """Expect merging an empty Moments (either side) to leave the state unchanged, and merge/update to return self."""
    m = Moments().update(messy_series)
    before = Moments(**vars(m))
    assert m.merge(Moments()) is m
    assert m == before
    assert Moments().merge(m) == before
    empty = Moments()
    assert empty.update(pl.Series([], dtype=pl.Float64)) is empty


def test_moments_merge_does_not_change_other() -> None:
    """Expect merge to leave its argument as it was."""
    a, b = Moments().update(np.array([1.0, 2.0])), Moments().update(np.array([10.0]))
    snapshot = Moments(**vars(b))
    a.merge(b)
    assert b == snapshot


def test_moments_integer_and_boolean_columns_are_cast_to_float() -> None:
    """Expect ints (with nulls) and booleans to be summarised as float64."""
    f = Moments().update(pl.Series([1, None, 2, 3], dtype=pl.Int32)).finalize()
    assert (f["n"], f["missing"], f["mean"], f["min"], f["max"]) == (3, 1, 2.0, 1.0, 3.0)
    assert Moments().update(pl.Series([True, False, True, True])).finalize()["mean"] == 0.75


def test_moments_catastrophic_cancellation_stays_accurate() -> None:
    """Expect 1e9 + N(0, 10) in 100 chunks: naive sum/sum-of-squares is off by >10%, Chan within 1e-9 of numpy."""
    rng = np.random.default_rng(11)
    x = 1e9 + rng.normal(0, 10, 1_000_000)
    exact = np.var(x)
    naive = np.sum(x * x) / x.size - (np.sum(x) / x.size) ** 2
    assert abs(naive / exact - 1) > 0.1
    m = Moments()
    for c in np.array_split(x, 100):
        m.merge(Moments().update(c))
    assert m.finalize()["var"] == pytest.approx(exact, rel=1e-9)
    assert m.finalize()["mean"] == pytest.approx(np.mean(x), rel=1e-15)


def test_moments_from_parts_merges_like_update() -> None:
    """Expect a partial built with from_parts from Polars aggregates to merge like one computed by update."""
    rng = np.random.default_rng(5)
    a, b = rng.normal(3, 2, 500), rng.normal(-1, 4, 300)
    sb = pl.Series(b)
    part = Moments.from_parts(
        n=sb.len(), mean=sb.mean(), m2=sb.var(ddof=0) * sb.len(), min=sb.min(), max=sb.max(), missing=2
    )
    m = Moments().update(a).merge(part)
    assert m.missing == 2
    assert_moments_match_numpy(Moments(**{**vars(m), "missing": 0}), np.concatenate([a, b]))
    assert Moments.from_parts(0, 123.0, 5.0, None, None, missing=4) == Moments(missing=4)
    with pytest.raises(ValueError, match="m2"):
        Moments.from_parts(3, 0.0, -1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="min and max"):
        Moments.from_parts(3, 0.0, 1.0, None, 1.0)


def test_moments_infinite_values_propagate_like_numpy() -> None:
    """Expect +inf to give mean inf and var NaN (as numpy), and the JSON form to encode them without NaN literals."""
    m = Moments().update(np.array([1.0, np.inf, 2.0]))
    f = m.finalize()
    assert f["mean"] == np.inf and np.isnan(f["var"]) and f["max"] == np.inf
    back = Moments.from_dict(json_round_trip(m.to_dict()))
    assert back.mean == np.inf and np.isnan(back.m2) and back.max == np.inf


def test_moments_rejects_non_numeric_and_2d_input() -> None:
    """Expect a string column to raise TypeError naming the dtype, and a 2-D array to raise ValueError."""
    with pytest.raises(TypeError, match="String"):
        Moments().update(pl.Series("city", ["a"]))
    with pytest.raises(ValueError, match="1-D"):
        Moments().update(np.zeros((2, 2)))


def test_moments_json_round_trip(messy_series: pl.Series) -> None:
    """Expect to_dict -> json.dumps(allow_nan=False) -> from_dict to give an equal object, empty included."""
    for m in (Moments().update(messy_series), Moments(missing=3)):
        d = json_round_trip(m.to_dict())
        assert d["type"] == "moments"
        assert Moments.from_dict(d) == m
        assert stat_from_dict(d) == m


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"type": "counts"}, "expected type 'moments'"),
        ({"n": -1}, "'n' must be an integer"),
        ({"n": 1.5}, "'n' must be an integer"),
        ({"missing": True}, "'missing' must be an integer"),
        ({"mean": "1"}, "'mean' must be a number"),
        ({"m2": -1.0}, "m2 must be >= 0"),
        ({"min": 10.0}, "min 10.0 is greater than max"),
        ({"max": None}, "'max' must be a number"),
        ({"extra": 1}, "unexpected keys \\['extra'\\]"),
        ({"mean": {"$float": "big"}}, "unknown tagged float"),
    ],
)
def test_moments_from_dict_rejects_bad_input(change: dict, match: str) -> None:
    """Expect each malformed field to raise ArtifactError with a message naming it."""
    d = Moments().update(np.array([1.0, 2.0, 3.0])).to_dict() | change
    with pytest.raises(ArtifactError, match=match):
        Moments.from_dict(d)


def test_moments_from_dict_rejects_missing_keys_and_non_dicts() -> None:
    """Expect a missing key, a non-object and an empty state with a min to raise ArtifactError."""
    d = Moments().update(np.array([1.0])).to_dict()
    del d["m2"]
    with pytest.raises(ArtifactError, match="missing keys \\['m2'\\]"):
        Moments.from_dict(d)
    with pytest.raises(ArtifactError, match="JSON object"):
        Moments.from_dict([1, 2])
    with pytest.raises(ArtifactError, match="n is 0"):
        Moments.from_dict(Moments().to_dict() | {"min": 1.0})


# ---------------------------------------------------------------- Counts


@pytest.fixture
def cities() -> pl.Series:
    """5000 city names (Zipf-like frequencies over 40 names) with ~7% nulls."""
    rng = np.random.default_rng(3)
    names = np.array([f"city{i:02d}" for i in range(40)])
    weights = 1 / np.arange(1, 41)
    s = pl.Series("city", rng.choice(names, 5000, p=weights / weights.sum()))
    return s.scatter(np.flatnonzero(rng.random(5000) < 0.07), None)


@pytest.mark.parametrize("seed", range(4))
def test_counts_chunked_equals_whole_and_reference(cities: pl.Series, seed: int) -> None:
    """Expect counts merged from random chunks to equal counts of the whole column and collections.Counter, exactly."""
    rng = np.random.default_rng(seed)
    whole = Counts().update(cities).finalize()
    parts = [Counts().update(c) for c in random_chunks(cities, rng)]
    merged = reduce(lambda a, b: a.merge(b), parts, Counts()).finalize()
    assert merged == whole
    reference = Counter(v for v in cities.to_list() if v is not None)
    assert whole["counts"] == dict(reference)
    assert whole["nulls"] == cities.null_count()
    assert (whole["other"], whole["truncated"]) == (0, False)


def test_counts_finalize_orders_by_count_then_value() -> None:
    """Expect finalize's dict to list the most frequent value first, ties by ascending value."""
    c = Counts().update(pl.Series(["b", "a", "c", "c", "b", "a", "d"]))
    assert list(c.finalize()["counts"].items()) == [("a", 2), ("b", 2), ("c", 2), ("d", 1)]


def test_counts_cap_keeps_most_frequent_and_folds_others() -> None:
    """Expect cap=2 to keep the 2 most frequent (tie on count broken by smaller value) and fold the rest into other."""
    c = Counts(cap=2).update(pl.Series([5, 5, 5, 3, 3, 9, 9, 1, None]))
    assert c.finalize() == {"counts": {5: 3, 3: 2}, "other": 3, "nulls": 1, "truncated": True}
    assert sum(c.finalize()["counts"].values()) + c.other + c.nulls == 9


def test_counts_merge_applies_cap_to_the_union() -> None:
    """Expect two untruncated Counts whose union exceeds the cap to be truncated on merge, totals preserved."""
    a = Counts(cap=3).update(pl.Series(["x", "x", "y", "z"]))
    b = Counts(cap=3).update(pl.Series(["w", "w", "w", "y"]))
    assert not a.truncated and not b.truncated
    a.merge(b)
    assert a.finalize() == {"counts": {"w": 3, "x": 2, "y": 2}, "other": 1, "nulls": 0, "truncated": True}
    assert b.finalize()["counts"] == {"w": 3, "y": 1}  # other unchanged


def test_counts_truncated_merge_is_deterministic() -> None:
    """Expect capped counts merged from chunks in any order to equal the whole column's when the kept values dominate.

    5 heavy values (900 each) and 40 light ones (5 each) in 10 chunks: every chunk keeps the heavy values, so
    their counts stay exact and the light ones all go to `other`, whatever the merge order.
    """
    rng = np.random.default_rng(0)
    values = np.concatenate([np.repeat(np.arange(5), 900), np.repeat(np.arange(100, 140), 5)])
    rng.shuffle(values)
    whole = Counts(cap=5).update(values).finalize()
    assert whole == {"counts": dict.fromkeys(range(5), 900), "other": 200, "nulls": 0, "truncated": True}
    parts = [Counts(cap=5).update(c) for c in np.array_split(values, 10)]
    for _ in range(3):
        order = rng.permutation(len(parts))
        merged = reduce(lambda a, b: a.merge(b), [parts[i] for i in order], Counts(cap=5))
        assert merged.finalize() == whole


def test_counts_nulls_and_float_nan_are_counted_as_nulls() -> None:
    """Expect nulls to go to `nulls` for any dtype, and NaN too for floats; an all-null chunk is accepted."""
    c = Counts().update(pl.Series([1.5, None, float("nan"), 1.5, float("inf")]))
    assert c.finalize() == {"counts": {1.5: 2, float("inf"): 1}, "other": 0, "nulls": 2, "truncated": False}
    assert Counts().update(pl.Series([None, None])).finalize()["nulls"] == 2
    assert Counts().update(np.array(["a", None, "a"], dtype=object)).finalize()["counts"] == {"a": 2}


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (pl.Series(["1", "2", "2", None]), "str"),
        (pl.Series([1, 2, 2, None]), "int"),
        (pl.Series([True, False, False, None]), "bool"),
        (pl.Series([1.0, 2.0, 2.0, None]), "float"),
        (pl.Series(["1", "2", "2", None], dtype=pl.Categorical), "str"),
        (np.array([1, 2, 2], dtype=np.uint8), "int"),
    ],
)
def test_counts_json_round_trip_keeps_value_types(values: pl.Series | np.ndarray, kind: str) -> None:
    """Expect JSON to bring back the same values with the same Python types ("1" stays str, True stays bool)."""
    c = Counts().update(values)
    d = json_round_trip(c.to_dict())
    assert d["kind"] == kind and d["type"] == "counts"
    back = Counts.from_dict(d)
    assert back.finalize() == c.finalize()
    assert [type(v) for v in back.finalize()["counts"]] == [type(v) for v in c.finalize()["counts"]]
    assert stat_from_dict(d).finalize() == c.finalize()


def test_counts_string_one_and_int_one_stay_distinct() -> None:
    """Expect "1" (str) and 1 (int), True (bool) and 1 (int) to come back as different keys after JSON."""
    s = Counts.from_dict(json_round_trip(Counts().update(pl.Series(["1"])).to_dict())).finalize()["counts"]
    i = Counts.from_dict(json_round_trip(Counts().update(pl.Series([1])).to_dict())).finalize()["counts"]
    b = Counts.from_dict(json_round_trip(Counts().update(pl.Series([True])).to_dict())).finalize()["counts"]
    assert list(s) == ["1"] and type(next(iter(i))) is int and type(next(iter(b))) is bool


def test_counts_refuses_mixing_kinds_and_unsupported_dtypes() -> None:
    """Expect a chunk of another kind, or a dtype that cannot be counted, to raise TypeError."""
    c = Counts().update(pl.Series(["a"]))
    with pytest.raises(TypeError, match="int values into counts of str"):
        c.update(pl.Series([1]))
    with pytest.raises(TypeError, match="cannot count"):
        Counts().update(pl.Series([[1], [2]]))
    with pytest.raises(ValueError, match="cap"):
        Counts(cap=0)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"kind": "int", "values": [True, 2]}, "must not be of type bool"),
        ({"kind": "int", "values": ["a", 2]}, "must not be of type str"),
        ({"kind": "str", "values": [1, 2]}, "must not be of type int"),
        ({"kind": "date"}, "unknown value kind 'date'"),
        ({"counts": [1]}, "same length"),
        ({"counts": [1, -2]}, "integers >= 0"),
        ({"counts": [1, 2.0]}, "integers >= 0"),
        ({"values": [1, 1]}, "duplicates"),
        ({"cap": 1}, "exceed the cap"),
        ({"truncated": "no"}, "'truncated' must be true or false"),
        ({"kind": None}, "'kind' is null but values"),
        ({"other": -1}, "'other' must be an integer"),
    ],
)
def test_counts_from_dict_rejects_bad_input(change: dict, match: str) -> None:
    """Expect each malformed field to raise ArtifactError with a message naming it."""
    d = Counts().update(pl.Series([1, 2, 2])).to_dict() | change
    with pytest.raises(ArtifactError, match=match):
        Counts.from_dict(d)


# ---------------------------------------------------------------- QuantileSketch


@pytest.fixture(scope="module")
def heavy_data() -> np.ndarray:
    """1e6 values: half N(0, 1), half Student t(1.5) (heavy tails), shuffled."""
    rng = np.random.default_rng(2024)
    x = np.concatenate([rng.normal(0, 1, 500_000), rng.standard_t(1.5, 500_000) * 10])
    rng.shuffle(x)
    return x


def test_sketch_quantile_ranks_are_within_rank_error(heavy_data: np.ndarray) -> None:
    """Expect each sketch quantile's rank in the data (10 merged chunk sketches) to be within rank_error of its prob."""
    probs = [0.01, 0.25, 0.5, 0.75, 0.99]
    sketch = reduce(
        lambda a, b: a.merge(b), [QuantileSketch().update(c) for c in np.array_split(heavy_data, 10)], QuantileSketch()
    )
    assert sketch.n == heavy_data.size and sketch.missing == 0
    assert sketch.min == heavy_data.min() and sketch.max == heavy_data.max()
    eps = sketch.rank_error
    assert 0 < eps < 0.005
    q = sketch.quantiles(probs)
    data = np.sort(heavy_data)
    below = np.searchsorted(data, q, side="left") / data.size  # fraction strictly below q
    upto = np.searchsorted(data, q, side="right") / data.size  # fraction <= q
    for p, lo, hi in zip(probs, below, upto, strict=True):
        assert lo - eps <= p <= hi + eps, (p, lo, hi, eps)
    # and the value is close to numpy's linear-interpolated quantile, within the same rank band
    exact_lo, exact_hi = (
        np.quantile(data, np.clip(np.array(probs) - eps, 0, 1)),
        np.quantile(data, np.clip(np.array(probs) + eps, 0, 1)),
    )
    assert np.all((exact_lo <= q) & (q <= exact_hi))


def test_sketch_small_input_is_exact_order_statistic() -> None:
    """Expect fewer than k values to give exact inverted-CDF quantiles (no interpolation), with min/max exact."""
    s = QuantileSketch().update(pl.Series([4.0, 1.0, 3.0, 2.0]))
    assert s.quantiles([0.0, 0.25, 0.5, 0.51, 1.0]) == [1.0, 1.0, 2.0, 3.0, 4.0]
    assert (s.min, s.max, s.n) == (1.0, 4.0, 4)


def test_sketch_counts_null_and_nan_as_missing() -> None:
    """Expect nulls (Series) and NaN (array) to be counted in missing and not sketched."""
    s = QuantileSketch().update(pl.Series([1.0, None, float("nan"), 3.0]))
    s.update(np.array([np.nan, 2.0]))
    s.update(pl.Series([5, None], dtype=pl.Int64))
    assert (s.n, s.missing) == (4, 4)
    assert s.finalize() == {"n": 4, "missing": 4, "k": DEFAULT_K, "rank_error": s.rank_error}


def test_sketch_empty_gives_none() -> None:
    """Expect an empty sketch to return None quantiles and min/max, and merging it to change nothing."""
    s = QuantileSketch().update(np.array([np.nan]))
    assert s.quantiles([0.5]) is None and s.min is None and s.max is None
    full = QuantileSketch().update(np.arange(100.0))
    before = full.quantiles([0.1, 0.9])
    assert full.merge(s) is full
    assert full.quantiles([0.1, 0.9]) == before and full.n == 100 and full.missing == 1


def test_sketch_serialise_round_trip_gives_identical_quantiles(heavy_data: np.ndarray) -> None:
    """Expect to_dict -> JSON -> from_dict to give the same n, missing, k and bit-identical quantiles."""
    s = QuantileSketch(k=200).update(heavy_data[:200_000]).update(np.array([np.nan, np.nan]))
    d = json_round_trip(s.to_dict())
    assert d["type"] == "kll" and d["k"] == 200 and d["missing"] == 2
    back = QuantileSketch.from_dict(d)
    probs = np.linspace(0, 1, 101)
    assert back.quantiles(probs) == s.quantiles(probs)
    assert (back.n, back.missing, back.k, back.min, back.max) == (s.n, s.missing, s.k, s.min, s.max)
    assert stat_from_dict(d).quantiles(probs) == s.quantiles(probs)


def test_sketch_merge_requires_same_k() -> None:
    """Expect merging sketches of different k to raise ValueError naming both k."""
    with pytest.raises(ValueError, match="k=200 into one of k=800"):
        QuantileSketch(k=800).merge(QuantileSketch(k=200).update(np.arange(10.0)))


def test_sketch_rejects_bad_parameters() -> None:
    """Expect k out of range and probabilities outside [0, 1] to raise ValueError."""
    with pytest.raises(ValueError, match="k must be"):
        QuantileSketch(k=4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        QuantileSketch().update(np.arange(5.0)).quantiles([0.5, 1.5])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"sketch": "not base64!"}, "not valid base64"),
        ({"sketch": base64.b64encode(b"garbage bytes").decode()}, "cannot be deserialised"),
        ({"sketch": 12}, "base64 string"),
        ({"k": 200}, "'k' is 200 but the serialised sketch has k=800"),
        ({"k": 3}, "k must be in"),
        ({"missing": -1}, "'missing' must be an integer"),
        ({"type": "kl"}, "expected type 'kll'"),
    ],
)
def test_sketch_from_dict_rejects_bad_input(change: dict, match: str) -> None:
    """Expect corrupt or inconsistent JSON to raise ArtifactError with a message naming the problem."""
    d = QuantileSketch().update(np.arange(50.0)).to_dict() | change
    with pytest.raises(ArtifactError, match=match):
        QuantileSketch.from_dict(d)


def test_sketch_truncated_bytes_raise_artifact_error() -> None:
    """Expect a sketch payload cut short to raise ArtifactError rather than crash."""
    d = QuantileSketch().update(np.arange(5000.0)).to_dict()
    raw = base64.b64decode(d["sketch"])
    d["sketch"] = base64.b64encode(raw[: len(raw) // 2]).decode()
    with pytest.raises(ArtifactError, match="cannot be deserialised"):
        QuantileSketch.from_dict(d)


# ---------------------------------------------------------------- dispatch


def test_stat_from_dict_rejects_unknown_type() -> None:
    """Expect an unknown or missing "type" to raise ArtifactError, suggesting the closest known type."""
    with pytest.raises(ArtifactError, match="did you mean 'moments'"):
        stat_from_dict({"type": "moment"})
    with pytest.raises(ArtifactError, match="unknown type None"):
        stat_from_dict({})
    with pytest.raises(ArtifactError, match="JSON object"):
        stat_from_dict("moments")
