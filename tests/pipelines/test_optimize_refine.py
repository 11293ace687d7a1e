"""The hybrid's local refinement and its evaluation budget (``pipelines.optimize.refine``/``strategy``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
import polars as pl
import pytest

from pipelines.optimize import Strategy, parse_search
from pipelines.optimize import strategy as strategies
from pipelines.optimize.objective import REPEAT_ATTR, Evaluation, FoldResult, Objective, make_problem
from pipelines.optimize.refine import Refiner, complete, moves, neighbours
from pipelines.optimize.space import Choice, FloatRange, IntRange

FOUR_PLANS = {
    "search": {
        "steps": [
            {"kind": "impute", "method": {"choice": ["mean", "median"]}},
            {"kind": "scale", "method": {"choice": ["standard", "robust"]}},
        ]
    }
}


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)


@pytest.fixture
def problem() -> Any:
    rng = np.random.default_rng(3)
    a = rng.normal(size=80)
    return make_problem(pl.DataFrame({"a": a, "label": (a > 0).astype(np.int64)}), "label", folds=2)


def test_moves_of_each_domain() -> None:
    assert moves(Choice(("a", "b", "c")), "b") == ["a", "c"]
    assert moves(Choice((True, 1)), True) == [1]  # True and 1 are different choices
    assert moves(FloatRange(0.0, 8.0), 4.0) == [3.0, 5.0]
    assert moves(FloatRange(0.0, 8.0), 0.0) == [1.0]  # clamped, and never the value itself
    assert moves(FloatRange(1.0, 256.0, log=True), 16.0) == pytest.approx([8.0, 32.0])
    assert moves(IntRange(1, 17), 9) == [7, 11]
    assert moves(IntRange(1, 3), 1) == [2]


def test_neighbours_change_one_parameter_and_fill_what_a_move_brings_in() -> None:
    space = parse_search(
        {
            "search": {
                "steps": [
                    {
                        "kind": "outliers",
                        "optional": True,
                        "method": {"choice": ["iqr", "zscore"]},
                        "k": {"float": [1.0, 3.0]},
                        "threshold": {"choice": [3.0, 4.0]},
                    }
                ]
            }
        }
    )
    here = {"outliers.use": True, "outliers.method": "iqr", "outliers.k": 2.0}
    got = neighbours(space, here, fill=lambda name, d: 4.0 if name == "outliers.threshold" else d.values[0])
    assert {"outliers.use": False} in got
    assert {"outliers.use": True, "outliers.method": "zscore", "outliers.threshold": 4.0} in got  # filled
    assert {"outliers.use": True, "outliers.method": "iqr", "outliers.k": 1.75} in got
    assert {"outliers.use": True, "outliers.method": "iqr", "outliers.k": 2.25} in got
    assert len(got) == 4
    # completing a partial set: the step's method and range take the defaults (first choice, middle)
    expected = {"outliers.use": True, "outliers.method": "iqr", "outliers.k": 2.0}
    assert complete(space, {"outliers.use": True}) == expected


def _scored(study: optuna.Study, params: dict[str, Any], value: float, **attrs: Any) -> None:
    study.enqueue_trial(params)
    trial = study.ask()
    trial.set_user_attr("steps", parse_search(FOUR_PLANS).sample(trial))
    for k, v in attrs.items():
        trial.set_user_attr(k, v)
    study.tell(trial, value)


def test_the_refiner_enqueues_an_unseen_neighbour_of_the_best_plan_after_a_repeat() -> None:
    space = parse_search(FOUR_PLANS)
    study = optuna.create_study(direction="maximize")
    best = {"impute.method": "mean", "scale.method": "standard"}
    _scored(study, best, 0.9)
    _scored(study, {"impute.method": "median", "scale.method": "standard"}, 0.5)
    refiner = Refiner(space, rank=strategies.rank_key, repeat_attr=REPEAT_ATTR, seed=0)
    refiner(study, study.trials[-1])  # not a repeat: nothing to do
    assert refiner.enqueued == 0
    _scored(study, best, 0.9, repeat_of=0)
    refiner(study, study.trials[-1])
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    # the best plan's neighbours: median/standard (scored) and mean/robust (unseen)
    assert [t.system_attrs["fixed_params"] for t in waiting] == [{"impute.method": "mean", "scale.method": "robust"}]
    # the waiting trial counts as seen: the next unseen plan comes from the second best plan's neighbours
    assert refiner.next_params(study) == {"impute.method": "median", "scale.method": "robust"}


def _fake(scores: dict[str, float], calls: list[str]) -> Any:
    def evaluator(problem: Any, steps: Any, **_kw: Any) -> Evaluation:
        key = "/".join(s.method for s in steps)
        calls.append(key)
        fold = FoldResult(score=scores[key], seconds=0.0, rows=10, rows_dropped=0)
        return Evaluation((fold, fold))

    return evaluator


SCORES = {"mean/standard": 0.6, "mean/robust": 0.7, "median/standard": 0.8, "median/robust": 0.9}


def test_the_budget_counts_evaluations_and_refinement_covers_a_small_space(problem: Any) -> None:
    """Repeats cost no evaluation; with the refinement every plan of a 4-plan space is scored in 4."""
    space = parse_search(FOUR_PLANS)
    for seed in range(5):
        calls: list[str] = []
        study = optuna.create_study(direction="maximize")
        objective = Objective(problem, space, prune=False, evaluator=_fake(SCORES, calls))
        summary = strategies.run(
            study, objective, strategy=Strategy(global_share=0.25, switch_patience=1), n_trials=4, seed=seed
        )
        assert summary.reason == "trials" and summary.finished == 4
        assert sorted(calls) == sorted(SCORES)  # each plan once, the best one included
        assert study.best_value == 0.9
        repeats = [t for t in study.trials if REPEAT_ATTR in t.user_attrs]
        assert len(study.trials) == 4 + len(repeats)


def test_a_sampler_that_only_repeats_ends_the_run_as_exhausted(problem: Any) -> None:
    """More evaluations asked than plans exist: the run stops at MAX_PROPOSED times the budget."""
    space = parse_search(FOUR_PLANS)
    calls: list[str] = []
    study = optuna.create_study(direction="maximize")
    objective = Objective(problem, space, prune=False, evaluator=_fake(SCORES, calls))
    summary = strategies.run(study, objective, strategy=Strategy(name="tpe", prune=False), n_trials=6, seed=0)
    assert summary.reason == "exhausted" and summary.finished == 4 == len(calls)
    assert len(study.trials) == strategies.MAX_PROPOSED * 6


def test_trials_frame_marks_refined_trials_and_leaves_waiting_ones_out() -> None:
    from pipelines.optimize.outputs import trials_frame

    study = optuna.create_study(direction="maximize")
    _scored(study, {"impute.method": "mean", "scale.method": "standard"}, 0.9)
    _scored(study, {"impute.method": "mean", "scale.method": "robust"}, 0.8, refined=True)
    study.enqueue_trial({"impute.method": "median", "scale.method": "robust"}, user_attrs={"refined": True})
    frame = trials_frame(study)
    assert frame["number"].to_list() == [0, 1]  # the waiting neighbour is not a trial yet
    assert frame["refined"].to_list() == [False, True]
