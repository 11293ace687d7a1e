"""(c) hand-written Polars: what a Polars expert writes for each case, knowing the data.

``pl.read_parquet`` once, then one fit query (a single ``select`` of every
statistic; all the quantiles of a column from one ``quantile([...])`` call) and one
transform query. The expert knows the input: missing values are nulls (no NaN, no
+/-inf), the category column has no nulls. Where a fit needs statistics of a
filtered frame (case 5) or neighbours (case 6) it takes a second query or NumPy,
as noted per case. Outputs are Polars DataFrames laid out like prepflow's.

Statistics match scikit-learn's: population variance, linear-interpolated
quantiles; a median-imputed column's quantiles are taken on the imputed column
(``fill_null(median)`` inside the same expression).
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from benchmarks.cases import IQR_K, K_NEIGHBORS, N_QUANTILES, SEED, SUBSAMPLE, ZSCORE_THRESHOLD, Context
from benchmarks.data import CAT, FEATURES, LABEL
from benchmarks.timing import loaded

Work = Callable[[], Any]
F = list(FEATURES)


def _scale(value: float) -> float:
    """A zero scale becomes 1 (scikit-learn's rule)."""
    return value if value > 0 else 1.0


def case1(ctx: Context) -> Work:
    def work() -> pl.DataFrame:
        df = pl.read_parquet(ctx.data.parquet)
        loaded()
        s = df.select(
            *(pl.col(c).mean().alias(f"{c}.mean") for c in F),
            *(pl.col(c).var(ddof=0).alias(f"{c}.var") for c in F),
            *(pl.col(c).count().alias(f"{c}.n") for c in F),
        ).row(0, named=True)
        n = df.height
        exprs = []
        for c in F:
            mean = s[f"{c}.mean"]
            std = _scale(math.sqrt(s[f"{c}.var"] * s[f"{c}.n"] / n))  # imputing the mean keeps the squared deviations
            exprs.append(((pl.col(c).fill_null(mean) - mean) / std).alias(c))
        return df.with_columns(exprs)

    return work


def _imputed_quantiles(c: str, probs: list[float]) -> pl.Expr:
    """Quantiles of the median-imputed column, in one expression (its median is the fill value)."""
    x = pl.col(c)
    return x.fill_null(x.median()).quantile(probs, "linear").alias(c)


def case2(ctx: Context) -> Work:
    def work() -> pl.DataFrame:
        df = pl.read_parquet(ctx.data.parquet)
        loaded()
        q = df.select(_imputed_quantiles(c, [0.25, 0.5, 0.75]) for c in F).row(0, named=True)
        # the median of the imputed column is the median it was imputed with
        return df.with_columns(
            ((pl.col(c).fill_null(q[c][1]) - q[c][1]) / _scale(q[c][2] - q[c][0])).alias(c) for c in F
        )

    return work


def _fit_case3(df: pl.DataFrame) -> dict[str, Any]:
    """Case 3's state: fill value, clip bounds and robust centre/scale per column, and the categories.

    Two queries: the clip bounds must be known before the clipped column's quantiles.
    """
    first = df.select(
        *(_imputed_quantiles(c, [0.25, 0.5, 0.75]) for c in F), pl.col(CAT).unique().sort().implode()
    ).row(0, named=True)
    state: dict[str, Any] = {"categories": first[CAT]}
    for c in F:
        q1, median, q3 = first[c]
        state[c] = {"fill": median, "lower": q1 - IQR_K * (q3 - q1), "upper": q3 + IQR_K * (q3 - q1)}
    second = df.select(
        pl.col(c)
        .fill_null(state[c]["fill"])
        .clip(state[c]["lower"], state[c]["upper"])
        .quantile([0.25, 0.5, 0.75], "linear")
        for c in F
    ).row(0, named=True)
    for c in F:
        q1, median, q3 = second[c]
        state[c].update(center=median, scale=_scale(q3 - q1))
    return state


def _transform_case3(df: pl.DataFrame, state: dict[str, Any]) -> pl.DataFrame:
    exprs: list[pl.Expr] = []
    for c in F:
        s = state[c]
        x = pl.col(c).fill_null(s["fill"]).clip(s["lower"], s["upper"])
        exprs.append(((x - s["center"]) / s["scale"]).alias(c))
    onehot = [(pl.col(CAT) == v).cast(pl.UInt8).alias(f"{CAT}_{v}") for v in state["categories"]]
    return df.select(*exprs, *onehot, pl.col(LABEL))


def case3(ctx: Context) -> Work:
    def work() -> pl.DataFrame:
        df = pl.read_parquet(ctx.data.parquet)
        loaded()
        return _transform_case3(df, _fit_case3(df))

    return work


#: scikit-learn's QuantileTransformer BOUNDS_THRESHOLD
_BOUND = 1e-7


def _quantile_normal(quantiles: np.ndarray) -> Callable[[pl.Series], pl.Series]:
    """Map a column through its fitted quantiles to normal scores (NumPy inside ``map_batches``)."""
    from scipy.special import ndtri  # imported in case 4's untimed setup

    refs = np.linspace(0.0, 1.0, quantiles.size)
    clip = float(ndtri(1 - (_BOUND - np.spacing(1))))  # the normal scores scikit-learn clips to

    def apply(s: pl.Series) -> pl.Series:
        x = s.to_numpy()  # nulls become NaN; np.interp and ndtri keep NaN
        u = np.interp(x, quantiles, refs)
        u[x - _BOUND < quantiles[0]] = 0.0
        u[x + _BOUND > quantiles[-1]] = 1.0
        return pl.Series(s.name, np.clip(ndtri(u), -clip, clip)).fill_nan(None)

    return apply


def case4(ctx: Context) -> Work:
    importlib.import_module("scipy.special")
    probs = np.linspace(0.0, 1.0, N_QUANTILES).tolist()

    def work() -> pl.DataFrame:
        df = pl.read_parquet(ctx.data.parquet)
        loaded()
        sample = SUBSAMPLE if df.height >= 2 * SUBSAMPLE else None

        def values(c: str) -> pl.Expr:
            x = pl.col(c).drop_nulls()
            return x.sample(n=sample, seed=SEED) if sample else x

        q = df.select(values(c).quantile(probs, "linear").alias(c) for c in F).row(0, named=True)
        return df.with_columns(
            pl.col(c).map_batches(_quantile_normal(np.maximum.accumulate(q[c])), return_dtype=pl.Float64) for c in F
        )

    return work


def case5(ctx: Context) -> Work:
    def work() -> pl.DataFrame:
        df = pl.read_parquet(ctx.data.parquet)
        loaded()
        s = df.select(
            *(pl.col(c).mean().alias(f"{c}.mean") for c in F), *(pl.col(c).std(ddof=0).alias(f"{c}.std") for c in F)
        ).row(0, named=True)
        half = {c: ZSCORE_THRESHOLD * s[f"{c}.std"] for c in F}
        outlying = [
            ((pl.col(c) < s[f"{c}.mean"] - half[c]) | (pl.col(c) > s[f"{c}.mean"] + half[c])).fill_null(False)
            for c in F
        ]
        kept = df.filter(~pl.any_horizontal(outlying))
        # second query: the imputed means are those of the kept rows
        means = kept.select(pl.col(F).mean()).row(0, named=True)
        return kept.with_columns(
            *(pl.col(c).fill_null(means[c]) for c in F), *(pl.col(c).is_null().alias(f"{c}__missing") for c in F)
        )

    return work


def _smote(x: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points between random rows of ``x`` and one of their ``K_NEIGHBORS`` nearest rows."""
    from sklearn.neighbors import NearestNeighbors  # imported in case 6's untimed setup

    neighbours = NearestNeighbors(n_neighbors=K_NEIGHBORS + 1).fit(x).kneighbors(x, return_distance=False)[:, 1:]
    rows = rng.integers(0, len(x), size=n)
    picks = neighbours[rows, rng.integers(0, K_NEIGHBORS, size=n)]
    return x[rows] + rng.random(n)[:, None] * (x[picks] - x[rows]), rows


def case6(ctx: Context) -> Work:
    importlib.import_module("sklearn.neighbors")

    def work() -> pl.DataFrame:
        df = pl.read_parquet(ctx.data.parquet)
        loaded()
        stats = df.select(*(pl.col(c).mean() for c in F), pl.col(LABEL).value_counts().implode()).row(0, named=True)
        df = df.with_columns(pl.col(c).fill_null(stats[c]) for c in F)
        counts = {d[LABEL]: d["count"] for d in stats[LABEL]}
        minority = min(counts, key=counts.__getitem__)
        rows = df.filter(pl.col(LABEL) == minority)
        new, seeds = _smote(
            rows.select(F).to_numpy(), max(counts.values()) - counts[minority], np.random.default_rng(SEED)
        )
        synthetic = rows[seeds].with_columns(pl.Series(c, new[:, j]) for j, c in enumerate(F))
        return pl.concat([df, synthetic])

    return work


def _artifact(ctx: Context) -> Any:
    return ctx.work / "polars_hand.json"


def prepare(ctx: Context) -> None:
    """Case 7: fit case 3's state on the training set and save it as JSON."""
    if ctx.case == 7 and ctx.train is not None:
        _artifact(ctx).write_text(json.dumps(_fit_case3(pl.read_parquet(ctx.train.parquet))))


def case7(ctx: Context) -> Work:
    def work() -> pl.DataFrame:
        state = json.loads(_artifact(ctx).read_text())
        df = pl.read_parquet(ctx.data.parquet)
        loaded()
        return _transform_case3(df, state)

    return work


CASES = {1: case1, 2: case2, 3: case3, 4: case4, 5: case5, 6: case6, 7: case7}
