"""Distributed runs: one Prefect task per input partition, on a Dask cluster through prefect-dask.

A folder or glob of Parquet partitions (Hive ``key=value`` folders included,
see :mod:`pipelines.partitions`) is fitted and transformed partition by
partition on the workers of a Dask cluster:

1. **plan** (in the flow's process): discover the partitions, check their
   schemas and every output path; nothing is written yet;
2. **fit** (``run``/``fit``): each fit group's partial statistics are computed
   by one ``partial statistics`` task per partition and merged in the flow
   (:func:`pipelines.streaming.fit_chunked`), so means and variances are those
   of the whole input and quantiles come from merged KLL sketches;
3. **transform** (``run``/``apply``): one ``apply partition`` task per
   partition writes its output partition (and its quarantine partition)
   atomically, at the input's relative path under the output folder;
4. **commit**: check that every partition was written exactly once with the
   rows its task reported, write the report and fitted artifact, and the
   ``_SUCCESS`` marker last.

The cluster is the one at ``dask_address`` (``--dask-address``, or the spec's
``engine: {executor: dask, address: tcp://...}``), else a ``LocalCluster`` of
``workers`` processes on the loopback interface, started for the run.

Failures: a task that raises an ``OSError`` is retried by Prefect (the spec's
``flow.retries``); a task whose worker dies is rerun by Dask on another worker;
a task lost to a cluster restart is submitted again by the flow (up to
:data:`RESUBMITS` times). Writes are idempotent (same partition, same path,
same bytes), so a rerun never duplicates a partition. Data and spec errors are
final: the run stops, and without ``_SUCCESS`` the folder reads as incomplete.

.. code-block:: python

    from flows.distributed import preprocess_partitioned

    report = preprocess_partitioned("credit.yaml", "landing/", "prepared/", fitted="credit.json",
                                    mode="apply", dask_address="tcp://10.0.0.5:8786")
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import distributed
import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import State
from prefect_dask import DaskTaskRunner

from flows import artifacts
from flows.tasks import retry_io, run_logger
from pipelines import commands, io, partitions, phases
from pipelines.errors import DataError, SpecError, UsageError
from pipelines.flow_spec import FLOW_KEYS, FlowSettings, FlowSpec, Mode, pipeline_part
from pipelines.flow_spec import load as load_spec
from pipelines.partitions import Layout, Partition
from transforms._version import __version__
from transforms.pipeline import FittedPipeline

RESUBMITS = 3
"""Times the flow submits a partition's task again after it was lost (cluster restart, scheduler gone)."""

LOST = (CancelledError, distributed.comm.CommClosedError)


@dataclass(frozen=True)
class PartitionedJob:
    """A distributed run's job: every path checked and the partitions found before any work."""

    mode: Mode
    input: str
    layout: Layout
    spec: str | None = None
    raw: dict[str, Any] | None = None
    fitted: str | None = None
    output: Path | None = None
    quarantine: Path | None = None
    report: Path | None = None
    address: str | None = None
    workers: int = 2
    settings: FlowSettings = field(default_factory=FlowSettings)
    name: str | None = None


def executor(spec: str | None, dask_address: str | None = None, workers: int | None = None) -> tuple[str | None, int]:
    """The scheduler address (``None``: a LocalCluster) and LocalCluster size: arguments first, then the spec."""
    address, count = None, 2
    if spec is not None:
        pipeline, _ = load_spec(spec)
        address, count = pipeline.engine.address, pipeline.engine.workers
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1 (got {workers})")
    return dask_address or address, workers or count


def task_runner(address: str | None = None, workers: int = 2) -> DaskTaskRunner:
    """prefect-dask's task runner: the cluster at ``address``, or a loopback LocalCluster of ``workers`` processes.

    LocalCluster workers run one task at a time each and split the machine's
    cores between their Polars thread pools.
    """
    if address:
        return DaskTaskRunner(address=address)
    threads = max(1, (os.cpu_count() or 1) // workers)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": None,
            "env": {"POLARS_MAX_THREADS": str(threads)},
        },
    )


def plan(
    spec: str | None,
    input: str,
    output: str | None = None,
    fitted: str | None = None,
    quarantine: str | None = None,
    report: str | None = None,
    mode: Mode = "run",
    *,
    dask_address: str | None = None,
    workers: int | None = None,
) -> PartitionedJob:
    """Load the spec, find the partitions, check every output path; no data is read."""
    flow_spec, pipeline = FlowSpec(), None
    if spec is not None:
        pipeline, flow_spec = load_spec(spec)
    elif mode != "apply":
        raise UsageError(f"mode {mode!r} needs a spec")
    if mode in ("run", "apply") and output is None:
        raise UsageError(f"mode {mode!r} needs an output folder")
    if mode in ("fit", "apply") and fitted is None:
        raise UsageError(f"mode {mode!r} needs a fitted path ({'to write' if mode == 'fit' else 'to read'})")
    if mode == "run" and pipeline is not None:
        for i, step in enumerate(pipeline.steps):
            if step.kind == "augment":
                raise SpecError(
                    f"{spec}: steps[{i}] ({step.label}): augmentation needs the whole table to balance it and cannot "
                    "run partition by partition; run on one machine, or fit there and run mode 'apply' here"
                )
    address, count = executor(spec, dask_address, workers)
    layout = partitions.discover(input)
    sources = tuple(s for s in (input, spec, fitted if mode == "apply" else None) if s is not None)
    out = q = None
    if output is not None and mode != "fit":
        out, q = partitions.check_output_folder(output, layout, quarantine=quarantine)
    if mode == "fit":
        assert fitted is not None
        fitted = str(phases.check_fitted_output(fitted, inputs=sources))
    elif mode == "run" and fitted is not None:
        fitted = str(commands._side_file(fitted, sources))
    elif mode == "apply":
        assert fitted is not None
        if not Path(fitted).is_file():
            raise UsageError(f"{fitted}: fitted pipeline not found")
    report_path = commands._side_file(report, sources) if report is not None else None
    return PartitionedJob(
        mode=mode,
        input=input,
        layout=layout,
        spec=None if spec is None else str(Path(spec)),
        raw=dict(pipeline.raw) if pipeline is not None else None,
        fitted=fitted,
        output=out,
        quarantine=q,
        report=report_path,
        address=address,
        workers=count,
        settings=flow_spec.flow,
        name=pipeline.name if pipeline is not None else None,
    )


# --- tasks ---------------------------------------------------------------------------------------


def _worker() -> str:
    try:
        return distributed.get_worker().address
    except ValueError:
        return f"pid {os.getpid()}"


@task(
    name="apply partition",
    task_run_name="apply {partition.relative}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retry_condition_fn=retry_io,
)
def apply_partition(
    fitted: str, partition: Partition, output: str, quarantine: str, train: bool, trusted: bool
) -> dict[str, Any]:
    """Transform one partition and write its output and quarantine partitions atomically; a small report back.

    ``fitted`` is the fitted pipeline's JSON text (the artifact's plain form, never a pickled object).
    """
    pipeline = FittedPipeline.from_dict(json.loads(fitted))
    result = partitions.apply_partition(pipeline, partition, output, quarantine, train=train, trusted_spec=trusted)
    result["worker"] = _worker()
    run_logger().info("%s: %s on %s", partition.relative, result["rows"], result["worker"])
    return result


@task(
    name="partial statistics",
    task_run_name="statistics of {partition.relative}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retry_condition_fn=retry_io,
)
def partial_stats(spec: str, source: str, fit_task: str, partition: Partition) -> dict[str, Any]:
    """One fit group's partial statistics over one partition (plain JSON), for the flow to merge.

    ``spec`` is the spec's raw mapping as JSON text and ``source`` its file name
    (for messages); ``fit_task`` is the fit group's task as JSON text. Neither
    is a pickled object: a worker rebuilds the spec from plain data.
    """
    from pipelines import streaming
    from pipelines.spec import parse_spec

    raw = json.loads(spec)
    pipeline = parse_spec({k: v for k, v in raw.items() if k not in FLOW_KEYS}, source=source)
    task = json.loads(fit_task)
    if not partition.hive_schema:
        return streaming.partial_for_partition(pipeline, task, partition.path)
    return _hive_partial(pipeline, task, partition)


def _hive_partial(pipeline: Any, task: dict[str, Any], partition: Partition) -> dict[str, Any]:
    """:func:`pipelines.streaming.partial_for_partition` on a partition read with its Hive key columns.

    ``partial_for_partition`` reads the file alone, without the ``key=value``
    columns of its folders, which the whole input (and so the driver's part of
    the fit, and the input schema) has.
    """
    from pipelines import engine, validation
    from transforms.chunked import run_group_task
    from transforms.errors import PrepflowError

    df = partition.read()
    if pipeline.input.schema_ is not None:
        schema = commands._compile(pipeline.input.schema_, partition.path)
        checked = validation.validate_input(
            df, schema, on_invalid_rows=pipeline.input.on_invalid_rows, source=partition.path
        )
        df = checked.clean
    try:
        return run_group_task(pipeline.steps, task, df.lazy(), target=pipeline.target)
    except PrepflowError as exc:
        error = engine.at_step(pipeline, exc)
        if error is exc:
            raise
        raise error from exc


# --- fan-out with resubmission of lost tasks -------------------------------------------------------


def gather(submit: Callable[[Any], Any], items: Sequence[Any], label: Callable[[Any], str]) -> list[Any]:
    """Submit one task per item, wait for all; the results in item order.

    A task that fails raises its error here, at once (the run stops). A task
    lost without failing (its future cancelled by a cluster restart, or the
    connection to the scheduler dropped) is submitted again, at most
    :data:`RESUBMITS` times. A task that killed several workers (Dask's
    ``KilledWorker``: out of memory?) is not.
    """
    logger = run_logger()
    results: dict[int, Any] = {}
    submitted = [0] * len(items)
    pending = list(range(len(items)))
    while pending:
        futures = {}
        for i in pending:
            if submitted[i] > RESUBMITS:
                raise DataError(f"{label(items[i])}: its task was lost {submitted[i]} times; giving up")
            futures[i] = submit(items[i])
            submitted[i] += 1
        wrapped = {i: getattr(f, "wrapped_future", f) for i, f in futures.items()}
        index = {id(w): i for i, w in wrapped.items()}
        pending = []
        for done in _as_completed(list(wrapped.values())):
            i = index[id(done)]
            try:
                value = done.result()
            except LOST as exc:
                logger.warning("%s: task lost (%s); submitting it again", label(items[i]), type(exc).__name__)
                pending.append(i)
                continue
            except distributed.scheduler.KilledWorker as exc:
                raise DataError(
                    f"{label(items[i])}: its task killed the workers that ran it ({exc}); out of memory? "
                    "Split the partition or give the workers more memory"
                ) from exc
            results[i] = value.result() if isinstance(value, State) else value
        pending.sort()
    return [results[i] for i in range(len(items))]


def _as_completed(futures: list[Any]) -> Any:
    """Dask futures as they finish; other futures (another task runner's) in order."""
    if futures and all(isinstance(f, distributed.Future) for f in futures):
        return distributed.as_completed(futures, loop=futures[0].client.loop)
    return iter(futures)


# --- the flow -----------------------------------------------------------------------------------------


def _fit(job: PartitionedJob, logger: Any) -> FittedPipeline:
    from pipelines import streaming

    assert job.raw is not None and job.spec is not None
    pipeline, _ = load_spec(job.spec)
    partial = partial_stats.with_options(
        retries=job.settings.retries, retry_delay_seconds=job.settings.retry_delay_seconds
    )
    raw, source, parts = json.dumps(pipeline_part(job.raw), default=str), job.spec, job.layout.partitions

    def map_partials(fit_task: dict[str, Any]) -> list[dict[str, Any]]:
        text = json.dumps(fit_task)
        return gather(lambda p: partial.submit(raw, source, text, p), parts, lambda p: p.relative)

    # the driver validates the whole input once (rows the schema rejects are left out of the fit, as on
    # each worker) and runs what cannot be merged; its spill goes beside the outputs
    work_dir = (job.output or Path(job.fitted or ".")).parent
    fitted = streaming.fit_chunked(pipeline, job.input, map_partials=map_partials, work_dir=work_dir)
    logger.info("fitted %d step(s) from %d partition(s): %s", len(fitted.steps), len(parts), fitted.fit_method)
    return fitted


@flow(name="prepflow-partitioned", description="Fit and transform a partitioned Parquet input on a Dask cluster.")
def partitioned(
    spec: str | None,
    input: str,
    output: str | None = None,
    fitted: str | None = None,
    quarantine: str | None = None,
    report: str | None = None,
    mode: Mode = "run",
    dask_address: str | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """The distributed job as a flow; call it through :func:`preprocess_partitioned` (which picks the cluster)."""
    started = time.perf_counter()
    logger = get_run_logger()
    job = plan(spec, input, output, fitted, quarantine, report, mode, dask_address=dask_address, workers=workers)
    where = job.address or f"a LocalCluster of {job.workers} worker(s)"
    logger.info(
        "prepflow %s %s: %d partition(s) of %s on %s", __version__, mode, len(job.layout.partitions), input, where
    )
    fit_seconds = 0.0
    if job.mode == "apply":
        assert job.fitted is not None
        pipeline = FittedPipeline.load(job.fitted)
    else:
        t0 = time.perf_counter()
        pipeline = _fit(job, logger)
        fit_seconds = time.perf_counter() - t0
    if job.mode == "fit":
        assert job.fitted is not None
        rows_in = int(job.layout.scan().select(pl.len()).collect().item())  # from the Parquet footers
        result = phases.fit_report(pipeline, rows_in, Path(job.fitted), reason=_reason(job))
        result.update(executor="dask", partitions={"count": len(job.layout.partitions)}, seconds={"fit": fit_seconds})
        texts = {Path(job.fitted): phases.to_json(pipeline.to_dict())}
        if job.report is not None:
            texts[job.report] = phases.to_json(result)
        io.write_frames({}, texts)
        return result
    assert job.output is not None and job.quarantine is not None
    partitions.check_keys_untouched(pipeline, job.layout)
    partitions.prepare_output_folder(job.output, job.quarantine)
    apply = apply_partition.with_options(
        retries=job.settings.retries, retry_delay_seconds=job.settings.retry_delay_seconds
    )
    document, out, q = json.dumps(pipeline.to_dict()), str(job.output), str(job.quarantine)
    train, trusted = job.mode == "run", job.mode == "run"
    t0 = time.perf_counter()
    results = gather(
        lambda p: apply.submit(document, p, out, q, train, trusted), job.layout.partitions, lambda p: p.relative
    )
    transform_seconds = time.perf_counter() - t0
    checked = partitions.verify(job.layout, job.output, job.quarantine, results)
    result = _report(job, results, checked, pipeline.fit_method)
    result["seconds"] = {
        **({"fit": fit_seconds} if job.mode == "run" else {}),
        "transform": transform_seconds,
        "total": time.perf_counter() - started,
    }
    texts = {}
    if job.mode == "run" and job.fitted is not None:
        texts[Path(job.fitted)] = phases.to_json(pipeline.to_dict())
    if job.report is not None:
        texts[job.report] = phases.to_json(result)
    partitions.finish(job.output, texts, partitions=len(results))
    artifacts.publish(
        result, {"schema": result["failures"] is not None, "failures": result["failures"] or []}, name=job.name
    )
    logger.info("%s done: %s", mode, ", ".join(f"{k} {v}" for k, v in result["rows"].items()))
    return result


def _reason(job: PartitionedJob) -> str:
    where = job.address or f"a LocalCluster of {job.workers} worker(s)"
    return f"{len(job.layout.partitions)} input partition(s), one task each on {where}"


def _report(
    job: PartitionedJob, results: list[dict[str, Any]], checked: dict[str, Any], fit_method: dict[str, Any]
) -> dict[str, Any]:
    rows = {"in": 0, "out": 0, "quarantined": 0, "augmented": 0}
    for r in results:
        rows = {k: rows[k] + r["rows"][k] for k in rows}
    partitions.check_conservation(rows)
    quarantine = partitions.merge_quarantine([r["quarantine_summary"] for r in results])
    with_schema = [r["failures"] for r in results if r["failures"] is not None]
    report: dict[str, Any] = {
        "prepflow": __version__,
        "command": job.mode,
        "executor": "dask",
        "cluster": job.address or f"LocalCluster({job.workers} workers)",
        "input": job.input,
        "output": str(job.output),
        "rows": rows,
        "quarantine": {"path": str(job.quarantine) if quarantine["rows"] else None, **quarantine},
        "failures": partitions.merge_failures(with_schema) if with_schema else None,
        "steps": partitions.merge_steps([r["steps"] for r in results]),
        "partitions": {
            "count": len(results),
            "keys": list(job.layout.keys),
            **checked,
            "items": [
                {k: r[k] for k in ("partition", "output", "quarantine", "rows", "worker", "seconds")} for r in results
            ],
        },
    }
    report["engine"] = {"regime": "distributed", "reason": _reason(job), "fit_method": fit_method}
    if job.mode == "run":
        report["spec"] = job.spec
        if job.fitted is not None:
            report["fitted_output"] = job.fitted
    else:
        report["fitted"] = job.fitted
    return report


def preprocess_partitioned(
    spec: str | os.PathLike[str] | None,
    input: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    fitted: str | os.PathLike[str] | None = None,
    quarantine: str | os.PathLike[str] | None = None,
    report: str | os.PathLike[str] | None = None,
    mode: Mode = "run",
    dask_address: str | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Run a prepflow job over a partitioned input on Dask; returns the report.

    ``dask_address`` (else the spec's ``engine.address``) names a running
    scheduler; without one, a LocalCluster of ``workers`` (else the spec's
    ``engine.workers``, default 2) processes is started on 127.0.0.1 for the run.
    """

    def text(p: str | os.PathLike[str] | None) -> str | None:
        return None if p is None else str(p)

    address, count = executor(text(spec), dask_address, workers)
    runner = task_runner(address, count)
    return partitioned.with_options(task_runner=runner)(
        text(spec), str(input), text(output), text(fitted), text(quarantine), text(report), mode, address, count
    )


__all__ = [
    "PartitionedJob",
    "apply_partition",
    "gather",
    "partitioned",
    "plan",
    "preprocess_partitioned",
    "task_runner",
]
