"""``prepflow serve | deploy | flow-run``, the console script, and the Prefect server the pins keep working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

ROOT = Path(__file__).resolve().parents[2]


def test_console_script_has_the_flow_commands_without_importing_prefect() -> None:
    exe = Path(sys.executable).with_name("prepflow")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(exe), "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for command in ("run", "serve", "deploy", "flow-run"):
        assert command in done.stdout
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "flows.cli" in imported
    assert not {m for m in imported if m.split(".")[0] == "prefect" or m == "flows.flow"}


@pytest.mark.parametrize("command", [["serve"], ["deploy", "--pool", "local"]])
def test_serve_and_deploy_need_a_server(spec_with, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    from flows import deployments

    monkeypatch.setattr(deployments, "ui_url", lambda: None)
    spec = spec_with("schedule: {cron: '0 2 * * *'}\nparameters: {input: a.csv, output: b.parquet}\n")
    result = CliRunner().invoke(app, [command[0], str(spec), *command[1:]])
    assert result.exit_code == 2
    assert "prefect server start" in result.output
    assert "PREFECT_API_URL" in result.output


@pytest.mark.usefixtures("prefect_server")
def test_flow_run_writes_what_run_writes(loans: tuple[Path, Path], tmp_path: Path) -> None:
    spec, data = loans
    runner = CliRunner()
    by_run = runner.invoke(app, ["run", str(spec), "-i", str(data), "-o", str(tmp_path / "run.parquet"), "-q"])
    assert by_run.exit_code == 0, by_run.output
    by_flow = runner.invoke(app, ["flow-run", str(spec), "-i", str(data), "-o", str(tmp_path / "flow.parquet")])
    assert by_flow.exit_code == 0, by_flow.output
    assert (tmp_path / "flow.parquet").read_bytes() == (tmp_path / "run.parquet").read_bytes()
    assert f"wrote {tmp_path / 'flow.parquet'}" in by_flow.output


@pytest.mark.usefixtures("prefect_server")
def test_flow_run_exits_1_on_data_that_fails_validation(spec_with, loans, tmp_path: Path) -> None:
    _, data = loans
    spec = spec_with("", replace=("on_invalid_rows: quarantine", "on_invalid_rows: fail"))
    result = CliRunner().invoke(app, ["flow-run", str(spec), "-i", str(data), "-o", str(tmp_path / "o.parquet")])
    assert result.exit_code == 1
    assert "fail the input schema" in result.output
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.usefixtures("prefect_server")
def test_the_pinned_prefect_server_starts_and_answers() -> None:
    """Prefect 3.8/3.9's server fails to import with FastAPI >= 0.155 (``Body(min_items=...)``)."""
    import fastapi
    from packaging.version import Version
    from prefect.client.orchestration import get_client

    assert Version(fastapi.__version__) < Version("0.155")
    with get_client(sync_client=True) as client:
        assert client.api_healthcheck() is None
        assert isinstance(client.read_flows(), list)


def test_bench_runs_the_benchmark_suite_with_its_options(tmp_path: Path) -> None:
    """Expect: ``prepflow bench`` is ``python -m benchmarks``: its options pass through, it writes the JSON."""
    import json

    args = ["--cases", "1", "--variants", "sklearn,prepflow", "--rows", "5000", "--runs", "1"]
    result = CliRunner().invoke(app, ["bench", *args, "--cache", str(tmp_path), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "prepflow" in result.output
    runs = json.loads((tmp_path / "r.json").read_text())
    assert {r["variant"] for r in runs["results"]} == {"sklearn", "prepflow"}, runs


def test_bench_without_the_source_checkout_says_where_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "benchmarks.runner", None)  # as in an installation without benchmarks/
    result = CliRunner().invoke(app, ["bench", "--quick"])
    assert result.exit_code == 2
    assert "source checkout" in result.output and "Traceback" not in result.output
