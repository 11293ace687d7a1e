"""The engine entry (``pipelines.gpu_run``) and the planner: placements, reasons, errors, and engine parity.

``backend="numpy"`` runs the GPU path with NumPy standing in for CuPy, so the
hybrid engine (GPU segments between Polars segments, drops quarantined with
reasons, row conservation) is checked on any machine. Tests that need a device
are marked ``gpu`` and skip cleanly without one.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from test_gpu import assert_same, messy

from pipelines import engine, gpu_run
from pipelines.engine_spec import EngineSpec
from pipelines.errors import EXIT_USAGE, UsageError, exit_code
from pipelines.spec import parse_spec
from transforms import (
    GaussianNoise,
    IQROutliers,
    KNNImputer,
    Pipeline,
    RobustScaler,
    SimpleImputer,
    StandardScaler,
    ZScoreOutliers,
)
from transforms.gpu import planner
from transforms.gpu.array import Device, detect
from transforms.gpu.execute import run
from transforms.gpu.planner import calibrate, plan_steps, resolve_min_rows

HAS_DEVICE = detect().available
needs_gpu = pytest.mark.skipif(not HAS_DEVICE, reason=detect().reason or "no CUDA device")


def _hybrid() -> tuple[Pipeline, pl.DataFrame]:
    steps = [
        SimpleImputer(columns=["a", "i"], strategy="median", add_indicator=True),
        ZScoreOutliers(columns=["a", "b"], threshold=1.5, action="drop"),
        KNNImputer(columns=["b", "f32"], n_neighbors=2),
        IQROutliers(columns=["b", "f32"], k=0.5, action="drop"),
        GaussianNoise(columns=["a"], std=0.1, seed=1, copies=1),
        StandardScaler(columns=["a", "b", "small"]),
        ZScoreOutliers(columns=["small"], threshold=1.0, action="drop"),
    ]
    return Pipeline(steps), messy(300).drop("s")


def _strip(steps: list[dict]) -> list[dict]:
    return [{k: v for k, v in s.items() if not k.startswith("backend")} for s in steps]


@pytest.mark.parametrize("train", [False, True])
def test_hybrid_engine_equals_polars_engine(train: bool) -> None:
    pipe, df = _hybrid()
    fitted = pipe.fit(df)
    ref = engine.execute(fitted, df, train=train)
    ex, backend = gpu_run.execute(fitted, df, EngineSpec(), train=train, backend="numpy")
    assert backend["used"] == "numpy"
    where = [s["where"] for s in backend["steps"]]
    assert where == ["gpu", "gpu", "polars", "gpu", "polars", "gpu", "gpu"]
    assert "no GPU implementation" in backend["steps"][2]["reason"]
    assert_same(ex.output, ref.output)
    assert ref.quarantine is not None and ex.quarantine is not None and ref.quarantine.height > 0
    # rows added by augmentation have no __row: their order among themselves is not defined by the engine
    cols = [c for c in ref.quarantine.columns if c != "__reasons"]
    assert_same(ex.quarantine.sort(cols, nulls_last=True), ref.quarantine.sort(cols, nulls_last=True))
    assert _strip(ex.steps) == _strip(ref.steps)
    assert engine.check_conservation(ex) == engine.check_conservation(ref)
    assert [s["backend"] for s in ex.steps] == ["numpy", "numpy", "polars", "numpy", "polars", "numpy", "numpy"]
    json.dumps(backend)


def test_polars_backend_is_the_polars_engine() -> None:
    pipe, df = _hybrid()
    fitted = pipe.fit(df)
    ex, backend = gpu_run.execute(fitted, df, EngineSpec(backend="polars"), train=False)
    assert backend["used"] == "polars" and backend["reason"] == "backend: polars"
    assert_same(ex.output, engine.execute(fitted, df, train=False).output)


@pytest.mark.skipif(HAS_DEVICE, reason="a CUDA device is present")
def test_cupy_without_device_is_a_usage_error() -> None:
    pipe, df = _hybrid()
    fitted = pipe.fit(df)
    with pytest.raises(UsageError, match="backend: cupy needs a CUDA device") as info:
        gpu_run.execute(fitted, df, EngineSpec(backend="cupy"), train=False)
    assert exit_code(info.value) == EXIT_USAGE == 2
    spec = parse_spec({"name": "t", "steps": [{"kind": "scale", "method": "standard", "columns": ["a"]}]})
    with pytest.raises(UsageError):
        gpu_run.fit(spec, df, EngineSpec(backend="cupy"))


@pytest.mark.skipif(HAS_DEVICE, reason="a CUDA device is present")
def test_benchmark_exits_3_without_device(capsys) -> None:
    from benchmarks import gpu

    assert gpu.main(["--rows", "5000"]) == gpu.EXIT_NO_DEVICE == 3
    assert "no usable CUDA device" in capsys.readouterr().err


@pytest.mark.skipif(HAS_DEVICE, reason="a CUDA device is present")
def test_auto_without_device_uses_polars_and_says_why() -> None:
    pipe, df = _hybrid()
    fitted = pipe.fit(df)
    ex, backend = gpu_run.execute(fitted, df, EngineSpec(backend="auto"), train=False)
    assert backend["used"] == "polars"
    assert backend["reason"].startswith("backend: auto, and no GPU")
    assert all(s["backend"] == "polars" and "no GPU" in s["backend_reason"] for s in ex.steps)


def test_auto_below_threshold_uses_polars() -> None:
    pipe, df = _hybrid()
    fitted = pipe.fit(df)
    dev = Device(True, "", "Fake GPU", 1 << 30, 1 << 30, "13.0")
    p = plan_steps(fitted, df.schema, backend="auto", rows=df.height, device=dev, min_rows=10_000)
    assert not p.uses_gpu and "300 rows < 10000" in p.reason
    p = plan_steps(fitted, df.schema, backend="auto", rows=20_000, device=dev, min_rows=10_000)
    assert p.uses_gpu and p.xp == "cupy"


def test_fit_with_backend_matches_engine_fit() -> None:
    data = {
        "name": "t",
        "steps": [
            {"kind": "impute", "method": "median", "columns": ["a", "b"]},
            {"kind": "outliers", "method": "iqr", "action": "clip", "columns": ["a", "b"]},
            {"kind": "scale", "method": "robust", "columns": ["a", "b"]},
        ],
    }
    spec = parse_spec(data)
    df = messy(400)
    ref = engine.fit(spec, df)
    fitted, report = gpu_run.fit(spec, df, EngineSpec(), backend="numpy")
    assert [s.to_dict() for s in fitted.steps] == [s.to_dict() for s in ref.steps]
    assert fitted.fit_method["backend"] == "numpy"
    assert [s["fit"] for s in report["steps"]] == ["numpy"] * 3
    same, _ = gpu_run.fit(spec, df, EngineSpec(backend="polars"))
    assert [s.to_dict() for s in same.steps] == [s.to_dict() for s in ref.steps]


def test_threshold_override_and_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(planner.MIN_ROWS_ENV, "1234")
    assert resolve_min_rows() == 1234
    assert resolve_min_rows(99) == 99
    monkeypatch.delenv(planner.MIN_ROWS_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    dev = Device(True, "", "Fake GPU", 1, 1, "13.0")
    monkeypatch.setattr(planner, "detect", lambda: dev)
    calls = []

    def measure(n: int) -> tuple[float, float]:
        calls.append(n)
        return 1e-8 * n, 0.02 + 1e-9 * n

    first = resolve_min_rows(measure=measure)
    assert first == calibrate(measure)["min_rows"] and 2_000_000 < first < 2_300_000
    calls.clear()
    assert resolve_min_rows(measure=measure) == first and calls == []  # cached per machine
    cached = json.loads(planner.cache_path().read_text())
    assert cached["key"].startswith("Fake GPU|")
    assert calibrate(lambda n: (1e-9 * n, 1e-8 * n))["min_rows"] == 2**62  # the GPU never wins


def test_plan_reasons_for_unsupported_columns() -> None:
    df = pl.DataFrame({"s": ["a", None, "b"], "x": [1.0, None, 3.0], "u": pl.Series([1, 2, 3], dtype=pl.UInt64)})
    fitted = Pipeline(
        [
            SimpleImputer(columns=["s"], strategy="most_frequent"),
            SimpleImputer(columns=["x"]),
            RobustScaler(columns=["u"]),
        ]
    ).fit(df)
    p = plan_steps(fitted, df.schema, backend="numpy")
    assert [pl_.where for pl_ in p.placements] == ["polars", "gpu", "polars"]
    assert "String" in p.placements[0].reason and "UInt64" in p.placements[2].reason
    out = run(fitted, df, p)
    assert_same(out.output, fitted.transform(df))


# ---------------------------------------------------------------- on a CUDA device


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("chunk", [None, 4096])
def test_device_equals_polars(chunk: int | None) -> None:
    df = pl.concat([messy(5000, seed=s) for s in range(4)]).drop("s")
    steps = [
        SimpleImputer(columns=["a", "b", "f32", "i"], strategy="median", add_indicator=True),
        IQROutliers(columns=["a", "b"], action="clip"),
        ZScoreOutliers(columns=["f32"], threshold=2.0, action="drop"),
        RobustScaler(columns=["a", "b", "i", "small"]),
    ]
    fitted = Pipeline(steps).fit(df)
    plan = plan_steps(fitted, df.schema, backend="cupy")
    result = run(fitted, df, plan, chunk=chunk)
    assert_same(result.output, fitted.transform(df))
    polars = run(fitted, df, plan_steps(fitted, df.schema, backend="polars"))
    assert [s.metrics for s in result.steps] == [s.metrics for s in polars.steps]


@pytest.mark.gpu
@needs_gpu
def test_device_fit_equals_polars_fit() -> None:
    import cupy

    from transforms.gpu.fit import fit_pipeline

    df = pl.concat([messy(5000, seed=s) for s in range(4)])
    steps = [
        SimpleImputer(columns=["a", "b"], strategy="median"),
        IQROutliers(columns=["a", "b"]),
        RobustScaler(columns=["a", "b"]),
    ]
    got, _ = fit_pipeline(Pipeline(steps), df, xp=cupy)
    ref = Pipeline(steps).fit(df)
    assert [s.to_dict() for s in got.steps] == [s.to_dict() for s in ref.steps]
    assert np.isfinite(got.steps[2].scale).all()
