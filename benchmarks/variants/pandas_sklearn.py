"""(b) pandas + scikit-learn as a typical user writes it.

``pd.read_parquet``, then a ``ColumnTransformer`` over the feature columns with
the other columns passed through and pandas output
(``set_output(transform="pandas")``). Outputs are pandas DataFrames.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import QuantileTransformer, RobustScaler, StandardScaler

from benchmarks.cases import K_NEIGHBORS, N_QUANTILES, SEED, SUBSAMPLE, ZSCORE_THRESHOLD, Context
from benchmarks.data import CAT, FEATURES, LABEL
from benchmarks.timing import loaded
from benchmarks.variants._sklearn_parts import case3_numeric, case3_onehot

Work = Callable[[], Any]
F = list(FEATURES)


def _columns(numeric: Any, *extra: tuple[str, Any, list[str]]) -> ColumnTransformer:
    ct = ColumnTransformer([("num", numeric, F), *extra], remainder="passthrough", verbose_feature_names_out=False)
    return ct.set_output(transform="pandas")


def _case3() -> ColumnTransformer:
    return _columns(case3_numeric(), ("cat", case3_onehot(), [CAT]))


def case1(ctx: Context) -> Work:
    def work() -> pd.DataFrame:
        df = pd.read_parquet(ctx.data.parquet)
        loaded()
        return _columns(make_pipeline(SimpleImputer(strategy="mean"), StandardScaler())).fit_transform(df)

    return work


def case2(ctx: Context) -> Work:
    def work() -> pd.DataFrame:
        df = pd.read_parquet(ctx.data.parquet)
        loaded()
        return _columns(make_pipeline(SimpleImputer(strategy="median"), RobustScaler())).fit_transform(df)

    return work


def case3(ctx: Context) -> Work:
    def work() -> pd.DataFrame:
        df = pd.read_parquet(ctx.data.parquet)
        loaded()
        return _case3().fit_transform(df)

    return work


def case4(ctx: Context) -> Work:
    def work() -> pd.DataFrame:
        df = pd.read_parquet(ctx.data.parquet)
        loaded()
        qt = QuantileTransformer(
            n_quantiles=N_QUANTILES, output_distribution="normal", subsample=SUBSAMPLE, random_state=SEED
        )
        return _columns(qt).fit_transform(df)

    return work


def case5(ctx: Context) -> Work:
    def work() -> pd.DataFrame:
        df = pd.read_parquet(ctx.data.parquet)
        loaded()
        num = df[F]
        z = (num - num.mean()) / num.std(ddof=0)
        df = df[~(z.abs() > ZSCORE_THRESHOLD).any(axis=1)]
        return _columns(SimpleImputer(strategy="mean", add_indicator=True)).fit_transform(df)

    return work


def case6(ctx: Context) -> Work:
    from imblearn.over_sampling import SMOTE  # only case 6 pays for importing imbalanced-learn
    from imblearn.pipeline import make_pipeline as make_imb_pipeline

    def work() -> tuple[pd.DataFrame, pd.Series]:
        df = pd.read_parquet(ctx.data.parquet)
        loaded()
        pipe = make_imb_pipeline(
            SimpleImputer(strategy="mean").set_output(transform="pandas"),
            SMOTE(k_neighbors=K_NEIGHBORS, random_state=SEED),
        )
        return pipe.fit_resample(df[F], df[LABEL])

    return work


def _artifact(ctx: Context) -> Any:
    return ctx.work / "pandas_sklearn.pkl"


def prepare(ctx: Context) -> None:
    """Case 7: fit case 3's ColumnTransformer on the training set and pickle it."""
    if ctx.case != 7 or ctx.train is None:
        return
    _artifact(ctx).write_bytes(pickle.dumps(_case3().fit(pd.read_parquet(ctx.train.parquet))))


def case7(ctx: Context) -> Work:
    def work() -> pd.DataFrame:
        ct = pickle.loads(_artifact(ctx).read_bytes())
        df = pd.read_parquet(ctx.data.parquet)
        loaded()
        return ct.transform(df)

    return work


CASES = {1: case1, 2: case2, 3: case3, 4: case4, 5: case5, 6: case6, 7: case7}
