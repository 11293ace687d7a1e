"""The ``preprocess`` flow on a Prefect test server: the CLI's bytes, caching, retries, failures, artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from flows import preprocess
from pipelines import commands, engine, io

pytestmark = pytest.mark.usefixtures("prefect_server")
ROOT = Path(__file__).resolve().parents[2]


def comparable(report: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A report without timings, with the output folder written as ``<out>``."""
    data = json.loads(json.dumps(report).replace(str(folder), "<out>"))
    data.pop("seconds", None)
    for step in data.get("steps", []):
        step.pop("fit_group_seconds", None)
    return data


def test_flow_writes_the_same_bytes_and_report_as_the_cli(loans: tuple[Path, Path], tmp_path: Path, cli) -> None:
    spec, data = loans
    by_cli, by_flow = tmp_path / "cli", tmp_path / "flow"
    by_cli.mkdir()
    by_flow.mkdir()
    args = ("--fitted", by_cli / "fitted.json", "--report", by_cli / "report.json")
    done = cli("run", spec, "--input", data, "--output", by_cli / "out.parquet", *args)
    assert done.returncode == 0, done.stderr

    result = preprocess(
        str(spec),
        str(data),
        str(by_flow / "out.parquet"),
        fitted=str(by_flow / "fitted.json"),
        report=str(by_flow / "report.json"),
    )

    assert sorted(p.name for p in by_flow.iterdir()) == sorted(p.name for p in by_cli.iterdir())
    for name in ("out.parquet", "out.quarantine.parquet", "fitted.json"):
        assert (by_flow / name).read_bytes() == (by_cli / name).read_bytes(), name
    cli_report = json.loads((by_cli / "report.json").read_text())
    assert comparable(result, by_flow) == comparable(cli_report, by_cli)
    assert json.loads((by_flow / "report.json").read_text()) == json.loads(json.dumps(result))
    assert result["rows"]["quarantined"] >= 3  # two invalid input rows and the income outlier


@pytest.mark.parametrize(
    ("spec", "data", "suffix"),
    [
        ("loans", "loans", ".csv"),
        ("data_samples/credit.yaml", "data_samples/credit.csv", ".parquet"),
        ("data_samples/sensors.yaml", "data_samples/sensors.parquet", ".arrow"),
    ],
)
def test_flow_matches_the_job_layer_on_samples(
    loans: tuple[Path, Path], tmp_path: Path, spec: str, data: str, suffix: str
) -> None:
    spec_path, data_path = loans if spec == "loans" else (ROOT / spec, ROOT / data)
    if not spec_path.exists():
        pytest.skip(f"{spec} is not in this checkout")
    expected = commands.run(spec_path, data_path, tmp_path / f"cli{suffix}", fitted_path=tmp_path / "cli.json")
    result = preprocess(
        str(spec_path), str(data_path), str(tmp_path / f"flow{suffix}"), fitted=str(tmp_path / "f.json")
    )
    assert (tmp_path / f"flow{suffix}").read_bytes() == (tmp_path / f"cli{suffix}").read_bytes()
    assert (tmp_path / "f.json").read_bytes() == (tmp_path / "cli.json").read_bytes()
    assert result["rows"] == expected["rows"]
    assert [s["name"] for s in result["steps"]] == [s["name"] for s in expected["steps"]]


def test_fit_and_apply_modes_match_the_job_layer(loans: tuple[Path, Path], tmp_path: Path) -> None:
    spec, data = loans
    new = tmp_path / "new.parquet"
    pl.read_csv(data).head(500).write_parquet(new)
    expected_fit = commands.fit(spec, data, tmp_path / "cli.json")
    result_fit = preprocess(str(spec), str(data), fitted=str(tmp_path / "flow.json"), mode="fit")
    assert (tmp_path / "flow.json").read_bytes() == (tmp_path / "cli.json").read_bytes()
    assert result_fit == {**expected_fit, "fitted": str(tmp_path / "flow.json")}

    expected = commands.apply(tmp_path / "cli.json", new, tmp_path / "cli.csv")
    result = preprocess(None, str(new), str(tmp_path / "flow.csv"), fitted=str(tmp_path / "flow.json"), mode="apply")
    assert (tmp_path / "flow.csv").read_bytes() == (tmp_path / "cli.csv").read_bytes()
    assert result["rows"] == expected["rows"]
    assert result["rows"]["augmented"] == 0


def test_cached_fit_is_reused_on_unchanged_input_and_recomputed_when_it_changes(
    loans: tuple[Path, Path], tmp_path: Path, frame, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, data = loans
    fits: list[int] = []
    real_fit = engine.fit
    monkeypatch.setattr(engine, "fit", lambda *a, **k: fits.append(1) or real_fit(*a, **k))

    preprocess(str(spec), str(data), str(tmp_path / "a.parquet"))
    preprocess(str(spec), str(data), str(tmp_path / "b.parquet"))
    assert len(fits) == 1, "the second run on the same input reuses the cached fit"
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()

    frame(seed=4).write_csv(data)
    preprocess(str(spec), str(data), str(tmp_path / "c.parquet"))
    assert len(fits) == 2, "a changed input is fitted again"

    spec.write_text(spec.read_text().replace("threshold: 3.0", "threshold: 3.5"))
    preprocess(str(spec), str(data), str(tmp_path / "d.parquet"))
    assert len(fits) == 3, "a changed spec is fitted again"


def test_io_tasks_that_fail_once_are_retried(spec_with, loans, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, data = loans
    spec = spec_with("flow: {retries: 2, retry_delay_seconds: 0}\n")
    calls = {"read": 0, "write": 0}
    real_read, real_write = io.read, io.write_frames

    def flaky_read(path):
        calls["read"] += 1
        if calls["read"] == 1:
            raise OSError("Stale file handle")
        return real_read(path)

    def flaky_write(frames, texts=None):
        calls["write"] += 1
        if calls["write"] == 1:
            raise OSError("No space left on device")
        return real_write(frames, texts)

    monkeypatch.setattr(io, "read", flaky_read)
    monkeypatch.setattr(io, "write_frames", flaky_write)
    state = preprocess(str(spec), str(data), str(tmp_path / "out.parquet"), return_state=True)
    assert state.is_completed(), state.message
    assert calls == {"read": 2, "write": 2}
    assert (tmp_path / "out.parquet").exists()


def test_unreadable_data_is_not_retried(spec_with, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_with("flow: {retries: 2, retry_delay_seconds: 0}\n")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet PAR1")
    reads: list[int] = []
    real_read = io.read
    monkeypatch.setattr(io, "read", lambda p: reads.append(1) or real_read(p))
    state = preprocess(str(spec), str(bad), str(tmp_path / "out.parquet"), return_state=True)
    assert state.is_failed()
    assert "cannot be read" in state.message
    assert len(reads) == 1


@pytest.mark.parametrize(
    ("change", "names"),
    [
        (("on_invalid_rows: quarantine", "on_invalid_rows: fail"), ("age", "less_than_or_equal_to(120)", "label")),
        (("age: {dtype: Float64, nullable: false}", "age: {dtype: Float64, checks: {le: -5}}"), ("age", "le")),
    ],
    ids=["input", "output"],
)
def test_failed_validation_fails_the_run_and_writes_nothing(
    spec_with, loans, tmp_path: Path, change: tuple[str, str], names: tuple[str, ...]
) -> None:
    _, data = loans
    spec = spec_with("", replace=change)
    out = tmp_path / "out" / "o.parquet"
    out.parent.mkdir()
    state = preprocess(str(spec), str(data), str(out), fitted=str(out.with_suffix(".json")), return_state=True)
    assert state.is_failed()
    assert "DataError" in state.message
    for name in names:
        assert name in state.message
    assert list(out.parent.iterdir()) == []


def test_artifacts_show_metrics_validation_and_outputs(loans: tuple[Path, Path], tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    spec, data = loans
    out = tmp_path / "out.parquet"
    state = preprocess(str(spec), str(data), str(out), return_state=True)
    report = state.result()
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
    by_key = {a.key: a for a in found}
    assert set(by_key) == {"prepflow-loans-steps", "prepflow-loans-validation", "prepflow-loans-output"}
    assert by_key["prepflow-loans-steps"].type == "table"

    table = by_key["prepflow-loans-steps"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert [r["step"] for r in rows] == [s["name"] for s in report["steps"]]
    dropped = next(r for r in rows if r["step"].startswith("outliers"))
    assert dropped["rows_dropped"] == report["steps"][1]["rows_dropped"] >= 1

    markdown = by_key["prepflow-loans-validation"].data
    for reason, n in report["quarantine"]["reasons"].items():
        assert f"| {reason} | {n} |" in markdown
    assert "| age | less_than_or_equal_to(120) | 1 |" in markdown
    assert out.resolve().as_uri() in by_key["prepflow-loans-output"].data


def test_a_streamed_spec_runs_streamed_in_the_flow_with_the_cli_result(
    loans: tuple[Path, Path], spec_with, tmp_path: Path, cli
) -> None:
    """engine.streaming: true makes the flow run the job streamed, as the CLI does: same output and artifact."""
    spec = spec_with("engine: {streaming: true, exact_quantiles: true, chunk_rows: 500}\n")
    data = loans[1]
    by_cli, by_flow = tmp_path / "cli", tmp_path / "flow"
    by_cli.mkdir()
    by_flow.mkdir()
    done = cli("run", spec, "--input", data, "--output", by_cli / "out.parquet", "--fitted", by_cli / "fitted.json")
    assert done.returncode == 0, done.stderr

    result = preprocess(str(spec), str(data), str(by_flow / "out.parquet"), fitted=str(by_flow / "fitted.json"))

    assert result["engine"]["regime"] == "streaming"
    assert result["rows"]["quarantined"] > 0
    assert sorted(p.name for p in by_flow.iterdir()) == sorted(p.name for p in by_cli.iterdir())
    assert pl.read_parquet(by_flow / "out.parquet").equals(pl.read_parquet(by_cli / "out.parquet"))
    fitted = json.loads((by_flow / "fitted.json").read_text())
    assert fitted["fit_method"] == {"regime": "streaming", "quantiles": "exact"}
    assert fitted["steps"] == json.loads((by_cli / "fitted.json").read_text())["steps"]
