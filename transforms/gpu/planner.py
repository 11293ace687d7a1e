"""The hybrid planner: which steps of a fitted pipeline run on the GPU, which on Polars, and why.

:func:`plan_steps` walks the fitted steps with the schema each one sees (from the
steps' own lazy ``apply`` on an empty frame, so no data is touched) and places
every step:

- on the GPU when it has a GPU implementation for its columns' dtypes (see
  :mod:`transforms.gpu.ops`) and the backend allows it;
- on Polars otherwise, with the reason (``knn``, ``isolation_forest``, ``smote``
  and the other steps with no GPU implementation; a string column; the backend;
  no device; a table below the size threshold).

Consecutive GPU steps form one segment (one pass over the device per block).

``backend="auto"`` uses the GPU only where :func:`~transforms.gpu.array.detect`
finds a device and the table has at least :func:`min_rows` rows: a threshold
measured once per machine (:func:`calibrate`: the Polars path and the device
path timed on synthetic data, the crossover of the two fitted lines) and cached
as JSON under the user cache directory; ``PREPFLOW_GPU_MIN_ROWS`` overrides it.

>>> import polars as pl
>>> from transforms import Pipeline, SimpleImputer, KNNImputer
>>> df = pl.DataFrame({"x": [1.0, None, 3.0], "y": [1.0, 2.0, None]})
>>> fitted = Pipeline([SimpleImputer(columns=["x"]), KNNImputer(columns=["y"], n_neighbors=1)]).fit(df)
>>> [(p.where, p.reason[:40]) for p in plan_steps(fitted, df.schema, backend="numpy").placements]
[('gpu', 'fused elementwise kernel'), ('polars', 'FittedKNNImputer has no GPU implementati')]
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from transforms._version import __version__
from transforms.errors import PrepflowError
from transforms.gpu.array import Device, detect
from transforms.gpu.kernels import Chain, Unsupported, build
from transforms.gpu.ops import StepOps, describe, dtype_name
from transforms.pipeline import FittedPipeline

Backend = Literal["auto", "polars", "cupy", "numpy"]

#: environment variable that fixes the ``auto`` threshold (rows)
MIN_ROWS_ENV = "PREPFLOW_GPU_MIN_ROWS"
#: the threshold used when no measurement is possible (no device to measure)
DEFAULT_MIN_ROWS = 2_000_000


class NoDeviceError(PrepflowError, RuntimeError):
    """``backend: cupy`` was asked for and no CUDA device can be used."""


@dataclass(frozen=True)
class Placement:
    """Where one step runs (``gpu`` or ``polars``) and why; ``ops`` for GPU steps."""

    index: int
    label: str
    where: str
    reason: str
    ops: StepOps | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for reports."""
        return {"index": self.index, "name": self.label, "where": self.where, "reason": self.reason}


@dataclass(frozen=True)
class Plan:
    """The placement of every step, the array module (``cupy``/``numpy``) and the precision."""

    placements: tuple[Placement, ...]
    backend: str
    xp: str = "numpy"
    precision: str = "float64"
    rows: int = 0
    min_rows: int | None = None
    device: Device = field(default_factory=lambda: Device(False, "not checked"))
    reason: str = ""

    @property
    def uses_gpu(self) -> bool:
        """Whether any step runs on the device."""
        return any(p.where == "gpu" for p in self.placements)

    def segments(self) -> list[tuple[str, int, int]]:
        """Maximal runs of steps placed alike: ``(where, start, stop)``.

        >>> Plan((Placement(0, "a", "gpu", ""), Placement(1, "b", "gpu", ""), Placement(2, "c", "polars", "")),
        ...      "numpy").segments()
        [('gpu', 0, 2), ('polars', 2, 3)]
        """
        out: list[tuple[str, int, int]] = []
        for i, p in enumerate(self.placements):
            if out and out[-1][0] == p.where:
                out[-1] = (p.where, out[-1][1], i + 1)
            else:
                out.append((p.where, i, i + 1))
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain data for reports: the backend asked for, what was used and why, per step."""
        return {
            "requested": self.backend,
            "used": self.xp if self.uses_gpu else "polars",
            "precision": self.precision,
            "reason": self.reason,
            "rows": self.rows,
            "min_rows": self.min_rows,
            "device": self.device.to_dict(),
            "steps": [p.to_dict() for p in self.placements],
        }


def _schemas(fitted: FittedPipeline, schema: pl.Schema, train: bool) -> list[pl.Schema]:
    lf = pl.LazyFrame(schema=schema)
    out = [schema]
    for f in fitted.steps:
        lf = f.apply(lf, train=train)
        out.append(lf.collect_schema())
    return out


def gpu_ops(fitted: Any, schema: pl.Schema, index: int, *, train: bool, precision: str) -> StepOps:
    """The step's GPU operations, checked to build; raises :class:`Unsupported` with the reason."""
    if fitted.adds_rows:
        raise Unsupported("adds rows (augmentation) on the Polars path" if train else "augmentation step")
    ops = describe(fitted, schema, index=index)
    for op in ops.ops:
        build(Chain(op.column, dtype_name(schema[op.column]), (op,), "bits", precision=precision))
    return ops


def plan_steps(
    fitted: FittedPipeline,
    schema: pl.Schema,
    *,
    backend: Backend,
    rows: int = 0,
    train: bool = False,
    precision: str = "float64",
    device: Device | None = None,
    min_rows: int | None = None,
) -> Plan:
    """Place each step of ``fitted`` for a table of ``schema`` and ``rows`` rows.

    ``backend``: ``polars`` (all Polars), ``cupy`` (GPU steps on the device; raises
    :class:`NoDeviceError` without one), ``auto`` (the device when present and
    ``rows >= min_rows``), or ``numpy`` (the GPU code on NumPy: the CPU check of its numerics).
    """
    labels = [f.step.label for f in fitted.steps]

    def all_polars(reason: str, dev: Device) -> Plan:
        placements = tuple(Placement(i, lab, "polars", reason) for i, lab in enumerate(labels))
        return Plan(placements, backend, "polars", precision, rows, min_rows, dev, reason)

    if backend == "polars":
        return all_polars("backend: polars", device or Device(False, "not checked"))
    xp = "numpy"
    reason = "backend: numpy (the GPU code evaluated with NumPy)"
    if backend in ("cupy", "auto"):
        dev = device if device is not None else detect()
        if not dev.available:
            if backend == "cupy":
                raise NoDeviceError(f"backend: cupy needs a CUDA device: {dev.reason}")
            return all_polars(f"backend: auto, and no GPU: {dev.reason}", dev)
        device = dev
        xp = "cupy"
        reason = f"backend: {backend} on {dev.name}"
        if backend == "auto":
            min_rows = resolve_min_rows(min_rows)
            if rows < min_rows:
                return all_polars(f"backend: auto, and {rows} rows < {min_rows} (GPU threshold)", dev)
            reason += f" ({rows} rows >= GPU threshold {min_rows})"
    schemas = _schemas(fitted, schema, train)
    placements = []
    for i, f in enumerate(fitted.steps):
        try:
            ops = gpu_ops(f, schemas[i], i, train=train, precision=precision)
        except Unsupported as exc:
            placements.append(Placement(i, labels[i], "polars", str(exc)))
            continue
        why = "device mask and stream compaction" if ops.drops else "fused elementwise kernel"
        placements.append(Placement(i, labels[i], "gpu", why, ops))
    return Plan(tuple(placements), backend, xp, precision, rows, min_rows, device or Device(False, ""), reason)


# ---------------------------------------------------------------- the auto threshold


def cache_path() -> Path:
    """Where the measured threshold is cached: ``$XDG_CACHE_HOME/prepflow/gpu_threshold.json``."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "prepflow" / "gpu_threshold.json"


def _cache_key(dev: Device) -> str:
    return f"{dev.name}|cupy {dev.cupy_version}|prepflow {__version__}"


def resolve_min_rows(
    min_rows: int | None = None, *, measure: Callable[[int], tuple[float, float]] | None = None
) -> int:
    """The ``auto`` threshold: ``min_rows``, else ``$PREPFLOW_GPU_MIN_ROWS``, else the cached or new measurement."""
    if min_rows is not None:
        return int(min_rows)
    env = os.environ.get(MIN_ROWS_ENV)
    if env:
        try:
            return int(env)
        except ValueError as exc:
            raise PrepflowError(f"{MIN_ROWS_ENV} must be an integer number of rows, got {env!r}") from exc
    dev = detect()
    if not dev.available:
        return DEFAULT_MIN_ROWS
    path = cache_path()
    key = _cache_key(dev)
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("key") == key:
            return int(cached["min_rows"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    result = calibrate(measure or _measure)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"key": key, **result}, indent=2) + "\n", encoding="utf-8")
    except OSError:
        pass
    return int(result["min_rows"])


def calibrate(measure: Callable[[int], tuple[float, float]], sizes: tuple[int, int] = (1 << 16, 1 << 21)) -> dict:
    """Fit ``seconds = a + b * rows`` for both backends from ``measure(rows) -> (polars_s, gpu_s)``.

    The threshold is where the lines cross (``2**62`` when the GPU line never
    gets below the Polars line).

    >>> calibrate(lambda n: (1e-8 * n, 0.01 + 1e-9 * n))["min_rows"] // 1000
    1111
    """
    (n0, n1) = sizes
    p0, g0 = measure(n0)
    p1, g1 = measure(n1)
    bp, bg = (p1 - p0) / (n1 - n0), (g1 - g0) / (n1 - n0)
    ap, ag = p0 - bp * n0, g0 - bg * n0
    rows = 2**62 if bg >= bp else max(0, math.ceil((ag - ap) / (bp - bg)))
    return {"min_rows": int(rows), "sizes": list(sizes), "polars_s": [p0, p1], "gpu_s": [g0, g1]}


def _measure(rows: int) -> tuple[float, float]:
    """Seconds of the Polars path and the device path (transfers included) on ``rows`` synthetic rows."""
    from transforms import IQROutliers, Pipeline, RobustScaler, SimpleImputer
    from transforms.gpu.execute import run

    rng = np.random.default_rng(0)
    data = rng.standard_normal((rows, 4))
    data[rng.random((rows, 4)) < 0.05] = np.nan
    df = pl.DataFrame({f"c{j}": data[:, j] for j in range(4)})
    cols = df.columns
    pipe = Pipeline(
        [SimpleImputer(columns=cols, strategy="median"), IQROutliers(columns=cols), RobustScaler(columns=cols)]
    )
    fitted = pipe.fit(df.head(min(rows, 10_000)))
    plan = plan_steps(fitted, df.schema, backend="cupy", rows=rows)
    timings = []
    for backend in ("polars", "gpu"):
        best = math.inf
        for _ in range(3):
            started = time.perf_counter()
            if backend == "polars":
                fitted.transform(df)
            else:
                run(fitted, df, plan)
            best = min(best, time.perf_counter() - started)
        timings.append(best)
    return timings[0], timings[1]
