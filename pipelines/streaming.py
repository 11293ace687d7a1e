"""Streaming runs: fit and transform tables larger than memory, batch by batch.

The same spec and the same fitted artifact as an in-memory run; only memory and
the quantile method differ. A streamed ``run``:

1. (only when the spec has an input schema) reads the input in batches,
   validates each, spills the clean rows (with their ``__row``) to a temporary
   Parquet file and appends the invalid ones to the quarantine;
2. fits from mergeable statistics (:mod:`transforms.chunked`): one streaming pass
   per fit group, KLL sketches for quantiles (or one exact pass per column with
   ``engine.exact_quantiles``);
3. transforms batch by batch with the in-memory engine (so every step, metric and
   quarantine rule is the same) and appends each batch to the outputs, which are
   published atomically at the end (:mod:`pipelines.sinks`).

Peak memory is a few batches (``engine.chunk_rows``), whatever the input size.
Limits, checked before any work: augmentation steps (they need the whole table
to balance it) cannot run streamed; output checks that compare rows (``unique``)
see one batch at a time.

>>> import tempfile, pathlib, polars as pl
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> pl.DataFrame({"x": [float(i) for i in range(100)]}).write_parquet(d / "in.parquet")
>>> _ = (d / "s.yaml").write_text("engine: {streaming: true}\\nsteps: [{kind: scale, method: robust}]")
>>> report = run(d / "s.yaml", d / "in.parquet", d / "out.parquet")
>>> report["rows"], report["engine"]["regime"], report["engine"]["fit_method"]["quantiles"]
({'in': 100, 'out': 100, 'quarantined': 0, 'augmented': 0}, 'streaming', 'kll')
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl

from pipelines import engine, io, validation
from pipelines.commands import Outputs, PathLike, _compile, _json
from pipelines.engine import REASONS, ROW, STAGE, Progress, _quiet
from pipelines.engine_spec import EngineSpec
from pipelines.errors import DataError, SpecError
from pipelines.sinks import StreamedOutputs
from pipelines.spec import PipelineSpec, load_spec
from pipelines.validation import Validated
from transforms.chunked import ChunkOptions, MapPartials, run_group_task
from transforms.errors import PrepflowError
from transforms.pipeline import FittedPipeline


def chunk_options(settings: EngineSpec) -> ChunkOptions:
    return ChunkOptions(settings.sketch_k, settings.exact_quantiles, settings.chunk_rows)


def _check_streamable(spec: PipelineSpec, *, train: bool) -> None:
    if not train:
        return
    for i, step in enumerate(spec.steps):
        if step.kind == "augment":
            raise SpecError(
                f"{spec.source}: steps[{i}] ({step.label}): augmentation needs the whole table in memory to "
                "balance it and cannot run streamed; run without engine.streaming (or --no-streaming), or fit "
                "and apply the other steps streamed"
            )


def _batches(lf: pl.LazyFrame, chunk_rows: int, source: str) -> Iterator[pl.DataFrame]:
    """Batches of a scan in input order; a read error names the file."""
    try:
        yield from lf.collect_batches(chunk_size=chunk_rows, maintain_order=True)
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{source}: reading failed: {io.first_line(exc)}") from exc


class CleanInput:
    """The rows of the input that pass its schema, as a lazy scan with ``__row``.

    Without an input schema that is the input itself; with one, the input is read
    once in batches, each validated, and the clean rows are spilled to a temporary
    Parquet file (deleted on exit) while invalid rows go to ``quarantine``.
    """

    def __init__(self, spec: PipelineSpec, input_path: PathLike, settings: EngineSpec, *, allow_import: bool) -> None:
        self.spec, self.input_path, self.settings, self.allow_import = spec, str(input_path), settings, allow_import
        self.rows_in = 0
        self.quarantined: list[pl.DataFrame] = []
        self._spill: Path | None = None

    def raw(self) -> pl.LazyFrame:
        return io.scan(self.input_path).with_row_index(ROW)

    @contextmanager
    def open(self, on_quarantine: Callable[[pl.DataFrame], None]) -> Iterator[pl.LazyFrame]:
        schema_spec = self.spec.input.schema_
        if schema_spec is None:
            self.rows_in = self.raw().select(pl.len()).collect(engine="streaming").item()
            yield self.raw()
            return
        schema = _compile(schema_spec, self.input_path, allow_import=self.allow_import)
        folder = Path(tempfile.mkdtemp(prefix=".prepflow-spill-"))
        try:
            spill = folder / "clean.parquet"
            import pyarrow.parquet as pq

            writer = None
            for batch in _batches(self.raw(), self.settings.chunk_rows, self.input_path):
                self.rows_in += batch.height
                checked = validation.validate_input(
                    batch.drop(ROW), schema, on_invalid_rows=self.spec.input.on_invalid_rows, source=self.input_path
                )
                rows = batch.get_column(ROW)
                clean = checked.clean.with_columns(rows.gather(checked.rows).alias(ROW))
                if writer is None:
                    writer = pq.ParquetWriter(spill, clean.to_arrow().schema, compression="lz4")
                writer.write_table(clean.cast(dict(_schema_of(writer))).to_arrow())
                if checked.quarantine is not None:
                    q = checked.quarantine.with_columns(rows.gather(checked.quarantine[ROW]).alias(ROW))
                    on_quarantine(q)
            if writer is None:  # no rows at all
                yield self.raw().head(0)
                return
            writer.close()
            yield pl.scan_parquet(spill)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _schema_of(writer: Any) -> pl.Schema:
    return pl.DataFrame(writer.schema.empty_table()).schema


def fit_chunked(
    spec: PipelineSpec,
    input_path: PathLike,
    *,
    map_partials: MapPartials | None = None,
    progress: Progress = _quiet,
    clean: pl.LazyFrame | None = None,
) -> FittedPipeline:
    """Fit ``spec`` in bounded memory on the input's clean rows.

    With ``map_partials`` (the distributed regime) each fit group's mergeable
    statistics come from ``map_partials(task)``: one :func:`partial_for_partition`
    result per partition. What cannot be merged runs here on the whole input.
    """
    progress("fit")
    options = chunk_options(spec.engine)
    regime = "distributed" if map_partials is not None else "streaming"
    if clean is None:
        holder = CleanInput(spec, input_path, spec.engine, allow_import=True)
        with holder.open(lambda _: None) as lf:
            return _fit(spec, lf.drop(ROW), options, map_partials, regime)
    return _fit(spec, clean.drop(ROW), options, map_partials, regime)


def _fit(
    spec: PipelineSpec, lf: pl.LazyFrame, options: ChunkOptions, map_partials: MapPartials | None, regime: str
) -> FittedPipeline:
    try:
        return spec.pipeline().fit_chunked(lf, options=options, map_partials=map_partials, spec=spec.raw, regime=regime)
    except PrepflowError as exc:
        error = engine.at_step(spec, exc)
        if error is exc:
            raise
        raise error from exc
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"fitting failed on the input data: {io.first_line(exc)}") from exc


def partial_for_partition(spec: PipelineSpec, task: dict[str, Any], partition_path: str) -> dict[str, Any]:
    """Worker side of a distributed fit: the partial statistics of one partition (plain JSON).

    The partition is read in memory (a partition is sized to fit), its invalid
    rows (by the input schema) are left out, and the task's fit group is
    computed on the rest.
    """
    df = io.read(partition_path)
    if spec.input.schema_ is not None:
        schema = _compile(spec.input.schema_, partition_path)
        df = validation.validate_input(
            df, schema, on_invalid_rows=spec.input.on_invalid_rows, source=partition_path
        ).clean
    try:
        return run_group_task(spec.steps, task, df.lazy(), target=spec.target)
    except PrepflowError as exc:
        error = engine.at_step(spec, exc)
        if error is exc:
            raise
        raise error from exc


class _Totals:
    """Per-step metrics, rows and quarantine counts summed over batches."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] | None = None
        self.rows = Counter[str]()
        self.stages = Counter[str]()
        self.reasons = Counter[str]()

    def add_quarantine(self, q: pl.DataFrame) -> None:
        self.rows["quarantined"] += q.height
        self.stages.update(q[STAGE].to_list())
        self.reasons.update(r for rs in q[REASONS].to_list() for r in (rs or []))

    def add(self, ex: engine.Execution) -> None:
        self.rows["out"] += ex.output.height
        if self.steps is None:
            self.steps = ex.steps
            return
        for total, step in zip(self.steps, ex.steps, strict=True):
            for key, value in step.items():
                if key.startswith("rows_"):
                    total[key] += value
                elif isinstance(value, dict):
                    for column, n in value.items():
                        total[key][column] = total[key].get(column, 0) + n
                elif isinstance(value, int) and not isinstance(value, bool) and key not in ("index", "fit_group"):
                    total[key] += value


def run(
    spec_path: PathLike,
    input_path: PathLike,
    output_path: PathLike,
    *,
    fitted_path: PathLike | None = None,
    quarantine_path: PathLike | None = None,
    report_path: PathLike | None = None,
    progress: Progress = _quiet,
    reason: str = "engine.streaming: true in the spec",
) -> dict[str, Any]:
    """``prepflow run`` streamed: fit in bounded memory, then transform batch by batch."""
    spec = load_spec(spec_path)
    _check_streamable(spec, train=True)
    outs = Outputs.checked(
        output_path, inputs=(input_path, spec_path), quarantine=quarantine_path, fitted=fitted_path, report=report_path
    )
    return _stream(spec, None, input_path, outs, train=True, progress=progress, reason=reason, source=str(spec_path))


def apply(
    fitted_path: PathLike,
    input_path: PathLike,
    output_path: PathLike,
    *,
    quarantine_path: PathLike | None = None,
    report_path: PathLike | None = None,
    progress: Progress = _quiet,
    settings: EngineSpec | None = None,
    reason: str = "--streaming on the command line",
) -> dict[str, Any]:
    """``prepflow apply`` streamed: the saved pipeline applied batch by batch (serving mode)."""
    from pipelines.spec import parse_spec

    fitted = FittedPipeline.load(fitted_path)
    spec = parse_spec(fitted.spec, source=str(fitted_path))
    if settings is not None:
        spec = _with_engine(spec, settings)
    outs = Outputs.checked(
        output_path, inputs=(input_path, fitted_path), quarantine=quarantine_path, report=report_path
    )
    return _stream(
        spec, fitted, input_path, outs, train=False, progress=progress, reason=reason, source=str(fitted_path)
    )


def _with_engine(spec: PipelineSpec, settings: EngineSpec) -> PipelineSpec:
    from dataclasses import replace

    return replace(spec, engine=settings)


def _stream(
    spec: PipelineSpec,
    fitted: FittedPipeline | None,
    input_path: PathLike,
    outs: Outputs,
    *,
    train: bool,
    progress: Progress,
    reason: str,
    source: str,
) -> dict[str, Any]:
    started = time.perf_counter()
    totals = _Totals()
    batches = 0
    seconds: dict[str, float] = {}
    with StreamedOutputs(outs.output) as sink:

        def quarantine(q: pl.DataFrame) -> None:
            totals.add_quarantine(q)
            sink.append(outs.quarantine, q.select(*_input_columns(q), ROW, REASONS, STAGE))

        holder = CleanInput(spec, input_path, spec.engine, allow_import=fitted is None)
        progress("read")
        with holder.open(quarantine) as clean:
            t0 = time.perf_counter()
            if fitted is None:
                fitted = fit_chunked(spec, input_path, progress=progress, clean=clean)
            seconds["fit"] = time.perf_counter() - t0
            progress("transform")
            t0 = time.perf_counter()
            try:
                fitted.check_schema(clean.drop(ROW).collect_schema(), train=train)
            except PrepflowError as exc:
                raise type(exc)(f"{input_path}: {exc}") from exc
            output_schema = _output_schema(spec, source)
            for batch in _batches(clean, spec.engine.chunk_rows, str(input_path)):
                batches += 1
                ex = _execute(fitted, batch, train)
                engine.check_conservation(ex)
                if output_schema is not None:
                    validation.validate_output(ex.output, output_schema)
                sink.append(outs.output, ex.output)
                if ex.quarantine is not None and ex.quarantine.height:
                    quarantine(ex.quarantine)
                totals.add(ex)
            if batches == 0:  # an empty input still gives an output with the pipeline's columns
                empty = clean.drop(ROW).head(0).collect()
                sink.append(outs.output, fitted.transform(empty, train=train))
            seconds["transform"] = time.perf_counter() - t0
        rows_in = holder.rows_in
        seconds["total"] = time.perf_counter() - started
        report = _report(spec, fitted, outs, totals, rows_in, batches, seconds, reason, train=train, source=source)
        if fitted is not None and outs.fitted is not None:
            sink.text(outs.fitted, _json(fitted.to_dict()))
        if outs.report is not None:
            sink.text(outs.report, _json(report))
        progress("write")
    return report


def _input_columns(q: pl.DataFrame) -> list[str]:
    return [c for c in q.columns if c not in (ROW, REASONS, STAGE)]


def _output_schema(spec: PipelineSpec, source: str) -> Any:
    if spec.output.schema_ is None:
        return None
    return _compile(spec.output.schema_, "output schema", allow_import=not source.endswith(".json"))


def _execute(fitted: FittedPipeline, batch: pl.DataFrame, train: bool) -> engine.Execution:
    clean = batch.drop(ROW)
    validated = Validated(clean, batch.get_column(ROW), None, pl.DataFrame())
    return engine.execute(fitted, clean, train=train, validated=validated, original=batch.lazy())


def _report(
    spec: PipelineSpec,
    fitted: FittedPipeline,
    outs: Outputs,
    totals: _Totals,
    rows_in: int,
    batches: int,
    seconds: dict[str, float],
    reason: str,
    *,
    train: bool,
    source: str,
) -> dict[str, Any]:
    augmented = sum(s["rows_added"] for s in totals.steps or [])
    rows = {"in": rows_in, "out": totals.rows["out"], "quarantined": totals.rows["quarantined"], "augmented": augmented}
    if rows["in"] != rows["out"] + rows["quarantined"] - augmented:
        raise engine.ConservationError(f"row conservation violated (a bug in prepflow, please report it): {rows}")
    quarantined = totals.rows["quarantined"]
    report: dict[str, Any] = {
        "command": "run" if train else "apply",
        "output": str(outs.output),
        "rows": rows,
        "quarantine": {
            "path": str(outs.quarantine) if quarantined else None,
            "rows": quarantined,
            "stages": dict(totals.stages),
            "reasons": dict(sorted(totals.reasons.items())),
        },
        "steps": totals.steps or [],
        "engine": {
            "regime": "streaming",
            "reason": reason,
            "batches": batches,
            "chunk_rows": spec.engine.chunk_rows,
            "fit_method": fitted.fit_method,
        },
        "seconds": seconds,
    }
    if outs.fitted is not None:
        report["fitted_output"] = str(outs.fitted)
    report[("spec" if train else "fitted")] = source
    from transforms._version import __version__

    return {"prepflow": __version__, **report}
