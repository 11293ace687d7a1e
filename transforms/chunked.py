"""Fitting in bounded memory: mergeable statistics over chunks or partitions.

The same steps, grouped as in :mod:`transforms.fitting`, are fitted from
*partial statistics*: for each fit group, every chunk of the input (a batch of
Polars' streaming engine, or a partition on a Dask worker) yields small
mergeable objects (:mod:`transforms.stats`): :class:`~transforms.stats.Moments`
for ``count/mean/var/std/min/max/sum`` requests, :class:`~transforms.stats.Counts`
for ``mode``, and a KLL :class:`~transforms.stats.QuantileSketch` for
:class:`~transforms.base.Quantiles` requests. The partials are merged (Chan et
al. for moments) and finished into exactly the values the in-memory engine
gives (quantiles: within the sketch's rank-error bound).

What cannot be merged runs once on the whole (lazy) input with Polars'
streaming engine, on the machine that drives the fit: plain Polars aggregations,
queries (category counts of one-hot, the rows a KNN imputer keeps), and exact
quantiles with ``exact_quantiles=True`` (one column at a time: memory is about
one column).

>>> import polars as pl
>>> from transforms import RobustScaler, StandardScaler
>>> lf = pl.LazyFrame({"x": [float(i) for i in range(1000)], "y": [1.0, 2.0] * 500})
>>> result = fit_steps_chunked([StandardScaler(columns=["y"]), RobustScaler(columns=["x"])], lf, target=None,
...                            options=ChunkOptions(chunk_rows=100))
>>> result.fitted[0].center, result.fitted[0].scale
((1.5,), (0.5,))
>>> abs(result.fitted[1].center[0] - 499.5) <= 0.01 * 1000
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from transforms.base import FitData, FitPlan, Fitted, Quantiles, Stat, Step
from transforms.fitting import FitResult, _at, _column_quantiles, fit_steps
from transforms.stats import Counts, Moments, QuantileSketch, stat_from_dict

MOMENT_STATS = ("count", "mean", "var", "std", "min", "max", "sum")
#: ``map_partials(task)`` returns one partial (``GroupPartial.to_dict()``) per partition
MapPartials = Callable[[dict[str, Any]], list[dict[str, Any]]]


@dataclass(frozen=True)
class ChunkOptions:
    """How a chunked fit computes its statistics.

    ``sketch_k`` is the KLL sketch size (800: single-rank normalised error
    about 0.35%); ``exact_quantiles`` replaces sketches by one exact pass per
    column; ``chunk_rows`` is the batch size of a local streaming fit.
    """

    sketch_k: int = 800
    exact_quantiles: bool = False
    chunk_rows: int = 1_000_000

    def to_dict(self) -> dict[str, Any]:
        return {"sketch_k": self.sketch_k, "exact_quantiles": self.exact_quantiles, "chunk_rows": self.chunk_rows}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChunkOptions:
        return cls(int(d["sketch_k"]), bool(d["exact_quantiles"]), int(d["chunk_rows"]))


@dataclass
class Requests:
    """The requests of one fit group, deduplicated by expression and split by how they are computed.

    Keys are assigned in plan order, so the driver and every worker, planning
    the same steps on the same schema, agree on them.
    """

    moments: dict[str, pl.Expr] = field(default_factory=dict)
    modes: dict[str, pl.Expr] = field(default_factory=dict)
    sketches: dict[str, pl.Expr] = field(default_factory=dict)
    exact: dict[str, pl.Expr] = field(default_factory=dict)
    raw: dict[str, pl.Expr] = field(default_factory=dict)
    #: (plan index, aggregate key) -> (source key, request)
    where: dict[tuple[int, str], tuple[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, plans: Sequence[FitPlan], options: ChunkOptions) -> Requests:
        req = cls()
        seen: dict[tuple[str, str], str] = {}

        def key_for(family: str, expr: pl.Expr, table: dict[str, pl.Expr]) -> str:
            ident = (family, str(expr))
            if ident not in seen:
                seen[ident] = f"{family}{len(table)}"
                table[seen[ident]] = expr
            return seen[ident]

        for p, plan in enumerate(plans):
            for k, request in plan.aggregates.items():
                if isinstance(request, Stat):
                    family, table = ("c", req.modes) if request.stat == "mode" else ("m", req.moments)
                    source = key_for(family, request.expr, table)
                elif isinstance(request, Quantiles):
                    family, table = ("e", req.exact) if options.exact_quantiles else ("q", req.sketches)
                    source = key_for(family, request.expr, table)
                else:
                    source = f"r{len(req.raw)}"
                    req.raw[source] = request
                req.where[(p, k)] = (source, request)
        return req

    @property
    def mergeable(self) -> bool:
        """True when some statistics of the group are computed from partials."""
        return bool(self.moments or self.modes or self.sketches)


@dataclass
class GroupPartial:
    """The partial statistics of one fit group over some rows; merge, then finish."""

    stats: dict[str, Moments | Counts | QuantileSketch]
    rows: int = 0

    @classmethod
    def empty(cls, req: Requests, options: ChunkOptions) -> GroupPartial:
        stats: dict[str, Moments | Counts | QuantileSketch] = {}
        stats.update({k: Moments() for k in req.moments})
        stats.update({k: Counts() for k in req.modes})
        stats.update({k: QuantileSketch(options.sketch_k) for k in req.sketches})
        return cls(stats)

    def update(self, req: Requests, batch: pl.DataFrame) -> GroupPartial:
        """Add one batch (its columns named by request keys, see :func:`request_columns`)."""
        self.rows += batch.height
        if req.moments:
            row = batch.select(
                e
                for k in req.moments
                for e in (
                    pl.col(k).count().alias(f"{k}.n"),
                    pl.col(k).null_count().alias(f"{k}.miss"),
                    pl.col(k).cast(pl.Float64).mean().alias(f"{k}.mean"),
                    (pl.col(k).cast(pl.Float64).var(ddof=0) * pl.col(k).count()).alias(f"{k}.m2"),
                    pl.col(k).min().cast(pl.Float64).alias(f"{k}.min"),
                    pl.col(k).max().cast(pl.Float64).alias(f"{k}.max"),
                )
            ).row(0, named=True)
            for k in req.moments:
                n = int(row[f"{k}.n"])
                part = Moments.from_parts(
                    n, row[f"{k}.mean"], row[f"{k}.m2"] or 0.0, row[f"{k}.min"], row[f"{k}.max"], row[f"{k}.miss"]
                )
                self.stats[k].merge(part)  # type: ignore[arg-type]
        for k in (*req.modes, *req.sketches):
            self.stats[k].update(batch.get_column(k))  # type: ignore[union-attr]
        return self

    def merge(self, other: GroupPartial) -> GroupPartial:
        for k, stat in other.stats.items():
            self.stats[k].merge(stat)  # type: ignore[arg-type]
        self.rows += other.rows
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "stats": {k: s.to_dict() for k, s in self.stats.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GroupPartial:
        return cls({k: stat_from_dict(s) for k, s in d["stats"].items()}, int(d["rows"]))


def request_columns(req: Requests) -> list[pl.Expr]:
    """The expressions a batch must hold for :meth:`GroupPartial.update`, named by key."""
    return [e.alias(k) for table in (req.moments, req.modes, req.sketches) for k, e in table.items()]


def batches(lf: pl.LazyFrame, chunk_rows: int) -> Iterable[pl.DataFrame]:
    """``lf`` in batches of about ``chunk_rows`` rows from Polars' streaming engine."""
    return lf.collect_batches(chunk_size=chunk_rows, maintain_order=True)


def partial_over(req: Requests, lf: pl.LazyFrame, options: ChunkOptions) -> GroupPartial:
    """The group's partial statistics over every row of ``lf``, in bounded memory."""
    partial = GroupPartial.empty(req, options)
    if req.mergeable:
        for batch in batches(lf.select(request_columns(req)), options.chunk_rows):
            partial.update(req, batch)
    return partial


def _mode(counts: Counts) -> Any:
    table = counts.finalize()["counts"]
    if not table:
        return None
    top = max(table.values())
    return min(v for v, c in table.items() if c == top)


def _answer(request: Any, source: Any) -> Any:
    if isinstance(request, Stat):
        if request.stat == "mode":
            return _mode(source)
        values = source.finalize()
        return {"count": values["n"]}.get(request.stat, values.get(request.stat))
    if isinstance(request, Quantiles) and isinstance(source, QuantileSketch):
        return source.quantiles(request.probs)
    return source


def _finish_data(
    plans: Sequence[FitPlan], req: Requests, partial: GroupPartial, driver: Mapping[str, Any]
) -> list[FitData]:
    data = []
    for p, plan in enumerate(plans):
        values = {}
        for k in plan.aggregates:
            source_key, request = req.where[(p, k)]
            if source_key in req.exact:
                values[k] = driver[f"{p}\x1f{k}"]
            else:
                values[k] = _answer(request, partial.stats.get(source_key, driver.get(source_key)))
        data.append(FitData(values, {k: driver[f"{p}\x1f{k}"] for k in plan.queries}))
    return data


def _driver(plans: Sequence[FitPlan], req: Requests, lf: pl.LazyFrame) -> dict[str, Any]:
    """What cannot be merged, on the whole input with the streaming engine."""
    out: dict[str, Any] = {}
    queries = {f"{p}\x1f{k}": build(lf) for p, plan in enumerate(plans) for k, build in plan.queries.items()}
    frames = ([lf.select([e.alias(k) for k, e in req.raw.items()])] if req.raw else []) + list(queries.values())
    if frames:
        results = pl.collect_all(frames, engine="streaming")
        if req.raw:
            out.update(results[0].row(0, named=True))
        out.update(zip(queries, results[1 if req.raw else 0 :], strict=True))
    for key, e in req.exact.items():  # one column at a time: memory is about one column
        column = lf.select(e.alias(key)).collect(engine="streaming").get_column(key)
        for (p, k), (source_key, request) in req.where.items():
            if source_key == key:
                out[f"{p}\x1f{k}"] = _column_quantiles(column, request.probs)
        del column
    return out


def group_task(prefix: Sequence[Fitted], start: int, stop: int, options: ChunkOptions) -> dict[str, Any]:
    """The JSON-able description of one fit group's partial work, for a worker."""
    return {
        "prefix": [f.to_dict() for f in prefix],
        "group": [start, stop],
        "options": options.to_dict(),
    }


def run_group_task(
    steps: Sequence[Step], task: Mapping[str, Any], lf: pl.LazyFrame, *, target: str | None
) -> dict[str, Any]:
    """Worker side: the partial statistics of ``task``'s fit group over ``lf`` (one partition)."""
    prefix = [Fitted.from_dict(d) for d in task["prefix"]]
    start, stop = task["group"]
    options = ChunkOptions.from_dict(task["options"])
    current = lf
    for f in prefix:
        current = f.apply(current, train=True)
    schema = current.collect_schema()
    plans = [_at(i, step.plan, schema, target) for i, step in enumerate(steps[start:stop], start=start)]
    req = Requests.of(plans, options)
    return partial_over(req, current, options).to_dict()


@dataclass(frozen=True)
class ChunkedFit(FitResult):
    """A chunked fit's result, plus how its quantiles were computed."""

    method: Mapping[str, Any] = field(default_factory=dict)
    #: input rows, when the first fit group counted them
    rows: int | None = None


def fit_steps_chunked(
    steps: Sequence[Step],
    lf: pl.LazyFrame,
    *,
    target: str | None,
    options: ChunkOptions = ChunkOptions(),
    map_partials: MapPartials | None = None,
    prepare: Callable[[], None] | None = None,
) -> ChunkedFit:
    """Fit ``steps`` from mergeable statistics (see the module docstring).

    ``lf`` is the whole input, lazily (it is scanned once per fit group, and by
    the driver-side queries). With ``map_partials``, each group's mergeable
    statistics come from ``map_partials(group_task(...))`` (one partial per
    partition, e.g. Dask workers running :func:`run_group_task`); otherwise they
    stream from ``lf`` in batches of ``options.chunk_rows``. ``prepare`` runs
    before ``lf`` is first read here (with ``map_partials``, only if a group has
    statistics that do not merge).
    """
    options = options or ChunkOptions()
    sketched = False
    rows: list[int] = []

    def collect(plans: Sequence[FitPlan], current: pl.LazyFrame, start: int, fitted: Sequence[Fitted]) -> list[FitData]:
        nonlocal sketched
        req = Requests.of(plans, options)
        sketched = sketched or bool(req.sketches)
        if prepare is not None and (map_partials is None or req.raw or req.exact or any(p.queries for p in plans)):
            prepare()
        if not req.mergeable:
            partial = GroupPartial.empty(req, options)
        elif map_partials is not None:
            task = group_task(fitted, start, start + len(plans), options)
            partial = GroupPartial.empty(req, options)
            for part in map_partials(task):
                partial.merge(GroupPartial.from_dict(part))
        else:
            partial = partial_over(req, current, options)
        if start == 0 and req.mergeable:
            rows.append(partial.rows)
        return _finish_data(plans, req, partial, _driver(plans, req, current))

    result = fit_steps(steps, lf, target=target, collect=collect)
    method: dict[str, Any] = {"quantiles": "exact" if options.exact_quantiles or not sketched else "kll"}
    if method["quantiles"] == "kll":
        method.update(sketch_k=options.sketch_k, rank_error=QuantileSketch(options.sketch_k).rank_error)
    return ChunkedFit(result.fitted, result.groups, result.group_seconds, method, rows[0] if rows else None)
