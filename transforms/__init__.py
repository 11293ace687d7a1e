"""prepflow's library of preprocessing steps on Polars frames.

>>> import polars as pl
>>> import transforms as T
>>> pipe = T.Pipeline([T.SimpleImputer(columns=["x"], strategy="mean"), T.StandardScaler(columns=["x"])])
>>> fitted = pipe.fit(pl.DataFrame({"x": [1.0, None, 3.0]}))
>>> fitted.transform(pl.DataFrame({"x": [None]}, schema={"x": pl.Float64}))["x"].to_list()
[0.0]
"""

from transforms import augment, encode, impute, outliers, scale
from transforms._version import __version__
from transforms.augment import *  # noqa: F403
from transforms.base import FitData, FitPlan, Fitted, Step
from transforms.columns import ColumnSelector
from transforms.encode import *  # noqa: F403
from transforms.errors import (
    ArtifactError,
    ColumnError,
    ConfigError,
    FitError,
    PrepflowError,
    SchemaMismatchError,
)
from transforms.impute import *  # noqa: F403
from transforms.outliers import *  # noqa: F403
from transforms.pipeline import FittedPipeline, Pipeline
from transforms.scale import *  # noqa: F403

__all__ = [
    "ArtifactError",
    "ColumnError",
    "ColumnSelector",
    "ConfigError",
    "FitData",
    "FitError",
    "FitPlan",
    "Fitted",
    "FittedPipeline",
    "Pipeline",
    "PrepflowError",
    "SchemaMismatchError",
    "Step",
    "__version__",
    *scale.__all__,
    *impute.__all__,
    *outliers.__all__,
    *augment.__all__,
    *encode.__all__,
]
