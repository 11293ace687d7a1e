"""The in-memory fit computes statistics of finite values on the raw float columns, guarded by their mean.

A column whose raw mean is finite (or null) holds no NaN and no infinity, so its count, mean,
variance, min, max and mode are those of the masked column; the others are recomputed from
the masked column. Either way the numbers are the masked column's, to rounding: Polars may sum a
column with a validity mask in another order than the same values without (1 ulp apart, seen).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from transforms.base import FitPlan, Stat
from transforms.fitting import _collect
from transforms.missing import finite

STATS = ("count", "mean", "var", "std", "min", "max", "sum", "mode")


def _frame(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    nan = rng.normal(size=n)
    nan[rng.random(n) < 0.2] = np.nan
    inf = rng.normal(size=n)
    inf[rng.random(n) < 0.1] = np.inf
    both = rng.normal(size=n) * 1e3
    both[:2] = [np.inf, -np.inf][: min(n, 2)]
    return pl.DataFrame(
        {
            "plain": pl.Series(rng.normal(size=n)).set(pl.Series(rng.random(n) < 0.1), None),
            "nan": nan,
            "inf": inf,
            "both": both,
            "f32": pl.Series(np.round(rng.normal(size=n), 1), dtype=pl.Float32),
            "empty": pl.Series([None] * n, dtype=pl.Float64),
            "huge": np.full(n, 1e308),  # the raw mean overflows: recomputed, still right
            "ints": rng.integers(0, 5, size=n),
        }
    )


@pytest.mark.parametrize("n", [0, 1, 3, 1_000])
def test_statistics_of_finite_values_are_the_masked_columns(n: int) -> None:
    df = _frame(n, seed=n)
    aggregates = {f"{c}:{s}": Stat(finite(c, df.schema[c]), s) for c in df.columns for s in STATS}
    plan = FitPlan(finish=lambda d: d, reads=tuple(df.columns), output_schema=df.schema, aggregates=aggregates)
    (got,) = _collect([plan], df.lazy())
    masked = df.select([finite(c, df.schema[c]).alias(c) for c in df.columns])
    want = masked.select([Stat(pl.col(c), s).expression().alias(f"{c}:{s}") for c in df.columns for s in STATS])
    expected = want.row(0, named=True)
    for key, value in got.aggregates.items():
        e = expected[key]
        if isinstance(e, float) and math.isnan(e):
            assert math.isnan(value), key
        else:
            assert value == (pytest.approx(e, rel=1e-14) if isinstance(e, float) else e), key


def test_a_scaler_fitted_on_nan_and_inf_sees_only_finite_values() -> None:
    from transforms import StandardScaler

    df = _frame(500, seed=4).select("nan", "inf", "both")
    fitted = StandardScaler().fit(df)
    for i, c in enumerate(df.columns):
        x = df[c].to_numpy()
        x = x[np.isfinite(x)]
        assert fitted.center[i] == pytest.approx(x.mean(), rel=1e-12)
        assert fitted.scale[i] == pytest.approx(x.std(), rel=1e-12)


def test_only_finite_masks_of_float_columns_skip_the_mask() -> None:
    from transforms.fitting import _unmasked

    schema = pl.Schema({"x": pl.Float64, "y": pl.Float32, "i": pl.Int64})
    sources = {
        str(e): (name, e)
        for name, e in [
            ("a", finite("x", pl.Float64())),
            ("b", finite("y", pl.Float32())),
            ("c", pl.col("x").abs()),
            ("d", finite("x", pl.Float64()) + pl.col("y")),
            ("e", pl.col("i")),
        ]
    }
    assert _unmasked(sources, schema) == {"a": "x", "b": "y"}
