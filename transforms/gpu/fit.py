"""Fit on the device: the statistics a step's plan asks for, computed with ``xp`` on resident columns.

A step's :class:`~transforms.base.FitPlan` names its statistics as aggregates
(``Stat``/``Quantiles`` requests or one-row Polars expressions). :func:`match`
recognises the ones the device computes by comparing them (``Expr.meta.eq``)
with a small set of known forms over one column's finite values: count, mean,
var/std (ddof=0), min, max, sum, median, mode, and exact quantiles, of the
values, their absolute values, or their absolute deviations from the median.
The answers go to the step's own ``finish``, so the fitted state is built by
the same code as on the CPU. A step with an aggregate not recognised, or with a
query (``power``, ``ordinal``, ``knn``...), is fitted by Polars.

- count, mean and variance: per chunk on the device (two-pass within the chunk),
  merged through :class:`transforms.stats.Moments` (Chan et al.);
- min, max, sum: device reductions;
- quantiles and the median: a device sort of the finite values, then NumPy's
  linear interpolation (``np.quantile(method="linear")``) for ``Quantiles``
  requests and Polars' for ``median()`` expressions, so both match the CPU path
  exactly;
- mode: a sort and run lengths on the device (the smallest most frequent value).

:func:`fit_pipeline` fits a whole pipeline: steps in order, each on the output
of the steps before it; columns stay on the device between steps, and a step
the device cannot fit or apply runs on Polars with the data moved back.

>>> import polars as pl
>>> from transforms import Pipeline, RobustScaler
>>> df = pl.DataFrame({"x": [1.0, 2.0, None, 4.0, float("inf")]})
>>> fitted, where = fit_pipeline(Pipeline([RobustScaler(columns=["x"])]), df, xp=np)
>>> fitted.steps[0].center, [w["fit"] for w in where]
((2.0,), ['numpy'])
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import polars as pl

from transforms import base
from transforms.base import FitData, Fitted, Quantiles
from transforms.errors import PrepflowError
from transforms.filled import order_quantile
from transforms.fitting import fit_steps
from transforms.gpu.array import free_bytes, is_numpy, to_host
from transforms.gpu.kernels import NUMPY_DTYPES, Chain, Unsupported, build, launch
from transforms.gpu.ops import dtype_name
from transforms.gpu.planner import gpu_ops
from transforms.gpu.transfer import host_column, to_series
from transforms.missing import finite
from transforms.pipeline import FittedPipeline, Pipeline
from transforms.stats import Moments

#: values per partial of the mergeable moments
STAT_CHUNK = 1 << 24

_STATS: dict[str, Callable[[pl.Expr], pl.Expr]] = {
    "count": lambda x: x.count(),
    "mean": lambda x: x.mean(),
    "var": lambda x: x.var(ddof=0),
    "std": lambda x: x.std(ddof=0),
    "min": lambda x: x.min(),
    "max": lambda x: x.max(),
    "sum": lambda x: x.sum(),
    "median": lambda x: x.median(),
    "mode": lambda x: x.drop_nulls().mode().min(),
}


def _transforms(column: str, dtype: pl.DataType) -> dict[str, pl.Expr]:
    f = finite(column, dtype)
    return {"finite": f, "abs": f.abs(), "f64": f.cast(pl.Float64), "absdev": (f - f.median()).abs()}


@dataclass(frozen=True)
class Request:
    """A statistic the device computes: ``stat`` (or quantiles at ``probs``) of ``transform`` of ``column``."""

    column: str
    transform: str
    stat: str
    probs: tuple[float, ...] = ()


def match(agg: Any, columns: tuple[str, ...], schema: pl.Schema) -> Request | None:
    """The :class:`Request` equal to aggregate ``agg`` over one of ``columns``, or None.

    >>> match(finite("x", pl.Float64()).mean(), ("x",), pl.Schema({"x": pl.Float64}))
    Request(column='x', transform='finite', stat='mean', probs=())
    """
    stat_cls = getattr(base, "Stat", None)
    if stat_cls is not None and isinstance(agg, stat_cls):
        agg = agg.expression()
    for c in columns:
        if c not in schema or dtype_name(schema[c]) not in NUMPY_DTYPES or schema[c] == pl.Boolean:
            continue
        for name, expr in _transforms(c, schema[c]).items():
            if isinstance(agg, Quantiles):
                if getattr(agg, "subsample", None) is None and agg.expr.meta.eq(expr):
                    return Request(c, name, "quantiles", tuple(float(p) for p in agg.probs))
                continue
            for stat, build_expr in _STATS.items():
                if isinstance(agg, pl.Expr) and agg.meta.eq(build_expr(expr)):
                    return Request(c, name, stat)
    return None


@dataclass
class DeviceColumn:
    """A column on the device: values, validity (None: no nulls) and the Polars dtype name."""

    values: Any
    valid: Any | None
    dtype: str


def _finite(col: DeviceColumn, xp: ModuleType) -> Any:
    mask = col.valid
    if col.dtype in ("Float64", "Float32"):
        fin = xp.isfinite(col.values)
        mask = fin if mask is None else mask & fin
    return col.values if mask is None else col.values[mask]


def _item(x: Any) -> Any:
    return x.item() if hasattr(x, "item") else x


def polars_quantile(sorted_values: Any, p: float) -> float | None:
    """Polars' linear interpolation (``median()``, ``quantile(p, "linear")``) on sorted values."""
    n = len(sorted_values)
    if n == 0:
        return None
    h = (n - 1) * p
    i = math.floor(h)
    lo, hi = float(_item(sorted_values[i])), float(_item(sorted_values[min(i + 1, n - 1)]))
    return lo if lo == hi else (h - i) * (hi - lo) + lo


def numpy_quantile(sorted_values: Any, p: float) -> float | None:
    """``np.quantile(values, p, method="linear")`` from sorted values (NumPy's ``_lerp``, exactly).

    >>> numpy_quantile(np.array([1.0, 2.0, 4.0]), 0.75) == float(np.quantile([1.0, 2.0, 4.0], 0.75))
    True
    """
    n = len(sorted_values)
    return None if n == 0 else order_quantile(lambda i: float(_item(sorted_values[i])), n, p)


def _moments(x: Any, xp: ModuleType) -> Moments:
    """Moments of float64 ``x``: per chunk (two-pass) on the device, merged with :class:`Moments`."""
    total = Moments()
    for start in range(0, len(x), STAT_CHUNK):
        part = x[start : start + STAT_CHUNK]
        n = len(part)
        mean = xp.sum(part) / n
        d = part - mean
        m2 = float(xp.sum(d * d)) - float(xp.sum(d)) ** 2 / n
        total.merge(Moments.from_parts(n, float(mean), max(m2, 0.0), float(xp.min(part)), float(xp.max(part))))
    return total


def compute(req: Request, col: DeviceColumn, xp: ModuleType) -> Any:
    """The value of ``req`` on ``col``, typed as Polars returns it.

    Integer min/max/mode stay ints; a statistic of a Float32 column is rounded to
    Float32 as Polars' result dtype is (except quantile requests, computed in Float64).
    """
    value = _compute(req, col, xp)
    f32 = col.dtype == "Float32" and req.transform != "f64" and req.stat not in ("count", "quantiles")
    return float(np.float32(value)) if f32 and value is not None else value


def _compute(req: Request, col: DeviceColumn, xp: ModuleType) -> Any:
    vals = _finite(col, xp)
    if req.transform == "abs":
        vals = xp.abs(vals)
    elif req.transform == "f64":
        vals = vals.astype(xp.float64)
    elif req.transform == "absdev":
        x = vals if col.dtype == "Float32" else vals.astype(xp.float64)
        med = polars_quantile(xp.sort(x).astype(xp.float64), 0.5)
        if med is not None:
            vals = xp.abs(x - x.dtype.type(med))
    n = len(vals)
    if req.stat == "count":
        return n
    if req.stat == "sum":
        return _item(xp.sum(vals)) if n else (0 if vals.dtype.kind in "iu" else 0.0)
    if n == 0:
        return None
    if req.stat in ("mean", "var", "std"):
        with np.errstate(all="ignore"):
            return _moments(vals.astype(xp.float64), xp).finalize()[req.stat]
    if req.stat in ("min", "max"):
        return _item(getattr(xp, req.stat)(vals))
    ordered = xp.sort(vals)
    if req.stat == "median":
        return polars_quantile(ordered.astype(xp.float64), 0.5)
    if req.stat == "mode":
        values, counts = xp.unique(ordered, return_counts=True)
        return _item(values[int(xp.argmax(counts))])
    ordered = ordered.astype(xp.float64)
    return [numpy_quantile(ordered, p) for p in req.probs]


# ---------------------------------------------------------------- a whole pipeline


def _upload(series: pl.Series, xp: ModuleType) -> DeviceColumn:
    h = host_column(series)
    values = xp.asarray(h.values)
    valid = None
    if h.bits is not None:
        valid = xp.asarray(np.unpackbits(h.bits, bitorder="little", count=len(h))).astype(xp.bool_)
    return DeviceColumn(values, valid, h.dtype)


def _series(name: str, col: DeviceColumn, xp: ModuleType) -> pl.Series:
    return to_series(name, col.dtype, to_host(xp, col.values), None if col.valid is None else to_host(xp, col.valid))


class _State:
    """The frame being fitted: on the host (``host``), with the freshest copy of some columns on the device."""

    def __init__(self, frame: pl.DataFrame, xp: ModuleType) -> None:
        self.host = frame
        self.dev: dict[str, DeviceColumn] = {}
        self.xp = xp

    def schema(self) -> pl.Schema:
        dtypes = {c: getattr(pl, d.dtype)() for c, d in self.dev.items()}
        return pl.Schema({c: dtypes.get(c, t) for c, t in self.host.schema.items()})

    def device(self, column: str) -> DeviceColumn:
        if column not in self.dev:
            self.dev[column] = _upload(self.host[column], self.xp)
        return self.dev[column]

    def sync(self) -> pl.DataFrame:
        if self.dev:
            self.host = self.host.with_columns(_series(c, d, self.xp) for c, d in self.dev.items())
        return self.host

    def fits(self, columns: tuple[str, ...]) -> bool:
        need = sum(
            self.host.height * (np.dtype(NUMPY_DTYPES[dtype_name(self.host.schema[c])]).itemsize + 1)
            for c in columns
            if c not in self.dev
        )
        return is_numpy(self.xp) or need * 3 < free_bytes(self.xp)


def _requests(plan: base.FitPlan, schema: pl.Schema) -> tuple[dict[str, Request] | None, str]:
    if plan.queries:
        return None, "its fit runs a query (" + ", ".join(plan.queries) + ")"
    out = {}
    for key, agg in plan.aggregates.items():
        req = match(agg, plan.reads, schema)
        if req is None:
            return None, f"aggregate {key!r} has no device implementation"
        out[key] = req
    return out, ""


def _indexed(index: int, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except PrepflowError as exc:
        exc.step_index = index  # type: ignore[attr-defined]
        raise


def _apply_on_device(state: _State, fitted: Fitted, ops: Any, xp: ModuleType) -> None:
    n = state.host.height
    drops = []
    extra = {}
    for op in ops.ops:
        col = state.device(op.column)
        prog = build(Chain(op.column, col.dtype, (op,), "none" if col.valid is None else "bytes"))
        arrays = {"xin": col.values} | ({} if col.valid is None else {"vin": col.valid})
        res = launch(prog, xp, arrays, xp.zeros(max(len(prog.counts), 1), dtype=xp.uint64), n)
        valid = res.get("vout")
        state.dev[op.column] = DeviceColumn(res["yout"], valid, prog.outputs[0].dtype)
        for o in prog.outputs:
            if o.role == "drop":
                drops.append(res[o.param])
            elif o.role in ("indicator", "flag"):
                extra[o.column] = to_host(xp, res[o.param])
    if extra:
        state.host = state.host.with_columns(pl.Series(k, v, dtype=pl.Boolean) for k, v in extra.items())
    if drops:
        gone = drops[0]
        for m in drops[1:]:
            gone = gone | m
        keep = ~gone
        state.dev = {
            c: DeviceColumn(d.values[keep], None if d.valid is None else d.valid[keep], d.dtype)
            for c, d in state.dev.items()
        }
        state.host = state.host.filter(pl.Series(to_host(xp, keep)))


def fit_pipeline(
    pipeline: Pipeline, frame: pl.DataFrame, *, xp: ModuleType, spec: Mapping[str, Any] | None = None
) -> tuple[FittedPipeline, list[dict[str, Any]]]:
    """Fit ``pipeline`` on ``frame`` with statistics and transforms on the device where possible.

    Returns the fitted pipeline (the same plain state as ``Pipeline.fit``) and per
    step where its fit and its (training) transform ran, and why.
    """
    device = "numpy" if is_numpy(xp) else "cupy"
    state = _State(frame, xp)
    fitted_steps: list[Fitted] = []
    seconds: list[float] = []
    where: list[dict[str, Any]] = []
    for i, step in enumerate(pipeline.steps):
        started = time.perf_counter()
        schema = state.schema()
        plan = _indexed(i, step.plan, schema, pipeline.target)
        requests, why = _requests(plan, schema)
        if requests is not None and not state.fits(plan.reads):
            requests, why = None, "its columns do not fit in free device memory"
        if requests is not None:
            values = {k: compute(r, state.device(r.column), xp) for k, r in requests.items()}
            fitted = _indexed(i, plan.finish, FitData(aggregates=values))
            fit_where, fit_why = device, "device statistics"
        else:
            host = state.sync()
            result = _indexed(i, fit_steps, [step], host.lazy(), target=pipeline.target)
            fitted = result.fitted[0]
            fit_where, fit_why = "polars", why
        try:
            ops = gpu_ops(fitted, schema, i, train=True, precision="float64")
            _apply_on_device(state, fitted, ops, xp)
            apply_where, apply_why = device, "fused elementwise kernel"
        except Unsupported as exc:
            state.host = fitted.apply(state.sync().lazy(), train=True).collect()
            state.dev.clear()
            apply_where, apply_why = "polars", str(exc)
        fitted_steps.append(fitted)
        seconds.append(time.perf_counter() - started)
        where.append(
            {
                "index": i,
                "name": step.label,
                "fit": fit_where,
                "fit_reason": fit_why,
                "apply": apply_where,
                "apply_reason": apply_why,
            }
        )
    result = FittedPipeline(
        steps=tuple(fitted_steps),
        target=pipeline.target,
        name=pipeline.name,
        input_schema={c: str(t) for c, t in frame.schema.items()},
        fit_rows=frame.height,
        spec=dict(spec) if spec is not None else pipeline.to_spec(),
        fit_groups=tuple(range(len(fitted_steps))),
        fit_seconds=tuple(seconds),
        fit_method={"regime": "in_memory", "quantiles": "exact", "backend": device},
    )
    return result, where
