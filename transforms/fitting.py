"""The fit engine: fit steps in order, batching independent steps into one query.

Each step is fitted on the output of the steps before it. Consecutive steps whose
inputs no earlier member of the group writes, and that keep rows and schema
predictable, form a *fit group*: their aggregations run as one ``select`` and
their queries in the same ``collect_all``, so Polars scans the data once per
group, not once per column or step.

>>> import polars as pl
>>> from transforms import SimpleImputer, StandardScaler
>>> result = fit_steps(
...     [SimpleImputer(columns=["a"], strategy="mean"), StandardScaler(columns=["b"])],
...     pl.LazyFrame({"a": [1.0, None], "b": [2.0, 4.0]}),
...     target=None,
... )
>>> result.groups
(0, 0)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import polars as pl

from transforms.base import FitData, FitPlan, Fitted, Quantiles, Stat, Step
from transforms.errors import PrepflowError

T = TypeVar("T")


@dataclass(frozen=True)
class FitResult:
    """Fitted steps, the fit group of each, and the seconds each group took."""

    fitted: tuple[Fitted, ...]
    groups: tuple[int, ...]
    group_seconds: tuple[float, ...]


def _joins_group(plan: FitPlan, writes: set[str], open_: bool) -> bool:
    return open_ and not (set(plan.reads) & writes)


#: computes a fit group's data: ``collect(plans, lf, start, fitted_so_far)``
GroupCollector = Callable[[Sequence[FitPlan], pl.LazyFrame, int, Sequence[Fitted]], list[FitData]]


def fit_steps(
    steps: Sequence[Step], lf: pl.LazyFrame, *, target: str | None, collect: GroupCollector | None = None
) -> FitResult:
    """Fit ``steps`` in order on ``lf``; see the module docstring for grouping.

    ``collect`` computes each group's aggregates and queries: by default in memory
    and exactly; :mod:`transforms.chunked` passes one that merges partial statistics.
    """
    fitted: list[Fitted] = []
    groups: list[int] = []
    seconds: list[float] = []
    current = lf
    i = 0
    while i < len(steps):
        started = time.perf_counter()
        plans = group_plans(steps, i, current.collect_schema(), target)
        data = collect(plans, current, i, fitted) if collect is not None else _collect(plans, current)
        group_fitted = [_at(i + k, plan.finish, d) for k, (plan, d) in enumerate(zip(plans, data, strict=True))]
        for f in group_fitted:
            current = f.apply(current, train=True)
        seconds.append(time.perf_counter() - started)
        groups.extend([len(seconds) - 1] * len(plans))
        fitted.extend(group_fitted)
        i += len(plans)
    return FitResult(tuple(fitted), tuple(groups), tuple(seconds))


def group_plans(steps: Sequence[Step], start: int, schema: pl.Schema, target: str | None) -> list[FitPlan]:
    """The plans of the fit group that starts at ``steps[start]``, whose input has ``schema``."""
    plans: list[FitPlan] = []
    writes: set[str] = set()
    open_ = True
    for j, step in enumerate(steps[start:], start=start):
        plan = _at(j, step.plan, schema, target)
        if plans and not _joins_group(plan, writes, open_):
            break
        plans.append(plan)
        if plan.output_schema is None or plan.changes_rows:
            open_ = False
        else:
            written = set(plan.reads if plan.writes is None else plan.writes)
            added_or_removed = set(schema).symmetric_difference(plan.output_schema)
            writes |= written | added_or_removed
            schema = plan.output_schema
    return plans


def _at(index: int, fn: Callable[..., T], *args: object) -> T:
    """Call ``fn``; a prepflow error it raises records the index of the step (``exc.step_index``)."""
    try:
        return fn(*args)
    except PrepflowError as exc:
        exc.step_index = index  # type: ignore[attr-defined]
        raise


def _collect(plans: list[FitPlan], lf: pl.LazyFrame) -> list[FitData]:
    """Run every aggregate of ``plans`` in one select, every quantile request in one
    selection pass, and every query beside them, all in one ``collect_all``.

    The inputs of :class:`Stat` requests (such as a column with its non-finite
    values nulled) are computed once each, as columns, and aggregated from there:
    several statistics of one masked column cost one mask, not one each.
    """
    aggs: dict[str, pl.Expr] = {}
    stats: dict[str, pl.Expr] = {}
    sources: dict[str, tuple[str, pl.Expr]] = {}
    quantiles: dict[str, Quantiles] = {}
    queries: list[pl.LazyFrame] = []
    for p, plan in enumerate(plans):
        for k, e in plan.aggregates.items():
            key = f"{p}\x1f{k}"
            if isinstance(e, Quantiles):
                quantiles[key] = e
            elif isinstance(e, Stat):
                name, _ = sources.setdefault(str(e.expr), (f"\x1fs{len(sources)}", e.expr))
                stats[key] = Stat(pl.col(name), e.stat).expression().alias(key)
            else:
                aggs[key] = e.alias(key)
        queries.extend(build(lf) for build in plan.queries.values())
    frames = []
    if aggs:
        frames.append(lf.select(list(aggs.values())))
    if stats:
        frames.append(lf.select([e.alias(name) for name, e in sources.values()]).select(list(stats.values())))
    whole = {k: q for k, q in quantiles.items() if q.subsample is None}
    if whole:
        frames.append(lf.select([q.expr.alias(k) for k, q in whole.items()]))
    sampled = {k: q for k, q in quantiles.items() if q.subsample is not None}
    frames.extend(lf.select(subsampled(q).alias(k)) for k, q in sampled.items())
    results = iter(pl.collect_all(frames + queries) if frames or queries else [])
    row = next(results).row(0, named=True) if aggs else {}
    if stats:
        row.update(next(results).row(0, named=True))
    if whole:
        row.update(exact_quantiles(next(results), {k: q.probs for k, q in whole.items()}))
    for k, q in sampled.items():
        row[k] = _column_quantiles(next(results)[k], q.probs)
    data = []
    for p, plan in enumerate(plans):
        values = {k: row[f"{p}\x1f{k}"] for k in plan.aggregates}
        frames_ = {k: next(results) for k in plan.queries}
        data.append(FitData(values, frames_))
    return data


def subsampled(q: Quantiles) -> pl.Expr:
    """The values of ``q.expr`` at a seeded random subset of at most ``q.subsample`` non-null rows."""
    x = q.expr
    if q.subsample is None:
        return x
    # the same rows as gathering a sample of the non-null positions (Series.sample draws the
    # same relative positions from any series of that length), without a full-length index
    return x.drop_nulls().sample(n=pl.min_horizontal(x.count(), q.subsample), seed=q.seed)


def _column_quantiles(series: pl.Series, probs: tuple[float, ...]) -> list[float] | None:
    values = series.drop_nulls()
    if values.dtype.is_float():
        values = values.drop_nans()
    if values.len() == 0:
        return None
    arr = values.cast(pl.Float64).to_numpy()
    return [float(v) for v in np.quantile(arr, probs, method="linear")]


def exact_quantiles(frame: pl.DataFrame, probs: Mapping[str, tuple[float, ...]]) -> dict[str, list[float] | None]:
    """Exact linear-interpolated quantiles of each column of ``frame`` (nulls and NaN ignored).

    Uses NumPy's selection (``np.quantile``) on each column, columns in parallel
    threads (NumPy's partition releases the GIL), capped by ``POLARS_MAX_THREADS``.

    >>> exact_quantiles(pl.DataFrame({"x": [1.0, None, 3.0, float("nan")]}), {"x": (0.5,)})
    {'x': [2.0]}
    """
    workers = max(1, min(len(probs), pl.thread_pool_size()))
    if workers == 1:
        return {k: _column_quantiles(frame[k], q) for k, q in probs.items()}
    with ThreadPoolExecutor(workers) as pool:
        futures = {k: pool.submit(_column_quantiles, frame[k], q) for k, q in probs.items()}
        return {k: f.result() for k, f in futures.items()}
