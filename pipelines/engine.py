"""The engine: fit a spec on an input, apply a fitted pipeline, collect metrics, write outputs.

The CLI and the Prefect flows both call these functions, so every way of running
a pipeline gives the same output. One run:

1. read the input (in memory; see the scale issue for streaming);
2. fit the steps (``fit``/``run``), grouped into one aggregation query per group;
3. apply the fitted pipeline with a ``__row`` position column, one query per run
   of steps that keep every row, each step's per-row metric counts riding beside
   it; the rows outlier ``drop`` steps remove are taken, with their input values,
   for the quarantine (:func:`run_in_segments`);
4. check row conservation (rows in = out + quarantined - augmented);
5. write output, quarantine, fitted artifact and report atomically, all or none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from pipelines import io
from pipelines.errors import DataError
from pipelines.metrics_tap import MetricColumns
from pipelines.spec import PipelineSpec
from pipelines.validation import Validated
from transforms._version import __version__
from transforms.augment._base import ADDED_COLUMN
from transforms.base import ROWS, Fitted
from transforms.compose import After, Before, apply_steps
from transforms.errors import PrepflowError
from transforms.pipeline import FittedPipeline

ROW = "__row"
REASONS = "__reasons"
STAGE = "__stage"
#: prefix of the hidden columns that carry the input's values through a quarantine query (never written)
INPUT = "\x1finput:"
Progress = Callable[[str], None]
Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def _quiet(_: str) -> None:
    return None


class ConservationError(RuntimeError):
    """Rows in != rows out + quarantined - augmented: a bug in prepflow, never ignored."""


@dataclass
class Execution:
    """The collected result of applying a fitted pipeline."""

    output: pl.DataFrame
    quarantine: pl.DataFrame | None
    steps: list[dict[str, Any]]
    rows_in: int
    seconds: float


@dataclass
class Report:
    """What a run did: rows, per-step metrics, timings, and where outputs went."""

    command: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"prepflow": __version__, "command": self.command, **self.data}


def fit(spec: PipelineSpec, df: pl.DataFrame, progress: Progress = _quiet) -> FittedPipeline:
    """Fit the spec's pipeline on an in-memory frame."""
    progress("fit")
    try:
        return spec.pipeline().fit(df, spec=spec.raw)
    except PrepflowError as exc:
        raise at_step(spec, exc) from exc
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"fitting failed on the input data: {io.first_line(exc)}") from exc


def at_step(spec: PipelineSpec, exc: PrepflowError) -> PrepflowError:
    """``exc`` with the spec file, step index and label in front, when a step raised it."""
    index = getattr(exc, "step_index", None)
    if index is None:
        return exc
    label = spec.steps[index].label
    message = str(exc).removeprefix(f"{label}: ")
    return type(exc)(f"{spec.source}: steps[{index}] ({label}): {message}")


def input_columns_of(frame: Frame) -> list[str]:
    """The input's columns: ``frame``'s, without the engine's ``__row``."""
    return [c for c in frame.collect_schema() if c != ROW]


def steps_dropped(
    fitted: FittedPipeline,
    source: pl.LazyFrame,
    original: pl.LazyFrame,
    *,
    train: bool,
    metrics: MetricColumns | None = None,
) -> tuple[pl.LazyFrame | None, list[str]]:
    """The query of the rows ``fitted``'s steps drop from ``source``, and the input's columns.

    ``source``: the clean rows with ``__row``; ``original`` holds the input's values by
    ``__row``, which the dropped rows are quarantined with (rows added by augmentation,
    which have no ``__row``, with the values they had when dropped). When ``original``
    is ``source`` the input's values ride beside the stage as hidden columns (references,
    until a step's filter keeps only its dropped rows), so the dropped rows are not joined
    back to a second read of the input. None when no step drops rows. The streaming regime
    sinks it in its own pass, with ``metrics``: the dropped rows' counts of the steps they
    went through are added up on the way
    (:meth:`~pipelines.metrics_tap.MetricColumns.attach_dropped`). The in-memory regime
    takes the dropped rows from each segment's table (:func:`run_in_segments`).
    """
    input_columns = input_columns_of(original)
    fitted.check_schema(source.collect_schema(), train=train)
    carried = source is original
    stage = source.with_columns(pl.col(c).alias(INPUT + c) for c in input_columns) if carried else source
    holder = None if carried else original
    dropped, added, before, after = [], False, before_step(metrics), after_step(metrics)
    for f in fitted.steps:
        stage = stage.with_columns(before(f, stage.collect_schema()))
        counted = None if metrics is None else partial(metrics.attach_dropped, f=f)
        dropped.extend(dropped_rows(f, stage, holder, input_columns, counted=counted, added=added))
        stage = after(f, f.apply(stage, train=train))
        added = added or (train and f.adds_rows)
    return lost_rows(dropped, input_columns), input_columns


def run_in_segments(
    fitted: FittedPipeline, source: pl.LazyFrame, original: pl.LazyFrame, *, train: bool
) -> tuple[pl.DataFrame, list[pl.DataFrame], list[list[str]], pl.DataFrame | None]:
    """Apply ``fitted`` in memory: (output, per-stage metric frames and keys, dropped rows).

    A segment is a run of steps that keep every row, up to a step that drops or adds
    rows. Each segment is one query, collected once, its steps' per-row metric counts
    riding beside it as columns (:class:`~pipelines.metrics_tap.MetricColumns`) with
    those of the row-changing step that ends it, computed at that step's input. The
    counts are added up and dropped, the rows the step drops are taken from the
    collected table (with their input values, for the quarantine), and the step runs
    on it as the start of the next segment. So every step runs once: per-stage metric
    queries would compute the earlier steps again for each stage, and an augmentation
    step's Python batch function (SMOTE's neighbour search) once per query.
    ``source`` and ``original`` as for :func:`steps_dropped`.
    """
    steps, input_columns = fitted.steps, input_columns_of(original)
    frames: list[pl.DataFrame] = []
    keys: list[list[str]] = []
    dropped: list[pl.DataFrame] = []  # collected at once: a segment's table is not held to the end
    current, start = source, 0
    while True:
        end = next((i for i in range(start, len(steps)) if steps[i].changes_rows), len(steps))
        metrics = MetricColumns()
        # no step of a segment changes rows: its metric columns are all it adds
        query = apply_steps(steps[start:end], current, train=train, before=metrics.before)
        if end < len(steps):
            query = query.with_columns(metrics.before(steps[end], query.collect_schema()))
        table = metrics.add(query.collect())
        if end == len(steps):  # with the last frame: the output's rows
            lost = lost_rows([d.lazy() for d in dropped], input_columns)
            output = table.drop(ROW, strict=False)
            return output, frames + metrics.frames(), keys + metrics.keys, None if lost is None else lost.collect()
        frames, keys = frames + metrics.frames()[:-1], keys + metrics.keys[:-1]
        step, stage = steps[end], table.lazy()
        dropped.extend(pl.collect_all(dropped_rows(step, stage, original, input_columns)))
        current, start = apply_step(step, stage, train=train), end + 1


def dropped_rows(
    f: Fitted,
    stage: Frame,
    original: Frame | None,
    input_columns: Sequence[str],
    *,
    counted: Callable[[pl.LazyFrame], pl.LazyFrame] | None = None,
    added: bool = True,
) -> list[Frame]:
    """The rows step ``f`` drops from ``stage`` (its input), tagged and with their input values; [] if none.

    ``counted``: passes the dropped rows (lazily) through the adding up of their metric columns.
    ``added``: whether ``stage`` can hold rows an earlier step added (no ``__row``).
    """
    keep = f.keep()
    if keep is None:
        return []
    reasons = f.drop_reasons()
    gone = stage.filter(~keep).with_columns(
        (reasons if reasons is not None else pl.lit([f.step.label])).alias(REASONS),
        pl.lit(f.step.label).alias(STAGE),
    )
    return with_input_values(original, gone, input_columns, counted=counted, added=added)


def lost_rows(parts: Sequence[pl.LazyFrame], input_columns: Sequence[str]) -> pl.LazyFrame | None:
    """The rows steps dropped, from :func:`dropped_rows`' parts: the input's columns and the tags."""
    if not parts:
        return None
    return pl.concat(parts, how="diagonal_relaxed").select(*input_columns, ROW, REASONS, STAGE)


def transformed(
    steps: Sequence[Fitted], source: pl.LazyFrame, *, train: bool, metrics: MetricColumns | None = None
) -> pl.LazyFrame:
    """The output query: ``steps`` applied to ``source``, column-wise runs composed, ``__row`` dropped.

    ``metrics``: its columns ride beside the rows (:class:`~pipelines.metrics_tap.MetricColumns`).
    """
    query = apply_steps(steps, source, train=train, after=after_step(metrics), before=before_step(metrics))
    return query.drop(ROW, strict=False)


def marked(f: Fitted) -> list[pl.Expr]:
    """At the input of a step that adds rows: :data:`~transforms.augment._base.ADDED_COLUMN`, which the step
    sets on the rows it adds (a row-local test of a row's origin, which streams)."""
    return [pl.lit(False).alias(ADDED_COLUMN)] if f.adds_rows else []


def added_rows_unindexed(f: Fitted, stage: pl.LazyFrame) -> pl.LazyFrame:
    """After step ``f``: the rows it added (marked, see :func:`marked`) have no ``__row``; the mark is dropped.

    Rows a step adds copy every column of the row they were made from, ``__row`` included, and are no
    input row.
    """
    schema = stage.collect_schema()
    if ADDED_COLUMN not in schema:
        return stage
    if ROW in schema:
        stage = stage.with_columns(pl.when(~pl.col(ADDED_COLUMN)).then(pl.col(ROW)).alias(ROW))
    return stage.drop(ADDED_COLUMN)


def apply_step(f: Fitted, stage: pl.LazyFrame, *, train: bool) -> pl.LazyFrame:
    """``f`` applied to ``stage`` on its own, the rows it adds without ``__row``."""
    return added_rows_unindexed(f, f.apply(stage.with_columns(marked(f)), train=train))


def before_step(metrics: MetricColumns | None) -> Before:
    """The columns added at every step's input: the added-rows mark, then ``metrics``' columns."""
    if metrics is None:
        return lambda f, _: marked(f)
    return lambda f, schema: [*marked(f), *metrics.before(f, schema)]


def after_step(metrics: MetricColumns | None) -> After:
    """What follows every step that is not column-wise: ``metrics``' :meth:`~MetricColumns.after`, then the index."""
    if metrics is None:
        return added_rows_unindexed
    return lambda f, stage: added_rows_unindexed(f, metrics.after(f, stage))


def with_input_values(
    original: Frame | None,
    gone: Frame,
    input_columns: Sequence[str],
    *,
    counted: Callable[[pl.LazyFrame], pl.LazyFrame] | None = None,
    added: bool = True,
) -> list[Frame]:
    """Rows a step dropped (``gone``, tagged with reasons and stage) with the values they had in the input.

    Rows of the input get them from ``original`` by ``__row`` (None: from the hidden
    ``INPUT`` columns of ``gone``, see :func:`steps_dropped`); rows an augmentation step
    added (no ``__row``) keep the values they had when dropped, a part left out when
    ``added`` is false (no such row can be there: a lazy query would read its input for
    it all the same). ``counted`` (lazy only) sees each dropped row once, before its columns
    are chosen.
    """
    tags = [ROW, REASONS, STAGE]
    names = gone.collect_schema().names()
    if original is None:  # one part, row by row: two filters of one lazy query would run it twice
        part = gone if counted is None else counted(gone.lazy())
        return [part.select(*(_input_value(c, added=added, present=c in names) for c in input_columns), *tags)]
    parts = [gone.filter(pl.col(ROW).is_not_null())] + ([gone.filter(pl.col(ROW).is_null())] if added else [])
    first = original.join(parts[0].select(tags), on=ROW, how="inner")
    return [first, *(p.select(*[c for c in input_columns if c in names], *tags) for p in parts[1:])]


def _input_value(column: str, *, added: bool, present: bool) -> pl.Expr:
    """A dropped row's value of input ``column``: its carried input value; with ``added``, a row without
    ``__row`` has the value it had when dropped (null when a step removed the column, ``present`` false)."""
    carried = pl.col(INPUT + column)
    if not added:
        return carried.alias(column)
    own = pl.col(column) if present else pl.lit(None)
    return pl.when(pl.col(ROW).is_not_null()).then(carried).otherwise(own).alias(column)


def quarantine_of(parts: Sequence[Frame], input_columns: Sequence[str]) -> Frame | None:
    """The quarantine from its parts (the input schema's rows, each step's dropped rows), in input order.

    Columns: the input's, ``__row``, the reasons and the stage; rows without ``__row`` (added by
    augmentation) last, in the order they were made. None when there are no parts.
    """
    if not parts:
        return None
    quarantine = pl.concat(parts, how="diagonal_relaxed").sort(ROW, nulls_last=True, maintain_order=True)
    return quarantine.select(*input_columns, ROW, REASONS, STAGE)


def execute(
    fitted: FittedPipeline,
    df: pl.DataFrame,
    *,
    train: bool,
    progress: Progress = _quiet,
    validated: Validated | None = None,
) -> Execution:
    """Apply ``fitted`` in memory: output, metrics and dropped rows (:func:`run_in_segments`).

    ``df`` is the raw input. With ``validated`` (the result of input validation),
    the pipeline runs on its clean rows and the rows it quarantined are kept;
    rows dropped by steps are quarantined with their raw input values.
    """
    progress("transform")
    started = time.perf_counter()
    original = df.lazy().with_row_index(ROW)
    source = original if validated is None else validated.clean.lazy().with_columns(validated.rows.alias(ROW))
    try:
        fitted.check_schema(source.collect_schema(), train=train)
        output, frames, keys, dropped = run_in_segments(fitted, source, original, train=train)
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"applying the pipeline failed: {io.first_line(exc)}") from exc
    parts = [q for q in (validated.quarantine if validated else None, dropped) if q is not None]
    quarantine = quarantine_of(parts, df.columns)
    steps = step_metrics(fitted, frames, keys)
    return Execution(output, quarantine, steps, df.height, time.perf_counter() - started)


def step_metrics(fitted: FittedPipeline, frames: list[pl.DataFrame], keys: list[list[str]]) -> list[dict[str, Any]]:
    """Per-step report entries from per-stage metric frames (one one-row frame per stage, ``__rows`` first).

    The frames and keys come from :func:`run_in_segments` or, streamed, from
    :mod:`pipelines.metrics_tap`; the last frame holds the output's row count.
    """
    rows = [int(f[ROWS][0]) for f in frames]
    group_of = dict(enumerate(fitted.fit_groups))
    out = []
    for i, (f, frame, names) in enumerate(zip(fitted.steps, frames, keys, strict=False)):
        entry: dict[str, Any] = {
            "index": i,
            "name": f.step.label,
            "kind": f.step.kind,
            "method": f.step.method,
            "columns": list(f.columns),
            "rows_in": rows[i],
            "rows_out": rows[i + 1],
            "rows_dropped": max(rows[i] - rows[i + 1], 0),
            "rows_added": max(rows[i + 1] - rows[i], 0),
        }
        if i in group_of and fitted.fit_seconds:
            entry["fit_group"] = group_of[i]
            entry["fit_group_seconds"] = round(fitted.fit_seconds[group_of[i]], 6)
        for key in names:
            metric, _, column = key.partition(":")
            value = frame[key][0]
            value = value.item() if hasattr(value, "item") else value
            if column:
                entry.setdefault(metric, {})[column] = value
            else:
                entry[metric] = value
        out.append(entry)
    return out


def check_conservation(ex: Execution) -> dict[str, int]:
    """Rows in = rows out + rows quarantined - rows augmented; raise if not."""
    quarantined = 0 if ex.quarantine is None else ex.quarantine.height
    augmented = sum(s["rows_added"] for s in ex.steps)
    counts = {"in": ex.rows_in, "out": ex.output.height, "quarantined": quarantined, "augmented": augmented}
    if ex.rows_in != ex.output.height + quarantined - augmented:
        raise ConservationError(f"row conservation violated (a bug in prepflow, please report it): {counts}")
    return counts


def quarantine_summary(quarantine: pl.DataFrame | pl.LazyFrame | None) -> dict[str, Any]:
    """Rows quarantined, counts per stage (``input`` or a step) and per reason.

    Stages in order of their first quarantined row, reasons by name: the same report
    from an in-memory quarantine and from a written one (a lazy scan, counted streaming).

    >>> q = pl.DataFrame({STAGE: ["input", "outliers/zscore", "input"], REASONS: [["x:ge"], ["x:zscore"], None]})
    >>> quarantine_summary(q)
    {'rows': 3, 'stages': {'input': 2, 'outliers/zscore': 1}, 'reasons': {'x:ge': 1, 'x:zscore': 1}}
    """
    if quarantine is None:
        return {"rows": 0, "stages": {}, "reasons": {}}
    lf = quarantine.lazy()
    stages, reasons = pl.collect_all(
        [
            lf.group_by(STAGE, maintain_order=True).len(),
            lf.select(pl.col(REASONS).explode().drop_nulls()).group_by(REASONS).len().sort(REASONS),
        ],
        engine="streaming",
    )
    return {
        "rows": int(stages["len"].sum()),
        "stages": dict(zip(stages[STAGE].to_list(), stages["len"].to_list(), strict=True)),
        "reasons": dict(zip(reasons[REASONS].to_list(), reasons["len"].to_list(), strict=True)),
    }


def default_quarantine_path(output: Path) -> Path:
    """``<output stem>.quarantine.parquet`` next to the output."""
    return output.with_name(f"{output.stem}.quarantine.parquet")
