"""The ``prepflow optimize`` command: :func:`register` adds it to the CLI's Typer app.

The heavy imports (Optuna, plotly, scikit-learn) happen when the command runs, so that
``prepflow --help`` and the other commands stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    """Add the ``optimize`` command to ``app``."""
    app.command("optimize")(optimize)


def optimize(
    spec: Annotated[Path, typer.Argument(help="Spec (YAML) with a search: block (and optional constraints:).")],
    input: Annotated[Path, typer.Option("--input", "-i", help="Training data (.csv, .parquet, .arrow, .ndjson).")],
    target: Annotated[str | None, typer.Option("--target", help="Label column (default: the spec's target).")] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="classification or regression (default: from the target's dtype).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="logistic, ridge, random_forest, hist_gradient_boosting or module:Class "
            "(default: logistic for classification, ridge for regression).",
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric",
            help="A scikit-learn scorer (roc_auc, f1, accuracy, r2, neg_rmse, ...); "
            "default roc_auc (roc_auc_ovr for several classes) or r2.",
        ),
    ] = None,
    trials: Annotated[
        int,
        typer.Option(
            "--trials",
            help="Evaluation budget of the whole study: plans cross-validated, pruned ones included. A plan "
            "the study already scored is served from it and not counted (at most 3x this many trials in all).",
        ),
    ] = 100,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Stop starting trials after S seconds.")] = None,
    jobs: Annotated[int, typer.Option("--jobs", help="Trials run in parallel (threads).")] = 1,
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="Optuna RDB storage URL (sqlite:///study.db): resumable, shareable."),
    ] = None,
    study_name: Annotated[
        str | None, typer.Option("--study-name", help="Study name in the storage (default: prepflow-<spec name>).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for best.yaml, trials.parquet, report.html.")] = Path(
        "optimize-out"
    ),
    objectives: Annotated[
        str, typer.Option("--objectives", help="score, or score,time for a Pareto front of score and time.")
    ] = "score",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the folds, the samplers and the models.")] = 0,
    folds: Annotated[int, typer.Option("--folds", help="Cross-validation folds.")] = 5,
    strategy: Annotated[
        str, typer.Option("--strategy", help="hybrid (global sampler, then TPE), tpe, random, qmc or nsga2.")
    ] = "hybrid",
    global_sampler: Annotated[
        str,
        typer.Option(
            "--global-sampler", help="Phase-1 sampler of the hybrid: auto (qmc; nsga2 for score,time), qmc or nsga2."
        ),
    ] = "auto",
    patience: Annotated[
        int | None,
        typer.Option(
            "--patience", help="Stop after this many evaluations without improvement (default: half the budget, >= 20)."
        ),
    ] = None,
    prune: Annotated[bool, typer.Option("--prune/--no-prune", help="Prune trials whose first folds score low.")] = True,
    tradeoff: Annotated[
        float,
        typer.Option("--tradeoff", help="score,time: the fastest Pareto plan within this share of the best score."),
    ] = 0.01,
    top: Annotated[int, typer.Option("--top", help="Rows of the console table of the best trials.")] = 10,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display or table.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks and Optuna's trial log.")] = False,
) -> None:
    """Search the steps and parameters of SPEC's search: block by cross-validation; write the best plan."""
    import optuna

    from pipelines.cli import _guard
    from pipelines.optimize import outputs
    from pipelines.optimize.runner import Settings
    from pipelines.optimize.runner import optimize as run
    from pipelines.optimize.strategy import Strategy

    out_console = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.ERROR)
    with _guard(verbose):
        settings = Settings(
            target=target,
            task=task,
            model=model,
            metric=metric,
            trials=trials,
            timeout=timeout,
            jobs=jobs,
            storage=storage,
            study_name=study_name,
            objectives=tuple(objectives.split(",")),
            seed=seed,
            folds=folds,
            strategy=Strategy(
                name=strategy,  # type: ignore[arg-type]
                global_sampler=global_sampler,  # type: ignore[arg-type]
                stop_patience=patience,
                prune=prune,
            ),
            tradeoff=tradeoff,
        )
        with _TrialProgress(err, trials, quiet) as on_trial:
            result = run(spec, input, out_dir=out, settings=settings, on_trial=on_trial)
    if quiet:
        return
    out_console.print(outputs.top_table(result.trials, metric=result.problem.metric, n=top, title="best trials"))
    states = result.trials["state"].value_counts().sort("state").iter_rows()
    repeats = result.trials["repeat_of"].is_not_null().sum()
    served = f"; {repeats} repeated plan(s) served from the study" if repeats else ""
    err.print(
        f"{result.summary.finished} evaluation(s), {result.trials.height} trial(s) "
        f"({', '.join(f'{n} {s.lower()}' for s, n in states)}{served}), "
        f"stopped by: {result.summary.reason}; best: trial {result.best.number}, "
        f"{result.problem.metric} {result.best.values[0]:.4f}",
        markup=False,
    )
    err.print(f"wrote {', '.join(str(p) for p in result.paths.values())}", markup=False)


class _TrialProgress:
    """A Rich progress bar over evaluations on a terminal; yields the per-trial callback (or None).

    A trial served from an earlier one with the same plan (``repeat_of``) is not an evaluation
    and does not advance the bar.
    """

    def __init__(self, console: Console, total: int, quiet: bool) -> None:
        self.console, self.total, self.quiet = console, total, quiet
        self.bar: Any = None

    def __enter__(self) -> Any:
        if self.quiet or not self.console.is_terminal:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("evaluations"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=self.console
        )
        self.bar.start()
        task = self.bar.add_task("trials", total=self.total)
        from pipelines.optimize.objective import REPEAT_ATTR

        return lambda trial: None if REPEAT_ATTR in trial.user_attrs else self.bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
