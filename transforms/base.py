"""The two halves of every step: parameters (:class:`Step`) and learned state (:class:`Fitted`).

A :class:`Step` is a frozen pydantic model holding only parameters: the same
declaration validates Python keyword arguments and YAML keys. Its :meth:`Step.plan`
says what the step needs from the data (one-row aggregations, or a small query)
and how to turn the answers into a :class:`Fitted`; the engine batches the
aggregations of independent steps into one query (see :mod:`transforms.fitting`).

A :class:`Fitted` is a frozen dataclass of plain numbers and strings. Its
:meth:`Fitted.apply` turns the state into Polars expressions over a ``LazyFrame``
and never collects.

>>> import polars as pl
>>> from transforms import StandardScaler
>>> fitted = StandardScaler(columns=["x"]).fit(pl.DataFrame({"x": [1.0, 3.0]}))
>>> fitted.transform(pl.DataFrame({"x": [1.0, 3.0]}))["x"].to_list()
[-1.0, 1.0]
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import polars as pl
import polars.selectors as cs
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from transforms import columns as _columns
from transforms import jsonable, registry
from transforms.columns import Columns
from transforms.errors import ArtifactError, ColumnError

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


@dataclass(frozen=True)
class FitData:
    """What the engine hands back to a plan: aggregate values and query results."""

    aggregates: Mapping[str, Any] = field(default_factory=dict)
    queries: Mapping[str, pl.DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class Quantiles:
    """An aggregate request: exact quantiles of ``expr`` at ``probs`` (linear interpolation).

    Put it in :attr:`FitPlan.aggregates` in place of an expression; the answer is a
    list of floats (or None when the column has no value). The engine computes all
    requested quantiles of a column in one selection pass with NumPy
    (``np.quantile``, introselect: O(n), the same numbers as scikit-learn's
    ``np.nanpercentile``), several columns in parallel, instead of sorting with
    Polars. ``expr`` must yield null (or NaN) for values to ignore.

    >>> Quantiles(pl.col("x"), (0.25, 0.75)).probs
    (0.25, 0.75)
    """

    expr: pl.Expr
    probs: tuple[float, ...]
    #: fit on a random subset of at most this many non-null rows (in-memory fits only;
    #: streaming and distributed fits sketch every row)
    subsample: int | None = None
    seed: int | None = None


#: statistics a :class:`Stat` request can ask for
STATS = ("count", "mean", "var", "std", "min", "max", "sum", "mode")
#: the row count of a step's input, beside its metrics in :meth:`Fitted.metric_aggregations`
ROWS = "__rows"


@dataclass(frozen=True)
class Stat:
    """An aggregate request: one statistic of ``expr``'s non-null values, mergeable across chunks.

    ``count``, ``mean``, ``var`` and ``std`` (population, ddof=0), ``min``,
    ``max``, ``sum``, and ``mode`` (the smallest of the most frequent values).
    In memory the engine evaluates the equivalent Polars aggregation; in
    streaming and distributed fits it keeps mergeable partial statistics
    (:mod:`transforms.stats`) per chunk, so steps declare *what* they need and
    every regime can fit them. ``expr`` must yield null for values to ignore.

    >>> Stat(pl.col("x"), "mean").expression().meta.output_name()
    'x'
    """

    expr: pl.Expr
    stat: str

    def __post_init__(self) -> None:
        if self.stat not in STATS:
            raise ValueError(f"unknown statistic {self.stat!r}; known: {', '.join(STATS)}")

    def expression(self) -> pl.Expr:
        """The equivalent one-row Polars aggregation (the in-memory fit)."""
        x = self.expr
        if self.stat in ("var", "std"):
            return getattr(x, self.stat)(ddof=0)
        if self.stat == "mode":
            return x.drop_nulls().mode().min()
        return getattr(x, self.stat)()


Aggregate = pl.Expr | Quantiles | Stat


@dataclass(frozen=True)
class FitPlan:
    """What a step needs from the data to be fitted.

    ``aggregates`` are :class:`Stat` and :class:`Quantiles` requests (mergeable:
    every regime, in memory, streamed or distributed, can fit them), or plain
    one-row Polars aggregations (in memory; a streaming fit evaluates them on the
    driver with Polars' streaming engine). The engine runs those of independent
    steps in a single ``select`` (and a single quantile pass).
    ``queries`` build a small frame from the input (a ``group_by``, or the few
    columns a model is trained on); they run in the same ``collect_all``.
    ``finish`` turns the answers into the fitted step.

    ``reads``, ``writes`` and ``output_schema`` let the engine group steps
    without touching data. ``writes`` defaults to ``reads`` (a step rewrites the
    columns it reads); added or removed columns are found from ``output_schema``.
    ``output_schema`` is None when the step's output columns are only known after
    fitting (one-hot), and ``changes_rows`` is true for steps that drop or add
    rows; both end a fit group. ``fills`` declares constant fills (see the field).
    """

    finish: Callable[[FitData], Fitted]
    reads: tuple[str, ...]
    output_schema: pl.Schema | None
    aggregates: Mapping[str, Aggregate] = field(default_factory=dict)
    queries: Mapping[str, Callable[[pl.LazyFrame], pl.LazyFrame]] = field(default_factory=dict)
    changes_rows: bool = False
    writes: tuple[str, ...] | None = None
    #: column -> key of one of ``aggregates``: the step writes the column back with its null
    #: and NaN values replaced by that aggregate's value and nothing else changed (same dtype,
    #: +/-inf kept). The in-memory fit engine then fits a later quantile step on those
    #: columns in the same group, from the raw column (:mod:`transforms.filled`).
    fills: Mapping[str, str] = field(default_factory=dict)


class Step(BaseModel):
    """Base class of every step: parameters only, validated once, immutable.

    Subclasses declare their parameters as fields and implement :meth:`plan`.
    ``columns`` takes names, a :class:`~transforms.columns.ColumnSelector`, a
    Polars selector, or None for the step's default (numeric columns except the
    pipeline's target).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True, defer_build=True)

    name: str | None = None
    columns: Columns = None

    #: columns a step uses when ``columns`` is None (target excluded)
    default_columns: ClassVar[Callable[[], cs.Selector]] = cs.numeric
    #: dtypes the step accepts: "numeric", or "any"
    accepts: ClassVar[str] = "numeric"
    #: the class of this step's fitted state
    fitted_class: ClassVar[type[Fitted]]

    @property
    def kind(self) -> str:
        """The YAML ``kind`` of this step."""
        return registry.entry_for(self).kind

    @property
    def method(self) -> str:
        """The YAML ``method`` of this step."""
        return registry.entry_for(self).method

    @property
    def label(self) -> str:
        """The step's ``name``, or ``kind/method``."""
        return self.name or f"{self.kind}/{self.method}"

    def resolve_columns(self, schema: pl.Schema, target: str | None) -> tuple[str, ...]:
        """The concrete columns this step works on, checked against ``schema``."""
        cols = _columns.resolve(
            self.columns, schema, target=target, default=type(self).default_columns(), step=self.label
        )
        if self.accepts == "numeric":
            bad = [c for c in cols if not schema[c].is_numeric()]
            if bad:
                raise ColumnError(
                    f"{self.label}: column '{bad[0]}' has dtype {schema[bad[0]]}; this step needs numeric columns"
                )
        return cols

    def plan(self, schema: pl.Schema, target: str | None) -> FitPlan:
        """What to compute from data to fit this step (see :class:`FitPlan`)."""
        raise NotImplementedError

    def fit(self, frame: pl.DataFrame | pl.LazyFrame, *, target: str | None = None) -> Fitted:
        """Fit this step alone on ``frame``; returns the fitted step."""
        from transforms.fitting import fit_steps

        return fit_steps([self], frame.lazy(), target=target).fitted[0]

    def fit_transform(self, frame: Frame, *, target: str | None = None) -> Frame:
        """Fit on ``frame`` and transform it in training mode (augmentation applies)."""
        return self.fit(frame, target=target).transform(frame, train=True)

    def params(self) -> dict[str, Any]:
        """JSON-friendly parameters, as in a YAML spec (without kind/method)."""
        out = self.model_dump(mode="json", exclude={"columns"})
        fixed = registry.entry_for(self).fixed
        out = {k: v for k, v in out.items() if k not in fixed}
        out["columns"] = _columns.describe(self.columns)
        return out


@dataclass(frozen=True)
class Fitted:
    """Base class of fitted steps: the step's parameters plus learned state.

    Subclasses add state fields (tuples of plain numbers or strings) and
    implement :meth:`apply`.
    """

    step: Step
    columns: tuple[str, ...]

    def apply(self, lf: pl.LazyFrame, *, train: bool = False) -> pl.LazyFrame:
        """The step as lazy expressions over ``lf``; never collects."""
        raise NotImplementedError

    def columnwise(self, schema: pl.Schema) -> dict[str, Callable[[pl.Expr], pl.Expr]] | None:
        """For a step that maps each of its columns through a function of that column alone.

        Rows kept, no column added or removed: column -> the function of its input
        expression, given ``schema``, the step's input schema. The engine composes runs of
        such steps into one projection (:mod:`transforms.compose`) instead of one
        ``with_columns`` (and one set of intermediate columns) per step. None, the default:
        the step runs through :meth:`apply` only.
        """
        return None

    def transform(self, frame: Frame, *, train: bool = False) -> Frame:
        """Apply to a DataFrame (returns a DataFrame) or a LazyFrame (returns a LazyFrame).

        ``train=True`` is training mode: augmentation steps add rows. Applying to
        new data (serving) leaves it False.
        """
        self.check_input(schema_of(frame), train)
        out = self.apply(frame.lazy(), train=train)
        return out.collect() if isinstance(frame, pl.DataFrame) else out

    def reads(self, *, train: bool = False) -> tuple[str, ...]:
        """Columns of the step's input that the step needs."""
        return self.columns

    def check_input(self, schema: pl.Schema, train: bool) -> None:
        """Raise :class:`ColumnError` naming any column this step needs and lacks."""
        missing = [c for c in self.reads(train=train) if c not in schema]
        if missing:
            raise ColumnError(f"{self.step.label}: input lacks column(s) {', '.join(map(repr, missing))}")

    def metrics(self, schema: pl.Schema) -> dict[str, pl.Expr]:
        """Per-row counts over the step's input that describe what it did; the report gives their sums.

        Each a Boolean or integer expression with one value per input row (null counts
        as 0; not a literal). Being sums over rows, the metrics add up batch by batch,
        and the streaming regime can carry them as columns beside the output
        (:mod:`pipelines.metrics_tap`).
        """
        return {}

    def metric_aggregations(self, schema: pl.Schema) -> dict[str, pl.Expr]:
        """The one-row query over the step's input that reports on it: its rows (``__rows``) and metrics.

        Expressions aliased by key, the row count first; the engines select them from each stage.
        """
        return {ROWS: pl.len().alias(ROWS), **{k: e.sum().alias(k) for k, e in self.metrics(schema).items()}}

    def keep(self) -> pl.Expr | None:
        """For steps that drop rows: True for rows kept. None when no row is dropped."""
        return None

    def drop_reasons(self) -> pl.Expr | None:
        """For steps that drop rows: a ``List(String)`` of ``"column:check"`` reasons per row.

        The engine evaluates it on dropped rows to fill the quarantine output.
        """
        return None

    @property
    def changes_rows(self) -> bool:
        """Whether this step can drop or add rows."""
        return False

    @property
    def adds_rows(self) -> bool:
        """Whether this step adds rows (augmentation): it changes the rows and drops none."""
        return self.changes_rows and self.keep() is None

    def state(self) -> dict[str, Any]:
        """The learned state as plain data."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "step"}

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: kind, method, params and state."""
        step = self.step
        params = step.params()
        params["columns"] = list(self.columns)
        return jsonable.encode({"kind": step.kind, "method": step.method, "params": params, "state": self.state()})

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Fitted:
        """Rebuild a fitted step from :meth:`to_dict` output; never imports code."""
        try:
            entry = registry.lookup(data["kind"], data["method"])
            params = {**jsonable.decode(data.get("params", {})), **entry.fixed}
            step = entry.cls.model_validate(params)
            state = {k: _freeze(v) for k, v in jsonable.decode(data["state"]).items()}
            _check_state(step.fitted_class, state)
            return step.fitted_class(step=step, **state)  # type: ignore[attr-defined]
        except ArtifactError:
            raise
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            raise ArtifactError(f"invalid fitted step {data.get('kind')}/{data.get('method')}: {exc}") from exc


@functools.cache
def _state_adapters(cls: type[Fitted]) -> dict[str, TypeAdapter[Any]]:
    hints = typing.get_type_hints(cls)
    return {f.name: TypeAdapter(hints[f.name]) for f in dataclasses.fields(cls) if f.name != "step"}


def _check_state(cls: type[Fitted], state: Mapping[str, Any]) -> None:
    """Check an artifact's state against the fitted class's annotations (strict types).

    A string where a number belongs would otherwise reach Polars as a column name.
    """
    adapters = _state_adapters(cls)
    unknown = set(state) - set(adapters)
    missing = set(adapters) - set(state)
    if unknown or missing:
        raise ArtifactError(f"state fields differ: unknown {sorted(unknown)}, missing {sorted(missing)}")
    for name, value in state.items():
        adapters[name].validate_python(value, strict=True)


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def apply_columnwise(lf: pl.LazyFrame, fns: Mapping[str, Callable[[pl.Expr], pl.Expr]]) -> pl.LazyFrame:
    """``lf`` with each column ``c`` of ``fns`` replaced by ``fns[c](pl.col(c))`` (column-wise steps' ``apply``)."""
    return lf.with_columns(fn(pl.col(c)).alias(c) for c, fn in fns.items())


def schema_of(frame: pl.LazyFrame | pl.DataFrame) -> pl.Schema:
    """The schema of a frame, without collecting a LazyFrame."""
    return frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema
