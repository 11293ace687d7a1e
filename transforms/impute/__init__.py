"""Impute steps: simple (mean, median, most_frequent, constant), forward/backward fill, group, knn.

Null and NaN are both missing; statistics ignore missing values and +/-inf. Every
step has ``add_indicator`` (a ``<col>__missing`` column per selected column) and
reports ``imputed:<col>`` metrics (missing values in its input).
"""

from transforms.impute.fill import FillImputer, FittedFillImputer
from transforms.impute.group import FittedGroupImputer, GroupImputer
from transforms.impute.knn import FittedKNNImputer, KNNImputer
from transforms.impute.simple import FittedSimpleImputer, SimpleImputer

__all__ = [
    "FillImputer",
    "FittedFillImputer",
    "FittedGroupImputer",
    "FittedKNNImputer",
    "FittedSimpleImputer",
    "GroupImputer",
    "KNNImputer",
    "SimpleImputer",
]
