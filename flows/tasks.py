"""Prefect tasks: the engine's phases, one task each, handing on paths and small dicts.

Frames never travel between tasks as parameters or results: each phase saves
what the next one needs under a path of the run folder and hands on the path
(:mod:`flows.frames`: in the flow's process, the frame itself is handed on in
memory; only what cannot be read again from the input is written).
The fitted pipeline travels as plain JSON. The flow wraps the dicts it hands
on in ``opaque``: Prefect still links a task to the task whose result it gets
(the run graph), but does not walk every key and list looking for futures.

* ``load and validate input``, ``read fitted`` and ``write outputs`` do the IO:
  they retry with backoff (``flow.retries`` / ``flow.retry_delay_seconds`` in the
  spec) when the file system or network fails, never when the spec, the usage
  or the data is wrong (:func:`retry_io`): a validation failure is final;
* ``fit`` and ``transform`` never retry: the same data fails the same way again;
* ``fit`` is cached: its key is the input's fingerprint, the hash of the spec's
  pipeline and the library version, and its value is the fitted pipeline as
  plain JSON (``FittedPipeline.to_dict``), never pickled frames;
* ``report`` publishes the artifacts (per-step metrics, validation, outputs).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.exceptions import MissingContextError
from prefect.logging import get_logger

from flows import artifacts, frames
from pipelines import engine, io, phases
from pipelines.errors import DataError
from pipelines.flow_spec import load as load_spec
from pipelines.flow_spec import pipeline_part
from pipelines.spec import PipelineSpec, parse_edges, parse_spec
from pipelines.validation import ROW, Validated
from transforms._version import __version__
from transforms.errors import PrepflowError
from transforms.pipeline import FittedPipeline


def run_logger() -> Any:
    """The run's logger inside a flow or task run; prepflow's Prefect logger outside one (``.fn`` calls)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger("prepflow")


def retry_io(task: Any, task_run: Any, state: Any) -> bool:
    """Retry condition of the IO tasks: OS-level failures yes; prepflow's own errors no.

    A prepflow error is retried only when an ``OSError`` caused it (a file that
    could not be read, say, as opposed to one that could be read and is wrong).
    """
    try:
        state.result()
    except PrepflowError as exc:
        return isinstance(exc.__cause__, OSError)
    except Exception:
        return True
    return False


def fit_cache_key(fingerprint: str, spec_hash: str) -> str:
    """The fit's cache key: input fingerprint + spec hash + library version."""
    digest = hashlib.sha256(f"{fingerprint}\0{spec_hash}\0{__version__}".encode()).hexdigest()
    return f"prepflow-fit-{digest}"


def _fit_key(_context: Any, parameters: dict[str, Any]) -> str:
    return fit_cache_key(parameters["fingerprint"], parameters["spec_hash"])


FIT_CACHE = CachePolicy.from_cache_key_fn(_fit_key)


def _stat(path: str) -> tuple[int, int] | None:
    """Size and mtime of a single input file (folders and globs are covered by the fingerprint)."""
    p = Path(path)
    return (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None


@task(name="load and validate input", cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=retry_io)
def load_input(input: str, edges: dict[str, Any], edges_source: str, run_dir: str) -> dict[str, Any]:
    """Read the input, fingerprint it, check it against the input schema in ``edges`` (the spec).

    The input is handed on as read (:func:`frames.save_source`: never copied);
    with a schema, the clean rows, their positions in the input and the
    quarantined rows are saved to the run folder. Returns those paths,
    the row counts and the failures per column and check. A schema-level failure,
    or any invalid row under ``on_invalid_rows: fail``, raises
    :class:`~pipelines.errors.DataError`, which is never retried.
    """
    logger = run_logger()
    input_spec, _ = parse_edges(edges, source=edges_source)
    started = time.perf_counter()
    before = _stat(input)
    df = io.read(input)
    fingerprint = frames.fingerprint(input)
    if _stat(input) != before:
        raise OSError(f"{input}: changed while it was being read")
    seconds = time.perf_counter() - started
    run = Path(run_dir)
    loaded: dict[str, Any] = {
        "path": frames.save_source(df, run / "input.json", input, fingerprint),
        "rows": df.height,
        "fingerprint": fingerprint,
        "seconds": seconds,
    }
    logger.info("read %s: %d row(s), %d column(s) in %.2f s", input, df.height, df.width, seconds)
    if input_spec.schema_ is None:
        logger.info("no input schema: every row goes on unchecked")
        return {**loaded, "schema": False, "clean": loaded["path"], "quarantine": None, "failures": []}
    try:
        validated = phases.validate_input(input_spec, df, source=input)
    except DataError as exc:
        artifacts.publish_validation_failure(str(exc), name=edges.get("name"))
        raise
    assert validated is not None
    quarantined = 0 if validated.quarantine is None else validated.quarantine.height
    logger.info("validated %d row(s): %d clean, %d quarantined", df.height, validated.clean.height, quarantined)
    return {
        **loaded,
        "schema": True,
        "clean": frames.save(validated.clean, run / "clean.arrow"),
        "clean_rows": frames.save(validated.rows.to_frame(ROW), run / "clean-rows.arrow"),
        "quarantine": None if not quarantined else frames.save(validated.quarantine, run / "input-quarantine.arrow"),
        "failures": _failure_counts(validated.failures),
    }


@task(name="read fitted", cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=retry_io)
def read_fitted(fitted: str) -> dict[str, Any]:
    """Load a fitted artifact (checked: format, version); returns it as plain JSON."""
    pipeline = FittedPipeline.load(fitted)
    run_logger().info("loaded %s: %d fitted step(s)", fitted, len(pipeline.steps))
    return {"fitted": pipeline.to_dict(), "fit_groups": [], "fit_seconds": []}


def _failure_counts(failures: pl.DataFrame) -> list[dict[str, Any]]:
    rows = failures.filter(pl.col("index").is_not_null())
    if not rows.height:
        return []
    counts = rows.group_by("column", "check").agg(pl.col("index").n_unique().alias("rows")).sort("column", "check")
    return counts.to_dicts()


@task(name="fit", cache_policy=FIT_CACHE, result_serializer="json")
def fit(spec: str, clean: str, fingerprint: str, spec_hash: str, raw: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit the spec's pipeline on the clean rows; returns the fitted pipeline as plain JSON.

    ``fingerprint`` and ``spec_hash`` are the cache key (see :func:`fit_cache_key`):
    a later run on unchanged input and spec reuses this result without fitting.
    ``raw`` is the spec as the flow read it from the file ``spec`` (the one
    ``spec_hash`` was computed from); without it, the file is read again.
    """
    fitted = engine.fit(pipeline_spec(spec, raw), frames.load(clean))
    run_logger().info(
        "fitted %d step(s) in %d group(s), %.2f s", len(fitted.steps), len(fitted.fit_seconds), sum(fitted.fit_seconds)
    )
    return fitted_document(fitted)


def pipeline_spec(source: str, raw: dict[str, Any] | None = None) -> PipelineSpec:
    """The pipeline spec of the file ``source``, parsed from ``raw`` (its content) when given, as ``load`` would."""
    if raw is None:
        return load_spec(source)[0]
    return replace(parse_spec(pipeline_part(raw), source=source), raw=dict(raw))


def fitted_document(fitted: FittedPipeline) -> dict[str, Any]:
    """A fitted pipeline as plain JSON, with the grouping and timings of its fit."""
    return {"fitted": fitted.to_dict(), "fit_groups": list(fitted.fit_groups), "fit_seconds": list(fitted.fit_seconds)}


def restore(document: dict[str, Any], spec: dict[str, Any] | None = None) -> FittedPipeline:
    """The fitted pipeline of :func:`fitted_document`; with ``spec``, recorded as fitted from it."""
    fitted = FittedPipeline.from_dict(document["fitted"])
    return replace(
        fitted,
        spec=dict(spec) if spec is not None else fitted.spec,
        fit_groups=tuple(document.get("fit_groups", ())),
        fit_seconds=tuple(document.get("fit_seconds", ())),
    )


@task(name="transform", cache_policy=NO_CACHE, persist_result=False)
def transform(
    document: dict[str, Any],
    spec: dict[str, Any] | None,
    edges_source: str,
    loaded: dict[str, Any],
    outputs: dict[str, str | None],
    run_dir: str,
    *,
    train: bool,
    command: str,
) -> dict[str, Any]:
    """Apply the fitted pipeline, check the output schema, save the frames to write.

    Returns the job's report (rows, quarantine, per-step metrics) and, per output
    path, the run-folder file holding its frame.
    """
    logger = run_logger()
    fitted = restore(document, spec)
    df = frames.load(loaded["path"])
    source = None
    if loaded["schema"]:
        source = Validated(
            clean=frames.load(loaded["clean"]),
            rows=frames.load(loaded["clean_rows"])[ROW],
            quarantine=frames.load(loaded["quarantine"]) if loaded["quarantine"] else None,
            failures=pl.DataFrame(),
        )
    ex = engine.execute(fitted, df, train=train, validated=source)
    _, output_spec = parse_edges(fitted.spec, source=edges_source)
    try:
        phases.validate_output(output_spec, ex.output)
    except DataError as exc:
        artifacts.publish_validation_failure(str(exc), name=fitted.name)
        raise
    outs = outputs_of(outputs)
    report = phases.run_report(command, ex, outs)
    saved = {
        str(target): frames.save(frame, Path(run_dir) / f"out-{i}.arrow")
        for i, (target, frame) in enumerate(phases.output_frames(ex, outs).items())
    }
    logger.info("transformed: %s in %.2f s", ", ".join(f"{k} {v}" for k, v in report["rows"].items()), ex.seconds)
    return {"report": report, "frames": saved, "seconds": ex.seconds}


def outputs_of(outputs: dict[str, str | None]) -> phases.Outputs:
    """The checked output paths, from their plain-dict form."""
    return phases.Outputs(
        output=Path(str(outputs["output"])),
        quarantine=Path(str(outputs["quarantine"])),
        fitted=Path(outputs["fitted"]) if outputs.get("fitted") else None,
        report=Path(outputs["report"]) if outputs.get("report") else None,
    )


@task(name="write outputs", cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=retry_io)
def write_outputs(
    saved: dict[str, str],
    document: dict[str, Any] | None,
    spec: dict[str, Any] | None,
    fitted_path: str | None,
    report: dict[str, Any] | None,
    report_path: str | None,
) -> list[str]:
    """Write every output atomically, all or none: frames, fitted artifact, report."""
    data = {Path(target): frames.load(path) for target, path in saved.items()}
    texts = {}
    if document is not None and fitted_path is not None:
        texts[Path(fitted_path)] = phases.to_json(restore(document, spec).to_dict())
    if report is not None and report_path is not None:
        texts[Path(report_path)] = phases.to_json(report)
    io.write_frames(data, texts)
    written = [str(p) for p in (*data, *texts)]
    run_logger().info("wrote %s", ", ".join(written))
    return written


@task(name="streamed job", cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=retry_io)
def streamed(
    mode: str, spec: str | None, fitted: str | None, input: str, outputs: dict[str, str | None] | None
) -> dict:
    """The whole job in Polars' streaming engine, in bounded memory (``engine.streaming``).

    A streamed job never holds the table, so its phases cannot hand frames to
    each other: it runs as one task, through the same function as the CLI.
    """
    from pipelines import commands

    out = outputs or {}
    if mode == "fit":
        assert spec is not None and fitted is not None
        return commands.fit(spec, input, fitted, streaming=True)
    if mode == "run":
        assert spec is not None
        return commands.run(
            spec,
            input,
            out["output"],
            fitted_path=out.get("fitted"),
            quarantine_path=out.get("quarantine"),
            report_path=out.get("report"),
            streaming=True,
        )
    assert fitted is not None
    return commands.apply(
        fitted,
        input,
        out["output"],
        quarantine_path=out.get("quarantine"),
        report_path=out.get("report"),
        streaming=True,
    )


@task(name="report", cache_policy=NO_CACHE, persist_result=False)
def publish(report: dict[str, Any], loaded: dict[str, Any] | None, name: str | None) -> list[str]:
    """Artifacts in the Prefect UI: per-step metrics, validation results, links to the outputs."""
    keys = artifacts.publish(report, loaded, name=name)
    rows = report.get("rows", {})
    run_logger().info("%s done: %s", report["command"], ", ".join(f"{k} {v}" for k, v in rows.items()))
    return keys
