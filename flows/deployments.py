"""Deployments from specs: a spec's ``schedule`` and ``parameters`` become a Prefect deployment.

.. code-block:: yaml

    name: credit
    steps: [...]
    schedule: {cron: "0 2 * * *", timezone: Europe/Paris}
    parameters:
      input: landing/{date}/credit.csv              # relative to the spec's folder
      output: prepared/credit-{scheduled_start:%Y%m%d}.parquet

``serve`` runs the deployments in this process (a Prefect runner);
``deploy`` registers one on a work pool, whose workers run it. Either way the
flow is found by its module path (``flows.flow.preprocess``), so any machine
where prepflow is installed can run it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.errors import SpecError, UsageError
from pipelines.flow_spec import FlowSpec, ScheduleSpec
from pipelines.flow_spec import load as load_spec
from transforms._version import __version__

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment
    from prefect.schedules import Schedule


def schedule_of(spec: ScheduleSpec, *, source: str = "<spec>") -> Schedule:
    """The Prefect schedule of a spec's ``schedule`` block."""
    from prefect.schedules import Cron, Interval, RRule

    try:
        if spec.cron is not None:
            return Cron(spec.cron, timezone=spec.timezone, active=spec.active)
        if spec.interval is not None:
            return Interval(spec.interval, anchor_date=spec.anchor_date, timezone=spec.timezone, active=spec.active)
        assert spec.rrule is not None
        return RRule(spec.rrule, timezone=spec.timezone, active=spec.active)
    except ValueError as exc:
        raise SpecError(f"{source}: schedule: {str(exc).splitlines()[0]}") from exc


def deployment_parameters(spec_path: str | os.PathLike[str], flow_spec: FlowSpec) -> dict[str, Any]:
    """The flow's parameters for the deployment: absolute spec path, path templates from the spec's folder."""
    spec_path = Path(spec_path).resolve()
    params = flow_spec.parameters
    if params is None:
        raise UsageError(f"{spec_path}: no 'parameters' block: a deployment needs the input and output paths")
    paths = {k: None if v is None else str(spec_path.parent / v) for k, v in params.paths().items()}
    spec = None if params.mode == "apply" and flow_spec.schedule is None else str(spec_path)
    return {"spec": spec, "mode": params.mode, **{k: v for k, v in paths.items() if v is not None}}


def build_deployment(spec_path: str | os.PathLike[str], *, name: str | None = None) -> RunnerDeployment:
    """A deployment of the ``preprocess`` flow from a spec's ``schedule`` and ``parameters``."""
    from prefect.types.entrypoint import EntrypointType

    from flows.flow import preprocess

    pipeline, flow_spec = load_spec(spec_path)
    parameters = deployment_parameters(spec_path, flow_spec)
    schedules = [schedule_of(flow_spec.schedule, source=str(spec_path))] if flow_spec.schedule else None
    return preprocess.to_deployment(
        name=name or pipeline.name or Path(spec_path).stem,
        schedules=schedules,
        parameters=parameters,
        description=pipeline.description or f"prepflow pipeline {pipeline.name or Path(spec_path).stem}",
        tags=["prepflow"],
        version=__version__,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def ui_url() -> str | None:
    """Where the Prefect UI of the configured server is, or ``None`` with no server configured."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if not settings.api.url:
        return None
    return settings.ui_url or settings.api.url.removesuffix("/api")


def serve(spec_paths: list[str], *, limit: int | None = None) -> None:
    """Serve the deployments of the specs until interrupted (runs execute in this machine's processes)."""
    from prefect import serve as prefect_serve

    deployments = [build_deployment(p) for p in spec_paths]
    prefect_serve(*deployments, limit=limit, print_starting_message=True)


def deploy(spec_path: str, pool: str, *, name: str | None = None) -> Any:
    """Create (or update) the spec's deployment on a work pool; returns its id."""
    from prefect import deploy as prefect_deploy

    ids = prefect_deploy(build_deployment(spec_path, name=name), work_pool_name=pool, print_next_steps_message=False)
    return ids[0]
