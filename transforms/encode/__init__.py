"""Encoding steps: categorical columns to numbers (onehot, ordinal), as pure Polars expressions."""

from transforms.encode._categories import CategoricalStep
from transforms.encode.onehot import FittedOneHot, OneHotEncoder
from transforms.encode.ordinal import FittedOrdinal, OrdinalEncoder

__all__ = ["CategoricalStep", "FittedOneHot", "FittedOrdinal", "OneHotEncoder", "OrdinalEncoder"]
