"""Scaling steps: standard, minmax, robust, maxabs, quantile, power, log."""

from transforms.scale.affine import FittedAffine, MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

__all__ = ["FittedAffine", "MaxAbsScaler", "MinMaxScaler", "RobustScaler", "StandardScaler"]
