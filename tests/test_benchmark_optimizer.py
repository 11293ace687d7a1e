"""The optimizer benchmark's own bookkeeping: the evaluation cache, what counts, the medians."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import polars as pl
import pytest

from benchmarks import optimizer as bench
from pipelines.optimize.objective import REPEAT_ATTR, CandidateError, build_steps, make_problem


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def test_median_counts_a_miss_as_the_slowest_run() -> None:
    assert bench._median([1, 3, None]) == "3"
    assert bench._median([2, 4]) == "3"
    assert bench._median([None, 5, None]) == "not"  # most runs never got there
    assert bench._median([None, 4]) == "not"  # the upper middle run is a miss


def test_history_leaves_repeats_and_waiting_trials_out() -> None:
    study = optuna.create_study(direction="maximize")
    for value, attrs in ((0.5, {}), (0.9, {}), (0.9, {REPEAT_ATTR: 1}), (0.7, {})):
        trial = study.ask()
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        study.tell(trial, value)
    pruned = study.ask()
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    study.enqueue_trial({})
    assert bench.study_history(study) == [0.5, 0.9, 0.7, None]
    assert bench.trials_to_reach(bench.study_history(study), 0.7) == 2


def test_the_cache_is_kept_on_disk_and_replayed_without_fitting(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=60)
    problem = make_problem(pl.DataFrame({"a": a, "y": (a > 0).astype(np.int64)}), "y", folds=2)
    steps = build_steps([{"kind": "scale", "method": "standard"}])
    broken = build_steps([{"kind": "scale", "method": "log"}])  # values <= -1: the fit fails
    path = tmp_path / "d_folds2.json"
    first = bench.Cache(path)
    scored = first(problem, steps)
    with pytest.raises(CandidateError):
        first(problem, broken)
    assert first.computed == 3  # two folds, then the broken plan's first fold
    first.save()
    again = bench.Cache(path)
    assert again(problem, steps) == scored
    with pytest.raises(CandidateError, match="log"):
        again(problem, broken)
    assert again.computed == 0


def test_the_report_states_the_target_as_the_median_run_and_as_every_run() -> None:
    def row(name: str, hybrid: list[int | None]) -> dict[str, object]:
        runs = {"best": [0.9] * len(hybrid), "to_98": hybrid, "pruned": [0], "repeats": [0], "refined": [0]}
        return {
            "dataset": name,
            "metric": "f1",
            "rows": 10,
            "default": 0.5,
            "grid_best": 0.95,
            "grid_size": 50,
            "budget": 10,
            "hybrid": runs,
        }

    text = bench.report([row("a", [3, 9, None]), row("b", [10, 4, 12])])  # within 20 % of 50: <= 10
    assert "| a | 50 | 10 | - | - | 9, 2 of 3 |" in text
    assert "| b | 50 | 10 | - | - | 10, 2 of 3 |" in text
    assert "(median over seeds, every dataset): MET" in text
    assert "in every single run: NOT MET (4 of 6 runs)" in text
    text = bench.report([row("a", [3, None, None])])
    assert "| a | 50 | 10 | - | - | not, 1 of 3 |" in text and "every dataset): NOT MET" in text
