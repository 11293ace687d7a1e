"""The hybrid search strategy: a global phase, then local TPE, in one Optuna study.

**Phase 1, global.** A space-covering sampler explores. ``auto`` (the default) is ``qmc`` with
one objective and ``nsga2`` with several: ``qmc`` is Optuna's ``QMCSampler`` (scrambled Sobol
points: the best coverage of the space for few trials), ``nsga2`` its ``NSGAIISampler`` (built
for several objectives; its population is a third of the phase's budget, between 4 and 50).
On ``benchmarks/optimizer.py`` a Sobol start reached good plans in fewer trials than NSGA-II's
small early populations. (With Optuna 4, whose samplers take constraints through
``constraints_func``, phase-1 trials of ``qmc`` carry no constraint values for TPE; ``auto``
picks ``nsga2`` there when the spec has constraints.)

**Switch rule.** Phase 1 ends at the first of

- ``global_share`` of the trial budget finished in the study (default 40 %), or
- ``switch_patience`` finished trials in a row (default 8) that did not improve the best score,

so a search that stops finding better plans early hands over early. *Improve* means: a
feasible trial beats the best feasible score by more than ``min_delta`` (default 1e-4), or a
trial is the first feasible one, or (while none is feasible) a trial has a smaller total
constraint violation. Pruned and failed trials count as trials that did not improve.

**Budget: evaluations, not proposals.** The budget (``--trials``), the phase-1 share and the
patience windows count *evaluations*: trials that cross-validated a plan (complete, pruned or
failed). A trial whose plan the study already scored is served from it (``repeat_of``, see
:class:`~pipelines.optimize.objective.Objective`); it costs no cross-validation and is not
counted. So that a sampler that keeps repeating itself cannot run forever, a run ends
(``exhausted``) after :data:`MAX_PROPOSED` times its budget in trials of any kind.

The defaults (Sobol start, 40 % share, patience 8) were chosen on ``benchmarks/optimizer.py``'s
cached grids (four datasets, 50-100 seeds each, budget 20 % of the grid; measure: share of runs
reaching 98 % of the grid's best within the budget, about +-3 points of noise). None of these
did better: a 30 % or 50 % share, patience 5 or 12 (or none), a phase 1 sized from the space's
dimension (``d``, ``1.5 d`` or ``2 d`` trials), a random or an NSGA-II start, a univariate TPE,
a greedier TPE (smaller ``gamma`` or ``prior_weight``), or a more exploring one (other
``n_ei_candidates``, or back to phase 1 on stagnation). As shipped (100 seeds per dataset) the
hybrid reached 88 % of runs (353 of 400; the median run within budget on every dataset), pure
TPE 82 %, random search 74 %. The misses are mostly on wine, where only 4 of the grid's 168
plans are within 98 % of its best and sit behind a choice that is worse on average; see
``benchmarks/README.md``.

**Phase 2, local.** ``TPESampler`` (multivariate, grouped for the conditional space,
``n_startup_trials=0``, with ``constant_liar`` when ``--jobs`` > 1) on the same study, so every
phase-1 trial warm-starts it and it models from its first trial on. When TPE proposes a plan
already scored (its model has converged on a region), the next trial is a local move instead:
an unseen neighbour of the best plans, one parameter changed (:mod:`pipelines.optimize.refine`;
``refine=False`` turns it off).

**Early stopping.** From the second fold on (so never with ``--folds 2``), a trial is pruned
when its running mean score is below the 25th percentile of earlier trials at the same fold,
i.e. in their bottom quarter (Optuna's ``PercentilePruner`` keeping 75 %, from the sixth trial
on; single objective only: Optuna cannot prune multi-objective trials). The first fold alone
is too noisy on small data: pruning after it cost the benchmark's wine runs 9 of 100 hits. A
trial whose plan a complete trial already scored is served from that trial, not
cross-validated again (see :class:`~pipelines.optimize.objective.Objective`). The study stops
at ``--trials`` evaluations, at ``--timeout`` seconds, or when ``stop_patience`` evaluations in
a row (default: half the budget, at least 20) did not improve the best score.

**Resuming.** The phase lives in the study (``prepflow.phase`` user attribute), and the
budget counts every evaluation finished in the study, so running the same command again on
the same ``--storage`` continues where an interrupted run stopped (a neighbour the refinement
had enqueued is evaluated first). With an RDB storage Optuna's heartbeat marks trials of a
killed process as failed after three minutes.

The other strategies (``tpe``, ``random``, ``qmc``, ``nsga2``) run one Optuna sampler for the
whole budget, with the same pruner; they exist for comparison (``benchmarks/optimizer.py``).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from pipelines.errors import UsageError
from pipelines.optimize.objective import REPEAT_ATTR, SET_CONSTRAINT, CandidateError, Objective, constraints_of
from pipelines.optimize.refine import Refiner

STRATEGIES = ("hybrid", "tpe", "random", "qmc", "nsga2")
GLOBAL_SAMPLERS = ("auto", "qmc", "nsga2")
PHASE_ATTR = "prepflow.phase"
SWITCH_ATTR = "prepflow.switched_at"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
#: trials in all (repeats included) a run may finish, as a multiple of its evaluation budget
MAX_PROPOSED = 3


@dataclass(frozen=True)
class Strategy:
    """How the study is searched (see the module docstring for the rules)."""

    name: Literal["hybrid", "tpe", "random", "qmc", "nsga2"] = "hybrid"
    global_sampler: Literal["auto", "qmc", "nsga2"] = "auto"
    global_share: float = 0.4
    switch_patience: int = 8
    stop_patience: int | None = None
    min_delta: float = 1e-4
    prune: bool = True
    refine: bool = True

    def __post_init__(self) -> None:
        if self.name not in STRATEGIES:
            raise UsageError(f"--strategy: unknown strategy '{self.name}'; known: {', '.join(STRATEGIES)}")
        if self.global_sampler not in GLOBAL_SAMPLERS:
            raise UsageError(f"unknown global sampler '{self.global_sampler}'; known: {', '.join(GLOBAL_SAMPLERS)}")
        if not 0 < self.global_share <= 1:
            raise UsageError(f"global_share must be in (0, 1], got {self.global_share}")

    def global_name(self, n_objectives: int, *, constrained: bool = False) -> str:
        """The phase-1 sampler: ``qmc`` or ``nsga2`` (``auto``: see the module docstring)."""
        if self.global_sampler != "auto":
            return self.global_sampler
        return "nsga2" if n_objectives > 1 or (constrained and not SET_CONSTRAINT) else "qmc"

    def global_budget(self, n_trials: int) -> int:
        """Trials phase 1 may run at most."""
        return max(1, math.ceil(self.global_share * n_trials))

    def patience(self, n_trials: int) -> int | None:
        """Trials without improvement after which the study stops (hybrid only)."""
        if self.name != "hybrid":
            return self.stop_patience
        return self.stop_patience if self.stop_patience is not None else max(20, math.ceil(n_trials / 2))


@dataclass(frozen=True)
class Progress:
    """Where the study stands, in evaluations (trials not served as repeats) and in all trials.

    ``finished``: evaluated trials (complete, pruned or failed, not repeats); ``since_best``:
    evaluated trials in a row that did not improve the best; ``best``: the best rank key;
    ``proposed``: every finished trial, repeats included.
    """

    finished: int
    since_best: int
    best: tuple[int, float] | None
    proposed: int = 0


def progress(study: optuna.Study, min_delta: float = 0.0) -> Progress:
    """Evaluations finished and how many in a row did not improve the best (see the module docstring)."""
    trials = sorted(study.get_trials(deepcopy=False, states=FINISHED), key=lambda t: t.number)
    evaluated = [t for t in trials if REPEAT_ATTR not in t.user_attrs]
    best: tuple[int, float] | None = None
    since = 0
    for t in evaluated:
        key = rank_key(t)
        improved = key is not None and (
            best is None or key[0] > best[0] or (key[0] == best[0] and key[1] > best[1] + min_delta)
        )
        if improved:
            best, since = key, 0
        else:
            since += 1
    return Progress(finished=len(evaluated), since_best=since, best=best, proposed=len(trials))


def rank_key(t: FrozenTrial) -> tuple[int, float] | None:
    """(1, score) for a feasible complete trial, (0, -violation) for an infeasible one, None otherwise."""
    if t.state != TrialState.COMPLETE or not t.values:
        return None
    violation = sum(v for v in constraints_of(t) if v > 0)
    return (1, float(t.values[0])) if violation <= 0 else (0, -violation)


def phase_of(study: optuna.Study) -> str:
    """``global`` or ``local`` for the hybrid strategy."""
    return str(study.user_attrs.get(PHASE_ATTR, "global"))


def make_pruner(strategy: Strategy, n_objectives: int) -> optuna.pruners.BasePruner:
    """Bottom-quarter pruning from the second fold on (none for several objectives or ``prune=False``)."""
    if not strategy.prune or n_objectives > 1:
        return optuna.pruners.NopPruner()
    # Optuna's percentile is the share of trials *kept* (for maximisation it prunes below the
    # (100 - percentile)-th percentile): 75 keeps the top three quarters, prunes the bottom one.
    # n_warmup_steps=1: one fold alone is too noisy to judge (see the module docstring)
    return optuna.pruners.PercentilePruner(75.0, n_startup_trials=5, n_warmup_steps=1, n_min_trials=3)


def _constraints_func(trial: FrozenTrial) -> Sequence[float]:
    return constraints_of(trial)


def _constraint_kwargs() -> dict[str, Any]:
    """Optuna < 5 takes constraints through the sampler; Optuna >= 5 from ``Trial.set_constraint``."""
    return {} if SET_CONSTRAINT else {"constraints_func": _constraints_func}


def make_sampler(name: str, *, seed: int, n_trials: int, n_jobs: int = 1) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for a phase or a plain strategy (``local`` is the hybrid's TPE)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "qmc":
            return optuna.samplers.QMCSampler(
                qmc_type="sobol",
                scramble=True,
                seed=seed,
                warn_independent_sampling=False,
                warn_asynchronous_seeding=False,
            )
        if name == "nsga2":
            size = min(50, max(4, n_trials // 3))
            return optuna.samplers.NSGAIISampler(population_size=size, seed=seed, **_constraint_kwargs())
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, constant_liar=n_jobs > 1, **_constraint_kwargs())
        if name == "local":
            return optuna.samplers.TPESampler(
                seed=seed,
                multivariate=True,
                group=True,
                n_startup_trials=0,  # phase 1's trials are the start
                constant_liar=n_jobs > 1,
                **_constraint_kwargs(),
            )
    raise UsageError(f"unknown sampler '{name}'")


@dataclass(frozen=True)
class RunSummary:
    """How a run ended: ``trials`` (budget), ``timeout``, ``converged`` (patience) or ``exhausted``."""

    reason: str
    finished: int
    ran: int
    switched_at: int | None


class _Controller:
    """Optuna callback: ends phase 1 or the study by the patience rules."""

    def __init__(self, strategy: Strategy, n_trials: int, phase: str) -> None:
        self.strategy = strategy
        self.n_trials = n_trials
        self.phase = phase
        self.reason = ""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        p = progress(study, self.strategy.min_delta)
        patience = self.strategy.patience(self.n_trials)
        if patience is not None and p.since_best >= patience:
            self.reason = "converged"
            study.stop()
        elif self.phase == "global" and switch_due(self.strategy, p, self.n_trials):
            self.reason = "switch"
            study.stop()


def switch_due(strategy: Strategy, p: Progress, n_trials: int) -> bool:
    """Whether phase 1 is over (budget share spent, or no improvement for ``switch_patience`` trials)."""
    return p.finished >= strategy.global_budget(n_trials) or p.since_best >= strategy.switch_patience


def run(
    study: optuna.Study,
    objective: Objective,
    *,
    strategy: Strategy,
    n_trials: int,
    timeout: float | None = None,
    n_jobs: int = 1,
    seed: int = 0,
    on_trial: Callable[[FrozenTrial], None] | None = None,
) -> RunSummary:
    """Run ``study`` until ``n_trials`` evaluations are finished in it, the timeout, or patience runs out."""
    deadline = None if timeout is None else time.monotonic() + timeout
    start = progress(study).finished
    switched_at: int | None = None
    reason = "trials"
    refiner = Refiner(objective.space, rank=rank_key, repeat_attr=REPEAT_ATTR, seed=seed)
    while True:
        p = progress(study, strategy.min_delta)
        remaining = n_trials - p.finished
        if remaining <= 0:
            reason = "trials"
            break
        if p.proposed >= MAX_PROPOSED * n_trials:
            reason = "exhausted"  # the sampler keeps proposing plans already scored
            break
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            reason = "timeout"
            break
        patience = strategy.patience(n_trials)
        if patience is not None and p.since_best >= patience:
            reason = "converged"
            break
        callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = []
        if strategy.name == "hybrid":
            phase = phase_of(study)
            if phase == "global" and switch_due(strategy, p, n_trials):
                study.set_user_attr(PHASE_ATTR, "local")
                study.set_user_attr(SWITCH_ATTR, p.finished)
                switched_at = p.finished
                continue
            budget = remaining if phase == "local" else min(remaining, strategy.global_budget(n_trials) - p.finished)
            constrained = bool(objective.space.constraints.limits())
            name = (
                strategy.global_name(len(study.directions), constrained=constrained) if phase == "global" else "local"
            )
            sizing = strategy.global_budget(n_trials)
            if phase == "local" and strategy.refine and len(study.directions) == 1:
                callbacks.append(refiner)
        else:
            phase, budget, name, sizing = strategy.name, remaining, strategy.name, n_trials
        # a resumed run reseeds by the trials already done, so it does not replay the first run's draws
        study.sampler = make_sampler(name, seed=seed + p.proposed, n_trials=sizing, n_jobs=n_jobs)
        objective.phase = phase
        controller = _Controller(strategy, n_trials, phase)
        callbacks.insert(0, controller)
        if on_trial is not None:
            callbacks.append(lambda _study, trial: on_trial(trial))
        before = p.proposed
        study.optimize(
            objective, n_trials=budget, timeout=left, n_jobs=n_jobs, callbacks=callbacks, catch=(CandidateError,)
        )
        after = progress(study).proposed
        if controller.reason == "converged":
            reason = "converged"
            break
        if after == before and controller.reason != "switch":
            reason = "exhausted" if left is None or left > 0 else "timeout"
            break
    return RunSummary(
        reason=reason, finished=progress(study).finished, ran=progress(study).finished - start, switched_at=switched_at
    )
