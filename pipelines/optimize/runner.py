"""``prepflow optimize`` as a function: read the spec and data, run the study, write the outputs.

A spec for the optimizer is a pipeline spec with a ``search:`` block (see
:mod:`pipelines.optimize.space`) and optional ``constraints:``. Its ``steps``, when present,
are the current plan: they must be valid, and when the search space contains them they are
evaluated first, so the result is never worse than the current plan on the CV score.

``--target`` defaults to the spec's ``target``. ``--trials`` is the budget of the whole study:
with a ``--storage`` that already holds trials of the same study (same spec, data and
settings), only the missing ones are run. An input schema in the spec is applied first, as
``prepflow run`` does (rows it quarantines are not used).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import polars as pl
from optuna.trial import FrozenTrial

from pipelines import io, validation
from pipelines.errors import SpecError, UsageError
from pipelines.optimize import outputs, strategy
from pipelines.optimize.objective import Objective, Problem, check_space, config_fingerprint, make_problem
from pipelines.optimize.space import SearchSpace, parse_search
from pipelines.optimize.strategy import RunSummary, Strategy
from pipelines.spec import TOP_LEVEL_KEYS, check_top_level, parse_edges, parse_spec, read_yaml
from transforms.errors import did_you_mean

PathLike = str | os.PathLike[str]
SPEC_KEYS = (*dict.fromkeys((*TOP_LEVEL_KEYS, "search", "constraints")),)
OBJECTIVES = ("score", "time")
CONFIG_ATTR = "prepflow.config"


def check_spec(data: Any, *, source: str = "<spec>") -> SearchSpace:
    """Validate an optimizer spec (plain keys as ``prepflow run`` does, plus ``search``/``constraints``)."""
    check_top_level(data, SPEC_KEYS, source=source, needs="a 'search' block")
    plain = {k: v for k, v in data.items() if k not in ("search", "constraints")}
    if plain.get("steps") is not None:
        parse_spec(plain, source=source)
    parse_edges(plain, source=source)
    return parse_search(data, source=source)


def parse_objectives(value: str | Sequence[str]) -> tuple[str, ...]:
    """``score`` or ``score,time``."""
    items = tuple(v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip())
    for item in items:
        if item not in OBJECTIVES:
            raise UsageError(
                f"--objectives: unknown objective '{item}'{did_you_mean(item, OBJECTIVES)}; known: score, time"
            )
    if not items or items[0] != "score" or len(set(items)) != len(items):
        raise UsageError(f"--objectives: give 'score' or 'score,time', got {','.join(items)!r}")
    return items


@dataclass(frozen=True)
class Settings:
    """Everything ``prepflow optimize`` takes besides the spec and the data."""

    target: str | None = None
    task: str | None = None
    model: str | None = None
    metric: str | None = None
    trials: int = 100
    timeout: float | None = None
    jobs: int = 1
    storage: str | None = None
    study_name: str | None = None
    objectives: tuple[str, ...] = ("score",)
    seed: int = 0
    folds: int = 5
    strategy: Strategy = field(default_factory=Strategy)
    tradeoff: float = 0.01

    def check(self) -> None:
        if self.trials < 1:
            raise UsageError(f"--trials must be at least 1, got {self.trials}")
        if self.jobs < 1:
            raise UsageError(f"--jobs must be at least 1, got {self.jobs}")
        if self.timeout is not None and self.timeout <= 0:
            raise UsageError(f"--timeout must be > 0 seconds, got {self.timeout}")
        if not 0 <= self.tradeoff < 1:
            raise UsageError(f"--tradeoff is a share of the best score in [0, 1), got {self.tradeoff}")
        parse_objectives(self.objectives)


@dataclass(frozen=True)
class Result:
    """A finished optimization: the study, the ranked trials and the chosen plan."""

    study: optuna.Study
    problem: Problem
    space: SearchSpace
    summary: RunSummary
    trials: pl.DataFrame
    best: FrozenTrial
    best_spec: dict[str, Any]
    best_text: str
    settings: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)


def open_storage(url: str | None) -> optuna.storages.BaseStorage | None:
    """An RDB storage with heartbeats (stale trials of a killed run become failed), or None (in memory)."""
    if url is None:
        return None
    if "://" not in url:
        raise UsageError(f"--storage: give a database URL such as sqlite:///study.db, got {url!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)
    except (ImportError, ValueError, optuna.exceptions.OptunaError) as exc:
        raise UsageError(f"--storage {url}: {exc}") from exc
    except Exception as exc:  # SQLAlchemy's errors: a bad URL or an unreachable database
        raise UsageError(f"--storage {url}: cannot open the database: {str(exc).splitlines()[0]}") from exc


def open_study(settings: Settings, fingerprint: Mapping[str, Any], *, name: str, n_objectives: int) -> optuna.Study:
    """Create the study, or load it from the storage and check it is the same optimization."""
    directions = ["maximize", "minimize"][:n_objectives]
    study = optuna.create_study(
        storage=open_storage(settings.storage),
        study_name=name,
        directions=directions,
        load_if_exists=True,
        sampler=optuna.samplers.RandomSampler(seed=settings.seed),
        pruner=strategy.make_pruner(settings.strategy, n_objectives),
    )
    if [d.name.lower() for d in study.directions] != directions:
        raise UsageError(f"--storage: study '{name}' was run with other objectives; use another --study-name")
    saved = study.user_attrs.get(CONFIG_ATTR)
    plain = _jsonable(fingerprint)
    if saved is None:
        study.set_user_attr(CONFIG_ATTR, plain)
    elif saved != plain:
        diff = sorted(k for k in {*saved, *plain} if saved.get(k) != plain.get(k))
        raise UsageError(
            f"--storage: study '{name}' holds another optimization (differs in: {', '.join(diff)}); "
            "use another --study-name to start a new one"
        )
    return study


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, sort_keys=True, default=str))


def run_study(
    raw: Mapping[str, Any],
    df: pl.DataFrame,
    settings: Settings,
    *,
    source: str = "<spec>",
    on_trial: Callable[[FrozenTrial], None] | None = None,
) -> Result:
    """Optimize the spec ``raw`` on ``df`` (in memory); nothing is written."""
    settings.check()
    space = check_spec(raw, source=source)
    target = settings.target or raw.get("target")
    if not target:
        raise UsageError("--target: give the label column (the spec has no 'target')")
    input_spec, _ = parse_edges({k: v for k, v in raw.items() if k in ("input", "output")}, source=source)
    if input_spec.schema_ is not None:
        try:
            schema = input_spec.schema_.compile()
        except ValueError as exc:
            raise SpecError(f"{source}: {exc}") from exc
        df = validation.validate_input(df, schema, on_invalid_rows=input_spec.on_invalid_rows, source=source).clean
    problem = make_problem(
        df,
        target,
        task=settings.task,
        model=settings.model,
        metric=settings.metric,
        folds=settings.folds,
        seed=settings.seed,
    )
    check_space(space, problem.data.schema, target, source=source)
    objectives = parse_objectives(settings.objectives)
    multi = len(objectives) > 1
    name = settings.study_name or f"prepflow-{raw.get('name') or Path(source).stem}"
    extra = {"objectives": list(objectives), "strategy": settings.strategy.name}
    study = open_study(
        settings, config_fingerprint(problem, space, problem.data, extra), name=name, n_objectives=len(objectives)
    )
    if raw.get("steps"):
        params = space.params_for(raw["steps"])
        if params is not None:
            study.enqueue_trial(params, user_attrs={"baseline": True}, skip_if_exists=True)
    objective = Objective(problem, space, objectives=objectives, prune=settings.strategy.prune)
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    # the models are small and trials may run in parallel: one BLAS thread each is faster
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        summary = strategy.run(
            study,
            objective,
            strategy=settings.strategy,
            n_trials=settings.trials,
            timeout=settings.timeout,
            n_jobs=settings.jobs,
            seed=settings.seed,
            on_trial=on_trial,
        )
    frame = outputs.trials_frame(study, multi=multi, tradeoff=settings.tradeoff)
    ranked = outputs.rank_trials(study.get_trials(deepcopy=False), multi=multi, tradeoff=settings.tradeoff)
    if not ranked:
        errors = frame["error"].drop_nulls()
        hint = f"; first error: {errors[0]}" if errors.len() else ""
        raise UsageError(f"no trial completed ({summary.finished} finished: {summary.reason}){hint}")
    best = ranked[0]
    spec = outputs.best_spec(raw, best, target=target)
    text = outputs.best_yaml(spec, best, metric=problem.metric, study_name=name)
    shown = {
        "study": name,
        "storage": settings.storage or "(in memory)",
        **problem.describe(),
        "rows without a target (not used)": problem.rows_without_target,
        "objectives": ",".join(objectives),
        "strategy": settings.strategy.name,
        "trials": f"{summary.finished} finished, {summary.ran} in this run ({summary.reason})",
        "phase 2 (TPE) from trial": study.user_attrs.get(strategy.SWITCH_ATTR, "-"),
        "constraints": space.constraints.limits() or "none",
        "best trial": best.number,
    }
    return Result(
        study=study,
        problem=problem,
        space=space,
        summary=summary,
        trials=frame,
        best=best,
        best_spec=spec,
        best_text=text,
        settings=shown,
    )


def write_outputs(result: Result, out_dir: PathLike, *, multi: bool) -> dict[str, Path]:
    """Write ``best.yaml``, ``trials.parquet`` and ``report.html`` into ``out_dir``, all or none."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"best": out / "best.yaml", "trials": out / "trials.parquet", "report": out / "report.html"}
    report = outputs.report_html(
        result.study,
        result.trials,
        settings=result.settings,
        best_text=result.best_text,
        metric=result.problem.metric,
        multi=multi,
        seed=result.problem.seed,
    )
    io.write_frames({paths["trials"]: result.trials}, {paths["best"]: result.best_text, paths["report"]: report})
    return paths


def optimize(
    spec_path: PathLike,
    input_path: PathLike,
    *,
    out_dir: PathLike = "optimize-out",
    settings: Settings | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
) -> Result:
    """Read the spec and the input, optimize, write the outputs; returns the result with ``paths``."""
    settings = settings or Settings()
    raw = read_yaml(spec_path)
    check_spec(raw, source=str(spec_path))
    df = io.read(input_path)
    result = run_study(raw, df, settings, source=str(spec_path), on_trial=on_trial)
    paths = write_outputs(result, out_dir, multi=len(parse_objectives(settings.objectives)) > 1)
    return Result(**{**result.__dict__, "paths": paths})
