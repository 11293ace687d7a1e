"""The ``search:`` and ``constraints:`` blocks of a spec: what the optimizer may change.

A search step looks like a pipeline step whose values may be *domains*::

    search:
      steps:
        - {kind: impute, method: {choice: [mean, median, knn]}, add_indicator: {choice: [true, false]}}
        - {kind: outliers, optional: true, method: {choice: [iqr, zscore, mad, isolation_forest]},
           k: {float: [1.0, 4.0]}, threshold: {float: [2.0, 5.0]}, action: {choice: [clip, drop, null]}}
        - {kind: scale, method: {choice: [standard, robust, quantile]}}
        - {kind: augment, optional: true, method: {choice: [smote, oversample]}, ratio: {float: [0.3, 1.0]}}
    constraints: {max_rows_dropped: 0.05, max_seconds: 30}

Domains: ``{choice: [a, b, ...]}`` (scalars), ``{int: [lo, hi]}``, ``{float: [lo, hi]}``, each range
with optional ``log: true`` or ``step: s``. Any other value is fixed (``columns``, ``seed``, ...).
``optional: true`` lets the optimizer leave the whole step out.

**Conditional parameters.** ``method`` may be a choice, and a parameter is offered only to the
methods that have it (a field of the method's step class that the method does not fix). So in
the block above ``k`` is sampled only for ``iqr`` (Tukey's fences), ``threshold`` only for
``zscore`` and ``mad``, and neither for ``isolation_forest``. Values of a choice that a method
rejects are left out for that method only: ``action: clip`` is never offered to
``isolation_forest`` (no univariate bound to clip to), which draws from ``drop``/``null``.
``by_method: {mad: {threshold: {float: [2.5, 6.0]}}}`` gives a method its own domain. YAML's
``null`` in ``action: {choice: [clip, drop, null]}`` is the action ``"null"`` (where a method
takes the string and not None).
When methods see different domains of a parameter, each gets its own Optuna parameter
(``outliers.action`` and ``outliers.action@isolation_forest``), so no trial ever mixes them.

**Validation, up front.** Every key is checked before any trial runs, with errors naming
``search.steps[i].key``: unknown kinds, methods and parameters (with a "did you mean"),
parameters no candidate method takes, malformed domains, values every method rejects,
ranges whose ends a method rejects, and every combination of choices and range ends of a
method (up to 4096 per method), so parameters that are only invalid together
(``lower``/``upper`` of ``percentile``) are caught too. A sampled plan is therefore always
made of valid steps.

**Refill after ``null``.** An outlier step with ``action: null`` removes values; when no impute
step follows it in the sampled plan, an ``impute/median`` step over the same columns is added
right after it (and written to ``best.yaml``), so later steps (SMOTE) and the model never see
the holes it made.

>>> space = parse_search({"search": {"steps": [
...     {"kind": "outliers", "method": {"choice": ["iqr", "zscore"]}, "k": {"float": [1.0, 4.0]}}]}})
>>> [p.key for p in space.steps[0].params["iqr"]], [p.key for p in space.steps[0].params["zscore"]]
(['k'], [])
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from pipelines.errors import SpecError
from transforms import registry
from transforms.errors import ConfigError, did_you_mean

#: keys of the ``search:`` block
SEARCH_KEYS = ("steps",)
#: keys of a search step that are not step parameters
STEP_KEYS = ("kind", "method", "optional", "by_method")
#: keys that make a mapping a domain, and the options a domain may have
DOMAIN_KEYS = ("choice", "int", "float")
DOMAIN_OPTIONS = ("log", "step")
#: keys of the ``constraints:`` block
CONSTRAINT_KEYS = ("max_rows_dropped", "max_seconds")
#: the most combinations of choices and range ends checked together per method
MAX_CORNERS = 4096

Plan = list[dict[str, Any]]


class TrialLike(Protocol):
    """What sampling needs from an Optuna trial (``optuna.Trial`` and ``FixedTrial`` fit)."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...
    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...
    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...


# -- domains -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """One of a list of scalar values."""

    values: tuple[Any, ...]

    def suggest(self, trial: TrialLike, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def corners(self) -> tuple[Any, ...]:
        return self.values

    def contains(self, value: Any) -> bool:
        return any(type(value) is type(v) and value == v for v in self.values)

    def describe(self) -> str:
        return "{choice: [" + ", ".join(map(repr, self.values)) + "]}"


@dataclass(frozen=True)
class IntRange:
    """An integer in ``[low, high]``."""

    low: int
    high: int
    log: bool = False
    step: int = 1

    def suggest(self, trial: TrialLike, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def corners(self) -> tuple[Any, ...]:
        return (self.low, self.high)

    def contains(self, value: Any) -> bool:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return ok and self.low <= value <= self.high and (value - self.low) % self.step == 0

    def describe(self) -> str:
        return f"{{int: [{self.low}, {self.high}]{', log: true' if self.log else ''}}}"


@dataclass(frozen=True)
class FloatRange:
    """A float in ``[low, high]``."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    def suggest(self, trial: TrialLike, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def corners(self) -> tuple[Any, ...]:
        return (self.low, self.high)

    def contains(self, value: Any) -> bool:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok and self.low <= value <= self.high

    def describe(self) -> str:
        return f"{{float: [{self.low}, {self.high}]{', log: true' if self.log else ''}}}"


@dataclass(frozen=True)
class Fixed:
    """A value the optimizer does not change."""

    value: Any

    def corners(self) -> tuple[Any, ...]:
        return (self.value,)

    def contains(self, value: Any) -> bool:
        return bool(value == self.value)

    def describe(self) -> str:
        return repr(self.value)


Domain = Choice | IntRange | FloatRange | Fixed


@dataclass(frozen=True)
class Param:
    """A parameter of one method of a search step; ``name`` is its Optuna name (None: fixed)."""

    key: str
    domain: Domain
    name: str | None = None

    def draw(self, trial: TrialLike) -> Any:
        if isinstance(self.domain, Fixed):
            return self.domain.value
        assert self.name is not None
        return self.domain.suggest(trial, self.name)


@dataclass(frozen=True)
class SearchStep:
    """One step of the search: candidate methods, their parameters, and whether it may be left out."""

    index: int
    kind: str
    label: str
    methods: tuple[str, ...]
    optional: bool
    params: Mapping[str, tuple[Param, ...]]

    @property
    def use_name(self) -> str:
        """Optuna name of the Boolean "step is in the plan" parameter (optional steps)."""
        return f"{self.label}.use"

    @property
    def method_name(self) -> str:
        """Optuna name of the method choice (several methods)."""
        return f"{self.label}.method"

    def sample(self, trial: TrialLike) -> dict[str, Any] | None:
        """A plain step mapping, or None when the optional step is left out."""
        if self.optional and not trial.suggest_categorical(self.use_name, [True, False]):
            return None
        method = (
            self.methods[0] if len(self.methods) == 1 else trial.suggest_categorical(self.method_name, self.methods)
        )
        step: dict[str, Any] = {"kind": self.kind, "method": method}
        for p in self.params[method]:
            step[p.key] = p.draw(trial)
        return step


@dataclass(frozen=True)
class Constraints:
    """Limits a feasible plan stays within (None: no limit).

    ``max_rows_dropped``: share of training-fold rows that drop steps may remove (mean over folds);
    ``max_seconds``: seconds to fit and apply the plan, per fold (mean over folds).
    """

    max_rows_dropped: float | None = None
    max_seconds: float | None = None

    def limits(self) -> dict[str, float]:
        """The declared limits by name."""
        return {
            k: v
            for k, v in (("max_rows_dropped", self.max_rows_dropped), ("max_seconds", self.max_seconds))
            if v is not None
        }

    def values(self, *, rows_dropped: float, seconds: float) -> dict[str, float]:
        """Optuna constraint values (feasible when <= 0) for a trial's measurements."""
        measured = {"max_rows_dropped": rows_dropped, "max_seconds": seconds}
        return {k: measured[k] - limit for k, limit in self.limits().items()}


@dataclass(frozen=True)
class SearchSpace:
    """A parsed ``search:`` block plus ``constraints:``."""

    steps: tuple[SearchStep, ...]
    constraints: Constraints = field(default_factory=Constraints)
    raw: Mapping[str, Any] = field(default_factory=dict)

    def sample(self, trial: TrialLike) -> Plan:
        """Draw a plan (plain step mappings, as in a spec's ``steps``) from ``trial``."""
        plan = [s for s in (step.sample(trial) for step in self.steps) if s is not None]
        return refill_nulls(plan)

    def param_names(self) -> list[str]:
        """Every Optuna parameter name the space can use."""
        names: list[str] = []
        for s in self.steps:
            if s.optional:
                names.append(s.use_name)
            if len(s.methods) > 1:
                names.append(s.method_name)
            names += [p.name for ps in s.params.values() for p in ps if p.name is not None]
        return list(dict.fromkeys(names))

    def params_for(self, plan: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
        """The trial parameters that make :meth:`sample` return ``plan``, or None if it is not in the space.

        Used to evaluate a spec's own ``steps`` first. A parameter the plan leaves out takes
        the step's default; a plan that sets a parameter the search does not cover, or a value
        outside a domain, is not in the space.
        """
        params: dict[str, Any] = {}
        rest = [dict(s) for s in plan]
        for step in self.steps:
            head = rest[0] if rest else None
            if head is None or head.get("kind") != step.kind or head.get("method") not in step.methods:
                if not step.optional:
                    return None
                params[step.use_name] = False
                continue
            rest.pop(0)
            method = head.pop("method")
            head.pop("kind")
            if step.optional:
                params[step.use_name] = True
            if len(step.methods) > 1:
                params[step.method_name] = method
            cls = registry.lookup(step.kind, method).cls
            for p in step.params[method]:
                value = (
                    head.pop(p.key) if p.key in head else cls.model_fields[p.key].get_default(call_default_factory=True)
                )
                if not p.domain.contains(value):
                    return None
                if p.name is not None:
                    params[p.name] = value
            if head:
                return None
        return params if not rest else None


def refill_nulls(plan: Plan) -> Plan:
    """Add ``impute/median`` after each ``outliers`` step with ``action: null`` that no impute step follows."""
    out: Plan = []
    for i, step in enumerate(plan):
        out.append(step)
        later = any(s["kind"] == "impute" for s in plan[i + 1 :])
        if step["kind"] == "outliers" and step.get("action") == "null" and not later:
            refill: dict[str, Any] = {"kind": "impute", "method": "median"}
            if step.get("columns") is not None:
                refill["columns"] = step["columns"]
            out.append(refill)
    return out


# -- parsing -------------------------------------------------------------------------------


def parse_search(data: Mapping[str, Any], *, source: str = "<spec>") -> SearchSpace:
    """Validate the ``search:`` (and ``constraints:``) block of a raw spec mapping."""
    search = data.get("search")
    if search is None:
        raise SpecError(f"{source}: no 'search:' block; the optimizer needs one (see `prepflow optimize --help`)")
    if not isinstance(search, Mapping):
        raise SpecError(f"{source}: 'search' must be a mapping with a 'steps' list, got {search!r}")
    for key in search:
        if key not in SEARCH_KEYS:
            raise SpecError(
                f"{source}: unknown key 'search.{key}'{did_you_mean(str(key), SEARCH_KEYS)}; "
                f"known: {', '.join(SEARCH_KEYS)}"
            )
    steps = search.get("steps")
    if not isinstance(steps, list) or not steps:
        raise SpecError(f"{source}: 'search.steps' must be a non-empty list of search steps")
    kinds = Counter(s.get("kind") for s in steps if isinstance(s, Mapping))
    parsed = []
    for i, raw in enumerate(steps):
        where = f"{source}: search.steps[{i}]"
        kind = raw.get("kind") if isinstance(raw, Mapping) else None
        label = str(kind) if kinds[kind] == 1 else f"{kind}#{i}"
        parsed.append(_parse_step(raw, i, label, where))
    return SearchSpace(
        steps=tuple(parsed), constraints=parse_constraints(data.get("constraints"), source=source), raw=dict(search)
    )


def parse_constraints(value: Any, *, source: str = "<spec>") -> Constraints:
    """Validate a ``constraints:`` block."""
    if value is None:
        return Constraints()
    if not isinstance(value, Mapping):
        raise SpecError(f"{source}: 'constraints' must be a mapping, got {value!r}")
    out: dict[str, float] = {}
    for key, v in value.items():
        if key not in CONSTRAINT_KEYS:
            raise SpecError(
                f"{source}: unknown key 'constraints.{key}'{did_you_mean(str(key), CONSTRAINT_KEYS)}; "
                f"known: {', '.join(CONSTRAINT_KEYS)}"
            )
        if not _is_number(v) or not math.isfinite(v) or v < 0:
            raise SpecError(f"{source}: 'constraints.{key}' must be a number >= 0, got {v!r}")
        if key == "max_rows_dropped" and v > 1:
            raise SpecError(f"{source}: 'constraints.max_rows_dropped' is a share of rows in [0, 1], got {v!r}")
        out[key] = float(v)
    return Constraints(**out)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _parse_domain(value: Any, where: str) -> Domain:
    """A domain (``choice``/``int``/``float`` mapping) or a fixed value."""
    if not (isinstance(value, Mapping) and any(k in value for k in DOMAIN_KEYS)):
        if isinstance(value, Mapping) and len(value) == 1:
            (key,) = value
            hint = did_you_mean(str(key), DOMAIN_KEYS)
            if hint:
                raise SpecError(
                    f"{where}: unknown domain key '{key}'{hint}; a domain is one of {', '.join(DOMAIN_KEYS)}"
                )
        return Fixed(value)
    found = [k for k in DOMAIN_KEYS if k in value]
    if len(found) > 1:
        raise SpecError(f"{where}: give one of {', '.join(DOMAIN_KEYS)}, not {' and '.join(found)}")
    kind = found[0]
    allowed = (kind,) if kind == "choice" else (kind, *DOMAIN_OPTIONS)
    for k in value:
        if k not in allowed:
            raise SpecError(
                f"{where}: unknown key '{k}' in a {kind} domain{did_you_mean(str(k), allowed)}; "
                f"known: {', '.join(allowed)}"
            )
    arg = value[kind]
    if kind == "choice":
        if not isinstance(arg, list) or not arg:
            raise SpecError(f"{where}: 'choice' must be a non-empty list, got {arg!r}")
        for v in arg:
            if v is not None and not isinstance(v, (bool, int, float, str)):
                raise SpecError(f"{where}: choice values must be scalars (string, number, boolean, null), got {v!r}")
        if len({(type(v), v) for v in arg}) != len(arg):
            raise SpecError(f"{where}: 'choice' lists a value twice: {arg!r}")
        return Choice(tuple(arg))
    if not (isinstance(arg, list) and len(arg) == 2 and all(_is_number(v) for v in arg)):
        raise SpecError(f"{where}: '{kind}' must be a list [low, high] of two numbers, got {arg!r}")
    low, high = arg
    log, step = value.get("log", False), value.get("step")
    if not isinstance(log, bool):
        raise SpecError(f"{where}: 'log' must be true or false, got {log!r}")
    if log and step is not None:
        raise SpecError(f"{where}: give 'log' or 'step', not both")
    if not low <= high:
        raise SpecError(f"{where}: the range [{low}, {high}] must have low <= high")
    if kind == "int":
        if not all(isinstance(v, int) for v in arg):
            raise SpecError(f"{where}: 'int' bounds must be integers, got {arg!r}")
        if step is not None and not (isinstance(step, int) and not isinstance(step, bool) and step >= 1):
            raise SpecError(f"{where}: 'step' of an int range must be an integer >= 1, got {step!r}")
        if log and low < 1:
            raise SpecError(f"{where}: a log int range needs low >= 1, got {low}")
        return IntRange(int(low), int(high), log=log, step=step or 1)
    if not all(math.isfinite(v) for v in arg):
        raise SpecError(f"{where}: float bounds must be finite, got {arg!r}")
    if step is not None and not (_is_number(step) and step > 0):
        raise SpecError(f"{where}: 'step' of a float range must be a number > 0, got {step!r}")
    if log and low <= 0:
        raise SpecError(f"{where}: a log float range needs low > 0, got {low}")
    return FloatRange(float(low), float(high), log=log, step=None if step is None else float(step))


def _parse_step(raw: Any, index: int, label: str, where: str) -> SearchStep:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: a search step must be a mapping with 'kind' and 'method', got {raw!r}")
    kind, method = raw.get("kind"), raw.get("method")
    if kind is None or method is None:
        raise SpecError(f"{where}: a search step needs both 'kind' and 'method' (got keys: {', '.join(map(str, raw))})")
    kinds = registry.kinds()
    if kind not in kinds:
        raise SpecError(
            f"{where}.kind: unknown step kind '{kind}'{did_you_mean(str(kind), kinds)}; known: {', '.join(kinds)}"
        )
    at = where
    where = f"{where} ({kind})"
    method_domain = _parse_domain(method, f"{where}.method")
    if isinstance(method_domain, Fixed):
        methods: tuple[Any, ...] = (method_domain.value,)
    elif isinstance(method_domain, Choice):
        methods = method_domain.values
    else:
        raise SpecError(f"{where}.method: a method is a name or {{choice: [...]}}, got {method!r}")
    entries = {}
    for m in methods:
        try:
            entries[str(m)] = registry.lookup(str(kind), str(m))
        except ConfigError as exc:
            raise SpecError(f"{where}.method: {exc}") from exc
    optional = raw.get("optional", False)
    if not isinstance(optional, bool):
        raise SpecError(f"{where}.optional: must be true or false, got {optional!r}")

    shared = {str(k): _parse_domain(v, f"{where}.{k}") for k, v in raw.items() if k not in STEP_KEYS}
    own = _parse_by_method(raw.get("by_method"), entries, where)
    for key in shared:
        _check_key_applies(key, entries, where)
    shared = {k: _yaml_null(k, d, entries) for k, d in shared.items()}
    own = {m: {k: _yaml_null(k, d, {m: entries[m]}) for k, d in block.items()} for m, block in own.items()}

    params: dict[str, list[tuple[str, Domain]]] = {}
    for m, entry in entries.items():
        domains = {k: d for k, d in shared.items() if _takes(entry, k)}
        domains.update(own.get(m, {}))
        params[m] = list(domains.items())
    _check_values(shared, own, entries, where)
    params = {m: [(k, _filter(d, entries[m], k, dict(ps), where)) for k, d in ps] for m, ps in params.items()}
    for m, ps in params.items():
        _check_corners(dict(ps), entries[m], f"{at} ({kind}/{m})")
    return SearchStep(
        index=index,
        kind=str(kind),
        label=label,
        methods=tuple(entries),
        optional=optional,
        params=_name_params(params, label),
    )


def _parse_by_method(value: Any, entries: Mapping[str, registry.Entry], where: str) -> dict[str, dict[str, Domain]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}.by_method: must map a method to its parameters, got {value!r}")
    out: dict[str, dict[str, Domain]] = {}
    for m, block in value.items():
        if m not in entries:
            raise SpecError(
                f"{where}.by_method.{m}: '{m}' is not one of this step's methods"
                f"{did_you_mean(str(m), entries)}; methods: {', '.join(entries)}"
            )
        if not isinstance(block, Mapping):
            raise SpecError(f"{where}.by_method.{m}: must be a mapping of parameters, got {block!r}")
        out[m] = {}
        for k, v in block.items():
            _check_key_applies(str(k), {m: entries[m]}, f"{where}.by_method.{m}")
            out[m][str(k)] = _parse_domain(v, f"{where}.by_method.{m}.{k}")
    return out


def _fields(entry: registry.Entry) -> list[str]:
    return [k for k in entry.cls.model_fields if k not in entry.fixed]


def _takes(entry: registry.Entry, key: str) -> bool:
    return key in entry.cls.model_fields and key not in entry.fixed


def _check_key_applies(key: str, entries: Mapping[str, registry.Entry], where: str) -> None:
    fixed_by = [m for m, e in entries.items() if key in e.fixed]
    if fixed_by:
        raise SpecError(f"{where}.{key}: '{key}' is set by the method ({', '.join(fixed_by)}); remove it")
    if not any(_takes(e, key) for e in entries.values()):
        known = list(dict.fromkeys(k for e in entries.values() for k in _fields(e)))
        raise SpecError(
            f"{where}.{key}: no method of this step ({', '.join(entries)}) has a parameter '{key}'"
            f"{did_you_mean(key, known)}; known: {', '.join(known)}"
        )


def _problem(entry: registry.Entry, values: Mapping[str, Any]) -> str | None:
    """None when the step class accepts ``values`` (others at their defaults), else why not."""
    try:
        entry.cls.model_validate({**values, **entry.fixed})
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = ".".join(map(str, err["loc"]))
            msg = str(err["ctx"]["error"]) if err["type"] == "value_error" and "ctx" in err else err["msg"]
            parts.append(f"{loc}: {msg}" if loc else msg)
        return "; ".join(dict.fromkeys(parts))
    except (ConfigError, TypeError, ValueError) as exc:
        return str(exc)
    return None


def _yaml_null(key: str, domain: Domain, entries: Mapping[str, registry.Entry]) -> Domain:
    """Read YAML's ``null`` as the string ``"null"`` where a method takes that and not None (``action``)."""
    takers = [e for e in entries.values() if _takes(e, key)]
    if not any(_problem(e, {key: None}) and not _problem(e, {key: "null"}) for e in takers):
        return domain
    if isinstance(domain, Choice) and any(v is None for v in domain.values):
        return Choice(tuple("null" if v is None else v for v in domain.values))
    if isinstance(domain, Fixed) and domain.value is None:
        return Fixed("null")
    return domain


def _fixed_values(domains: Mapping[str, Domain]) -> dict[str, Any]:
    return {k: d.value for k, d in domains.items() if isinstance(d, Fixed)}


def _check_values(
    shared: Mapping[str, Domain],
    own: Mapping[str, Mapping[str, Domain]],
    entries: Mapping[str, registry.Entry],
    where: str,
) -> None:
    """Every choice value must suit at least one method that takes the parameter; fixed values and range ends all."""
    bases = {}
    for m, entry in entries.items():
        bases[m] = _fixed_values({k: d for k, d in shared.items() if _takes(entry, k)} | dict(own.get(m, {})))
        problem = _problem(entry, bases[m])
        if problem:
            raise SpecError(f"{where}: method '{m}': {problem}")
    for key, domain in shared.items():
        if not isinstance(domain, Choice):
            continue
        takers = {m: e for m, e in entries.items() if _takes(e, key) and key not in own.get(m, {})}
        for v in domain.values:
            problems = [_problem(e, {**bases[m], key: v}) for m, e in takers.items()]
            if takers and all(problems):
                raise SpecError(f"{where}.{key}: {v!r} is not valid for any of {', '.join(takers)}: {problems[0]}")


def _filter(domain: Domain, entry: registry.Entry, key: str, domains: Mapping[str, Domain], where: str) -> Domain:
    """The part of ``domain`` that ``entry`` accepts (choices filtered; ranges and fixed values must fit)."""
    base = _fixed_values({k: d for k, d in domains.items() if k != key})
    if isinstance(domain, Choice):
        kept = [v for v in domain.values if _problem(entry, {**base, key: v}) is None]
        if not kept:
            reason = _problem(entry, {**base, key: domain.values[0]})
            raise SpecError(
                f"{where}.{key}: no value of {domain.describe()} is valid for method '{entry.method}' ({reason}); "
                f"give it its own with by_method: {{{entry.method}: {{{key}: ...}}}}"
            )
        return Choice(tuple(kept))
    for v in domain.corners():
        reason = _problem(entry, {**base, key: v})
        if reason:
            what = f"the range end {v!r}" if not isinstance(domain, Fixed) else repr(v)
            raise SpecError(f"{where}.{key}: {what} is not valid for method '{entry.method}': {reason}")
    return domain


def _check_corners(domains: Mapping[str, Domain], entry: registry.Entry, where: str) -> None:
    """Try every combination of choice values and range ends together (when there are few enough)."""
    keys = [k for k, d in domains.items() if len(d.corners()) > 1]
    if len(keys) < 2 or math.prod(len(domains[k].corners()) for k in keys) > MAX_CORNERS:
        return
    base = _fixed_values(domains)
    for combo in itertools.product(*(domains[k].corners() for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        reason = _problem(entry, {**base, **values})
        if reason:
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
            raise SpecError(
                f"{where}: the parameters can be invalid together ({shown}): {reason}; narrow their domains"
            )


def _name_params(params: Mapping[str, list[tuple[str, Domain]]], label: str) -> dict[str, tuple[Param, ...]]:
    """Optuna names: ``<label>.<key>``, or ``<label>.<key>@<method>`` for a method whose domain differs."""
    by_key: dict[str, dict[str, Domain]] = {}
    for m, ps in params.items():
        for k, d in ps:
            if not isinstance(d, Fixed):
                by_key.setdefault(k, {})[m] = d
    names: dict[tuple[str, str], str] = {}
    for k, doms in by_key.items():
        groups: dict[Domain, list[str]] = {}
        for m, d in doms.items():
            groups.setdefault(d, []).append(m)
        main = max(groups, key=lambda d: len(groups[d]))  # ties: the first method's domain
        for d, ms in groups.items():
            for m in ms:
                names[(m, k)] = f"{label}.{k}" if d == main else f"{label}.{k}@{m}"
    return {m: tuple(Param(k, d, names.get((m, k))) for k, d in ps) for m, ps in params.items()}
