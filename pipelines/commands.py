"""The three jobs — ``run``, ``fit``, ``apply`` — from paths to written outputs.

Each checks every path before doing any work, computes everything in memory, then
writes all outputs atomically (all or none) and returns the report as a dict.

>>> import tempfile, pathlib, polars as pl
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> pl.DataFrame({"x": [1.0, None, 3.0]}).write_csv(d / "in.csv")
>>> _ = (d / "spec.yaml").write_text("steps: [{kind: scale, method: standard, columns: [x]}]")
>>> report = run(d / "spec.yaml", d / "in.csv", d / "out.parquet")
>>> report["rows"]
{'in': 3, 'out': 3, 'quarantined': 0, 'augmented': 0}
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipelines import engine, io, validation
from pipelines.engine import Progress, _quiet
from pipelines.engine_spec import EngineSpec, parse_engine_spec
from pipelines.errors import SchemaMismatchError, SpecError, UsageError
from pipelines.regime import choose_regime, serving_streams
from pipelines.schema import InputSpec, OutputSpec, SchemaSpec
from pipelines.spec import PipelineSpec, load_spec, parse_edges
from pipelines.validation import Validated
from transforms._version import __version__
from transforms.pipeline import FittedPipeline

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Outputs:
    """Where a job writes: data output, quarantine, fitted artifact and report."""

    output: Path
    quarantine: Path
    fitted: Path | None = None
    report: Path | None = None

    @classmethod
    def checked(
        cls,
        output: PathLike,
        *,
        inputs: tuple[PathLike, ...],
        quarantine: PathLike | None = None,
        fitted: PathLike | None = None,
        report: PathLike | None = None,
    ) -> Outputs:
        """Check every path before any work is done."""
        out = io.check_output(output, inputs=inputs)
        return cls(
            output=out,
            quarantine=_side_file(quarantine, inputs) or engine.default_quarantine_path(out),
            fitted=_side_file(fitted, inputs),
            report=_side_file(report, inputs),
        )


def _side_file(path: PathLike | None, inputs: tuple[PathLike, ...]) -> Path | None:
    """Check a side output (JSON artifact, report, quarantine): folder exists, not an input."""
    if path is None:
        return None
    p = Path(path)
    if p.suffix.lower() in (".json", ".yaml", ".yml"):
        io.check_output(p.with_suffix(".parquet"), inputs=tuple(Path(i).with_suffix(".parquet") for i in inputs))
        return p
    return io.check_output(p, inputs=inputs)


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, allow_nan=False, default=str) + "\n"


def run(
    spec_path: PathLike,
    input_path: PathLike,
    output_path: PathLike,
    *,
    fitted_path: PathLike | None = None,
    quarantine_path: PathLike | None = None,
    report_path: PathLike | None = None,
    progress: Progress = _quiet,
    streaming: bool | None = None,
) -> dict[str, Any]:
    """Fit the spec on the input, apply it in training mode, write everything.

    ``streaming`` overrides the spec's ``engine.streaming`` (see :mod:`pipelines.streaming`).
    """
    started = time.perf_counter()
    spec = load_spec(spec_path)
    stream, why = _regime(spec, input_path, streaming)
    if stream:
        from pipelines import streaming as streamed

        return streamed.run(
            spec_path,
            input_path,
            output_path,
            fitted_path=fitted_path,
            quarantine_path=quarantine_path,
            report_path=report_path,
            progress=progress,
            reason=why,
        )
    outs = Outputs.checked(
        output_path,
        inputs=(input_path, spec_path),
        quarantine=quarantine_path,
        fitted=fitted_path,
        report=report_path,
    )
    progress("read")
    t0 = time.perf_counter()
    df = io.read(input_path)
    read_s = time.perf_counter() - t0
    validated = _validate_input(spec.input, df, str(input_path), progress)
    fitted, fit_backend = _fit(spec, validated.clean if validated else df, progress)
    ex, backend = _execute(spec.engine, fitted, df, train=True, progress=progress, validated=validated)
    _validate_output(spec.output, ex.output, progress)
    report = _report("run", ex, outs)
    engine_report = {"regime": "in_memory", "reason": why, "fit_method": fitted.fit_method}
    if backend is not None:
        engine_report.update(backend=backend, fit_backend=fit_backend)
    report.update(
        spec=str(spec_path),
        input=str(input_path),
        engine=engine_report,
        seconds={
            "read": read_s,
            "fit": sum(fitted.fit_seconds),
            "transform": ex.seconds,
            "total": time.perf_counter() - started,
        },
    )
    _write(ex, outs, report, fitted, progress)
    return report


def fit(
    spec_path: PathLike,
    input_path: PathLike,
    fitted_path: PathLike,
    *,
    progress: Progress = _quiet,
    streaming: bool | None = None,
) -> dict[str, Any]:
    """Fit the spec on the input and write the fitted artifact only."""
    spec = load_spec(spec_path)
    out = _side_file(fitted_path, (input_path, spec_path))
    assert out is not None
    stream, why = _regime(spec, input_path, streaming)
    if stream:
        from pipelines import streaming as streamed

        fitted = streamed.fit_chunked(spec, input_path, progress=progress)
        rows = fitted.fit_rows
    else:
        progress("read")
        df = io.read(input_path)
        validated = _validate_input(spec.input, df, str(input_path), progress)
        fitted, _ = _fit(spec, validated.clean if validated else df, progress)
        rows = df.height
    progress("write")
    io.write_frames({}, {out: _json(fitted.to_dict())})
    return fit_report(fitted, rows, out, reason=why)


def fit_report(fitted: FittedPipeline, rows_in: int, out: Path, *, reason: str | None = None) -> dict[str, Any]:
    """The report of ``fit``: rows, steps, and how the pipeline was fitted."""
    report: dict[str, Any] = {"command": "fit", "fitted": str(out), "rows": {"in": rows_in}}
    if fitted.fit_method:
        report["engine"] = {
            "regime": fitted.fit_method.get("regime"),
            "reason": reason,
            "fit_method": fitted.fit_method,
        }
    report["steps"] = [
        {"index": i, "name": f.step.label, "columns": list(f.columns)} for i, f in enumerate(fitted.steps)
    ]
    return report


def apply(
    fitted_path: PathLike,
    input_path: PathLike,
    output_path: PathLike,
    *,
    quarantine_path: PathLike | None = None,
    report_path: PathLike | None = None,
    progress: Progress = _quiet,
    streaming: bool | None = None,
) -> dict[str, Any]:
    """Apply a saved fitted pipeline to new data (serving mode: no augmentation)."""
    started = time.perf_counter()
    fitted = FittedPipeline.load(fitted_path)
    settings = parse_engine_spec(fitted.spec, source=str(fitted_path))
    input_spec, output_spec = parse_edges(fitted.spec, source=str(fitted_path))
    has_schema = input_spec.schema_ is not None or output_spec.schema_ is not None
    serving = serving_streams(settings, input_path, has_schema=has_schema)
    stream, why = choose_regime(settings, input_path, streaming, serving=serving)
    if stream:
        from pipelines import streaming as streamed

        return streamed.apply(
            fitted_path,
            input_path,
            output_path,
            quarantine_path=quarantine_path,
            report_path=report_path,
            progress=progress,
            reason=why,
            fitted=fitted,
        )
    outs = Outputs.checked(
        output_path, inputs=(input_path, fitted_path), quarantine=quarantine_path, report=report_path
    )
    progress("read")
    df = io.read(input_path)
    validated = _validate_input(input_spec, df, str(input_path), progress, allow_import=False)
    try:
        ex, backend = _execute(settings, fitted, df, train=False, progress=progress, validated=validated)
    except SchemaMismatchError as exc:
        raise SchemaMismatchError(f"{input_path}: {exc}") from exc
    _validate_output(output_spec, ex.output, progress, allow_import=False)
    report = _report("apply", ex, outs)
    report["engine"] = {"regime": "in_memory", "reason": why, **({"backend": backend} if backend is not None else {})}
    report.update(
        fitted=str(fitted_path),
        input=str(input_path),
        seconds={"transform": ex.seconds, "total": time.perf_counter() - started},
    )
    _write(ex, outs, report, None, progress)
    return report


def _fit(spec: PipelineSpec, df: pl.DataFrame, progress: Progress) -> tuple[FittedPipeline, dict[str, Any] | None]:
    """Fit in memory: on Polars, or through the GPU backend when ``engine.backend`` asks for it."""
    if spec.engine.backend == "polars":
        return engine.fit(spec, df, progress), None
    from pipelines import gpu_run

    return gpu_run.fit(spec, df, spec.engine, progress)


def _execute(
    settings: EngineSpec, fitted: FittedPipeline, df: pl.DataFrame, **kwargs: Any
) -> tuple[engine.Execution, dict[str, Any] | None]:
    """Apply in memory: on Polars, or with GPU segments when ``engine.backend`` asks for it."""
    if settings.backend == "polars":
        return engine.execute(fitted, df, **kwargs), None
    from pipelines import gpu_run

    return gpu_run.execute(fitted, df, settings, **kwargs)


def _regime(spec: PipelineSpec, input_path: PathLike, override: bool | None) -> tuple[bool, str]:
    return choose_regime(spec.engine, input_path, override)


def _validate_input(
    spec: InputSpec, df: pl.DataFrame, source: str, progress: Progress, *, allow_import: bool = True
) -> Validated | None:
    if spec.schema_ is None:
        return None
    progress("validate input")
    schema = _compile(spec.schema_, source, allow_import=allow_import)
    return validation.validate_input(df, schema, on_invalid_rows=spec.on_invalid_rows, source=source)


def _validate_output(spec: OutputSpec, df: pl.DataFrame, progress: Progress, *, allow_import: bool = True) -> None:
    if spec.schema_ is not None:
        progress("validate output")
        validation.validate_output(df, _compile(spec.schema_, "output schema", allow_import=allow_import))


def _compile(schema: SchemaSpec, source: str, *, allow_import: bool = True) -> Any:
    """Compile a schema; schemas read from a fitted artifact never import a model (allow_import=False)."""
    try:
        return schema.compile(allow_import=allow_import)
    except ValueError as exc:
        raise SpecError(f"{source}: {exc}") from exc


def _report(command: str, ex: engine.Execution, outs: Outputs) -> dict[str, Any]:
    rows = engine.check_conservation(ex)
    summary = engine.quarantine_summary(ex.quarantine)
    report: dict[str, Any] = {
        "prepflow": __version__,
        "command": command,
        "output": str(outs.output),
        "rows": rows,
        "quarantine": {"path": str(outs.quarantine) if summary["rows"] else None, **summary},
        "steps": ex.steps,
    }
    if outs.fitted is not None:
        report["fitted_output"] = str(outs.fitted)
    return report


def _write(
    ex: engine.Execution, outs: Outputs, report: dict[str, Any], fitted: FittedPipeline | None, progress: Progress
) -> None:
    """Write output, quarantine (if any rows), fitted artifact and report: all or none."""
    progress("write")
    frames = {outs.output: ex.output}
    if ex.quarantine is not None and ex.quarantine.height:
        frames[outs.quarantine] = ex.quarantine
    texts = {}
    if fitted is not None and outs.fitted is not None:
        texts[outs.fitted] = _json(fitted.to_dict())
    if outs.report is not None:
        texts[outs.report] = _json(report)
    io.write_frames(frames, texts)


def validate(spec_path: PathLike, input_path: PathLike, *, progress: Progress = _quiet) -> dict[str, Any]:
    """Check the input against the spec's input schema without running the pipeline.

    Returns a summary: rows checked, rows failing, counts per column and check,
    schema-level problems and the first failing rows. ``ok`` is False on any failure.
    """
    spec = load_spec(spec_path)
    if spec.input.schema_ is None:
        raise UsageError(f"{spec_path}: the spec has no input.schema to validate against")
    progress("read")
    df = io.read(input_path)
    progress("validate input")
    _, failures = validation.check(df, _compile(spec.input.schema_, str(spec_path)))
    rows = failures.filter(pl.col("index").is_not_null())
    counts = (
        rows.group_by("column", "check").agg(pl.len().alias("n")).sort("column", "check").iter_rows(named=True)
        if rows.height
        else []
    )
    return {
        "command": "validate",
        "input": str(input_path),
        "ok": failures.height == 0,
        "rows": {"checked": df.height, "failing": rows["index"].n_unique() if rows.height else 0},
        "schema_problems": validation.schema_problems(failures),
        "failures": [{"column": r["column"], "check": r["check"], "rows": r["n"]} for r in counts],
        "first_failures": validation.failure_table(rows) if rows.height else "",
    }


def infer_schema(input_path: PathLike, output_path: PathLike | None = None) -> str:
    """Infer a starting ``input.schema`` block from data; write it (YAML) or return it."""
    import yaml

    from pipelines.infer import infer_schema as infer

    out = _side_file(output_path, (input_path,)) if output_path is not None else None
    text = yaml.safe_dump({"input": {"schema": infer(io.read(input_path))}}, sort_keys=False)
    if out is not None:
        io.write_frames({}, {out: text})
    return text
