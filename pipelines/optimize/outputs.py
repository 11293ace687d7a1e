"""What an optimization writes: ``best.yaml``, ``trials.parquet``, ``report.html``, and the console table.

**Ranking.** Only complete trials are ranked (pruned and failed ones are kept in
``trials.parquet`` with an empty rank). Feasible trials (every constraint met) come first, by
mean score (ties: faster, then earlier); infeasible trials follow, by total constraint
violation and then score, so they are kept but never chosen while a feasible trial exists.
A trial that repeated an earlier trial's plan (served from it, not re-scored: its ``repeat_of``
column names the earlier trial) ties with it and ranks after it.

**Several objectives** (``--objectives score,time``): the Pareto front is taken over the
feasible complete trials (higher score, fewer seconds per fold). The chosen trade-off is the
*fastest front trial whose score is within* ``tradeoff`` *of the best score* (default 1 %:
``score >= best - 0.01 * |best|``); it is ranked first, the rest of the front follows by score,
then the other trials as above.

``best.yaml`` is the spec without ``search:`` and ``constraints:``, with ``steps`` replaced by
the chosen plan: a plain spec for ``prepflow run``. ``report.html`` holds Optuna's plotly
figures (optimization history, the Pareto front with several objectives, parameter importances
by fANOVA over the parameters every complete trial has), with plotly.js inline: the file works
offline.
"""

from __future__ import annotations

import html
import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
import polars as pl
import yaml
from optuna.trial import FrozenTrial, TrialState
from rich.table import Table

from pipelines.optimize.objective import REPEAT_ATTR, SET_CONSTRAINT, constraints_of, feasible

PARAM_PREFIX = "param:"
CONSTRAINT_PREFIX = "constraint:"


# -- ranking ---------------------------------------------------------------------------------


def _violation(t: FrozenTrial) -> float:
    return sum(v for v in constraints_of(t) if v > 0)


def _seconds(t: FrozenTrial) -> float:
    return float(t.user_attrs.get("seconds", float("inf")))


def pareto_front(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Complete feasible trials that no other one beats on both score (higher) and seconds (lower)."""
    pool = [t for t in trials if t.state == TrialState.COMPLETE and feasible(t)]
    front = []
    for t in pool:
        s, sec = t.values[0], _seconds(t)
        dominated = any(
            (o.values[0] >= s and _seconds(o) <= sec) and (o.values[0] > s or _seconds(o) < sec) for o in pool
        )
        if not dominated:
            front.append(t)
    return sorted(front, key=lambda t: (-t.values[0], _seconds(t)))


def choose_tradeoff(front: Sequence[FrozenTrial], tradeoff: float) -> FrozenTrial | None:
    """The fastest front trial whose score is within ``tradeoff`` (relative) of the best score."""
    if not front:
        return None
    best = max(t.values[0] for t in front)
    near = [t for t in front if t.values[0] >= best - tradeoff * abs(best)]
    return min(near, key=lambda t: (_seconds(t), -t.values[0], t.number))


def rank_trials(trials: Sequence[FrozenTrial], *, multi: bool = False, tradeoff: float = 0.01) -> list[FrozenTrial]:
    """Complete trials, best first (see the module docstring)."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]

    def key(t: FrozenTrial) -> tuple[Any, ...]:
        v = _violation(t)
        return (v > 0, v, -t.values[0], _seconds(t), t.number)

    ranked = sorted(complete, key=key)
    if not multi:
        return ranked
    front = pareto_front(complete)
    chosen = choose_tradeoff(front, tradeoff)
    head = ([chosen] if chosen else []) + [t for t in front if t is not chosen]
    ids = {t.number for t in head}
    return head + [t for t in ranked if t.number not in ids]


# -- trials.parquet --------------------------------------------------------------------------


def _column(values: list[Any]) -> pl.Series:
    """A typed column for one parameter (mixed types become strings)."""
    present = [v for v in values if v is not None]
    kinds = {type(v) for v in present}
    if kinds <= {bool}:
        return pl.Series(values, dtype=pl.Boolean)
    if kinds <= {int}:
        return pl.Series(values, dtype=pl.Int64)
    if kinds <= {int, float}:
        return pl.Series([None if v is None else float(v) for v in values], dtype=pl.Float64)
    return pl.Series(
        [None if v is None else (v if isinstance(v, str) else json.dumps(v)) for v in values], dtype=pl.String
    )


def trials_frame(study: optuna.Study, *, multi: bool = False, tradeoff: float = 0.01) -> pl.DataFrame:
    """Every trial: state, phase, rank, scores, timings, constraints, parameters and the plan.

    Trials still waiting (a neighbour the local refinement enqueued when the run stopped) are
    left out; a resumed run evaluates them first.
    """
    trials = sorted(
        (t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING), key=lambda t: t.number
    )
    ranked = rank_trials(trials, multi=multi, tradeoff=tradeoff)
    rank = {t.number: i + 1 for i, t in enumerate(ranked)}
    front = {t.number for t in pareto_front(trials)} if multi else set()
    names = list(dict.fromkeys(p for t in trials for p in t.params))
    limits = list(dict.fromkeys(k for t in trials for k in (t.user_attrs.get("constraints") or {})))
    rows: dict[str, list[Any]] = {
        "number": [t.number for t in trials],
        "state": [t.state.name for t in trials],
        "phase": [t.user_attrs.get("phase") for t in trials],
        "rank": [rank.get(t.number) for t in trials],
        "feasible": [feasible(t) if t.state == TrialState.COMPLETE else None for t in trials],
        "score": [float(t.values[0]) if t.values else None for t in trials],
        "fold_scores": [list(t.user_attrs.get("fold_scores", [])) for t in trials],
        "seconds": [t.user_attrs.get("seconds") for t in trials],
        "seconds_trial": [t.user_attrs.get("seconds_trial") for t in trials],
        "rows_dropped": [t.user_attrs.get("rows_dropped") for t in trials],
        "error": [t.user_attrs.get("error") for t in trials],
        "repeat_of": [t.user_attrs.get(REPEAT_ATTR) for t in trials],
        "refined": [bool(t.user_attrs.get("refined", False)) for t in trials],
        "steps": [json.dumps(t.user_attrs["steps"]) if "steps" in t.user_attrs else None for t in trials],
        "started": [t.datetime_start for t in trials],
        "duration_s": [t.duration.total_seconds() if t.duration else None for t in trials],
    }
    schema: dict[str, pl.DataType] = {
        "number": pl.Int64(),
        "state": pl.String(),
        "phase": pl.String(),
        "rank": pl.Int64(),
        "feasible": pl.Boolean(),
        "score": pl.Float64(),
        "fold_scores": pl.List(pl.Float64()),
        "seconds": pl.Float64(),
        "seconds_trial": pl.Float64(),
        "rows_dropped": pl.Float64(),
        "error": pl.String(),
        "repeat_of": pl.Int64(),
        "refined": pl.Boolean(),
        "steps": pl.String(),
        "started": pl.Datetime("us"),
        "duration_s": pl.Float64(),
    }
    frame = pl.DataFrame(rows, schema=schema)
    extra = []
    if multi:
        extra.append(pl.Series("pareto", [t.number in front for t in trials], dtype=pl.Boolean))
    for k in limits:
        extra.append(
            pl.Series(
                f"{CONSTRAINT_PREFIX}{k}",
                [(t.user_attrs.get("constraints") or {}).get(k) for t in trials],
                dtype=pl.Float64,
            )
        )
    extra += [_column([t.params.get(n) for t in trials]).alias(f"{PARAM_PREFIX}{n}") for n in names]
    return frame.with_columns(extra) if extra else frame


# -- best.yaml -------------------------------------------------------------------------------


def best_spec(raw: Mapping[str, Any], trial: FrozenTrial, *, target: str | None) -> dict[str, Any]:
    """The plain spec of ``trial``'s plan: ``raw`` without search/constraints, steps replaced."""
    spec = {k: v for k, v in raw.items() if k not in ("search", "constraints", "steps")}
    if target is not None:
        spec["target"] = target
    spec["steps"] = [dict(s) for s in trial.user_attrs["steps"]]
    order = ["name", "description", "target", "input", "output", "steps"]
    return {k: spec[k] for k in order if k in spec} | {k: v for k, v in spec.items() if k not in order}


def best_yaml(spec: Mapping[str, Any], trial: FrozenTrial, *, metric: str, study_name: str) -> str:
    """``best.yaml``: a comment naming where it came from, then the plain spec."""
    scores = trial.user_attrs.get("fold_scores", [])
    head = (
        f"# Written by `prepflow optimize` (study {study_name!r}, trial {trial.number}).\n"
        f"# Cross-validated {metric}: {trial.values[0]:.6g} over {len(scores)} folds "
        f"({', '.join(f'{s:.4g}' for s in scores)}); "
        f"{trial.user_attrs.get('seconds', float('nan')):.3g} s per fold to fit and apply; "
        f"{100 * trial.user_attrs.get('rows_dropped', 0.0):.2f} % of training rows dropped.\n"
    )
    return head + yaml.safe_dump(dict(spec), sort_keys=False, default_flow_style=None, width=120)


# -- console table ---------------------------------------------------------------------------


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def plan_summary(steps: Sequence[Mapping[str, Any]]) -> str:
    """``impute/median(add_indicator=yes) -> scale/robust`` for a plan."""
    parts = []
    for s in steps:
        params = ", ".join(f"{k}={_short(v)}" for k, v in s.items() if k not in ("kind", "method"))
        parts.append(f"{s['kind']}/{s['method']}" + (f"({params})" if params else ""))
    return " -> ".join(parts) if parts else "(no step)"


def top_table(frame: pl.DataFrame, *, metric: str, n: int = 10, title: str = "top trials") -> Table:
    """A Rich table of the ``n`` best-ranked trials."""
    table = Table(title=title, title_justify="left")
    for col in ("rank", "trial", metric, "± folds", "s/fold", "dropped", "feasible", "phase", "plan"):
        table.add_column(col, justify="left" if col in ("phase", "plan") else "right", overflow="fold")
    top = frame.filter(pl.col("rank").is_not_null()).sort("rank").head(n)
    for r in top.iter_rows(named=True):
        folds = r["fold_scores"] or []
        spread = (max(folds) - min(folds)) / 2 if folds else 0.0
        table.add_row(
            str(r["rank"]),
            str(r["number"]),
            f"{r['score']:.4f}",
            f"{spread:.4f}",
            f"{r['seconds']:.3f}" if r["seconds"] is not None else "",
            f"{100 * r['rows_dropped']:.1f}%" if r["rows_dropped"] is not None else "",
            "yes" if r["feasible"] else "no",
            r["phase"] or "",
            plan_summary(json.loads(r["steps"])) if r["steps"] else "",
        )
    return table


# -- report.html -----------------------------------------------------------------------------


def _figures(study: optuna.Study, *, metric: str, multi: bool, seed: int) -> list[tuple[str, Any, str]]:
    """(title, figure or None, note) for each section of the report."""
    import optuna.visualization as vis
    from optuna.importance import FanovaImportanceEvaluator

    target = (lambda t: t.values[0]) if multi else None
    out: list[tuple[str, Any, str]] = []
    sections: list[tuple[str, Any]] = [
        ("Optimization history", lambda: vis.plot_optimization_history(study, target=target, target_name=metric))
    ]
    if multi:
        kwargs: dict[str, Any] = {} if SET_CONSTRAINT else {"constraints_func": constraints_of}
        sections.append(
            ("Pareto front", lambda: vis.plot_pareto_front(study, target_names=[metric, "seconds per fold"], **kwargs))
        )
    sections.append(
        (
            "Parameter importances",
            lambda: vis.plot_param_importances(
                study, evaluator=FanovaImportanceEvaluator(seed=seed), target=target, target_name=metric
            ),
        )
    )
    for title, make in sections:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.append((title, make(), ""))
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            out.append((title, None, f"not available: {exc}"))
    return out


def report_html(
    study: optuna.Study,
    frame: pl.DataFrame,
    *,
    settings: Mapping[str, Any],
    best_text: str,
    metric: str,
    multi: bool,
    seed: int = 0,
) -> str:
    """A self-contained HTML report (plotly.js inline, no CDN)."""
    esc = html.escape
    rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in settings.items())
    counts = frame.group_by("state").len().sort("state").iter_rows()
    states = ", ".join(f"{n} {s.lower()}" for s, n in counts)
    top = frame.filter(pl.col("rank").is_not_null()).sort("rank").head(20)
    head = "<tr>" + "".join(
        f"<th>{c}</th>" for c in ("rank", "trial", "score", "s/fold", "dropped", "feasible", "plan")
    )
    head += "</tr>"
    body = "".join(
        f"<tr><td>{r['rank']}</td><td>{r['number']}</td><td>{r['score']:.5f}</td>"
        f"<td>{(r['seconds'] or 0):.3f}</td><td>{100 * (r['rows_dropped'] or 0):.1f}%</td>"
        f"<td>{'yes' if r['feasible'] else 'no'}</td><td>{esc(plan_summary(json.loads(r['steps'])))}</td></tr>"
        for r in top.iter_rows(named=True)
    )
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>prepflow optimize: {esc(str(settings.get('study', '')))}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}pre{background:#f6f6f6;padding:1em}</style>",
        "</head><body>",
        f"<h1>prepflow optimize: {esc(str(settings.get('study', '')))}</h1>",
        f"<p>{frame.height} trials: {esc(states)}.</p>",
        f"<table>{rows}</table>",
        "<h2>Chosen plan (best.yaml)</h2>",
        f"<pre>{esc(best_text)}</pre>",
        "<h2>Top trials</h2>",
        f"<table>{head}{body}</table>",
    ]
    inline = True
    for title, fig, note in _figures(study, metric=metric, multi=multi, seed=seed):
        parts.append(f"<h2>{esc(title)}</h2>")
        if fig is None:
            parts.append(f"<p>{esc(note)}</p>")
            continue
        parts.append(fig.to_html(full_html=False, include_plotlyjs=inline))
        inline = False
    if inline:  # no figure at all: nothing needs plotly.js
        parts.append("<p>No figure could be drawn.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
