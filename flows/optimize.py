"""The ``optimize`` flow: re-optimize a spec's plan on fresh data and publish ``best.yaml``.

A scheduled deployment of this flow re-runs ``prepflow optimize`` (same engine, same outputs:
``best.yaml``, ``trials.parquet``, ``report.html`` in ``out``) and publishes the chosen plan
as a markdown artifact (key ``prepflow-<name>-best-plan``), the top trials as a table
artifact and a link to the HTML report. With a ``storage`` URL the study is resumed: a run
that was cut off goes on where it stopped, and ``trials`` is the budget of the whole study.

.. code-block:: python

    from flows.optimize import optimize

    summary = optimize("credit.yaml", "credit.csv", out="out/optimize", target="default", trials=200)

The optimization is one task (the study is resumable by itself, so it is not retried);
publishing is another. Both hand on paths and small dicts, never frames.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import artifact_key
from pipelines.optimize import Settings, Strategy
from pipelines.optimize import optimize as run_optimize
from pipelines.optimize.outputs import plan_summary


def summarize(result: Any, *, top: int = 10) -> dict[str, Any]:
    """The small, JSON-friendly summary of an optimization that the flow returns."""
    frame = result.trials
    ranked = frame.filter(frame["rank"].is_not_null()).sort("rank").head(top)
    return {
        "name": result.best_spec.get("name"),
        "study": result.settings.get("study"),
        "metric": result.problem.metric,
        "best_trial": result.best.number,
        "best_score": float(result.best.values[0]),
        "stopped_by": result.summary.reason,
        "trials": {s: int(n) for s, n in frame["state"].value_counts().iter_rows()},
        "best_yaml": result.best_text,
        "paths": {k: str(v) for k, v in result.paths.items()},
        "top": [
            {
                "rank": r["rank"],
                "trial": r["number"],
                "score": r["score"],
                "seconds_per_fold": r["seconds"],
                "rows_dropped": r["rows_dropped"],
                "feasible": r["feasible"],
                "plan": plan_summary(json.loads(r["steps"])),
            }
            for r in ranked.iter_rows(named=True)
        ],
    }


def best_plan_markdown(summary: dict[str, Any]) -> str:
    """The markdown artifact: the chosen plan as YAML, with its score."""
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary["trials"].items()))
    return (
        f"# Best plan: {summary['study']}\n\n"
        f"Trial {summary['best_trial']}, {summary['metric']} {summary['best_score']:.5f} "
        f"(cross-validated); {counts}; stopped by {summary['stopped_by']}.\n\n"
        f"```yaml\n{summary['best_yaml']}```\n"
    )


@task(name="optimize plan", cache_policy=NO_CACHE, persist_result=False)
def run_optimization(spec: str, input: str, out: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Run the study (resuming it from ``settings['storage']`` if set) and write the outputs."""
    logger = get_run_logger()
    strategy = Strategy(**settings.pop("strategy", {}))
    result = run_optimize(spec, input, out_dir=out, settings=Settings(**settings, strategy=strategy))
    summary = summarize(result)
    logger.info(
        "study %s: best trial %s, %s %.5f; stopped by %s",
        summary["study"],
        summary["best_trial"],
        summary["metric"],
        summary["best_score"],
        summary["stopped_by"],
    )
    return summary


@task(name="publish best plan", cache_policy=NO_CACHE, persist_result=False)
def publish(summary: dict[str, Any], *, name: str | None) -> list[str]:
    """Artifacts: best.yaml (markdown), the top trials (table), the HTML report (link)."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    keys = [artifact_key(name, "best-plan"), artifact_key(name, "trials"), artifact_key(name, "optimize-report")]
    create_markdown_artifact(markdown=best_plan_markdown(summary), key=keys[0], description="prepflow optimize")
    create_table_artifact(table=summary["top"], key=keys[1], description="Top trials of the study")
    report = Path(summary["paths"]["report"]).resolve()
    create_link_artifact(link=report.as_uri(), link_text=str(report), key=keys[2], description="Optimization report")
    return keys


@flow(name="prepflow-optimize", log_prints=False)
def optimize(
    spec: str,
    input: str,
    out: str = "optimize-out",
    target: str | None = None,
    task: str | None = None,
    model: str | None = None,
    metric: str | None = None,
    trials: int = 100,
    timeout: float | None = None,
    jobs: int = 1,
    storage: str | None = None,
    study_name: str | None = None,
    objectives: str = "score",
    seed: int = 0,
    folds: int = 5,
    strategy: str = "hybrid",
) -> dict[str, Any]:
    """Optimize SPEC's ``search:`` block on INPUT, write the outputs to OUT, publish the best plan."""
    settings = {
        "target": target,
        "task": task,
        "model": model,
        "metric": metric,
        "trials": trials,
        "timeout": timeout,
        "jobs": jobs,
        "storage": storage,
        "study_name": study_name,
        "objectives": tuple(objectives.split(",")),
        "seed": seed,
        "folds": folds,
        "strategy": {"name": strategy},
    }
    summary = run_optimization(spec, input, out, settings)
    summary["artifacts"] = publish(summary, name=summary["name"])
    return summary


if __name__ == "__main__":
    optimize.serve(name="prepflow-optimize")
