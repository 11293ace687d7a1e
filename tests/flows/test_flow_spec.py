"""The spec's orchestration keys (``pipelines/flow_spec.py``): parsing, errors, templates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pipelines.errors import SpecError
from pipelines.flow_spec import FlowSpec, load, parse_flow_spec, render_path


def test_defaults_retry_io_twice_with_backoff_and_cache_fits() -> None:
    spec = parse_flow_spec({"steps": []})
    assert spec == FlowSpec()
    assert (spec.flow.retries, spec.flow.retry_delay_seconds, spec.flow.cache) == (2, [5.0, 30.0], True)
    assert spec.schedule is None and spec.parameters is None


def test_a_full_block_parses() -> None:
    spec = parse_flow_spec(
        {
            "flow": {"retries": 3, "retry_delay_seconds": [1, 10, 60], "cache": False},
            "schedule": {"interval": "PT1H", "timezone": "Europe/Paris", "anchor_date": "2025-01-01T02:00:00"},
            "parameters": {"input": "in/{date}.csv", "output": "out/{scheduled_start:%Y%m%d}.parquet"},
        }
    )
    assert spec.flow.retry_delay_seconds == [1, 10, 60]
    assert spec.schedule is not None and spec.schedule.interval == dt.timedelta(hours=1)
    assert spec.parameters is not None and spec.parameters.mode == "run"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"flow": {"retry": 2}}, "unknown key 'flow.retry'"),
        ({"flow": {"retries": -1}}, "flow.retries"),
        ({"flow": {"retry_delay_seconds": [-5]}}, "flow.retry_delay_seconds"),
        (
            {"schedule": {"cron": "0 2 * * *", "interval": 60}, "parameters": {"input": "a", "output": "b"}},
            "exactly one",
        ),
        ({"schedule": {"timezone": "UTC"}, "parameters": {"input": "a", "output": "b"}}, "got none"),
        ({"schedule": {"cron": "0 2 * * *", "timezone": "Mars/Olympus"}}, "unknown timezone 'Mars/Olympus'"),
        ({"schedule": {"interval": 0}, "parameters": {"input": "a", "output": "b"}}, "interval must be positive"),
        ({"schedule": {"cron": "0 2 * * *"}}, "needs a 'parameters' block"),
        ({"parameters": {"input": "in/{dat}.csv", "output": "o"}}, "unknown placeholder {dat} (did you mean 'date'?)"),
        ({"parameters": {"input": "in/{date.csv", "output": "o"}}, "write a literal brace"),
        ({"parameters": {"input": "a"}}, "mode 'run' needs an 'output' path"),
        ({"parameters": {"input": "a", "mode": "fit"}}, "mode 'fit' needs a 'fitted' path"),
        ({"parameters": {"input": "a", "output": "b", "mode": "serve"}}, "parameters.mode"),
    ],
)
def test_errors_name_the_file_and_the_key(data: dict, message: str) -> None:
    with pytest.raises(SpecError, match=r"^spec\.yaml: ") as info:
        parse_flow_spec(data, source="spec.yaml")
    assert message in str(info.value)


def test_render_path() -> None:
    when = dt.datetime(2025, 3, 1, 2, 30, tzinfo=dt.UTC)
    assert render_path("in/{date}/x.csv", when) == "in/2025-03-01/x.csv"
    assert render_path("out/{scheduled_start:%Y%m%dT%H%M}.parquet", when) == "out/20250301T0230.parquet"
    assert render_path("plain.csv", when) == "plain.csv"


def test_load_keeps_the_whole_file_as_raw(spec_with) -> None:
    path = spec_with("flow: {retries: 1}\nschedule: {cron: '0 3 * * *'}\nparameters: {input: a.csv, output: b.csv}\n")
    pipeline, flow = load(path)
    assert len(pipeline.steps) == 4
    assert flow.flow.retries == 1 and flow.schedule is not None and flow.schedule.cron == "0 3 * * *"
    assert pipeline.raw["parameters"] == {"input": "a.csv", "output": "b.csv"}


def test_load_reports_the_pipeline_errors_as_before(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("steps: [{kind: scale, method: standrd}]\nflow: {retries: 1}\n")
    with pytest.raises(SpecError, match="did you mean 'standard'"):
        load(path)
    path.write_text("steps: [\n")
    with pytest.raises(SpecError, match="YAML syntax error"):
        load(path)
