"""The real ``prepflow`` console script: outputs, exit codes, messages, atomicity."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pytest

from transforms import Pipeline

SPEC = """
name: demo
target: label
steps:
  - {kind: scale, method: robust, columns: [a]}
  - {kind: scale, method: standard, columns: {dtype: numeric, exclude: [c]}}
"""


@pytest.fixture
def work(tmp_path: Path, messy: pl.DataFrame) -> Path:
    messy.write_csv(tmp_path / "in.csv")
    messy.write_parquet(tmp_path / "in.parquet")
    (tmp_path / "spec.yaml").write_text(SPEC)
    return tmp_path


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_run_writes_output_fitted_and_report(cli, work):
    res = cli("run", "spec.yaml", "--input", "in.csv", "--output", "out.parquet", "--fitted", "f.json",
              "--report", "r.json", cwd=work)  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = pl.read_parquet(work / "out.parquet")
    report = json.loads((work / "r.json").read_text())
    assert report["rows"] == {"in": 200, "out": 200, "quarantined": 0, "augmented": 0}
    assert [s["name"] for s in report["steps"]] == ["scale/robust", "scale/standard"]
    assert report["steps"][1]["columns"] == ["a", "b"]
    fitted = json.loads((work / "f.json").read_text())
    assert fitted["format_version"] == 1 and fitted["fit_rows"] == 200 and fitted["spec"]["name"] == "demo"
    assert out.columns == ["a", "b", "c", "city", "label"]
    assert "Traceback" not in res.stderr


def test_apply_reproduces_run_output(cli, work):
    assert (
        cli("run", "spec.yaml", "-i", "in.parquet", "-o", "run.parquet", "--fitted", "f.json", cwd=work).returncode == 0
    )
    res = cli("apply", "f.json", "-i", "in.parquet", "-o", "apply.parquet", cwd=work)
    assert res.returncode == 0, res.stderr
    assert pl.read_parquet(work / "run.parquet").equals(pl.read_parquet(work / "apply.parquet"))
    assert (
        Pipeline.load(work / "f.json")
        .transform(pl.read_parquet(work / "in.parquet"))
        .equals(pl.read_parquet(work / "apply.parquet"))
    )


def test_fit_then_apply(cli, work):
    assert cli("fit", "spec.yaml", "-i", "in.csv", "--fitted", "f.json", cwd=work).returncode == 0
    assert cli("apply", "f.json", "-i", "in.csv", "-o", "o.ndjson", cwd=work).returncode == 0
    assert pl.read_ndjson(work / "o.ndjson").height == 200


@pytest.mark.parametrize("ext", [".csv", ".parquet", ".arrow", ".ipc", ".ndjson", ".jsonl"])
def test_every_output_format_round_trips(cli, work, ext):
    res = cli("run", "spec.yaml", "-i", "in.parquet", "-o", f"out{ext}", "-q", cwd=work)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("run", "spec.yaml", "-i", "missing.csv", "-o", "o.parquet"), 2, "missing.csv: input file not found"),
        (("run", "nope.yaml", "-i", "in.csv", "-o", "o.parquet"), 2, "nope.yaml: spec file not found"),
        (("run", "spec.yaml", "-i", "in.csv", "-o", "o.xlsx"), 2, "unsupported output format '.xlsx'"),
        (("run", "spec.yaml", "-i", "in.txt", "-o", "o.csv"), 2, "unsupported input format '.txt'"),
        (("run", "spec.yaml", "-i", "in.csv", "-o", "no/such/o.csv"), 2, "does not exist"),
        (("run", "spec.yaml", "-i", "in.csv", "-o", "in.csv"), 2, "refusing to overwrite the input"),
        (("apply", "spec.yaml", "-i", "in.csv", "-o", "o.csv"), 2, "not valid JSON"),
        (("run", "spec.yaml"), 2, "Missing option"),
    ],
)
def test_usage_errors_exit_2_without_traceback(cli, work, args, code, fragment):
    (work / "in.txt").write_text("a\n1\n")
    before = _sha(work / "in.csv")
    res = cli(*args, cwd=work)
    assert res.returncode == code, res.stderr
    assert fragment in res.stderr
    assert "Traceback" not in res.stderr
    assert _sha(work / "in.csv") == before
    assert not any(p.name.startswith(("o.", ".prepflow-tmp")) for p in work.iterdir())


def test_bad_spec_exits_2_naming_file_step_and_key(cli, work):
    (work / "bad.yaml").write_text("steps:\n  - {kind: scale, method: robust, quantile_rang: [1, 2]}\n")
    res = cli("run", "bad.yaml", "-i", "in.csv", "-o", "o.parquet", cwd=work)
    assert res.returncode == 2
    assert "bad.yaml: steps[0] (scale/robust): unknown parameter 'quantile_rang'" in res.stderr
    assert "did you mean 'quantile_range'" in res.stderr


def test_spec_column_missing_in_data(cli, work):
    (work / "bad.yaml").write_text("steps:\n  - {kind: scale, method: standard, columns: [ag]}\n")
    res = cli("run", "bad.yaml", "-i", "in.csv", "-o", "o.parquet", cwd=work)
    assert res.returncode == 2
    assert "column 'ag' is not in the data" in res.stderr


def test_apply_on_changed_schema_exits_1(cli, work, messy):
    assert cli("fit", "spec.yaml", "-i", "in.parquet", "--fitted", "f.json", cwd=work).returncode == 0
    messy.drop("b").with_columns(pl.col("a").cast(pl.String)).write_parquet(work / "other.parquet")
    res = cli("apply", "f.json", "-i", "other.parquet", "-o", "o.parquet", cwd=work)
    assert res.returncode == 1
    assert "missing column(s): b" in res.stderr and "a (Float64 -> String)" in res.stderr
    assert not (work / "o.parquet").exists()


def test_fitted_artifact_of_other_version_is_refused(cli, work):
    assert cli("fit", "spec.yaml", "-i", "in.parquet", "--fitted", "f.json", cwd=work).returncode == 0
    data = json.loads((work / "f.json").read_text())
    data["format_version"] = 99
    (work / "f.json").write_text(json.dumps(data))
    res = cli("apply", "f.json", "-i", "in.parquet", "-o", "o.parquet", cwd=work)
    assert res.returncode == 2 and "format_version 99" in res.stderr


def test_verbose_adds_traceback(cli, work):
    res = cli("run", "spec.yaml", "-i", "missing.csv", "-o", "o.parquet", "--verbose", cwd=work)
    assert res.returncode == 2 and "Traceback" in res.stderr


def test_schema_prints_json_schema(cli):
    res = cli("schema")
    assert res.returncode == 0
    schema = json.loads(res.stdout)
    assert schema["title"] == "prepflow pipeline spec"


def test_steps_lists_every_step(cli):
    from transforms import registry

    res = cli("steps", "--json")
    assert res.returncode == 0
    listed = {(r["kind"], r["method"]) for r in json.loads(res.stdout)}
    assert listed == {(e.kind, e.method) for e in registry.entries()}
    assert all(r["description"] for r in json.loads(res.stdout))


def test_version(cli):
    res = cli("--version")
    assert res.returncode == 0 and res.stdout.startswith("prepflow ")
