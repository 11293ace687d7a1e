"""Scaling steps: standard, minmax, robust, maxabs, quantile, power, log."""

from transforms.scale.affine import FittedAffine, MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler
from transforms.scale.log import FittedLog, LogScaler
from transforms.scale.power import FittedPower, PowerScaler
from transforms.scale.quantile import FittedQuantile, QuantileScaler

__all__ = [
    "FittedAffine",
    "FittedLog",
    "FittedPower",
    "FittedQuantile",
    "LogScaler",
    "MaxAbsScaler",
    "MinMaxScaler",
    "PowerScaler",
    "QuantileScaler",
    "RobustScaler",
    "StandardScaler",
]
