"""scikit-learn pieces shared by the NumPy and pandas variants (NumPy and sklearn only).

scikit-learn has no IQR clipper; :class:`IQRClipper` is the small transformer a
user writes for it (Tukey's fences from ``np.nanpercentile``, then ``np.clip``).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, RobustScaler
from sklearn.utils.validation import validate_data

from benchmarks.cases import IQR_K


class IQRClipper(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Clip each column to ``[q1 - k * IQR, q3 + k * IQR]`` (linear-interpolated quartiles)."""

    def __init__(self, k: float = IQR_K) -> None:
        self.k = k

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        q1, q3 = np.nanpercentile(X, [25, 75], axis=0)
        self.lower_, self.upper_ = q1 - self.k * (q3 - q1), q3 + self.k * (q3 - q1)
        return self

    def transform(self, X):
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False)
        return np.clip(X, self.lower_, self.upper_)


def case3_numeric() -> Pipeline:
    """Case 3's numeric part: median impute -> IQR clip -> robust scale."""
    return make_pipeline(SimpleImputer(strategy="median"), IQRClipper(), RobustScaler())


def case3_onehot() -> OneHotEncoder:
    """Case 3's categorical part."""
    return OneHotEncoder(sparse_output=False, handle_unknown="ignore")
