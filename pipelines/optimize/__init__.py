"""The plan optimizer: search the steps and parameters of a pipeline by leakage-free cross-validation.

``prepflow optimize SPEC --input IN --target COL`` reads a spec with a ``search:`` block
(:mod:`pipelines.optimize.space`), scores candidate plans by k-fold CV
(:mod:`pipelines.optimize.objective`), searches with the hybrid strategy — a global sampler,
then TPE on the same Optuna study (:mod:`pipelines.optimize.strategy`) — and writes
``best.yaml``, ``trials.parquet`` and ``report.html`` (:mod:`pipelines.optimize.outputs`).

The names below are imported on first use, so that importing the CLI command
(:mod:`pipelines.optimize.command`) does not import Optuna, plotly or scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.optimize.runner import Result, Settings, check_spec, optimize, run_study, write_outputs
    from pipelines.optimize.space import Constraints, SearchSpace, parse_search
    from pipelines.optimize.strategy import Strategy

_HOME = {
    "Result": "runner",
    "Settings": "runner",
    "check_spec": "runner",
    "optimize": "runner",
    "run_study": "runner",
    "write_outputs": "runner",
    "Constraints": "space",
    "SearchSpace": "space",
    "parse_search": "space",
    "Strategy": "strategy",
}

__all__ = [
    "Constraints",
    "Result",
    "SearchSpace",
    "Settings",
    "Strategy",
    "check_spec",
    "optimize",
    "parse_search",
    "run_study",
    "write_outputs",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'pipelines.optimize' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pipelines.optimize.{_HOME[name]}"), name)
