"""The engine's entry to the GPU backend: fit and apply with ``engine: {backend, precision}``.

Two functions mirror :func:`pipelines.engine.fit` and :func:`pipelines.engine.execute`
and return the same objects, plus a ``backend`` report:

- ``backend: polars`` (the default): exactly the Polars engine.
- ``backend: cupy``: steps with a GPU implementation run on the CUDA device, the
  rest on Polars; without a usable device, a :class:`~pipelines.errors.UsageError`
  (exit code 2) that says why; never a silent fallback.
- ``backend: auto``: the device when one is present and the table has at least the
  calibrated number of rows (see :mod:`transforms.gpu.planner`); otherwise Polars,
  and the report says why.

The report (``{"backend": ...}``) holds the backend asked for and used, the
precision, the reason, the device, and per step where it ran and why; each entry
of ``Execution.steps`` also gets ``backend`` and ``backend_reason``.

>>> import polars as pl
>>> from pipelines.engine_spec import EngineSpec
>>> from transforms import Pipeline, StandardScaler
>>> df = pl.DataFrame({"x": [1.0, 3.0]})
>>> fitted = Pipeline([StandardScaler(columns=["x"])]).fit(df)
>>> ex, backend = execute(fitted, df, EngineSpec(backend="polars"), train=False)
>>> ex.output["x"].to_list(), backend["used"], ex.steps[0]["backend"]
([-1.0, 1.0], 'polars', 'polars')
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import polars as pl

from pipelines import engine, io
from pipelines.engine import ROW, STAGE, Execution, Progress
from pipelines.engine_spec import EngineSpec
from pipelines.errors import DataError, UsageError
from pipelines.spec import PipelineSpec
from pipelines.validation import Validated
from transforms.base import ROWS
from transforms.errors import PrepflowError
from transforms.gpu import execute as gpu_execute
from transforms.gpu.array import array_module
from transforms.gpu.fit import fit_pipeline
from transforms.gpu.planner import Backend, NoDeviceError, Plan, plan_steps
from transforms.pipeline import FittedPipeline


def _quiet(_: str) -> None:
    return None


def plan(
    fitted: FittedPipeline,
    schema: pl.Schema,
    rows: int,
    settings: EngineSpec,
    *,
    train: bool,
    backend: Backend | None = None,
) -> Plan:
    """Where each step runs; raises :class:`UsageError` for ``backend: cupy`` without a device.

    ``backend`` overrides ``settings.backend`` (tests use ``"numpy"``: the GPU code on the CPU).
    """
    try:
        return plan_steps(
            fitted,
            schema,
            backend=backend or settings.backend,
            rows=rows,
            train=train,
            precision=settings.precision,
        )
    except NoDeviceError as exc:
        raise UsageError(f"engine: {exc}. Use backend: auto or polars to run without a GPU.") from exc


def _annotate(steps: list[dict[str, Any]], p: Plan) -> list[dict[str, Any]]:
    for entry, placement in zip(steps, p.placements, strict=False):
        entry["backend"] = p.xp if placement.where == "gpu" else "polars"
        entry["backend_reason"] = placement.reason
    return steps


def execute(
    fitted: FittedPipeline,
    df: pl.DataFrame,
    settings: EngineSpec,
    *,
    train: bool,
    progress: Progress = _quiet,
    validated: Validated | None = None,
    backend: Backend | None = None,
) -> tuple[Execution, dict[str, Any]]:
    """Apply ``fitted`` like :func:`pipelines.engine.execute`, with GPU segments where the plan puts them.

    Returns the :class:`~pipelines.engine.Execution` (same output, quarantine,
    step metrics and row counts as the Polars engine) and the backend report.
    """
    source_df = df if validated is None else validated.clean
    p = plan(fitted, source_df.schema, source_df.height, settings, train=train, backend=backend)
    if not p.uses_gpu:
        ex = engine.execute(fitted, df, train=train, progress=progress, validated=validated)
        _annotate(ex.steps, p)
        return ex, p.to_dict()
    progress("transform")
    started = time.perf_counter()
    original = df.with_row_index(ROW)
    source = original if validated is None else validated.clean.with_columns(validated.rows.alias(ROW))
    input_columns = engine.input_columns_of(df)
    try:
        result = gpu_execute.run(
            fitted,
            source,
            p,
            train=train,
            apply=partial(engine.apply_step, train=train),
            dropped_columns=[*input_columns, ROW],
        )
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"applying the pipeline failed: {io.first_line(exc)}") from exc
    parts = [validated.quarantine] if validated is not None and validated.quarantine is not None else []
    for d in result.dropped:
        parts += engine.with_input_values(original, d.frame.with_columns(pl.lit(d.label).alias(STAGE)), input_columns)
    quarantine = engine.quarantine_of(parts, input_columns)
    frames = [pl.DataFrame({ROWS: [s.rows_in], **{k: [v] for k, v in s.metrics.items()}}) for s in result.steps]
    frames.append(pl.DataFrame({ROWS: [result.output.height]}))
    keys = [list(s.metrics) for s in result.steps] + [[]]
    steps = _annotate(engine.step_metrics(fitted, frames, keys), p)
    output = result.output.drop(ROW, strict=False)
    return Execution(output, quarantine, steps, df.height, time.perf_counter() - started), p.to_dict()


def fit(
    spec: PipelineSpec,
    df: pl.DataFrame,
    settings: EngineSpec,
    progress: Progress = _quiet,
    *,
    backend: Backend | None = None,
) -> tuple[FittedPipeline, dict[str, Any]]:
    """Fit like :func:`pipelines.engine.fit`; on the device when the backend and table size say so.

    The fitted artifact is the same plain JSON state; ``fit_method`` records the
    backend. The report lists, per step, where its fit and its training transform ran.
    """
    chosen = backend or settings.backend
    probe = FittedPipeline(steps=(), target=None, name=None, input_schema={}, fit_rows=df.height)
    p = plan(probe, df.schema, df.height, settings, train=True, backend=chosen)
    if chosen == "polars" or (chosen == "auto" and p.xp != "cupy"):
        report = {**p.to_dict(), "used": "polars"}
        return engine.fit(spec, df, progress), report
    progress("fit")
    xp = array_module("numpy" if chosen == "numpy" else "cupy")
    try:
        fitted, where = fit_pipeline(spec.pipeline(), df, xp=xp, spec=spec.raw)
    except PrepflowError as exc:
        raise engine.at_step(spec, exc) from exc
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"fitting failed on the input data: {io.first_line(exc)}") from exc
    return fitted, {**p.to_dict(), "used": p.xp, "steps": where}
