"""Benchmark of the plan optimizer: default plan, random search, pure TPE, hybrid, exhaustive grid.

Datasets: scikit-learn's bundled ``breast_cancer`` (its ten ``mean_*`` features), ``wine`` and
``diabetes`` (``load_*``, no download) with injected corruption — MCAR missingness (5 % of every
feature), value-dependent missingness (the top fifth of three features goes missing with
probability 0.6), gross outliers (1.5 % of cells moved 10-30 standard deviations) and, for
classification, class imbalance (the smallest class cut to a quarter; in a binary task it is the
positive class) — plus ``data_samples/clinic.csv`` as shipped (it is flawed on purpose:
missing values, unit mix-ups, 10 % positives).

The search space is a discretised ``search:`` block (every parameter a small choice), so that
the exhaustive grid (Optuna's ``BruteForceSampler``) can enumerate it; random search
(``RandomSampler``), pure TPE (``TPESampler``) and the hybrid strategy as shipped (Sobol QMC,
then multivariate TPE warm-started from it, with pruning and patience: see
``pipelines.optimize.strategy``) search the same space with a budget of 20 % of the grid's
size, for several seeds. Every strategy scores plans with the same leakage-free 3-fold
CV (``pipelines.optimize.objective``), on the same folds, so a plan has one score whoever
samples it: each (plan, fold) is computed once and served from a cache after that (the grid
computes them all first). The hybrid also runs once on the continuous space (ranges instead of
choices, the way ``prepflow optimize`` is used) with real evaluations.

Reported per dataset: the CV score of the default plan (median impute + standard scale), the
grid's best, the best score each strategy reaches within its budget, the number of
*evaluations* each strategy needs to reach 98 % of the grid's best (median over seeds, a miss
counting as the slowest) and in how many runs it gets there within 20 % of the grid's size.
An evaluation is a trial that cross-validated a plan (complete, pruned after some folds, or
failed); a trial the objective served from an earlier trial with the same plan
(``repeat_of``) is not one, for any strategy (the budget of ``pipelines.optimize.strategy.run``
counts evaluations the same way). The hybrid's pruned trials, served repeats and local moves
per run are reported too.

Run (about 15 minutes on an idle 2-core machine; each dataset's grid is most of it)::

    .venv/bin/python benchmarks/optimizer.py             # all datasets, 5 seeds
    .venv/bin/python benchmarks/optimizer.py --quick     # wine only, 2 seeds
    .venv/bin/python benchmarks/optimizer.py --cache .benchmarks_cache/optimizer --seeds 100
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import polars as pl
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from pipelines.optimize import Strategy, parse_search
from pipelines.optimize import strategy as strategies
from pipelines.optimize.objective import (
    REPEAT_ATTR,
    CandidateError,
    Evaluation,
    FoldResult,
    Objective,
    Problem,
    build_steps,
    evaluate,
    make_problem,
    run_fold,
)
from pipelines.optimize.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
FOLDS = 3
SHARE = 0.2  # budget of the searches, as a share of the grid's size
TARGET = 0.98  # "reaching" = a complete trial scoring >= 98 % of the grid's best
DEFAULT_PLAN = [{"kind": "impute", "method": "median"}, {"kind": "scale", "method": "standard"}]


def search_block(classification: bool, *, continuous: bool) -> dict[str, Any]:
    """The search space: choices (the grid's discretisation) or ranges (``continuous``)."""

    def rng(lo: float, hi: float, points: list[float]) -> dict[str, Any]:
        return {"float": [lo, hi]} if continuous else {"choice": points}

    steps: list[dict[str, Any]] = [
        {
            "kind": "impute",
            "method": {"choice": ["median", "knn"]},
            "add_indicator": {"choice": [False, True]},
            "max_fit_rows": 1000,
        },
        {
            "kind": "outliers",
            "optional": True,
            "method": {"choice": ["iqr", "zscore"]},
            "k": rng(1.0, 4.0, [1.5, 3.0]),
            "threshold": rng(2.0, 5.0, [3.0]),
            "action": {"choice": ["clip", "drop"]},
        },
        {"kind": "scale", "method": {"choice": ["standard", "robust"]}},
    ]
    if classification:
        steps.append(
            {
                "kind": "augment",
                "optional": True,
                "method": {"choice": ["oversample", "smote"]},
                "ratio": rng(0.3, 1.0, [1.0]),
                "seed": 7,
            }
        )
    return {"search": {"steps": steps}}


# -- data ------------------------------------------------------------------------------------


def corrupt(df: pl.DataFrame, target: str, *, classification: bool, seed: int = 0) -> pl.DataFrame:
    """MCAR and value-dependent missingness, gross outliers, and class imbalance (classification)."""
    rng = np.random.default_rng(seed)
    if classification:
        smallest = df[target].value_counts().sort("count", target)[target][0]
        keep = (df[target] != smallest).to_numpy() | (rng.random(df.height) < 0.25)
        df = df.filter(pl.Series(keep))
        if df[target].n_unique() == 2:  # the rare class is the positive one (f1 scores it)
            df = df.with_columns((pl.col(target) == smallest).cast(pl.Int64).alias(target))
    features = [c for c in df.columns if c != target]
    X = df.select(features).to_numpy().astype(np.float64)
    n, p = X.shape
    std = np.nanstd(X, axis=0)
    for j in rng.choice(p, min(3, p), replace=False):  # value-dependent: high values go missing
        high = X[:, j] > np.quantile(X[:, j], 0.8)
        X[high & (rng.random(n) < 0.6), j] = np.nan
    cells = rng.random((n, p)) < 0.015  # gross outliers
    X[cells] = (np.nanmean(X, axis=0) + rng.choice([-1.0, 1.0], (n, p)) * rng.uniform(10, 30, (n, p)) * std)[cells]
    X[rng.random((n, p)) < 0.05] = np.nan  # MCAR
    out = pl.DataFrame({c: X[:, j] for j, c in enumerate(features)}).with_columns(df[target])
    return out.with_columns(pl.col(features).fill_nan(None))


def load(name: str) -> tuple[pl.DataFrame, str, str, str]:
    """(frame, target, task, metric) of a benchmark dataset."""
    if name == "clinic":
        df = pl.read_csv(ROOT / "data_samples" / "clinic.csv").drop("patient_id")
        return df, "malignant", "classification", "f1"
    loader, task, metric = {
        "breast_cancer": (datasets.load_breast_cancer, "classification", "f1"),
        "wine": (datasets.load_wine, "classification", "balanced_accuracy"),
        "diabetes": (datasets.load_diabetes, "regression", "r2"),
    }[name]
    bunch = loader()
    names = [str(f).replace(" ", "_").replace("(", "").replace(")", "").replace("/", "_") for f in bunch.feature_names]
    df = pl.DataFrame(bunch.data, schema=names).with_columns(pl.Series("y", bunch.target))
    if name == "breast_cancer":  # the ten "mean ..." features keep the grid affordable
        df = df.select([c for c in names if c.startswith("mean_")] + ["y"])
    return corrupt(df, "y", classification=task == "classification"), "y", task, metric


# -- evaluation cache ------------------------------------------------------------------------


class Cache:
    """Each (plan, fold) is computed once; later trials of any strategy are served from here.

    With ``path`` the results are kept in a JSON file (one per dataset), so a later run of the
    benchmark (more seeds, another strategy) replays the searches without cross-validating
    again. A failed fold is kept as its error message and raised again as ``CandidateError``.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.folds: dict[tuple[str, int], FoldResult | str] = {}
        self.computed = 0
        if path is not None and path.is_file():
            for key, k, got in json.loads(path.read_text()):
                self.folds[(key, k)] = got if isinstance(got, str) else FoldResult(**got)

    def save(self) -> None:
        if self.path is None:
            return
        rows = [
            [key, k, got if isinstance(got, str) else dataclasses.asdict(got)] for (key, k), got in self.folds.items()
        ]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows))
        tmp.replace(self.path)

    def __call__(
        self, problem: Problem, steps: Any, *, on_fold: Callable[[Evaluation], None] | None = None
    ) -> Evaluation:
        key = repr(list(steps))
        done: list[FoldResult] = []
        for k, (tr, va) in enumerate(problem.folds):
            if (key, k) not in self.folds:
                self.computed += 1
                try:
                    self.folds[(key, k)] = run_fold(problem, steps, tr, va)
                except Exception as exc:
                    self.folds[(key, k)] = f"{type(exc).__name__}: {exc}"
            got = self.folds[(key, k)]
            if isinstance(got, str):
                raise CandidateError(got)
            done.append(got)
            if on_fold is not None:
                on_fold(Evaluation(tuple(done)))
        return Evaluation(tuple(done))


def study_history(study: optuna.Study) -> list[float | None]:
    """Per evaluation in order: the score of a complete trial, None for pruned or failed ones.

    Trials served from an earlier trial with the same plan (``repeat_of``) are not evaluations
    and are left out; a repeat never reaches a score first, so counts are unaffected otherwise.
    """
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    return [
        t.values[0] if t.state == optuna.trial.TrialState.COMPLETE else None
        for t in trials
        if REPEAT_ATTR not in t.user_attrs and t.state != optuna.trial.TrialState.WAITING
    ]


def trials_to_reach(history: list[float | None], threshold: float) -> int | None:
    for i, s in enumerate(history, start=1):
        if s is not None and s >= threshold:
            return i
    return None


def run_search(
    problem: Problem, space: SearchSpace, name: str, seed: int, budget: int, evaluator: Any
) -> tuple[list[float | None], dict[str, int]]:
    """One strategy run (random and TPE: plain Optuna, no pruning; the hybrid as shipped).

    Returns the history (evaluations only) and how many trials were pruned, repeats served from
    the study, and neighbours enqueued by the local refinement.
    """
    plan = Strategy(name="hybrid") if name == "hybrid" else Strategy(name=name, prune=False)  # type: ignore[arg-type]
    study = optuna.create_study(direction="maximize", pruner=strategies.make_pruner(plan, 1))
    objective = Objective(problem, space, prune=plan.prune, evaluator=evaluator)
    strategies.run(study, objective, strategy=plan, n_trials=budget, seed=seed)
    trials = study.get_trials(deepcopy=False)
    counts = {
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
        "repeats": sum(REPEAT_ATTR in t.user_attrs for t in trials),
        "refined": sum(bool(t.user_attrs.get("refined")) and t.state.is_finished() for t in trials),
    }
    return study_history(study), counts


def run_grid(problem: Problem, space: SearchSpace, evaluator: Any) -> list[float | None]:
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.BruteForceSampler(seed=0), pruner=optuna.pruners.NopPruner()
    )
    objective = Objective(problem, space, prune=False, evaluator=evaluator)
    study.optimize(objective, n_trials=100_000, catch=(Exception,))
    return study_history(study)


# -- main ------------------------------------------------------------------------------------


def best(history: list[float | None]) -> float:
    scores = [s for s in history if s is not None]
    return max(scores) if scores else float("nan")


def bench(
    name: str,
    seeds: list[int],
    *,
    continuous: bool = True,
    cache_dir: Path | None = None,
    strategies_run: tuple[str, ...] = ("random", "tpe", "hybrid"),
) -> dict[str, Any]:
    started = time.perf_counter()
    df, target, task, metric = load(name)
    problem = make_problem(df, target, task=task, metric=metric, folds=FOLDS, seed=0)
    classification = task == "classification"
    space = parse_search(search_block(classification, continuous=False))
    cache = Cache(None if cache_dir is None else cache_dir / f"{name}_folds{FOLDS}.json")
    default = evaluate(problem, build_steps(DEFAULT_PLAN)).score
    grid = run_grid(problem, space, cache)
    cache.save()
    grid_best = best(grid)
    budget = math.ceil(SHARE * len(grid))
    threshold = TARGET * grid_best if grid_best > 0 else grid_best / TARGET
    row: dict[str, Any] = {
        "dataset": name,
        "rows": problem.data.height,
        "metric": metric,
        "default": default,
        "grid_best": grid_best,
        "grid_size": len(grid),
        "budget": budget,
    }
    for strat in strategies_run:
        runs = [run_search(problem, space, strat, seed, budget, cache) for seed in seeds]
        row[strat] = {
            "best": [best(h) for h, _ in runs],
            "to_98": [trials_to_reach(h, threshold) for h, _ in runs],
            "trials": [len(h) for h, _ in runs],
            **{k: [r[k] for _, r in runs] for k in ("pruned", "repeats", "refined")},
        }
    if continuous:
        real = parse_search(search_block(classification, continuous=True))
        counter = Cache()
        h, _ = run_search(problem, real, "hybrid", seeds[0], budget, counter)
        row["hybrid_continuous"] = {
            "best": best(h),
            "to_98": trials_to_reach(h, threshold),
            "trials": len(h),
            "fold_fits": counter.computed,
        }
    row["seconds"] = time.perf_counter() - started
    return row


def _median(values: list[int | None]) -> str:
    """Median over every seed, a run that never got there counting as the slowest ("not")."""
    ordered = sorted(values, key=lambda v: math.inf if v is None else v)
    lower, upper = ordered[(len(ordered) - 1) // 2], ordered[len(ordered) // 2]
    if lower is None or upper is None:
        return "not"
    return f"{(lower + upper) / 2:g}"


def report(rows: list[dict[str, Any]]) -> str:
    lines = [
        "CV score reached (mean over seeds; hybrid-cont: one run on the continuous space)",
        "",
        "| dataset | metric | rows | default plan | grid best (grid size) | random | TPE | hybrid | hybrid-cont |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cont = r.get("hybrid_continuous", {}).get("best", float("nan"))
        lines.append(
            f"| {r['dataset']} | {r['metric']} | {r['rows']} | {r['default']:.4f} | {r['grid_best']:.4f} "
            f"({r['grid_size']}) | {_mean_best(r, 'random')} | {_mean_best(r, 'tpe')} | "
            f"{_mean_best(r, 'hybrid')} | {cont:.4f} |"
        )
    lines += [
        "",
        "Evaluations to reach 98 % of the grid's best: median over seeds (a run that never got there counts",
        "as the slowest), and the runs that got there within the budget (20 % of the grid); repeats served",
        "from the study are not evaluations",
        "",
        "| dataset | grid size | budget | random | TPE | hybrid | hybrid-cont "
        "| hybrid per run: pruned / repeats served / refinement moves (median) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    met = runs = 0
    for r in rows:
        cont = r.get("hybrid_continuous", {})
        ok = _reached(r, "hybrid")
        met, runs = met + ok, runs + len(r["hybrid"]["to_98"])
        cells = [f"{_median(r[s]['to_98'])}, {_hits(r, s)}" if s in r else "-" for s in ("random", "tpe", "hybrid")]
        counts = " / ".join(
            f"{statistics.median(r['hybrid'].get(k) or [0]):g}" for k in ("pruned", "repeats", "refined")
        )
        lines.append(
            f"| {r['dataset']} | {r['grid_size']} | {r['budget']} | {' | '.join(cells)} | "
            f"{cont.get('to_98', '-') or 'not'} | {counts} |"
        )
    beats = all(min(r["hybrid"]["best"]) > r["default"] for r in rows)
    typical = all(2 * _reached(r, "hybrid") > len(r["hybrid"]["to_98"]) for r in rows)
    lines += [
        "",
        f"target: hybrid beats the default plan on every dataset and seed: {'MET' if beats else 'NOT MET'}",
        f"target: hybrid reaches 98 % of the grid's best within 20 % of the grid's evaluations "
        f"(median over seeds, every dataset): {'MET' if typical else 'NOT MET'}",
        f"        in every single run: {'MET' if met == runs else 'NOT MET'} ({met} of {runs} runs)",
    ]
    return "\n".join(lines)


def _mean_best(row: dict[str, Any], strategy: str) -> str:
    return f"{np.mean(row[strategy]['best']):.4f}" if strategy in row else "-"


def _reached(row: dict[str, Any], strategy: str) -> int:
    """Runs of ``strategy`` that reached 98 % of the grid's best within the budget."""
    return sum(_within(v, row) for v in row[strategy]["to_98"])


def _hits(row: dict[str, Any], strategy: str) -> str:
    return f"{_reached(row, strategy)} of {len(row[strategy]['to_98'])}"


def _within(to_98: int | None, row: dict[str, Any]) -> bool:
    return to_98 is not None and to_98 <= SHARE * row["grid_size"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="breast_cancer,wine,diabetes,clinic")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="wine only, 2 seeds")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--cache",
        type=Path,
        help="keep every (plan, fold) result in DIR/<dataset>_folds3.json and reuse it: a rerun replays "
        "the searches without cross-validating again (delete DIR after changing the scoring code)",
    )
    parser.add_argument(
        "--strategies", default="random,tpe,hybrid", help="searches to compare (the hybrid is always run)"
    )
    parser.add_argument("--report", type=Path, help="print the tables of an earlier run's --json file, run nothing")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run: first-seed .. first-seed + seeds - 1")
    parser.add_argument("--no-continuous", action="store_true", help="skip the hybrid run on the continuous space")
    args = parser.parse_args()
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return
    names = ["wine"] if args.quick else args.datasets.split(",")
    if "clinic" in names and not (ROOT / "data_samples" / "clinic.csv").is_file():
        names.remove("clinic")
    seeds = list(range(args.first_seed, args.first_seed + (2 if args.quick else args.seeds)))
    chosen = tuple(dict.fromkeys([*args.strategies.split(","), "hybrid"]))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rows = []
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        for name in names:
            row = bench(name, seeds, continuous=not args.no_continuous, cache_dir=args.cache, strategies_run=chosen)
            print(f"{name}: {row['seconds']:.0f} s", flush=True)
            rows.append(row)
    print(report(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
