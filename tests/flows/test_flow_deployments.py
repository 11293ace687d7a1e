"""Deployments from a spec's ``schedule`` and ``parameters``, and one served on a schedule for real."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from flows.deployments import build_deployment, deployment_parameters
from pipelines.errors import SpecError, UsageError
from pipelines.flow_spec import load

PARAMETERS = """\
parameters:
  input: landing/{date}/loans.csv
  output: prepared/loans-{scheduled_start:%Y%m%d}.parquet
  fitted: prepared/loans.fitted.json
"""


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("{cron: '0 2 * * *', timezone: Europe/Paris}", {"cron": "0 2 * * *", "timezone": "Europe/Paris"}),
        ("{interval: 3600, timezone: UTC}", {"interval": dt.timedelta(hours=1), "timezone": "UTC"}),
        ("{rrule: 'FREQ=WEEKLY;BYDAY=MO;BYHOUR=6'}", {"rrule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=6"}),
    ],
    ids=["cron", "interval", "rrule"],
)
def test_deployment_has_the_spec_schedule(spec_with, schedule: str, expected: dict[str, Any]) -> None:
    spec = spec_with(f"schedule: {schedule}\n{PARAMETERS}")
    deployment = build_deployment(spec)
    assert deployment.name == "loans"
    assert deployment.entrypoint == "flows.flow.preprocess"
    assert len(deployment.schedules) == 1
    built = deployment.schedules[0].schedule
    for key, value in expected.items():
        if key == "rrule":  # Prefect adds a DTSTART line
            assert built.rrule.splitlines()[-1] == value
        else:
            assert getattr(built, key) == value


@pytest.mark.usefixtures("prefect_server")
def test_applied_deployment_keeps_schedule_and_parameters(spec_with) -> None:
    from prefect.client.orchestration import get_client

    spec = spec_with(f"schedule: {{cron: '15 4 * * 1-5', timezone: America/New_York}}\n{PARAMETERS}")
    deployment_id = build_deployment(spec, name="loans-weekdays").apply()
    with get_client(sync_client=True) as client:
        stored = client.read_deployment(deployment_id)
    assert stored.name == "loans-weekdays"
    assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in stored.schedules] == [
        ("15 4 * * 1-5", "America/New_York", True)
    ]
    assert stored.parameters == deployment_parameters(spec, load(spec)[1])
    assert stored.parameters["input"] == str(spec.parent.resolve() / "landing/{date}/loans.csv")
    assert stored.parameters["spec"] == str(spec.resolve())


def test_spec_errors_name_the_file(spec_with) -> None:
    with pytest.raises(SpecError, match=r"spec\.yaml: schedule: .*cron"):
        build_deployment(spec_with(f"schedule: {{cron: 'every day at 2'}}\n{PARAMETERS}"))
    with pytest.raises(UsageError, match="no 'parameters' block"):
        build_deployment(spec_with("flow: {retries: 1}\n"))


async def _serve_until_done(deployment: Any, timeout: float) -> list[Any]:
    """Serve ``deployment`` with a runner until one scheduled run of it is final, then stop the runner."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.runner import Runner

    runner = Runner(name="prepflow-test", query_seconds=1, prefetch_seconds=30, pause_on_shutdown=False)
    deployment_id = await runner.aadd_deployment(deployment)
    serving = asyncio.create_task(runner.start())
    runs: list[Any] = []
    try:
        async with get_client() as client:
            # The test server runs no scheduler service; ask it to do what the scheduler does:
            # create the next run from the deployment's schedule.
            response = await client.request(
                "POST", "/deployments/{id}/schedule", path_params={"id": deployment_id}, json={"max_runs": 1}
            )
            response.raise_for_status()
            only_this = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while loop.time() < deadline and not any(r.state and r.state.is_final() for r in runs):
                await asyncio.sleep(1)
                runs = await client.read_flow_runs(deployment_filter=only_this)
    finally:
        await runner.astop()
        await asyncio.wait_for(serving, 30)
    return runs


@pytest.mark.usefixtures("prefect_server")
def test_served_deployment_runs_on_its_schedule(spec_with, frame, tmp_path: Path) -> None:
    frame(n=400).write_csv(tmp_path / "loans.csv")
    (tmp_path / "prepared").mkdir()
    spec = spec_with(
        """\
        schedule: {interval: 2}
        parameters: {input: loans.csv, output: "prepared/loans-{scheduled_start:%H%M%S}.parquet"}
        flow: {retries: 0}
        """
    )
    runs = _run(_serve_until_done(build_deployment(spec, name="loans-every-2s"), timeout=120))
    assert len(runs) == 1, "one scheduled run"
    run = runs[0]
    assert run.auto_scheduled
    assert run.state.is_completed(), run.state
    start = run.expected_start_time.astimezone(dt.UTC)
    written = tmp_path / "prepared" / f"loans-{start:%H%M%S}.parquet"
    assert pl.read_parquet(written).height > 0


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
