"""Scoring a candidate plan with leakage-free cross-validation, and the Optuna objective around it.

Every trial is scored on the same k folds (stratified for classification, shuffled with the
study's seed), so scores of different plans are comparable and a pruner can compare fold by
fold. In each fold:

1. the candidate :class:`~transforms.pipeline.Pipeline` is **fitted on the training fold only**;
2. the training fold is transformed in training mode (``train=True``): augmentation adds rows
   here and only here, and outlier ``drop`` steps remove rows here and only here;
3. the validation fold is transformed in serving mode (``train=False``: never augmented) by a
   variant of the fitted pipeline in which every ``drop`` step acts as ``null`` — **validation
   rows are never dropped**, so every plan is scored on the same rows. The values it nulls are
   refilled by the plan's next impute step; when no impute step follows, an ``impute/median``
   fitted on the training fold (after the drop) is inserted right after it;
4. the model is fitted on the transformed training fold and scored on the validation fold.

Features are the numeric and Boolean output columns (missing-value indicators and outlier flags
count); string, categorical and temporal columns are left out (add an ``encode`` step to use
them), and so are the target and the ``__augmented`` mark. Values the plan leaves missing or
infinite are filled with the training fold's median of that feature (0 for a feature with none),
as a model-side safety net that is not part of ``best.yaml``. Rows with a missing target are
not used.

The trial's measurements: the mean validation score, the fold scores, the seconds to fit and
apply the plan per fold (mean; the model is not counted), and the share of training-fold rows
that drop steps removed. A plan that fails on the data (a class with a single row for SMOTE,
say) is recorded as a failed trial with its error, and the study goes on.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import polars as pl
from sklearn.base import clone
from sklearn.metrics import get_scorer, get_scorer_names
from sklearn.model_selection import KFold, StratifiedKFold

from pipelines.errors import DataError, SpecError, UsageError
from pipelines.optimize.space import Plan, SearchSpace
from pipelines.spec import parse_step
from transforms.augment import MARK_COLUMN
from transforms.base import Step
from transforms.errors import PrepflowError, did_you_mean
from transforms.impute import SimpleImputer
from transforms.pipeline import FittedPipeline, Pipeline

TASKS = ("classification", "regression")
MODELS = ("logistic", "ridge", "random_forest", "hist_gradient_boosting")
#: short metric names accepted besides scikit-learn's scorer names
METRIC_ALIASES = {
    "neg_rmse": "neg_root_mean_squared_error",
    "neg_mse": "neg_mean_squared_error",
    "neg_mae": "neg_mean_absolute_error",
    "auc": "roc_auc",
}
#: binary-only scorers and their multiclass counterparts
MULTICLASS_METRICS = {
    "roc_auc": "roc_auc_ovr",
    "f1": "f1_macro",
    "precision": "precision_macro",
    "recall": "recall_macro",
    "jaccard": "jaccard_macro",
}
#: an integer or string target with at most this many classes is a classification target
MAX_CLASSES = 20


class CandidateError(Exception):
    """A candidate plan failed on the data; its trial is recorded as failed."""


# -- the problem: data, folds, model, metric -----------------------------------------------


@dataclass(frozen=True)
class Problem:
    """What every trial is scored on: data, target, folds, model and metric."""

    data: pl.DataFrame
    target: str
    task: str
    metric: str
    model_name: str
    model: Any
    scorer: Any
    folds: tuple[tuple[np.ndarray, np.ndarray], ...]
    seed: int = 0
    rows_without_target: int = 0

    @property
    def n_folds(self) -> int:
        return len(self.folds)

    def describe(self) -> dict[str, Any]:
        """Plain settings (the study's fingerprint includes them)."""
        return {
            "target": self.target,
            "task": self.task,
            "metric": self.metric,
            "model": self.model_name,
            "folds": self.n_folds,
            "seed": self.seed,
            "rows": self.data.height,
        }


def infer_task(target: pl.Series) -> str:
    """``regression`` for float targets and integer targets with many values, else ``classification``."""
    dtype = target.dtype
    if dtype.is_float():
        return "regression"
    if dtype.is_integer() and target.n_unique() > MAX_CLASSES:
        return "regression"
    return "classification"


def make_model(name: str, task: str, seed: int = 0) -> Any:
    """A scikit-learn estimator by short name, or ``module:Class`` (built with no arguments)."""
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise UsageError(f"--model {name}: cannot import {attr} from {module}: {exc}") from exc
        if not isinstance(cls, type) or not hasattr(cls, "fit"):
            raise UsageError(f"--model {name}: {attr} is not an estimator class (a class with fit)")
        model = cls()
        if hasattr(model, "get_params") and "random_state" in model.get_params():
            model.set_params(random_state=seed)
        return model
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier

    classification = task == "classification"
    if name == "logistic":
        if not classification:
            raise UsageError("--model logistic is a classifier; for regression use ridge, random_forest, ...")
        return LogisticRegression(max_iter=2000)
    if name == "ridge":
        return RidgeClassifier() if classification else Ridge()
    if name == "random_forest":
        cls = RandomForestClassifier if classification else RandomForestRegressor
        return cls(n_estimators=200, random_state=seed, n_jobs=1)
    if name == "hist_gradient_boosting":
        cls = HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor
        return cls(random_state=seed)
    raise UsageError(
        f"--model: unknown model '{name}'{did_you_mean(name, MODELS)}; known: {', '.join(MODELS)}, or module:Class"
    )


def resolve_metric(metric: str | None, task: str, n_classes: int) -> str:
    """The scikit-learn scorer name: defaults, aliases, and multiclass counterparts."""
    if metric is None:
        if task == "regression":
            return "r2"
        return "roc_auc" if n_classes <= 2 else "roc_auc_ovr"
    name = METRIC_ALIASES.get(metric, metric)
    if task == "classification" and n_classes > 2:
        name = MULTICLASS_METRICS.get(name, name)
    known = sorted(get_scorer_names())
    if name not in known:
        raise UsageError(f"--metric: unknown metric '{metric}'{did_you_mean(metric, [*known, *METRIC_ALIASES])}")
    return name


def make_problem(
    df: pl.DataFrame,
    target: str,
    *,
    task: str | None = None,
    model: str | None = None,
    metric: str | None = None,
    folds: int = 5,
    seed: int = 0,
) -> Problem:
    """Check the settings against the data and build the folds."""
    if target not in df.columns:
        raise UsageError(f"--target: column '{target}' is not in the input{did_you_mean(target, df.columns)}")
    if task is not None and task not in TASKS:
        raise UsageError(f"--task: unknown task '{task}'; known: {', '.join(TASKS)}")
    if folds < 2:
        raise UsageError(f"--folds: cross-validation needs at least 2 folds, got {folds}")
    missing = df[target].is_null() | (df[target].is_nan() if df[target].dtype.is_float() else False)
    data = df.filter(~missing)
    y = data[target]
    task = task or infer_task(y)
    n_classes = y.n_unique() if task == "classification" else 0
    if task == "classification":
        if n_classes < 2:
            raise DataError(f"target '{target}' has {n_classes} class(es); classification needs two or more")
        smallest = int(y.value_counts()["count"].min())
        if smallest < folds:
            raise DataError(
                f"the smallest class of '{target}' has {smallest} row(s), fewer than --folds {folds}; "
                "use fewer folds or more data"
            )
        splitter: Any = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        if data.height < 2 * folds:
            raise DataError(f"{data.height} row(s) with a target is too few for {folds} folds")
        splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    labels = y.to_numpy()
    splits = tuple((np.asarray(tr), np.asarray(va)) for tr, va in splitter.split(np.zeros((data.height, 1)), labels))
    metric_name = resolve_metric(metric, task, n_classes)
    model_name = model or ("logistic" if task == "classification" else "ridge")
    return Problem(
        data=data,
        target=target,
        task=task,
        metric=metric_name,
        model_name=model_name,
        model=make_model(model_name, task, seed),
        scorer=get_scorer(metric_name),
        folds=splits,
        seed=seed,
        rows_without_target=df.height - data.height,
    )


def check_space(space: SearchSpace, schema: pl.Schema, target: str, *, source: str = "<spec>") -> None:
    """Dry-run every method of every search step against the data's schema, before any trial.

    Catches what only the data can tell: a column that is not there or not numeric, an
    augmentation step on a target that holds no classes. The schema is carried from step to
    step through each step's declared output schema (the first method's; optional steps
    included), until a step whose output columns depend on the data (one-hot).
    """
    current = schema
    for s in space.steps:
        after: pl.Schema | None = None
        for m in s.methods:
            values = {p.key: p.domain.corners()[0] for p in s.params[m]}
            where = f"{source}: search.steps[{s.index}]"
            step = parse_step({"kind": s.kind, "method": m, **values}, where=where)
            try:
                plan = step.plan(current, target)
            except PrepflowError as exc:
                raise SpecError(f"{where} ({s.kind}/{m}): {exc}") from exc
            after = plan.output_schema if m == s.methods[0] else after
        if after is None:
            return
        current = after


# -- scoring a plan ------------------------------------------------------------------------


@dataclass(frozen=True)
class FoldResult:
    """One fold: validation score, seconds to fit and apply the plan, training rows in and dropped."""

    score: float
    seconds: float
    rows: int
    rows_dropped: int


@dataclass(frozen=True)
class Evaluation:
    """The folds scored so far."""

    folds: tuple[FoldResult, ...]

    @property
    def scores(self) -> list[float]:
        return [f.score for f in self.folds]

    @property
    def score(self) -> float:
        """Mean validation score."""
        return float(np.mean(self.scores))

    @property
    def seconds(self) -> float:
        """Mean seconds per fold to fit the plan and transform both folds."""
        return float(np.mean([f.seconds for f in self.folds]))

    @property
    def rows_dropped(self) -> float:
        """Share of training-fold rows removed by drop steps."""
        rows = sum(f.rows for f in self.folds)
        return sum(f.rows_dropped for f in self.folds) / rows if rows else 0.0


def build_steps(plan: Plan, *, where: str = "plan") -> list[Step]:
    """Validated steps from a plan's plain step mappings."""
    return [parse_step(d, where=f"{where}: steps[{i}]") for i, d in enumerate(plan)]


def evaluate(
    problem: Problem, steps: Sequence[Step], *, on_fold: Callable[[Evaluation], None] | None = None
) -> Evaluation:
    """Cross-validate ``steps`` on ``problem``; ``on_fold`` sees the result after each fold (and may raise)."""
    done: list[FoldResult] = []
    for train_idx, valid_idx in problem.folds:
        done.append(run_fold(problem, steps, train_idx, valid_idx))
        if on_fold is not None:
            on_fold(Evaluation(tuple(done)))
    return Evaluation(tuple(done))


def run_fold(problem: Problem, steps: Sequence[Step], train_idx: np.ndarray, valid_idx: np.ndarray) -> FoldResult:
    """Fit on the training fold, transform both folds, fit the model and score it on the validation fold."""
    train, valid = problem.data[train_idx], problem.data[valid_idx]
    target = problem.target
    try:
        started = time.perf_counter()
        fitted = Pipeline(steps, target=target).fit(train)
        out_train, dropped, serving = _train_and_serving(fitted, train)
        out_valid = serving.transform(valid, train=False)
        seconds = time.perf_counter() - started
    except (PrepflowError, pl.exceptions.PolarsError, ValueError, ArithmeticError) as exc:
        raise CandidateError(f"the plan failed on a training fold: {_first_line(exc)}") from exc
    if out_valid.height != valid.height:
        raise RuntimeError(f"validation rows changed from {valid.height} to {out_valid.height} (a bug in prepflow)")
    X_tr, y_tr, X_va, y_va = features(out_train, out_valid, target)
    try:
        model = clone(problem.model).fit(X_tr, y_tr)
        score = float(problem.scorer(model, X_va, y_va))
    except (ValueError, ArithmeticError) as exc:
        raise CandidateError(f"the model failed on the plan's output: {_first_line(exc)}") from exc
    if not math.isfinite(score):
        raise CandidateError(f"the {problem.metric} score is {score}")
    return FoldResult(score=score, seconds=seconds, rows=train.height, rows_dropped=dropped)


def _train_and_serving(fitted: FittedPipeline, train: pl.DataFrame) -> tuple[pl.DataFrame, int, FittedPipeline]:
    """The transformed training fold, the rows drop steps removed, and the no-drop serving variant.

    In the variant each ``drop`` step acts as ``null``; when no impute step follows it, an
    ``impute/median`` fitted on the training fold right after the drop is inserted after it.
    """
    stages = fitted.stages(train.lazy(), train=True)
    drops = [i for i, f in enumerate(fitted.steps) if f.keep() is not None]
    frames = pl.collect_all([stages[-1], *(stages[i] for i in drops), *(stages[i + 1] for i in drops)])
    before, after = frames[1 : 1 + len(drops)], frames[1 + len(drops) :]
    dropped = sum(b.height - a.height for b, a in zip(before, after, strict=True))
    serving: list[Any] = []
    for i, f in enumerate(fitted.steps):
        if i not in drops:
            serving.append(f)
            continue
        if "action" not in type(f.step).model_fields:
            raise CandidateError(f"{f.step.label}: drops rows but has no 'action' to turn into null on validation data")
        serving.append(dataclasses.replace(f, step=f.step.model_copy(update={"action": "null"})))
        if not any(g.step.kind == "impute" for g in fitted.steps[i + 1 :]):
            serving.append(SimpleImputer(strategy="median", columns=list(f.columns)).fit(after[drops.index(i)]))
    return frames[0], dropped, dataclasses.replace(fitted, steps=tuple(serving))


def feature_columns(frame: pl.DataFrame, target: str) -> list[str]:
    """Numeric and Boolean columns, without the target and the augmentation mark."""
    return [
        c for c, t in frame.schema.items() if c not in (target, MARK_COLUMN) and (t.is_numeric() or t == pl.Boolean)
    ]


def features(
    out_train: pl.DataFrame, out_valid: pl.DataFrame, target: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Model matrices; missing and infinite values filled with the training fold's medians."""
    names = feature_columns(out_train, target)
    lacking = [c for c in names if c not in out_valid.columns]
    if lacking:
        raise CandidateError(f"the validation output lacks column(s) {', '.join(lacking)}")
    if not names:
        raise CandidateError("the plan's output has no numeric or Boolean feature column")

    def matrix(frame: pl.DataFrame) -> np.ndarray:
        X = frame.select(pl.col(names).cast(pl.Float64)).to_numpy().astype(np.float64)
        return np.where(np.isfinite(X), X, np.nan)

    X_tr, X_va = matrix(out_train), matrix(out_valid)
    counts = np.sum(~np.isnan(X_tr), axis=0)
    medians = np.zeros(X_tr.shape[1])
    if X_tr.shape[0]:
        with np.errstate(all="ignore"):
            sorted_ = np.sort(X_tr, axis=0)  # NaN sort last
        for j, n in enumerate(counts):
            if n:
                col = sorted_[:n, j]
                medians[j] = (col[(n - 1) // 2] + col[n // 2]) / 2
    X_tr = np.where(np.isnan(X_tr), medians, X_tr)
    X_va = np.where(np.isnan(X_va), medians, X_va)
    return X_tr, out_train[target].to_numpy(), X_va, out_valid[target].to_numpy()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- the Optuna objective ------------------------------------------------------------------

#: whether this Optuna records constraints from the objective (Trial.set_constraint, Optuna >= 5)
SET_CONSTRAINT = hasattr(optuna.trial.Trial, "set_constraint")
#: user attribute of a trial served from an earlier trial with the same plan (its number)
REPEAT_ATTR = "repeat_of"


def constraints_of(trial: optuna.trial.FrozenTrial) -> list[float]:
    """A trial's constraint values (<= 0: satisfied) as the objective recorded them."""
    return [float(v) for v in (trial.user_attrs.get("constraints") or {}).values()]


def feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """All constraints satisfied (a study without constraints: always)."""
    return all(v <= 0 for v in constraints_of(trial))


class Objective:
    """The Optuna objective: sample a plan, cross-validate it, record the measurements.

    Returns the mean score (single objective) or ``(score, seconds)``. With ``prune`` it reports
    the running mean score after each fold but the last, and stops trials the pruner finds
    clearly worse (pruning needs a single objective). ``phase`` is written to each trial.
    ``evaluator`` replaces :func:`evaluate` (the benchmark serves repeated plans from a cache).

    **Repeated plans.** In a space of choices the samplers often propose a plan the study has
    already scored (TPE keeps returning to its best region). Such a trial (same parameters as
    a complete trial of the study) is not cross-validated again: it takes the earlier trial's
    values and measurements and records ``repeat_of`` (``reuse=False`` turns this off). It is
    not an evaluation: it counts neither toward ``--trials`` nor the patience windows (see
    :mod:`pipelines.optimize.strategy`). Pruned and failed plans are evaluated again.
    """

    def __init__(
        self,
        problem: Problem,
        space: SearchSpace,
        *,
        objectives: Sequence[str] = ("score",),
        prune: bool = True,
        evaluator: Callable[..., Evaluation] | None = None,
        reuse: bool = True,
    ) -> None:
        self.problem = problem
        self.space = space
        self.objectives = tuple(objectives)
        self.prune = prune and len(self.objectives) == 1
        self.evaluator = evaluator or evaluate
        self.reuse = reuse
        self.phase = ""

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        started = time.perf_counter()
        trial.set_user_attr("phase", self.phase)
        plan = self.space.sample(trial)
        trial.set_user_attr("steps", plan)
        earlier = self._earlier(trial) if self.reuse else None
        if earlier is not None:
            return self._repeat(trial, earlier, started)
        try:
            steps = build_steps(plan, where=f"trial {trial.number}")
        except SpecError as exc:
            trial.set_user_attr("error", str(exc))
            raise CandidateError(str(exc)) from exc

        def on_fold(ev: Evaluation) -> None:
            k = len(ev.folds)
            if not self.prune or k >= self.problem.n_folds:
                return
            trial.report(ev.score, step=k - 1)
            if trial.should_prune():
                self._record(trial, ev, started)
                raise optuna.TrialPruned(f"mean score {ev.score:.4g} after {k} fold(s)")

        try:
            ev = self.evaluator(self.problem, steps, on_fold=on_fold)
        except CandidateError as exc:
            trial.set_user_attr("error", str(exc))
            raise
        self._record(trial, ev, started)
        values = {"score": ev.score, "time": ev.seconds}
        out = tuple(values[o] for o in self.objectives)
        return out[0] if len(out) == 1 else out

    def _earlier(self, trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
        """The first complete trial of the study with the same parameters (the same plan), if any."""
        params = trial.params
        done = trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        same = [t for t in done if t.number != trial.number and t.params == params and t.values]
        return min(same, key=lambda t: t.number) if same else None

    def _repeat(
        self, trial: optuna.Trial, earlier: optuna.trial.FrozenTrial, started: float
    ) -> float | tuple[float, ...]:
        """Serve a repeated plan from the earlier trial that scored it."""
        for key in ("fold_scores", "seconds", "rows_dropped", "constraints"):
            if key in earlier.user_attrs:
                trial.set_user_attr(key, earlier.user_attrs[key])
        trial.set_user_attr("seconds_trial", time.perf_counter() - started)
        trial.set_user_attr(REPEAT_ATTR, earlier.number)
        if SET_CONSTRAINT:
            for key, value in (earlier.user_attrs.get("constraints") or {}).items():
                trial.set_constraint(key, value)
        values = tuple(float(v) for v in earlier.values)
        return values[0] if len(values) == 1 else values

    def _record(self, trial: optuna.Trial, ev: Evaluation, started: float) -> None:
        trial.set_user_attr("fold_scores", ev.scores)
        trial.set_user_attr("seconds", ev.seconds)
        trial.set_user_attr("rows_dropped", ev.rows_dropped)
        trial.set_user_attr("seconds_trial", time.perf_counter() - started)
        constraints = self.space.constraints.values(rows_dropped=ev.rows_dropped, seconds=ev.seconds)
        trial.set_user_attr("constraints", constraints)
        if SET_CONSTRAINT:
            for key, value in constraints.items():
                trial.set_constraint(key, value)


def config_fingerprint(
    problem: Problem, space: SearchSpace, data: pl.DataFrame, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """What a resumed study must share with the one it continues (plain JSON)."""
    schema = {c: str(t) for c, t in data.schema.items()}
    digest = int(data.hash_rows(seed=0).cast(pl.UInt64).sum() or 0) % (2**61 - 1) if data.height else 0
    return {
        **problem.describe(),
        "search": space.raw,
        "constraints": space.constraints.limits(),
        "data": {"rows": data.height, "schema": schema, "hash": digest},
        **extra,
    }
