"""(a) scikit-learn (and imbalanced-learn) estimators on NumPy arrays loaded from ``.npy``.

Features are ``X.npy`` (float64, NaN for missing), the category codes ``cat.npy``
and the label ``y.npy``. Outputs are NumPy arrays (features only; the label
where rows change).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import QuantileTransformer, RobustScaler, StandardScaler

from benchmarks.cases import K_NEIGHBORS, N_QUANTILES, SEED, SUBSAMPLE, ZSCORE_THRESHOLD, Context
from benchmarks.timing import loaded
from benchmarks.variants._sklearn_parts import case3_numeric, case3_onehot

Work = Callable[[], Any]


def case1(ctx: Context) -> Work:
    def work() -> np.ndarray:
        X = np.load(ctx.data.x_npy)
        loaded()
        return make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()).fit_transform(X)

    return work


def case2(ctx: Context) -> Work:
    def work() -> np.ndarray:
        X = np.load(ctx.data.x_npy)
        loaded()
        return make_pipeline(SimpleImputer(strategy="median"), RobustScaler()).fit_transform(X)

    return work


def case3(ctx: Context) -> Work:
    def work() -> np.ndarray:
        X, cat = np.load(ctx.data.x_npy), np.load(ctx.data.cat_npy)
        loaded()
        return np.hstack([case3_numeric().fit_transform(X), case3_onehot().fit_transform(cat[:, None])])

    return work


def case4(ctx: Context) -> Work:
    def work() -> np.ndarray:
        X = np.load(ctx.data.x_npy)
        loaded()
        qt = QuantileTransformer(
            n_quantiles=N_QUANTILES, output_distribution="normal", subsample=SUBSAMPLE, random_state=SEED
        )
        return qt.fit_transform(X)

    return work


def case5(ctx: Context) -> Work:
    def work() -> tuple[np.ndarray, np.ndarray]:
        X, y = np.load(ctx.data.x_npy), np.load(ctx.data.y_npy)
        loaded()
        mean, std = np.nanmean(X, axis=0), np.nanstd(X, axis=0)
        with np.errstate(invalid="ignore"):
            keep = ~(np.abs(X - mean) > ZSCORE_THRESHOLD * std).any(axis=1)  # NaN compares False
        X, y = X[keep], y[keep]
        return SimpleImputer(strategy="mean", add_indicator=True).fit_transform(X), y

    return work


def case6(ctx: Context) -> Work:
    from imblearn.over_sampling import SMOTE  # only case 6 pays for importing imbalanced-learn
    from imblearn.pipeline import make_pipeline as make_imb_pipeline

    def work() -> tuple[np.ndarray, np.ndarray]:
        X, y = np.load(ctx.data.x_npy), np.load(ctx.data.y_npy)
        loaded()
        pipe = make_imb_pipeline(SimpleImputer(strategy="mean"), SMOTE(k_neighbors=K_NEIGHBORS, random_state=SEED))
        return pipe.fit_resample(X, y)

    return work


def _artifact(ctx: Context) -> Any:
    return ctx.work / "sklearn_numpy.pkl"


def prepare(ctx: Context) -> None:
    """Case 7: fit case 3's estimators on the training set and pickle them."""
    if ctx.case != 7 or ctx.train is None:
        return
    X, cat = np.load(ctx.train.x_npy), np.load(ctx.train.cat_npy)
    fitted = (case3_numeric().fit(X), case3_onehot().fit(cat[:, None]))
    _artifact(ctx).write_bytes(pickle.dumps(fitted))


def case7(ctx: Context) -> Work:
    def work() -> np.ndarray:
        numeric, onehot = pickle.loads(_artifact(ctx).read_bytes())
        X, cat = np.load(ctx.data.x_npy), np.load(ctx.data.cat_npy)
        loaded()
        return np.hstack([numeric.transform(X), onehot.transform(cat[:, None])])

    return work


CASES = {1: case1, 2: case2, 3: case3, 4: case4, 5: case5, 6: case6, 7: case7}
