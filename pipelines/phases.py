"""The jobs' phases as small public functions, for callers that run one phase at a time.

:mod:`pipelines.commands` chains read, validate input, fit, transform, validate
output and write in one process. The Prefect flows (``flows/``) run the same
phases as separate tasks; these functions are the very pieces ``commands`` uses,
so both ways give the same outputs and reports.

>>> import polars as pl
>>> from pipelines.schema import InputSpec
>>> spec = InputSpec.model_validate({"schema": {"columns": {"x": {"dtype": "Float64", "checks": {"ge": 0}}}}})
>>> validated = validate_input(spec, pl.DataFrame({"x": [1.0, -1.0]}), source="in.csv")
>>> validated.clean["x"].to_list(), validated.quarantine["__reasons"].to_list()
([1.0], [['x:greater_than_or_equal_to(0)']])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from pipelines import commands, engine
from pipelines.commands import Outputs, PathLike
from pipelines.engine_spec import EngineSpec, parse_engine_spec
from pipelines.regime import choose_regime
from pipelines.schema import InputSpec, OutputSpec
from pipelines.validation import Validated

__all__ = [
    "Outputs",
    "check_fitted_output",
    "check_outputs",
    "choose_regime",
    "engine_settings",
    "fit_report",
    "output_frames",
    "run_report",
    "to_json",
    "validate_input",
    "validate_output",
]


def engine_settings(spec: dict[str, Any], source: str) -> EngineSpec:
    """The ``engine:`` block of a spec (or of the spec recorded in a fitted artifact)."""
    return parse_engine_spec(spec, source=source)


def check_outputs(
    output: PathLike,
    *,
    inputs: tuple[PathLike, ...],
    quarantine: PathLike | None = None,
    fitted: PathLike | None = None,
    report: PathLike | None = None,
) -> Outputs:
    """Check every output path before any work (as ``run`` and ``apply`` do)."""
    return Outputs.checked(output, inputs=inputs, quarantine=quarantine, fitted=fitted, report=report)


def check_fitted_output(fitted: PathLike, *, inputs: tuple[PathLike, ...]) -> Path:
    """Check the fitted-artifact path of ``fit`` before any work."""
    out = commands._side_file(fitted, inputs)
    assert out is not None
    return out


def validate_input(spec: InputSpec, df: pl.DataFrame, *, source: str) -> Validated | None:
    """Validate the input against ``spec``'s schema; ``None`` when the spec declares none."""
    return commands._validate_input(spec, df, source, engine._quiet)


def validate_output(spec: OutputSpec, df: pl.DataFrame) -> None:
    """Raise :class:`~pipelines.errors.DataError` if the output fails ``spec``'s schema."""
    commands._validate_output(spec, df, engine._quiet)


def run_report(command: str, ex: engine.Execution, outs: Outputs) -> dict[str, Any]:
    """The report of ``run``/``apply`` (rows, quarantine, per-step metrics), before timings."""
    return commands._report(command, ex, outs)


fit_report = commands.fit_report


def output_frames(ex: engine.Execution, outs: Outputs) -> dict[Path, pl.DataFrame]:
    """The frames a job writes: the output, and the quarantine when it has rows."""
    frames = {outs.output: ex.output}
    if ex.quarantine is not None and ex.quarantine.height:
        frames[outs.quarantine] = ex.quarantine
    return frames


def to_json(data: dict[str, Any]) -> str:
    """JSON text exactly as the jobs write reports and fitted artifacts."""
    return commands._json(data)
