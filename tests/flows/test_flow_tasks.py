"""The flow's tasks as plain functions (``.fn``), the run folder and the cache key."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import polars as pl
import pytest
from prefect.states import Completed, Failed

from flows import frames, tasks
from flows.flow import plan
from pipelines import commands
from pipelines.errors import DataError, UsageError


def test_tasks_chained_by_hand_write_what_the_cli_writes(loans: tuple[Path, Path], tmp_path: Path) -> None:
    spec, data = loans
    expected = commands.run(spec, data, tmp_path / "cli.parquet", fitted_path=tmp_path / "cli.json")
    job = plan(str(spec), str(data), str(tmp_path / "flow.parquet"), fitted=str(tmp_path / "flow.json"))
    assert job.raw is not None and job.spec is not None and job.outputs is not None
    with tempfile.TemporaryDirectory() as run:
        loaded = tasks.load_input.fn(job.input, job.raw, job.spec, run)
        document = tasks.fit.fn(job.spec, loaded["clean"], loaded["fingerprint"], "hash")
        done = tasks.transform.fn(document, job.raw, job.spec, loaded, job.outputs, run, train=True, command="run")
        written = tasks.write_outputs.fn(done["frames"], document, job.raw, job.outputs["fitted"], None, None)
        assert all(Path(run, name).exists() for name in ("input.json", "clean.arrow", "out-0.arrow"))
        frames.release(run)
    assert (tmp_path / "flow.parquet").read_bytes() == (tmp_path / "cli.parquet").read_bytes()
    assert (tmp_path / "flow.json").read_bytes() == (tmp_path / "cli.json").read_bytes()
    assert done["report"]["rows"] == expected["rows"]
    assert loaded["failures"] == [
        {"column": "age", "check": "less_than_or_equal_to(120)", "rows": 1},
        {"column": "label", "check": "isin([0, 1])", "rows": 1},
    ]
    assert sorted(Path(p).name for p in written) == ["flow.json", "flow.parquet", "flow.quarantine.parquet"]


def test_an_input_without_a_schema_goes_on_unchecked(tmp_path: Path) -> None:
    pl.DataFrame({"x": [1.0, None, 3.0]}).write_csv(tmp_path / "in.csv")
    loaded = tasks.load_input.fn(str(tmp_path / "in.csv"), {"steps": []}, "spec.yaml", str(tmp_path))
    assert loaded["schema"] is False and loaded["clean"] == loaded["path"] == str(tmp_path / "input.json")
    assert (loaded["rows"], loaded["quarantine"], loaded["failures"]) == (3, None, [])
    frames.release(tmp_path)


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (OSError("Stale file handle"), True),
        (TimeoutError("read timed out"), True),
        (RuntimeError("connection reset"), True),
        (DataError("x.csv: cannot be read as .csv: bad value"), False),
        (UsageError("x.csv: input file not found"), False),
    ],
)
def test_io_tasks_retry_io_failures_only(error: Exception, retried: bool) -> None:
    assert tasks.retry_io(None, None, Failed(data=error)) is retried


def test_a_prepflow_error_caused_by_an_os_error_is_retried() -> None:
    try:
        try:
            raise OSError("Input/output error")
        except OSError as cause:
            raise DataError("x.parquet: cannot be read as .parquet: Input/output error") from cause
    except DataError as exc:
        error = exc
    assert tasks.retry_io(None, None, Failed(data=error)) is True
    assert tasks.retry_io(None, None, Completed(data=1)) is False


def test_fit_cache_key_changes_with_input_spec_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    key = tasks.fit_cache_key("input-a", "spec-a")
    assert key == tasks.fit_cache_key("input-a", "spec-a")
    assert key.startswith("prepflow-fit-")
    assert key != tasks.fit_cache_key("input-b", "spec-a")
    assert key != tasks.fit_cache_key("input-a", "spec-b")
    monkeypatch.setattr(tasks, "__version__", "99.0")
    assert key != tasks.fit_cache_key("input-a", "spec-a")


def test_spec_hash_ignores_orchestration_keys(spec_with) -> None:
    from flows.flow import _spec_hash

    plain = plan(str(spec_with("", name="a.yaml")), "in.csv", "out.parquet")
    scheduled = plan(str(spec_with("flow: {retries: 5}\n", name="b.yaml")), "in.csv", "out.parquet")
    changed = plan(str(spec_with("description: other\n", name="c.yaml")), "in.csv", "out.parquet")
    assert _spec_hash(plain.raw) == _spec_hash(scheduled.raw) != _spec_hash(changed.raw)
    assert scheduled.settings.retries == 5
    assert scheduled.raw is not None and scheduled.raw["flow"] == {"retries": 5}


def test_fit_parses_the_spec_the_flow_read_without_reading_the_file_again(spec_with) -> None:
    from pipelines.flow_spec import load

    job = plan(str(spec_with("flow: {retries: 5}\n")), "in.csv", "out.parquet")
    assert job.spec is not None and job.raw is not None
    expected = load(job.spec)[0]
    Path(job.spec).unlink()
    assert tasks.pipeline_spec(job.spec, job.raw) == expected


def test_frames_keep_chunk_layout_and_bytes_under_nulls(tmp_path: Path) -> None:
    a = pl.DataFrame({"x": [1.5, 2.5, 3.5], "s": ["a", None, "c"]})
    df = pl.concat([a, a.with_columns(pl.col("x") * 2)], rechunk=False).with_columns(
        pl.when(pl.col("x") > 3).then(None).otherwise(pl.col("x")).alias("y")
    )
    path = frames.save(df, tmp_path / "f.arrow")
    assert frames.load(path) is df, "handed on in memory within the process"
    frames.release(tmp_path)
    back = frames.load(path)
    assert back is not df and back.equals(df)
    assert [back[c].chunk_lengths() for c in back.columns] == [df[c].chunk_lengths() for c in df.columns]
    assert back["y"].to_arrow().buffers()[1] == df["y"].to_arrow().buffers()[1]
    assert frames.scan(tmp_path / "f.arrow").select(pl.len()).collect().item() == 6


def test_an_input_no_longer_held_is_read_again_unless_it_changed(tmp_path: Path) -> None:
    data = tmp_path / "in.parquet"
    pl.DataFrame({"x": [1.0, 2.0, None]}).write_parquet(data)
    run = tmp_path / "run"
    run.mkdir()
    loaded = tasks.load_input.fn(str(data), {"steps": []}, "spec.yaml", str(run))
    held = frames.load(loaded["path"])
    frames.release(run)
    again = frames.load(loaded["path"])
    assert again is not held and again.equals(held)
    pl.DataFrame({"x": [5.0]}).write_parquet(data)
    with pytest.raises(OSError, match="changed since this run read it"):
        frames.load(loaded["path"])


def test_fingerprint_follows_content_and_mtime(tmp_path: Path) -> None:
    csv = tmp_path / "in.csv"
    csv.write_text("a\n1\n")
    first = frames.fingerprint(csv)
    assert frames.fingerprint(csv) == first
    stat = csv.stat()
    csv.write_text("a\n2\n")
    os.utime(csv, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert frames.fingerprint(csv) != first, "same size and mtime, other bytes"
    os.utime(csv, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert len({first, frames.fingerprint(csv)}) == 2


def test_fingerprint_of_parquet_folders_and_globs(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    for year in (2023, 2024):
        (folder / f"year={year}").mkdir(parents=True)
        pl.DataFrame({"x": [year]}).write_parquet(folder / f"year={year}" / "0.parquet")
    whole = frames.fingerprint(folder)
    assert frames.fingerprint(str(folder / "**" / "*.parquet")) == whole
    pl.DataFrame({"x": [1]}).write_parquet(folder / "year=2024" / "0.parquet")
    assert frames.fingerprint(folder) != whole


def test_plan_fills_templates_in_the_schedule_timezone(spec_with, tmp_path: Path) -> None:
    (tmp_path / "2025-01-03").mkdir()
    spec = spec_with(
        """\
        schedule: {cron: "30 0 * * *", timezone: Europe/Paris}
        parameters: {input: "in/{date}.csv", output: "out.parquet"}
        """
    )
    job = plan(
        str(spec),
        "landing/{date}/loans.csv",
        str(tmp_path / "{date}" / "loans-{scheduled_start:%H%M}.parquet"),
        scheduled_start=dt.datetime(2025, 1, 2, 23, 30, tzinfo=dt.UTC),
    )
    assert job.input == str(Path("landing/2025-01-03/loans.csv"))
    assert job.outputs is not None and job.outputs["output"] == str(tmp_path / "2025-01-03" / "loans-0030.parquet")


def test_plan_checks_every_output_before_any_work(loans: tuple[Path, Path], tmp_path: Path) -> None:
    spec, data = loans
    with pytest.raises(UsageError, match="output folder"):
        plan(str(spec), str(data), str(tmp_path / "missing" / "out.parquet"))
    with pytest.raises(UsageError, match="output path is the input path"):
        plan(str(spec), str(data), str(data))
    with pytest.raises(UsageError, match="needs a fitted path"):
        plan(None, str(data), str(tmp_path / "o.parquet"), mode="apply")
    with pytest.raises(UsageError, match="needs a spec"):
        plan(None, str(data), str(tmp_path / "o.parquet"))
