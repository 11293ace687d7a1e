"""Streaming runs: fit and transform tables larger than memory, batch by batch.

The same spec and the same fitted artifact as an in-memory run; only memory and
the quantile method differ. A streamed ``run``:

1. (only when the spec has an input schema) reads the input in batches,
   validates each, spills the clean rows (with their ``__row``) to a temporary
   Parquet file and appends the invalid ones to the quarantine;
2. fits from mergeable statistics (:mod:`transforms.chunked`): one streaming pass
   per fit group, KLL sketches for quantiles (or one exact pass per column with
   ``engine.exact_quantiles``);
3. transforms with Polars' streaming engine: the output is sunk to a temporary
   file (``sink_parquet``/``sink_csv``/``sink_ipc``/``sink_ndjson``) in one pass,
   each step's metrics added up batch by batch on the way, as columns beside the
   rows (:mod:`pipelines.metrics_tap`); the quarantine (rows the schema or a step
   rejected, with their reasons) is sunk in a second pass, only when a step can
   drop rows or the input schema quarantined some (one query holding both sinks
   would buffer the table for the slower one), the metrics of the rows steps
   dropped added up on the way; the output is checked against the output schema
   batch by batch and everything is published atomically.

Memory does not follow the input's size: it is set by the batches, Polars'
read-ahead of the streaming reader (a few hundred MB: it reads ahead of the
sketch updates) and the quarantine, which is sorted by ``__row`` (see
``benchmarks/README.md``, "Out of core", for measured peaks).
SMOTE and random oversampling stream: the output pass collects the rows of the classes
that grow and makes the new rows a chunk at a time
(:func:`transforms.augment._base.new_rows_source`), so memory follows the minority's
size, not the table's. Limits, checked before any work: the other augmentation steps
(they need the whole table) cannot run streamed; output checks that compare rows
(``unique``) see one batch at a time.

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from pipelines import engine, io, validation
from pipelines.commands import Outputs, PathLike, _compile, _json
from pipelines.engine import ROW, Progress, _quiet
from pipelines.engine_spec import EngineSpec
from pipelines.errors import DataError, SpecError, UsageError
from pipelines.metrics_tap import MetricColumns
from pipelines.spec import PipelineSpec, load_spec
from pipelines.validation import Validated
from transforms._version import __version__
from transforms.atomic import TMP_PREFIX
from transforms.chunked import ChunkOptions, MapPartials, run_group_task
from transforms.errors import PrepflowError
from transforms.pipeline import FittedPipeline


def chunk_options(settings: EngineSpec) -> ChunkOptions:
    return ChunkOptions(settings.sketch_k, settings.exact_quantiles, settings.chunk_rows)


def _check_streamable(spec: PipelineSpec, *, train: bool) -> None:
    """Augmentation streams only where its new rows need no more than the growing classes' rows."""
    if not train:
        return
    for i, step in enumerate(spec.steps):
        if step.kind == "augment" and not getattr(step, "streams", False):
            raise SpecError(
                f"{spec.source}: steps[{i}] ({step.label}): this augmentation needs the whole table in memory "
                "and cannot run streamed; run without engine.streaming (or with --no-streaming)"
            )


def _batches(lf: pl.LazyFrame, chunk_rows: int, source: str) -> Iterator[pl.DataFrame]:
    """Batches of a scan in input order; a read error names the file."""
    try:
        yield from lf.collect_batches(chunk_size=chunk_rows, maintain_order=True)
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{source}: reading failed: {io.first_line(exc)}") from exc


@dataclass
class CleanInput:
    """The rows of the input that pass its schema, as a lazy scan with ``__row``.

    Without an input schema that is the input itself. With one, :meth:`open`
    reads the input once in batches, validates each, and spills the clean rows
    (coerced, with their ``__row``) and the quarantined ones to temporary Parquet
    files in ``work_dir``, removed on exit. :meth:`deferred` does the same only
    when asked to: a distributed fit needs the clean rows on the driver only for
    statistics that do not merge.
    """

    spec: PipelineSpec
    input_path: str
    work_dir: Path
    allow_import: bool = True
    rows_in: int = 0
    quarantine: pl.LazyFrame | None = None

    def raw(self) -> pl.LazyFrame:
        return io.scan(self.input_path).with_row_index(ROW)

    @contextmanager
    def open(self) -> Iterator[pl.LazyFrame]:
        with self.deferred() as (clean, prepare):
            prepare()
            yield clean

    @contextmanager
    def deferred(self) -> Iterator[tuple[pl.LazyFrame, Callable[[], None]]]:
        """The clean rows' scan, and the function that must run before the scan is read."""
        if self.spec.input.schema_ is None:

            def count() -> None:
                self.rows_in = self.raw().select(pl.len()).collect(engine="streaming").item()

            yield self.raw(), count
            return
        schema = _compile(self.spec.input.schema_, self.input_path, allow_import=self.allow_import)
        folder = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}spill-", dir=self.work_dir))
        clean_file = folder / "clean.parquet"
        row_dtype = self.raw().collect_schema()[ROW]
        empty = self._validate(self.raw().head(0).collect(), schema).clean
        empty = empty.with_columns(pl.lit(None, row_dtype).alias(ROW))
        done: list[bool] = []

        def prepare() -> None:
            if not done:
                self._spill(schema, clean_file, folder / "quarantine.parquet", empty)
                done.append(True)

        try:
            yield pl.scan_parquet(clean_file, schema=empty.schema), prepare
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _validate(self, batch: pl.DataFrame, schema: Any) -> Validated:
        on_invalid = self.spec.input.on_invalid_rows
        return validation.validate_input(batch.drop(ROW), schema, on_invalid_rows=on_invalid, source=self.input_path)

    def _spill(self, schema: Any, clean_file: Path, bad_file: Path, empty: pl.DataFrame) -> None:
        with _Spill(clean_file) as clean_out, _Spill(bad_file) as bad_out:
            for batch in _batches(self.raw(), self.spec.engine.chunk_rows, self.input_path):
                self.rows_in += batch.height
                checked = self._validate(batch, schema)
                rows = batch.get_column(ROW)
                clean_out.write(checked.clean.with_columns(rows.gather(checked.rows).alias(ROW)))
                if checked.quarantine is not None:
                    bad_out.write(checked.quarantine.with_columns(rows.gather(checked.quarantine[ROW]).alias(ROW)))
            if not clean_out.rows:
                clean_out.write(empty)
        self.quarantine = pl.scan_parquet(bad_file) if bad_out.rows else None


class _Spill:
    """Appends frames of one schema to a Parquet file (PyArrow's incremental writer)."""

    def __init__(self, path: Path) -> None:
        self.path, self.rows, self._writer, self._schema = path, 0, None, None

    def __enter__(self) -> _Spill:
        return self

    def write(self, df: pl.DataFrame) -> None:
        if self._writer is None:
            import pyarrow.parquet as pq  # on use: a run without an input schema never spills (64 ms to import)

            self._schema = df.schema
            self._writer = pq.ParquetWriter(self.path, df.to_arrow().schema, compression="lz4")
        elif df.schema != self._schema:
            df = df.cast(dict(self._schema))  # an all-null batch can come back with another dtype
        self._writer.write_table(df.to_arrow())
        self.rows += df.height

    def __exit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()


def fit_chunked(
    spec: PipelineSpec,
    input_path: PathLike,
    *,
    map_partials: MapPartials | None = None,
    progress: Progress = _quiet,
    clean: pl.LazyFrame | None = None,
    work_dir: PathLike | None = None,
) -> FittedPipeline:
    """Fit ``spec`` in bounded memory on the input's clean rows.

    ``work_dir`` holds the spilled clean rows when the spec has an input schema
    (default: the system's temporary folder). In the distributed regime the
    input is read here only if a fit group has statistics that do not merge.

    With ``map_partials`` (the distributed regime) each fit group's mergeable
    statistics come from ``map_partials(task)``: one :func:`partial_for_partition`
    result per partition. What cannot be merged runs here on the whole input.
    """
    progress("fit")
    options = chunk_options(spec.engine)
    regime = "distributed" if map_partials is not None else "streaming"
    if clean is not None:
        return _fit(spec, clean.drop(ROW), options, map_partials, regime, None)
    holder = CleanInput(spec, str(input_path), Path(work_dir or tempfile.gettempdir()))
    with holder.deferred() as (lf, prepare):
        if map_partials is None:
            prepare()
        return _fit(spec, lf.drop(ROW), options, map_partials, regime, prepare)


def _fit(
    spec: PipelineSpec,
    lf: pl.LazyFrame,
    options: ChunkOptions,
    map_partials: MapPartials | None,
    regime: str,
    prepare: Callable[[], None] | None,
) -> FittedPipeline:
    try:
        return spec.pipeline().fit_chunked(
            lf, options=options, map_partials=map_partials, spec=spec.raw, regime=regime, prepare=prepare
        )
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
    reason: str = "--streaming on the command line",
    fitted: FittedPipeline | None = None,
) -> dict[str, Any]:
    """``prepflow apply`` streamed: the saved pipeline applied batch by batch (serving mode).

    ``fitted``: the artifact at ``fitted_path``, when the caller has loaded it already.
    """
    from pipelines.spec import parse_spec

    fitted = FittedPipeline.load(fitted_path) if fitted is None else fitted
    spec = parse_spec(fitted.spec, source=str(fitted_path))
    outs = Outputs.checked(
        output_path, inputs=(input_path, fitted_path), quarantine=quarantine_path, report=report_path
    )
    return _stream(
        spec, fitted, input_path, outs, train=False, progress=progress, reason=reason, source=str(fitted_path)
    )


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
    if spec.engine.backend == "cupy":
        raise UsageError(
            f"{source}: engine: backend: cupy runs in memory only; the streaming regime runs on Polars "
            "(use backend: auto or polars with streaming, or --no-streaming for the GPU)"
        )
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    holder = CleanInput(spec, str(input_path), outs.output.parent, allow_import=fitted is None)
    tmps: dict[Path, Path] = {}
    try:
        progress("read")
        for folder in dict.fromkeys(p.parent for p in (outs.output, outs.quarantine)):
            io.clean_stale_temp_files(folder)
        with holder.open() as clean:
            if fitted is None:  # run: fit first (apply's report has no fit time, as in memory)
                t0 = time.perf_counter()
                fitted = fit_chunked(spec, input_path, progress=progress, clean=clean)
                seconds["fit"] = time.perf_counter() - t0
            progress("transform")
            t0 = time.perf_counter()
            metrics = MetricColumns()
            try:
                dropped, input_columns = engine.steps_dropped(fitted, clean, clean, train=train, metrics=metrics)
            except PrepflowError as exc:
                raise type(exc)(f"{input_path}: {exc}") from exc
            lost = [q for q in (holder.quarantine, dropped) if q is not None]
            quarantine = engine.quarantine_of(lost, input_columns)
            tmps[outs.output] = io.tmp_path(outs.output)
            if quarantine is not None:
                tmps[outs.quarantine] = io.tmp_path(outs.quarantine)
            # one pass writes the output, the metrics of its rows added up on the way; the quarantine in a
            # second, the metrics of the rows steps dropped added up on the way (a query shared by the slow
            # output sink and a fast consumer buffers the table for the slow one)
            clean_rows = clean if quarantine is not None else clean.drop(ROW)  # __row only places lost rows
            output = engine.transformed(fitted.steps, clean_rows, train=train, metrics=metrics)
            try:
                pl.collect_all([metrics.sink(output, partial(io.sink, path=tmps[outs.output]))], engine="streaming")
                if quarantine is not None:
                    pl.collect_all([io.sink(quarantine, tmps[outs.quarantine])], engine="streaming")
            except pl.exceptions.PolarsError as exc:
                raise DataError(f"applying the pipeline failed: {io.first_line(exc)}") from exc
            steps = engine.step_metrics(fitted, metrics.frames(), metrics.keys)
            rows_out = metrics.rows_out
            seconds["transform"] = time.perf_counter() - t0
        _validate_output(spec, tmps[outs.output], source)
        quarantine_file = tmps.get(outs.quarantine)
        summary = engine.quarantine_summary(None if quarantine_file is None else io.scan(quarantine_file))
        if not summary["rows"] and outs.quarantine in tmps:
            tmps.pop(outs.quarantine).unlink(missing_ok=True)
        augmented = sum(s["rows_added"] for s in steps)
        rows = {"in": holder.rows_in, "out": rows_out, "quarantined": summary["rows"], "augmented": augmented}
        if rows["in"] != rows["out"] + rows["quarantined"] - augmented:
            raise engine.ConservationError(f"row conservation violated (a bug in prepflow, please report it): {rows}")
        seconds["total"] = time.perf_counter() - started
        report = {
            "prepflow": __version__,
            "command": "run" if train else "apply",
            "output": str(outs.output),
            "rows": rows,
            "quarantine": {"path": str(outs.quarantine) if summary["rows"] else None, **summary},
            "steps": steps,
            "engine": {"regime": "streaming", "reason": reason, "fit_method": fitted.fit_method},
            ("spec" if train else "fitted"): source,
            "input": str(input_path),
            "seconds": seconds,
        }
        texts = {}
        if outs.fitted is not None:
            report["fitted_output"] = str(outs.fitted)
            texts[outs.fitted] = _json(fitted.to_dict())
        if outs.report is not None:
            texts[outs.report] = _json(report)
        progress("write")
        io.publish(tmps, texts, main=outs.output)
        return report
    except BaseException:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
        raise


def _validate_output(spec: PipelineSpec, written: Path, source: str) -> None:
    """Check the written (not yet published) output against the output schema, batch by batch.

    Row-local checks are exact; checks that compare rows (``unique``) see one batch at a time.
    """
    if spec.output.schema_ is None:
        return
    schema = _compile(spec.output.schema_, "output schema", allow_import=not source.endswith(".json"))
    for batch in _batches(io.scan(written), spec.engine.chunk_rows, "output"):
        validation.validate_output(batch, schema)
