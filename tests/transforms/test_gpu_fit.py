"""Device fit (evaluated with NumPy): the same fitted state as ``Pipeline.fit``.

Quantile-based state (median, IQR, percentiles, robust scaling), min/max, modes
and counts are equal; means and variances (device partials merged through
``transforms.stats.Moments``) agree to 1e-12 relative.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from test_gpu import NUMERIC, messy

from transforms import (
    GaussianNoise,
    IQROutliers,
    KNNImputer,
    LogScaler,
    MADOutliers,
    MaxAbsScaler,
    MinMaxScaler,
    OrdinalEncoder,
    PercentileOutliers,
    Pipeline,
    PowerScaler,
    RobustScaler,
    SimpleImputer,
    StandardScaler,
    ZScoreOutliers,
)
from transforms.errors import FitError
from transforms.gpu.fit import compute, match, numpy_quantile, polars_quantile
from transforms.gpu.fit import fit_pipeline as gpu_fit
from transforms.missing import finite


def _close(a: object, b: object, path: str = "") -> None:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(b) or math.isinf(b):
            assert (math.isnan(a) and math.isnan(b)) or a == b, path
        else:
            assert abs(a - b) <= 1e-12 * max(abs(b), 1e-300), (path, a, b)
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    else:
        assert a == b and type(a) is type(b), (path, a, b)


def check_fit(steps: list, df: pl.DataFrame, *, exact: bool = False) -> list[dict]:
    ref = Pipeline(steps).fit(df)
    got, where = gpu_fit(Pipeline(steps), df, xp=np)
    for g, r in zip(got.steps, ref.steps, strict=True):
        if exact:
            assert g.to_dict() == r.to_dict()
        else:
            _close(g.to_dict(), r.to_dict())
    return where


@pytest.mark.parametrize("strategy", ["mean", "median", "most_frequent", "constant"])
def test_impute_fit(strategy: str) -> None:
    where = check_fit(
        [SimpleImputer(columns=NUMERIC, strategy=strategy, add_indicator=True)], messy(), exact=strategy != "mean"
    )
    assert where[0]["fit"] == "numpy" and where[0]["apply"] == "numpy"


@pytest.mark.parametrize("cls", [ZScoreOutliers, IQROutliers, MADOutliers, PercentileOutliers])
def test_outlier_fit(cls: type) -> None:
    where = check_fit([cls(columns=NUMERIC, action="drop")], messy(), exact=cls is not ZScoreOutliers)
    assert where[0]["fit"] == "numpy"


@pytest.mark.parametrize(
    "step",
    [
        StandardScaler(columns=NUMERIC),
        MinMaxScaler(columns=NUMERIC),
        RobustScaler(columns=NUMERIC),
        MaxAbsScaler(columns=NUMERIC),
    ],
    ids=lambda s: s.label,
)
def test_scaler_fit(step) -> None:
    check_fit([step], messy(), exact=step.method != "standard")


def test_pipeline_fit_in_order_with_polars_steps() -> None:
    """Each step is fitted on the previous steps' output; steps without a device fit run on Polars."""
    df = messy(400)
    steps = [
        SimpleImputer(columns=["a", "i"], strategy="median"),
        IQROutliers(columns=["a", "b"], action="null"),
        KNNImputer(columns=["b", "a"], n_neighbors=3),
        ZScoreOutliers(columns=["a", "f32"], threshold=1.5, action="drop"),
        PowerScaler(columns=["b"]),
        StandardScaler(columns=["a", "i", "f32"]),
        OrdinalEncoder(columns=["code"]),
        GaussianNoise(columns=["a"], std=0.1, seed=3),
    ]
    where = check_fit(steps, df)
    assert [w["fit"] for w in where] == ["numpy", "numpy", "polars", "numpy", "polars", "numpy", "polars", "numpy"]
    assert [w["apply"] for w in where] == ["numpy", "numpy", "polars", "numpy", "numpy", "numpy", "numpy", "polars"]


def test_log_fit_error_names_step() -> None:
    df = pl.DataFrame({"x": [0.0, -2.0, 1.0]})
    with pytest.raises(FitError, match="values <= -1") as info:
        gpu_fit(Pipeline([SimpleImputer(columns=["x"]), LogScaler(columns=["x"])]), df, xp=np)
    assert info.value.step_index == 1  # type: ignore[attr-defined]


def test_quantile_formulas_match_numpy_and_polars() -> None:
    rng = np.random.default_rng(5)
    for _ in range(500):
        x = np.sort(rng.standard_normal(int(rng.integers(1, 30))) * 10.0 ** int(rng.integers(-4, 5)))
        p = float(rng.random())
        assert numpy_quantile(x, p) == float(np.quantile(x, p, method="linear"))
        assert polars_quantile(x, p) == pl.Series(x).quantile(p, "linear")
        assert polars_quantile(x, 0.5) == pl.Series(x).median()


def test_match_recognises_known_forms_only() -> None:
    schema = pl.Schema({"x": pl.Float64, "y": pl.Int8})
    f = finite("y", pl.Int8())
    assert match(f.std(ddof=0), ("x", "y"), schema).stat == "std"  # type: ignore[union-attr]
    assert match(f.std(ddof=1), ("x", "y"), schema) is None
    assert match(pl.col("x").mean(), ("x",), schema) is None  # not the finite values
    from transforms.gpu.fit import DeviceColumn

    col = DeviceColumn(np.array([3, -1, 3, 7], dtype=np.int8), np.array([True, True, True, False]), "Int8")
    assert compute(match(f.min(), ("y",), schema), col, np) == -1  # type: ignore[arg-type]
    assert compute(match(f.drop_nulls().mode().min(), ("y",), schema), col, np) == 3  # type: ignore[arg-type]
