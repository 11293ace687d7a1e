"""Scaling steps: standard, minmax, robust, maxabs, quantile, power, log."""

from transforms.scale.affine import FittedAffine, MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler
from transforms.scale.quantile import FittedQuantile, QuantileScaler

__all__ = [
    "FittedAffine",
    "FittedQuantile",
    "MaxAbsScaler",
    "MinMaxScaler",
    "QuantileScaler",
    "RobustScaler",
    "StandardScaler",
]
