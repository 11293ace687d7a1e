"""Apply a fitted pipeline with its GPU-capable segments on the device, the rest with Polars.

:func:`run` follows a :class:`~transforms.gpu.planner.Plan`: each Polars segment is
one lazy query (output, metrics and dropped rows in one ``collect_all``, like the
engine); each GPU segment streams its columns through the device in row chunks:

1. the segment's steps are cut into *blocks* that end at an outlier ``drop`` step;
   in each block every column gets one fused kernel (:mod:`transforms.gpu.kernels`);
2. a ``drop`` step ORs its columns' outlier masks; rows stay in place and an
   ``alive`` mask limits what later steps count, until the end of the chunk, where
   every column is compacted by the mask on the device (stream compaction);
3. results come back as Arrow arrays with validity bitmaps, then Polars columns
   replaced or appended in exactly the order and dtypes the Polars path gives.

Rows dropped on the device are reported with their reasons by re-running the
segment's steps with Polars on just those rows (the steps are row-local), which
also checks that Polars drops them too.

The result has the same columns, dtypes, null masks and metrics as
``FittedPipeline.transform``; see ``tests/transforms/test_gpu.py``.

>>> import polars as pl
>>> from transforms import Pipeline, SimpleImputer, StandardScaler
>>> from transforms.gpu.planner import plan_steps
>>> df = pl.DataFrame({"x": [1.0, None, 3.0]})
>>> fitted = Pipeline([SimpleImputer(columns=["x"], strategy="mean"), StandardScaler(columns=["x"])]).fit(df)
>>> result = run(fitted, df, plan_steps(fitted, df.schema, backend="numpy"))
>>> result.output["x"].to_list(), [s.backend for s in result.steps]
([-1.224744871391589, 0.0, 1.224744871391589], ['numpy', 'numpy'])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import polars as pl

from transforms.base import ROWS, Fitted
from transforms.gpu.array import array_module, synchronize, to_host
from transforms.gpu.kernels import NUMPY_DTYPES, Chain, Program, build, launch
from transforms.gpu.ops import StepOps, dtype_name
from transforms.gpu.planner import Plan
from transforms.gpu.transfer import HostColumn, Stager, chunk_rows, host_column, to_series
from transforms.pipeline import FittedPipeline

#: the column of reasons in :attr:`Dropped.frame`
REASONS = "__reasons"

StepApply = Callable[[Fitted, pl.LazyFrame], pl.LazyFrame]


@dataclass(frozen=True)
class StepRun:
    """One step of a run: where it ran and why, rows in and out, and its metrics."""

    index: int
    label: str
    backend: str
    reason: str
    rows_in: int
    rows_out: int
    metrics: dict[str, Any]
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for reports."""
        return {
            "index": self.index,
            "name": self.label,
            "backend": self.backend,
            "backend_reason": self.reason,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "metrics": self.metrics,
        }


@dataclass(frozen=True)
class Dropped:
    """Rows a ``drop`` step removed: their values at the step's input and a ``__reasons`` list column."""

    index: int
    label: str
    frame: pl.DataFrame


@dataclass
class Result:
    """The output frame, one :class:`StepRun` per step, and the dropped rows per drop step."""

    output: pl.DataFrame
    steps: list[StepRun]
    dropped: list[Dropped] = field(default_factory=list)


def run(
    fitted: FittedPipeline,
    frame: pl.DataFrame,
    plan: Plan,
    *,
    train: bool = False,
    chunk: int | None = None,
    apply: StepApply | None = None,
    dropped_columns: Sequence[str] | None = None,
) -> Result:
    """Apply ``fitted`` to ``frame`` segment by segment as ``plan`` says.

    ``chunk`` fixes the rows per device chunk (default: from free memory);
    ``apply`` runs each step that runs on Polars (default: ``f.apply(frame, train=train)``; the
    engine's keeps its row index); ``dropped_columns`` limits the columns of :attr:`Result.dropped` frames.
    """
    fitted.check_schema(frame.schema, train=train)
    steps: list[StepRun] = []
    dropped: list[Dropped] = []
    for where, start, stop in plan.segments():
        placements = plan.placements[start:stop]
        if where == "polars":
            frame, runs, gone = _polars_segment(fitted.steps[start:stop], start, frame, train, apply, dropped_columns)
            runs = [
                StepRun(r.index, r.label, "polars", p.reason, r.rows_in, r.rows_out, r.metrics)
                for r, p in zip(runs, placements, strict=True)
            ]
        else:
            ops = [p.ops for p in placements]
            assert all(o is not None for o in ops)
            xp = array_module(plan.xp)
            seg = GpuSegment(ops, frame.schema, xp=xp, precision=plan.precision)  # type: ignore[arg-type]
            out, runs = seg.run(frame, chunk=chunk)
            runs = [
                StepRun(r.index, r.label, plan.xp, p.reason, r.rows_in, r.rows_out, r.metrics, r.seconds)
                for r, p in zip(runs, placements, strict=True)
            ]
            gone = _dropped_rows(fitted.steps, seg, frame, dropped_columns, check=plan.precision == "float64")
            frame = out
        steps.extend(runs)
        dropped.extend(gone)
    return Result(frame, steps, dropped)


# ---------------------------------------------------------------- Polars segments


def _polars_segment(
    steps: Sequence[Fitted],
    first: int,
    frame: pl.DataFrame,
    train: bool,
    apply: StepApply | None,
    dropped_columns: Sequence[str] | None,
) -> tuple[pl.DataFrame, list[StepRun], list[Dropped]]:
    stages = [frame.lazy()]
    for f in steps:
        stages.append(f.apply(stages[-1], train=train) if apply is None else apply(f, stages[-1]))
    queries: list[pl.LazyFrame] = [stages[-1]]
    keys: list[list[str]] = []
    drops: list[tuple[int, Fitted]] = []
    gone_queries: list[pl.LazyFrame] = []
    for i, (f, stage) in enumerate(zip(steps, stages, strict=False)):
        aggregations = f.metric_aggregations(stage.collect_schema())
        keys.append([k for k in aggregations if k != ROWS])
        queries.append(stage.select(aggregations.values()))
        keep = f.keep()
        if keep is not None:
            gone_queries.append(_gone(f, stage, keep, dropped_columns))
            drops.append((first + i, f))
    results = pl.collect_all(queries + gone_queries)
    out = results[0]
    rows = [int(r[ROWS][0]) for r in results[1 : 1 + len(steps)]] + [out.height]
    runs = []
    for i, (f, r, names) in enumerate(zip(steps, results[1 : 1 + len(steps)], keys, strict=True)):
        metrics = {k: _plain(r[k][0]) for k in names}
        runs.append(StepRun(first + i, f.step.label, "polars", "", rows[i], rows[i + 1], metrics))
    gone = [Dropped(i, f.step.label, r) for (i, f), r in zip(drops, results[1 + len(steps) :], strict=True)]
    return out, runs, gone


def _gone(f: Fitted, stage: pl.LazyFrame, keep: pl.Expr, columns: Sequence[str] | None) -> pl.LazyFrame:
    reasons = f.drop_reasons()
    gone = stage.filter(~keep).with_columns((reasons if reasons is not None else pl.lit([f.step.label])).alias(REASONS))
    if columns is not None:
        present = [c for c in columns if c in stage.collect_schema()]
        gone = gone.select(*present, REASONS)
    return gone


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _dropped_rows(
    steps: Sequence[Fitted],
    seg: GpuSegment,
    frame: pl.DataFrame,
    columns: Sequence[str] | None,
    *,
    check: bool,
) -> list[Dropped]:
    """The rows the device dropped, as Polars sees them at each drop step's input, with reasons."""
    out = []
    first = seg.steps[0].index
    for d, positions in seg.dropped.items():
        rows = frame.lazy().select(pl.all().gather(pl.Series(positions, dtype=pl.Int64)))
        for f in steps[first:d]:
            rows = f.apply(rows)
        f = steps[d]
        keep = f.keep()
        assert keep is not None
        gone = _gone(f, rows, keep, columns).collect()
        if check and gone.height != len(positions):
            raise RuntimeError(
                f"{f.step.label}: the GPU path dropped {len(positions)} rows where Polars drops {gone.height} "
                "of them; please report this bug"
            )
        if gone.height != len(positions):  # float32 compute: rows Polars would have kept get empty reasons
            gone = rows.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias(REASONS)).collect()
            if columns is not None:
                gone = gone.select(*[c for c in columns if c in gone.columns], REASONS)
        out.append(Dropped(d, f.step.label, gone))
    return out


# ---------------------------------------------------------------- GPU segments


def blocks(steps: Sequence[StepOps]) -> list[list[StepOps]]:
    """Consecutive steps cut after each ``drop`` step (a row mask couples the columns there).

    >>> blocks([])
    []
    """
    out: list[list[StepOps]] = [[]]
    for s in steps:
        out[-1].append(s)
        if s.drops:
            out.append([])
    return [b for b in out if b]


@dataclass
class _Kernel:
    """One column's fused kernel in one block, and where its counters go."""

    column: str
    program: Program


class GpuSegment:
    """Consecutive GPU-capable steps, compiled into per-column fused kernels per block.

    ``schema`` is the segment's input schema; ``xp`` CuPy or NumPy; ``precision``
    the compute type (``float64`` or ``float32``).
    """

    def __init__(self, steps: Sequence[StepOps], schema: pl.Schema, *, xp: ModuleType, precision: str) -> None:
        self.steps = list(steps)
        self.schema = schema
        self.xp = xp
        self.precision = precision
        self.blocks = blocks(self.steps)
        self.columns = list(dict.fromkeys(op.column for s in self.steps for op in s.ops))
        self.dropped: dict[int, np.ndarray] = {}
        self._out_schema = self._polars_schema()

    def _polars_schema(self) -> pl.Schema:
        lf = pl.LazyFrame(schema=self.schema)
        for s in self.steps:
            lf = s.fitted.apply(lf)
        return lf.collect_schema()

    def programs(self, nulls: dict[str, bool]) -> list[list[_Kernel]]:
        """The kernels of each block; ``nulls[c]`` says whether input column ``c`` has nulls."""
        dtype = {c: dtype_name(self.schema[c]) for c in self.columns}
        validity = {c: "bits" if nulls.get(c) else "none" for c in self.columns}
        out = []
        for b, block in enumerate(self.blocks):
            kernels = []
            for c in self.columns:
                ops = tuple(op for s in block for op in s.ops if op.column == c)
                if not ops:
                    continue
                prog = build(Chain(c, dtype[c], ops, validity[c], counted=b > 0, precision=self.precision))
                kernels.append(_Kernel(c, prog))
                dtype[c] = prog.outputs[0].dtype
                validity[c] = "bytes" if any(o.role == "validity" for o in prog.outputs) else "none"
            out.append(kernels)
        return out

    def run(self, frame: pl.DataFrame, *, chunk: int | None = None) -> tuple[pl.DataFrame, list[StepRun]]:
        """Run the segment on ``frame``; returns the output frame and one :class:`StepRun` per step."""
        started = time.perf_counter()
        xp = self.xp
        n = frame.height
        host = {c: host_column(frame[c]) for c in self.columns}
        kernels = self.programs({c: host[c].bits is not None for c in self.columns})
        finals = {k.column: k for ks in kernels for k in ks}  # the last kernel of each column
        counters = [[xp.zeros(max(len(k.program.counts), 1), dtype=xp.uint64) for k in ks] for ks in kernels]
        synchronize(xp)  # the zeroing runs on the default stream; the chunks on their own streams
        per_row = sum(h.values.itemsize * 3 + 3 for h in host.values()) + 2
        rows = chunk_rows(n, per_row, xp, requested=chunk)
        outputs = self._allocate(finals, n)
        keep_host = np.ones(n, dtype=bool) if any(s.drops for s in self.steps) else None
        dropped: dict[int, list[np.ndarray]] = {s.index: [] for s in self.steps if s.drops}
        stager = Stager(xp)
        written = 0
        for k, start in enumerate(range(0, n, rows)):
            stop = min(start + rows, n)
            slot = k % 2
            stager.begin(slot)
            with stager.stream(slot):
                written += self._chunk(
                    host, kernels, counters, stager, slot, start, stop, outputs, written, keep_host, dropped
                )
        stager.close()
        out = self._assemble(frame, finals, outputs, written, keep_host)
        self.dropped = {d: np.concatenate(p) if p else np.empty(0, np.int64) for d, p in dropped.items()}
        runs = self._step_runs(kernels, counters, n, time.perf_counter() - started)
        return out, runs

    def _allocate(self, finals: dict[str, _Kernel], n: int) -> dict[tuple[str, str], np.ndarray]:
        """Host arrays for the final values and validity of each column (``("value", c)``, ``("validity", c)``)."""
        out = {}
        for c, k in finals.items():
            for o in k.program.outputs:
                if o.role in ("value", "validity"):
                    out[(o.role, c)] = np.empty(n, dtype=NUMPY_DTYPES[o.dtype])
        return out

    def _chunk(
        self,
        host: dict[str, HostColumn],
        kernels: list[list[_Kernel]],
        counters: list[list[Any]],
        stager: Stager,
        slot: int,
        start: int,
        stop: int,
        outputs: dict[tuple[str, str], np.ndarray],
        written: int,
        keep_host: np.ndarray | None,
        dropped: dict[int, list[np.ndarray]],
    ) -> int:
        xp = self.xp
        m = stop - start
        values: dict[str, Any] = {}
        valid: dict[str, Any] = {}
        for c, h in host.items():
            vals, bits = h.chunk(start, stop)
            values[c] = stager.upload(slot, f"{c}/x", vals)
            if bits is not None:
                valid[c] = stager.upload(slot, f"{c}/b", bits)
        extra: dict[str, Any] = {}  # indicator and flag columns by name
        alive = None
        for b, ks in enumerate(kernels):
            drop_masks = []
            for j, k in enumerate(ks):
                arrays = {"xin": values[k.column]}
                if k.program.chain.validity == "bits":
                    arrays["vbits"] = valid[k.column]
                elif k.program.chain.validity == "bytes":
                    arrays["vin"] = valid[k.column]
                if k.program.chain.counted:
                    arrays["alive"] = alive
                res = launch(k.program, xp, arrays, counters[b][j], m)
                for o in k.program.outputs:
                    if o.role == "value":
                        values[k.column] = res[o.param]
                    elif o.role == "validity":
                        valid[k.column] = res[o.param]
                    elif o.role == "drop":
                        drop_masks.append(res[o.param])
                    else:
                        extra[o.column] = res[o.param]
                if not any(o.role == "validity" for o in k.program.outputs):
                    valid.pop(k.column, None)
            if drop_masks:
                gone = drop_masks[0]
                for mask in drop_masks[1:]:
                    gone = gone | mask
                new = gone if alive is None else alive & gone
                step = self.blocks[b][-1].index
                dropped[step].append(to_host(xp, xp.flatnonzero(new)).astype(np.int64) + start)
                alive = ~gone if alive is None else alive & ~gone
        kept = m
        if alive is not None:
            kept = int(xp.count_nonzero(alive))
            assert keep_host is not None
            keep_host[start:stop] = to_host(xp, alive)
            values = {c: v[alive] for c, v in values.items()}
            valid = {c: v[alive] for c, v in valid.items()}
            extra = {c: v[alive] for c, v in extra.items()}
        sl = slice(written, written + kept)
        n = len(next(iter(host.values())))
        for name in extra:
            outputs.setdefault(("extra", name), np.empty(n, dtype=bool))
        for (role, c), dest in outputs.items():
            src = values[c] if role == "value" else valid[c] if role == "validity" else extra[c]
            stager.download(slot, f"{role}/{c}", src, dest[sl])
        return kept

    def _assemble(
        self,
        frame: pl.DataFrame,
        finals: dict[str, _Kernel],
        outputs: dict[tuple[str, str], np.ndarray],
        written: int,
        keep_host: np.ndarray | None,
    ) -> pl.DataFrame:
        base = frame if keep_host is None else frame.filter(pl.Series(keep_host))
        series = {}
        for c, k in finals.items():
            valid = outputs.get(("validity", c))
            vals = outputs[("value", c)][:written]
            series[c] = to_series(c, k.program.outputs[0].dtype, vals, None if valid is None else valid[:written])
        for (role, name), arr in outputs.items():
            if role == "extra":
                series[name] = to_series(name, "Boolean", arr[:written], None)
        for name in self._out_schema.names():  # indicator/flag columns of a frame with no rows
            if name not in base.columns and name not in series:
                series[name] = pl.Series(name, [], dtype=pl.Boolean)
        out = base.with_columns(list(series.values())).select(list(self._out_schema.names()))
        if out.schema != self._out_schema:
            raise RuntimeError(f"GPU output schema {out.schema} differs from the Polars path's {self._out_schema}")
        return out

    def _step_runs(
        self, kernels: list[list[_Kernel]], counters: list[list[Any]], n: int, seconds: float
    ) -> list[StepRun]:
        metrics: dict[int, dict[str, Any]] = {s.index: {} for s in self.steps}
        for ks, cs in zip(kernels, counters, strict=True):
            for k, cnt in zip(ks, cs, strict=True):
                host = to_host(self.xp, cnt)
                for slot, (step, key) in enumerate(k.program.counts):
                    metrics[step][key] = int(host[slot])
        runs = []
        rows = n
        for s in self.steps:
            order = list(s.fitted.metrics(self._schema_before(s)))
            m = {key: metrics[s.index].get(key, 0) for key in order if key != "dropped"}
            rows_out = rows - (len(self.dropped.get(s.index, ())) if s.drops else 0)
            if s.drops:
                m["dropped"] = rows - rows_out
            runs.append(StepRun(s.index, s.label, "", "", rows, rows_out, m, seconds))
            rows = rows_out
        return runs

    def _schema_before(self, step: StepOps) -> pl.Schema:
        lf = pl.LazyFrame(schema=self.schema)
        for s in self.steps:
            if s is step:
                break
            lf = s.fitted.apply(lf)
        return lf.collect_schema()
