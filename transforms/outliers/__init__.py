"""Outlier steps: univariate bounds (zscore, iqr, mad, percentile) and isolation forest.

Each has an ``action``: clip (univariate only), flag, null or drop.
"""

from transforms.outliers.bounds import (
    FittedBounds,
    IQROutliers,
    MADOutliers,
    PercentileOutliers,
    ZScoreOutliers,
)
from transforms.outliers.isolation_forest import FittedIsolationForest, IsolationForestOutliers

__all__ = [
    "FittedBounds",
    "FittedIsolationForest",
    "IQROutliers",
    "IsolationForestOutliers",
    "MADOutliers",
    "PercentileOutliers",
    "ZScoreOutliers",
]
