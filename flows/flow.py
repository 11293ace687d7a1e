"""The ``preprocess`` flow: a prepflow job (``run``, ``fit`` or ``apply``) as Prefect tasks.

The tasks are the engine's phases (read and validate the input, fit, transform
and validate the output, write, report), so the flow's result and files are
those of the same ``prepflow`` command: same report, byte-identical output.

.. code-block:: python

    from flows import preprocess

    report = preprocess("credit.yaml", "credit.csv", "out/credit.parquet", fitted="out/credit.json")

Paths may be templates with ``{date}`` or ``{scheduled_start:%Y-%m-%d}``: they
are filled from the flow run's scheduled start, in the spec's schedule timezone.
"""

from __future__ import annotations

import datetime as dt
import functools
import tempfile
import time
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import Task, flow, get_run_logger
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import opaque

from flows import frames, tasks
from pipelines import phases
from pipelines.errors import UsageError
from pipelines.flow_spec import FlowSettings, FlowSpec, Mode, pipeline_part, render_path
from pipelines.flow_spec import load as load_spec
from transforms._version import __version__
from transforms.pipeline import spec_hash


@dataclass(frozen=True)
class Job:
    """One flow run's job, with every path rendered and checked before any work."""

    mode: Mode
    input: str
    spec: str | None = None
    fitted: str | None = None
    outputs: dict[str, str | None] | None = None
    raw: dict[str, Any] | None = None
    settings: FlowSettings = field(default_factory=FlowSettings)
    name: str | None = None

    def io_task(self, task: Task) -> Task:
        """``task`` (an IO task) with the retry options of this job's spec."""
        delays = self.settings.retry_delay_seconds
        return _with_retries(task, self.settings.retries, tuple(delays) if isinstance(delays, list) else delays)


@functools.cache
def _with_retries(task: Task, retries: int, delays: float | tuple[float, ...]) -> Task:
    """One copy of ``task`` per retry setting (``with_options`` reads the task's source, so it is not free)."""
    return task.with_options(retries=retries, retry_delay_seconds=list(delays) if isinstance(delays, tuple) else delays)


def plan(
    spec: str | None,
    input: str,
    output: str | None = None,
    fitted: str | None = None,
    quarantine: str | None = None,
    report: str | None = None,
    mode: Mode = "run",
    *,
    scheduled_start: dt.datetime | None = None,
) -> Job:
    """Load the spec, fill path templates, check every output path; no data is read."""
    flow_spec = FlowSpec()
    pipeline = None
    if spec is not None:
        pipeline, flow_spec = load_spec(spec)
    elif mode != "apply":
        raise UsageError(f"mode {mode!r} needs a spec")
    timezone = flow_spec.schedule.timezone if flow_spec.schedule else None
    zone = zoneinfo.ZoneInfo(timezone or "UTC")
    when = (scheduled_start or dt.datetime.now(dt.UTC)).astimezone(zone)

    def path(value: str | None) -> str | None:
        return None if value is None else str(Path(render_path(value, when) if "{" in value else value))

    input, output, fitted, quarantine, report = map(path, (input, output, fitted, quarantine, report))
    assert input is not None
    if mode in ("run", "apply") and output is None:
        raise UsageError(f"mode {mode!r} needs an output path")
    if mode in ("fit", "apply") and fitted is None:
        raise UsageError(f"mode {mode!r} needs a fitted path ({'to write' if mode == 'fit' else 'to read'})")
    outputs = None
    if mode == "fit":
        assert spec is not None and fitted is not None
        fitted = str(phases.check_fitted_output(fitted, inputs=(input, spec)))
    else:
        assert output is not None
        sources = (input, spec) if mode == "run" else (input, fitted)
        outs = phases.check_outputs(
            output,
            inputs=tuple(s for s in sources if s is not None),
            quarantine=quarantine,
            fitted=fitted if mode == "run" else None,
            report=report,
        )
        outputs = {k: None if v is None else str(v) for k, v in vars(outs).items()}
    return Job(
        mode=mode,
        input=input,
        spec=None if spec is None else str(Path(spec)),
        fitted=fitted,
        outputs=outputs,
        raw=dict(pipeline.raw) if pipeline is not None and mode != "apply" else None,
        settings=flow_spec.flow,
        name=pipeline.name if pipeline is not None else None,
    )


def _scheduled_start() -> dt.datetime:
    from prefect.runtime import flow_run

    start = flow_run.scheduled_start_time
    return dt.datetime.fromtimestamp(start.timestamp(), dt.UTC)


@flow(name="prepflow", description="Run a prepflow pipeline spec: validate, fit, transform, write, report.")
def preprocess(
    spec: str | None,
    input: str,
    output: str | None = None,
    fitted: str | None = None,
    quarantine: str | None = None,
    report: str | None = None,
    mode: Mode = "run",
) -> dict[str, Any]:
    """Run a prepflow job as a flow; returns the job's report (as ``prepflow run``/``fit``/``apply``).

    ``run`` fits ``spec`` on ``input`` and writes ``output`` (and ``fitted``,
    ``quarantine``, ``report`` when given); ``fit`` writes the fitted pipeline
    to ``fitted`` only; ``apply`` applies the fitted pipeline read from
    ``fitted`` (``spec`` optional: its ``flow`` settings and schedule timezone).
    """
    started = time.perf_counter()
    logger = get_run_logger()
    templated = any("{" in p for p in (input, output, fitted, quarantine, report) if p)
    job = plan(
        spec,
        input,
        output,
        fitted,
        quarantine,
        report,
        mode,
        scheduled_start=_scheduled_start() if templated else None,
    )
    logger.info("prepflow %s %s: %s on %s", __version__, job.mode, job.spec or job.fitted, job.input)
    with tempfile.TemporaryDirectory(prefix="prepflow-run-") as run_dir:
        try:
            result = _run(job, run_dir, started)
        finally:
            frames.release(run_dir)
    return result


def _run(job: Job, run_dir: str, started: float) -> dict[str, Any]:
    logger = get_run_logger()
    load_input = job.io_task(tasks.load_input)
    write_outputs = job.io_task(tasks.write_outputs)
    if job.mode == "apply":
        assert job.fitted is not None
        document = job.io_task(tasks.read_fitted)(job.fitted)
        edges, edges_source = document["fitted"]["spec"], job.fitted
    else:
        assert job.raw is not None and job.spec is not None
        edges, edges_source = job.raw, job.spec
    stream, why = phases.choose_regime(phases.engine_settings(edges, edges_source), job.input)
    if stream:
        logger.info("streaming: %s", why)
        result = job.io_task(tasks.streamed)(job.mode, job.spec, job.fitted, job.input, job.outputs)
        tasks.publish(opaque(result), None, job.name or edges.get("name"))
        return result
    loaded = load_input(job.input, opaque(edges), edges_source, run_dir)
    fit_seconds = 0.0
    if job.mode != "apply":
        fit = tasks.fit if job.settings.cache else _fit_without_cache()
        state = fit(
            job.spec,
            loaded["clean"],
            loaded["fingerprint"],
            _spec_hash(job.raw),
            raw=opaque(job.raw),
            return_state=True,
        )
        document = state.result()
        if state.name == "Cached":
            logger.info("fit: reusing the cached fit of this input and spec (nothing changed since)")
        else:
            fit_seconds = sum(document["fit_seconds"])
    if job.mode == "fit":
        assert job.fitted is not None
        pipeline = tasks.restore(document, job.raw)
        result = phases.fit_report(pipeline, loaded["rows"], Path(job.fitted), reason=why)
        write_outputs({}, opaque(document), opaque(job.raw), job.fitted, None, None)
    else:
        assert job.outputs is not None
        transformed = tasks.transform(
            opaque(document),
            opaque(job.raw),
            edges_source,
            opaque(loaded),
            opaque(job.outputs),
            run_dir,
            train=job.mode == "run",
            command=job.mode,
        )
        result = transformed["report"]
        seconds = {"transform": transformed["seconds"], "total": time.perf_counter() - started}
        if job.mode == "run":
            seconds = {"read": loaded["seconds"], "fit": fit_seconds, **seconds}
            method = document["fitted"].get("fit_method", {})
            engine = {"regime": "in_memory", "reason": why, "fit_method": method}
            result.update(spec=job.spec, input=job.input, engine=engine, seconds=seconds)
        else:
            result.update(fitted=job.fitted, input=job.input, seconds=seconds)
        write_outputs(
            opaque(transformed["frames"]),
            opaque(document) if job.mode == "run" else None,
            opaque(job.raw),
            job.outputs.get("fitted"),
            opaque(result),
            job.outputs.get("report"),
        )
    tasks.publish(opaque(result), opaque(loaded), job.name or edges.get("name"))
    return result


@functools.cache
def _fit_without_cache() -> Task:
    """The fit task for specs with ``flow: {cache: false}``: no cache key, no persisted result."""
    return tasks.fit.with_options(cache_policy=NO_CACHE, persist_result=False)


def _spec_hash(raw: dict[str, Any] | None) -> str:
    """Hash of what the fit depends on: the spec without its orchestration keys."""
    return spec_hash(pipeline_part(raw or {}))
