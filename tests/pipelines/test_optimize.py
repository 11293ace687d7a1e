"""The plan optimizer: search-block validation, leakage-free CV, outputs, resume, constraints.

Budgets are tiny (a few trials, 2-3 folds, a couple of hundred rows, cheap steps) so the
whole file runs in seconds.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import polars as pl
import pytest
import yaml

from pipelines import commands
from pipelines.errors import SpecError, UsageError
from pipelines.optimize import Settings, Strategy, optimize, parse_search, run_study
from pipelines.optimize.objective import build_steps, evaluate, make_problem
from pipelines.optimize.space import refill_nulls
from transforms.pipeline import FittedPipeline, Pipeline

SEARCH: dict[str, Any] = {
    "steps": [
        {"kind": "impute", "method": {"choice": ["mean", "median"]}, "add_indicator": {"choice": [True, False]}},
        {
            "kind": "outliers",
            "optional": True,
            "method": {"choice": ["iqr", "zscore"]},
            "k": {"float": [1.0, 4.0]},
            "threshold": {"float": [2.0, 5.0]},
            "action": {"choice": ["clip", "drop", None]},
        },
        {"kind": "scale", "method": {"choice": ["standard", "robust"]}},
        {"kind": "augment", "optional": True, "method": "oversample", "ratio": {"float": [0.5, 1.0]}},
    ]
}


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)


@pytest.fixture
def data() -> pl.DataFrame:
    """160 rows: two informative features with missing values and gross outliers, a string column."""
    rng = np.random.default_rng(7)
    n = 160
    a, b = rng.normal(0, 1, n), rng.normal(0, 1, n)
    label = (a + 0.7 * b + rng.normal(0, 0.8, n) > 0.6).astype(np.int64)
    a[rng.random(n) < 0.1] = np.nan
    b[[3, 40, 77]] = [40.0, -35.0, 60.0]
    return pl.DataFrame(
        {"id": np.arange(n), "a": a, "b": b, "city": rng.choice(["x", "y"], n).tolist(), "label": label}
    ).with_columns(pl.col("a").fill_nan(None))


@pytest.fixture
def work(tmp_path: Path, data: pl.DataFrame) -> Path:
    data.write_parquet(tmp_path / "in.parquet")
    spec = {"name": "demo", "target": "label", "search": SEARCH}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return tmp_path


def _settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {"trials": 4, "folds": 2, "strategy": Strategy(switch_patience=2)}
    return Settings(**{**base, **kw})


# -- the search block --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ({"stepz": []}, "unknown key 'search.stepz' (did you mean 'steps'?)"),
        ({"steps": []}, "'search.steps' must be a non-empty list"),
        ({"steps": [{"kind": "scael", "method": "standard"}]}, "search.steps[0].kind: unknown step kind 'scael'"),
        ({"steps": [{"kind": "scale", "method": {"choice": ["standrad"]}}]}, "did you mean 'standard'?"),
        (
            {"steps": [{"kind": "outliers", "method": "iqr", "treshold": 3}]},
            "search.steps[0] (outliers).treshold: no method of this step (iqr) has a parameter 'treshold'",
        ),
        (
            {"steps": [{"kind": "outliers", "method": "iqr", "action": {"choice": ["clip", "delete"]}}]},
            "search.steps[0] (outliers).action: 'delete' is not valid for any of iqr",
        ),
        (
            {"steps": [{"kind": "outliers", "method": "isolation_forest", "action": {"choice": ["clip"]}}]},
            "(outliers).action: 'clip' is not valid for any of isolation_forest",
        ),
        (
            {"steps": [{"kind": "outliers", "method": "iqr", "k": {"float": [-1.0, 2.0]}}]},
            "(outliers).k: the range end -1.0 is not valid for method 'iqr'",
        ),
        (
            {"steps": [{"kind": "outliers", "method": "iqr", "k": {"float": [2.0, 1.0]}}]},
            "(outliers).k: the range [2.0, 1.0] must have low <= high",
        ),
        (
            {"steps": [{"kind": "outliers", "method": "iqr", "k": {"float": [1.0, 2.0], "log": True, "step": 0.5}}]},
            "give 'log' or 'step', not both",
        ),
        (
            {"steps": [{"kind": "outliers", "method": "iqr", "k": {"float": [0.0, 2.0], "log": True}}]},
            "a log float range needs low > 0",
        ),
        (
            {"steps": [{"kind": "scale", "method": "standard", "with_mean": {"choise": [True, False]}}]},
            "unknown domain key 'choise' (did you mean 'choice'?)",
        ),
        (
            {"steps": [{"kind": "impute", "method": "mean", "strategy": "median"}]},
            "(impute).strategy: 'strategy' is set by the method (mean)",
        ),
        (
            {
                "steps": [
                    {
                        "kind": "outliers",
                        "method": "percentile",
                        "lower": {"float": [0.0, 0.6]},
                        "upper": {"float": [0.5, 1.0]},
                    }
                ]
            },
            "(outliers/percentile): the parameters can be invalid together (lower=0.6, upper=0.5)",
        ),
        (
            {"steps": [{"kind": "outliers", "method": {"choice": ["iqr"]}, "by_method": {"zscore": {"threshold": 2}}}]},
            "by_method.zscore: 'zscore' is not one of this step's methods",
        ),
        ({"steps": [{"kind": "scale", "method": "standard", "optional": "yes"}]}, ".optional: must be true or false"),
    ],
)
def test_search_block_errors_name_the_key(search: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_search({"search": search}, source="s.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("s.yaml: ")


def test_constraints_block_is_validated() -> None:
    with pytest.raises(SpecError, match=r"'constraints.max_rows_droped' \(did you mean 'max_rows_dropped'\?\)"):
        parse_search({"search": SEARCH, "constraints": {"max_rows_droped": 0.1}})
    with pytest.raises(SpecError, match=r"max_rows_dropped' is a share of rows in \[0, 1\]"):
        parse_search({"search": SEARCH, "constraints": {"max_rows_dropped": 5}})


def test_conditional_parameters_and_filtered_choices() -> None:
    space = parse_search(
        {
            "search": {
                "steps": [
                    {
                        "kind": "outliers",
                        "method": {"choice": ["iqr", "zscore", "mad", "isolation_forest"]},
                        "k": {"float": [1.0, 4.0]},
                        "threshold": {"float": [2.0, 5.0]},
                        "action": {"choice": ["clip", "drop", None]},
                        "by_method": {"mad": {"threshold": {"float": [2.5, 6.0]}}},
                    }
                ]
            }
        }
    )
    params = {m: {p.key: p for p in ps} for m, ps in space.steps[0].params.items()}
    assert set(params["iqr"]) == {"k", "action"}  # k is Tukey's fence factor: iqr only
    assert set(params["zscore"]) == {"threshold", "action"}
    assert params["mad"]["threshold"].domain.low == 2.5  # its own range, its own Optuna parameter
    assert params["mad"]["threshold"].name == "outliers.threshold@mad"
    assert params["isolation_forest"]["action"].domain.values == ("drop", "null")  # no clip; YAML null -> "null"
    assert params["isolation_forest"]["action"].name == "outliers.action@isolation_forest"
    assert params["iqr"]["action"].name == "outliers.action"
    # every sampled plan is made of valid steps
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(60):
        trial = study.ask()
        plan = space.sample(trial)
        build_steps(plan)
        study.tell(trial, 0.0)
        if plan[0]["method"] == "isolation_forest":
            assert plan[0]["action"] != "clip" and "k" not in plan[0]


def test_null_action_gets_a_refill_unless_an_impute_step_follows() -> None:
    plan = [
        {"kind": "outliers", "method": "iqr", "action": "null", "columns": ["a"]},
        {"kind": "scale", "method": "standard"},
    ]
    assert refill_nulls(plan)[1] == {"kind": "impute", "method": "median", "columns": ["a"]}
    assert refill_nulls([*plan, {"kind": "impute", "method": "mean"}]) == [*plan, {"kind": "impute", "method": "mean"}]


def test_params_for_maps_a_plain_plan_into_the_space() -> None:
    space = parse_search({"search": SEARCH})
    params = space.params_for([{"kind": "impute", "method": "median"}, {"kind": "scale", "method": "standard"}])
    assert params == {
        "impute.method": "median",
        "impute.add_indicator": False,
        "outliers.use": False,
        "scale.method": "standard",
        "augment.use": False,
    }
    assert space.params_for([{"kind": "scale", "method": "standard"}]) is None  # impute is not optional
    assert space.params_for([{"kind": "impute", "method": "knn"}, {"kind": "scale", "method": "standard"}]) is None


# -- leakage-free cross-validation -----------------------------------------------------------


def _flipped_outliers(n: int = 240) -> pl.DataFrame:
    """x predicts the label perfectly, except on gross outliers whose label is the opposite."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, n)
    x = np.where(y == 1, 1.0, -1.0) * rng.uniform(0.5, 3.0, n)
    bad = rng.choice(n, n // 10, replace=False)
    x[bad] = np.where(y[bad] == 1, -1, 1) * rng.uniform(30, 40, bad.size)
    return pl.DataFrame({"x": x, "y": y})


def test_validation_rows_are_never_dropped_so_drop_cannot_inflate_the_score() -> None:
    """Dropping outliers from validation folds would remove exactly the hard rows (a target-dependent leak)."""
    df = _flipped_outliers()
    problem = make_problem(df, "y", metric="accuracy", folds=3)
    steps = build_steps([{"kind": "outliers", "method": "iqr", "action": "drop"}])
    ev = evaluate(problem, steps)
    assert ev.rows_dropped > 0.05
    # the leaky way: drop the validation fold's outliers too
    leaky = []
    for tr, va in problem.folds:
        fitted = Pipeline(steps, target="y").fit(df[tr])
        train, valid = fitted.transform(df[tr], train=True), fitted.transform(df[va])
        model = problem.model.fit(train.select("x").to_numpy(), train["y"].to_numpy())
        leaky.append(problem.scorer(model, valid.select("x").to_numpy(), valid["y"].to_numpy()))
    assert np.mean(leaky) > 0.99  # every hard row removed: a perfect, inflated score
    print(ev.score, np.mean(leaky))
    assert ev.score < 0.97  # all rows scored: the flipped outliers count
    assert ev.score > 0.85  # ...as imputed values (drop -> null -> training median), not as garbage


def test_each_fold_fits_on_its_training_rows_only(monkeypatch: pytest.MonkeyPatch, data: pl.DataFrame) -> None:
    problem = make_problem(data, "label", folds=3)
    fits: list[set[int]] = []
    serving: list[tuple[bool, set[int], int]] = []
    fit, transform = Pipeline.fit, FittedPipeline.transform

    def spy_fit(self: Pipeline, frame: Any, **kw: Any) -> Any:
        fits.append(set(frame["id"].to_list()))
        return fit(self, frame, **kw)

    def spy_transform(self: FittedPipeline, frame: Any, *, train: bool = False) -> Any:
        out = transform(self, frame, train=train)
        serving.append((train, set(frame["id"].to_list()), out.height))
        return out

    monkeypatch.setattr(Pipeline, "fit", spy_fit)
    monkeypatch.setattr(FittedPipeline, "transform", spy_transform)
    plan = [
        {"kind": "impute", "method": "median"},
        {"kind": "outliers", "method": "iqr", "action": "drop"},
        {"kind": "scale", "method": "standard"},
        {"kind": "augment", "method": "oversample", "ratio": 1.0},
    ]
    evaluate(problem, build_steps(plan))
    ids = problem.data["id"].to_numpy()
    assert len(fits) == problem.n_folds
    for (tr, va), fitted_on, (train, applied_to, rows) in zip(problem.folds, fits, serving, strict=True):
        assert fitted_on == set(ids[tr].tolist()) and not fitted_on & set(ids[va].tolist())
        assert not train and applied_to == set(ids[va].tolist()) and rows == len(va)  # no augmentation, no drop


def test_target_and_strings_are_not_features(data: pl.DataFrame) -> None:
    from pipelines.optimize.objective import feature_columns

    out = data.with_columns(pl.lit(True).alias("__augmented"), pl.lit(False).alias("a__missing"))
    assert feature_columns(out, "label") == ["id", "a", "b", "a__missing"]


# -- the study and its outputs ---------------------------------------------------------------


def test_outputs_and_best_yaml_runs(work: Path) -> None:
    result = optimize(work / "spec.yaml", work / "in.parquet", out_dir=work / "out", settings=_settings())
    for name in ("best.yaml", "trials.parquet", "report.html"):
        assert (work / "out" / name).is_file()
    best = yaml.safe_load((work / "out" / "best.yaml").read_text())
    assert "search" not in best and "constraints" not in best and best["target"] == "label"
    assert best["steps"] == result.best.user_attrs["steps"]
    report = commands.run(work / "out" / "best.yaml", work / "in.parquet", work / "prepared.parquet")
    assert report["rows"]["in"] == 160 and (work / "prepared.parquet").is_file()
    trials = pl.read_parquet(work / "out" / "trials.parquet")
    assert trials.height == 4 and trials.filter(pl.col("rank") == 1)["number"].item() == result.best.number
    assert {"state", "phase", "score", "fold_scores", "seconds", "rows_dropped", "steps"} <= set(trials.columns)
    assert any(c.startswith("param:") for c in trials.columns)
    html = (work / "out" / "report.html").read_text()
    assert "Optimization history" in html and "Parameter importances" in html
    assert '<script src="http' not in html and "Plotly" in html  # plotly.js inline
    if importlib.util.find_spec("prefect") is not None:  # the flow's artifact (the flow itself: tests/flows)
        from flows.optimize import best_plan_markdown, summarize

        summary = summarize(result)
        assert summary["best_trial"] == result.best.number and summary["paths"]["best"].endswith("best.yaml")
        assert "```yaml\n" in best_plan_markdown(summary) and json.dumps(summary)


def test_spec_steps_are_evaluated_first(work: Path, data: pl.DataFrame) -> None:
    raw = yaml.safe_load((work / "spec.yaml").read_text())
    raw["steps"] = [{"kind": "impute", "method": "median"}, {"kind": "scale", "method": "robust"}]
    result = run_study(raw, data, _settings(trials=2))
    first = min(result.study.trials, key=lambda t: t.number)
    assert build_steps(first.user_attrs["steps"]) == build_steps(raw["steps"])
    assert first.user_attrs.get("baseline") is True


def test_resume_continues_an_interrupted_study(work: Path, data: pl.DataFrame) -> None:
    raw = yaml.safe_load((work / "spec.yaml").read_text())
    storage = f"sqlite:///{work / 'study.db'}"
    settings = _settings(trials=5, storage=storage)

    def interrupt(trial: optuna.trial.FrozenTrial) -> None:
        if trial.number == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(raw, data, settings, on_trial=interrupt)
    stored = optuna.load_study(study_name="prepflow-demo", storage=storage)
    assert len(stored.trials) == 3
    result = run_study(raw, data, settings)
    assert result.summary.finished == 5 and result.summary.ran == 2
    assert sorted(t.number for t in result.study.trials) == [0, 1, 2, 3, 4]
    assert result.study.user_attrs["prepflow.phase"] == "local"  # switched in the first run, kept
    # the same storage with other settings is refused rather than mixed in
    with pytest.raises(UsageError, match="differs in: folds"):
        run_study(raw, data, _settings(trials=6, storage=storage, folds=3))


def test_constraints_rank_infeasible_trials_last(work: Path, data: pl.DataFrame) -> None:
    raw = {
        "name": "c",
        "target": "label",
        # the current plan drops rows: evaluated first, and infeasible
        "steps": [{"kind": "outliers", "method": "iqr", "k": 0.5, "action": "drop"}],
        "search": {
            "steps": [
                {
                    "kind": "outliers",
                    "method": "iqr",
                    "k": {"float": [0.5, 3.0]},
                    "action": {"choice": ["drop", "clip"]},
                }
            ]
        },
        "constraints": {"max_rows_dropped": 0.0, "max_seconds": 60},
    }
    result = run_study(raw, data.drop("a", "city"), _settings(trials=6))
    frame = result.trials
    baseline = frame.filter(pl.col("number") == 0).row(0, named=True)
    assert baseline["rows_dropped"] > 0 and baseline["feasible"] is False
    assert baseline["constraint:max_rows_dropped"] > 0 and baseline["constraint:max_seconds"] < 0
    assert result.best.user_attrs["rows_dropped"] == 0
    ranked = frame.filter(pl.col("rank").is_not_null()).sort("rank")
    flags = ranked["feasible"].to_list()
    assert flags == sorted(flags, reverse=True)  # every feasible trial ranks above every infeasible one
    if hasattr(optuna.trial.Trial, "set_constraint"):  # Optuna >= 5 sees the same feasibility
        assert result.study.best_trial.user_attrs["rows_dropped"] == 0


def test_score_and_time_give_a_pareto_front_and_a_tradeoff(work: Path, data: pl.DataFrame) -> None:
    raw = yaml.safe_load((work / "spec.yaml").read_text())
    result = run_study(raw, data, _settings(trials=4, objectives=("score", "time")))
    frame = result.trials
    assert "pareto" in frame.columns and frame["pareto"].any()
    chosen = frame.filter(pl.col("rank") == 1).row(0, named=True)
    assert chosen["pareto"] and chosen["number"] == result.best.number
    front = frame.filter(pl.col("pareto"))
    near = front.filter(pl.col("score") >= front["score"].max() - 0.01 * abs(front["score"].max()))
    assert chosen["seconds"] == near["seconds"].min()


def test_cli_command(work: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from pipelines.optimize.command import register

    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    args = ["optimize", str(work / "spec.yaml"), "-i", str(work / "in.parquet"), "--trials", "3", "--folds", "2"]
    res = CliRunner().invoke(app, [*args, "--out", str(work / "o"), "--metric", "accuracy", "--no-prune"])
    assert res.exit_code == 0, res.output
    assert "best trials" in res.output and (work / "o" / "best.yaml").is_file()
    trials = pl.read_parquet(work / "o" / "trials.parquet")
    summary = f"3 evaluation(s), {trials.height} trial(s) ("  # the budget counts evaluations, not trials
    assert summary in res.output.replace("\n", " ")
    repeats = trials["repeat_of"].is_not_null().sum()
    assert trials.filter(pl.col("repeat_of").is_null()).height == 3
    assert (f"{repeats} repeated plan(s) served from the study" in res.output.replace("\n", " ")) == (repeats > 0)
    res = CliRunner().invoke(app, [*args, "--metric", "acuracy"])
    assert res.exit_code == 2 and "did you mean 'accuracy'?" in res.output
    res = CliRunner().invoke(app, [*args, "--target", "nope"])
    assert res.exit_code == 2 and "column 'nope' is not in the input" in res.output


def test_data_problems_are_caught_before_any_trial(work: Path, data: pl.DataFrame) -> None:
    raw = {"target": "b", "search": {"steps": [{"kind": "augment", "method": "smote"}]}}
    with pytest.raises(SpecError, match=r"search.steps\[0\] \(augment/smote\): .*class labels"):
        run_study(raw, data.drop("city"), _settings(task="regression", model="ridge"))
    raw = {"target": "label", "search": {"steps": [{"kind": "scale", "method": "standard", "columns": ["city"]}]}}
    with pytest.raises(SpecError, match=r"search.steps\[0\] \(scale/standard\): .*'city'"):
        run_study(raw, data, _settings())
    assert json.dumps(SEARCH)  # the fixture stays plain data


def test_switch_and_stop_rules() -> None:
    """Phase 1 ends after switch_patience trials without improvement; the study after stop_patience."""
    from pipelines.optimize import strategy

    space = parse_search({"search": {"steps": [{"kind": "scale", "method": {"choice": ["standard", "robust"]}}]}})

    class Flat:
        phase = ""

        def __init__(self) -> None:
            self.space = space
            self.phases: list[str] = []

        def __call__(self, trial: optuna.Trial) -> float:
            self.space.sample(trial)
            self.phases.append(self.phase)
            return 0.5

    study = optuna.create_study(direction="maximize")
    objective = Flat()
    summary = strategy.run(
        study,
        objective,
        strategy=Strategy(switch_patience=3, stop_patience=6),
        n_trials=50,  # type: ignore[arg-type]
    )
    assert summary.reason == "converged" and summary.finished == 7  # the first trial, then 6 without improvement
    assert objective.phases == ["global"] * 4 + ["local"] * 3
    assert study.user_attrs[strategy.SWITCH_ATTR] == 4 and strategy.phase_of(study) == "local"
    assert strategy.Strategy().global_name(1) == "qmc" and strategy.Strategy().global_name(2) == "nsga2"


def test_timeout_stops_the_study(work: Path, data: pl.DataFrame) -> None:
    raw = yaml.safe_load((work / "spec.yaml").read_text())
    result = run_study(raw, data, _settings(trials=500, timeout=0.5))
    assert result.summary.reason == "timeout" and 1 <= result.summary.finished < 500


def test_repeated_plans_are_served_from_the_study_not_scored_again(data: pl.DataFrame) -> None:
    from pipelines.optimize.objective import Objective, make_problem

    space = parse_search({"search": {"steps": [{"kind": "scale", "method": {"choice": ["standard", "robust"]}}]}})
    problem = make_problem(data.drop("city"), "label", folds=2)
    calls: list[str] = []

    def counting(problem: Any, steps: Any, **kw: Any) -> Any:
        calls.append(repr(list(steps)))
        return evaluate(problem, steps, **kw)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(Objective(problem, space, evaluator=counting), n_trials=8)
    assert len(calls) == len(set(calls)) == 2  # two plans in the space: each cross-validated once
    repeats = [t for t in study.trials if "repeat_of" in t.user_attrs]
    assert len(repeats) == 6
    for t in repeats:
        first = study.trials[t.user_attrs["repeat_of"]]
        assert first.params == t.params and first.values == t.values
        assert t.user_attrs["fold_scores"] == first.user_attrs["fold_scores"]


def test_the_pruner_prunes_only_the_bottom_quarter_from_the_second_fold() -> None:
    """From fold 2 on, a trial is pruned below the 25th percentile of earlier trials (not the 75th)."""
    from pipelines.optimize import strategy

    study = optuna.create_study(direction="maximize", pruner=strategy.make_pruner(Strategy(), 1))
    for value in range(8):  # earlier trials scored 0..7 after the first and the second fold
        trial = study.ask()
        trial.report(float(value), step=0)
        trial.report(float(value), step=1)
        study.tell(trial, float(value))

    def pruned(value: float, step: int) -> bool:
        trial = study.ask()
        trial.report(value, step=step)
        out = trial.should_prune()
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return out

    assert not pruned(-100.0, 0)  # one fold is not enough to judge
    assert pruned(1.0, 1) and not pruned(3.0, 1) and not pruned(4.5, 1)
    assert not strategy.make_pruner(Strategy(), 2).prune(study, study.trials[0])  # no pruning with 2 objectives
