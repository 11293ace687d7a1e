"""A corpus of bad inputs, run through the real ``prepflow`` console script.

Every case is data: the files it starts from, the command line, the documented
exit code (README "Exit codes": 0 ok, 1 the data failed, 2 bad usage or spec,
3 a bug) and a fragment of the message the user sees. For every case:

* no traceback on stderr;
* the exit code is the documented one and the message names the problem;
* a failed run writes nothing (no output, quarantine, report, fitted artifact,
  nor a ``.prepflow-tmp-*`` file); a successful one writes a readable output;
* the input files are byte-for-byte untouched (sha256 before and after).

The cases run concurrently in one module-scoped fixture (each in its own folder),
so that the corpus costs about one CLI start-up per core rather than per case.
"""

from __future__ import annotations

import csv
import hashlib
import io as io_text
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import io
from pipelines.errors import DataError
from pipelines.spec import parse_spec

# --- the files cases start from -------------------------------------------------------------

STD = "steps:\n  - {kind: scale, method: standard, columns: [x]}\n"
COERCE = """
input:
  schema:
    coerce: true
    columns:
      x: {dtype: Float64, nullable: true}
steps:
  - {kind: scale, method: standard, columns: [x]}
"""
SMOTE = "target: label\nsteps:\n  - {kind: augment, method: smote, seed: 1, columns: [x, y]}\n"
GOOD_CSV = "x,y\n1.5,a\n2.5,b\n3.5,c\n"
GOOD = pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [10, 20, 30, 40]})


def _schema_spec(columns: str, *, extra: str = "") -> str:
    """A spec with an input schema (``columns``: indented YAML lines) and one standard scaler on x."""
    return f"input:\n  schema:\n{extra}    columns:\n{columns}{STD}"


def _fitted(frame: pl.DataFrame = GOOD, spec: str = STD, edit: Callable[[dict], Any] | None = None) -> str:
    """A fitted artifact, as ``prepflow fit`` writes it, optionally edited."""
    parsed = parse_spec(yaml.safe_load(spec))
    data = parsed.pipeline().fit(frame, spec=parsed.raw).to_dict()
    if edit is not None:
        data = edit(data) or data
    return json.dumps(data, indent=2)


def _set(key: str, value: Any) -> Callable[[dict], None]:
    return lambda d: d.__setitem__(key, value)


def _stray_late() -> str:
    rows = [f"{i}.5,{i}" for i in range(12_000)]
    rows[11_000] = "n/a,11000"
    return "x,y\n" + "\n".join(rows) + "\n"


def _two_classes(n: int = 40, *, classes: int = 2) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame({"x": rng.normal(size=n), "y": rng.normal(size=n), "label": np.arange(n) % classes})


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buf = io_text.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


# --- the corpus -----------------------------------------------------------------------------

Files = dict[str, "str | bytes | pl.DataFrame | None"]
"""File name -> contents: text, bytes, a frame (written by extension) or None (a folder)."""


@dataclass(frozen=True)
class Case:
    name: str
    files: Files
    args: tuple[str, ...]
    code: int
    fragment: str
    writes: tuple[str, ...] = ()  # files a successful run must write (besides nothing else)
    check: Callable[[Path], None] | None = None  # more checks on a successful run's folder
    xfail: str | None = None  # a known defect outside the files this suite's author owns
    marks: tuple[Any, ...] = field(default=())


def run_args(spec: str = "spec.yaml", inp: str = "in.csv", out: str = "out.parquet", *more: str) -> tuple[str, ...]:
    return ("run", spec, "--input", inp, "--output", out, *more)


def apply_args(fitted: str = "f.json", inp: str = "in.parquet", out: str = "out.parquet") -> tuple[str, ...]:
    return ("apply", fitted, "--input", inp, "--output", out)


def _check_quoted_newlines(d: Path) -> None:
    out = pl.read_parquet(d / "out.parquet")
    assert out["y"].to_list() == ["a\nb", "plain", 'say "hi"']


def _check_stray_quarantined(row: int, value: str, rows_out: int) -> Callable[[Path], None]:
    def check(d: Path) -> None:
        q = pl.read_parquet(d / "out.quarantine.parquet")
        assert q["__row"].to_list() == [row]
        assert q["x"].to_list() == [value]  # the original text, unchanged
        assert q["__reasons"].to_list() == [["x:coerce(Float64)"]]
        assert q["__stage"].to_list() == ["input"]
        assert pl.read_parquet(d / "out.parquet").height == rows_out

    return check


def _check_all_null(d: Path) -> None:
    out = pl.read_parquet(d / "out.parquet")
    assert out["x"].null_count() == out.height == 3


def _check_constant(d: Path) -> None:
    assert pl.read_parquet(d / "out.parquet")["x"].to_list() == [0.0, 0.0, 0.0]  # scale of a constant is 1


def _check_nan_inf(d: Path) -> None:
    x = pl.read_parquet(d / "out.parquet")["x"].to_list()
    assert np.isnan(x[0]) and x[1] == np.inf and x[2] == -np.inf and x[4] is None
    assert np.isfinite(x[3]) and np.isfinite(x[5])


def _check_huge(d: Path) -> None:
    assert pl.read_parquet(d / "out.parquet").height == 4


def _check_rows(n: int) -> Callable[[Path], None]:
    def check(d: Path) -> None:
        assert pl.read_parquet(d / "out.parquet").height == n

    return check


def _check_empty_output(d: Path) -> None:
    out = pl.read_parquet(d / "out.parquet")
    assert out.height == 0 and out.schema["x"] == pl.Float64
    assert pl.read_parquet(d / "out.quarantine.parquet").height == 3


CASES: list[Case] = [
    # --- reading the input: CSV --------------------------------------------------------------
    Case("empty_file", {"spec.yaml": STD, "in.csv": ""}, run_args(), 1, "in.csv: the file is empty"),
    Case(
        "header_only_csv",
        {"spec.yaml": STD, "in.csv": "x,y\n"},
        run_args(),
        1,
        "in.csv: the CSV has a header but no data rows (columns: x, y)",
    ),
    Case(
        "ragged_long_row",
        {"spec.yaml": STD, "in.csv": "x,y\n1,2\n3,4\n5,6,7\n"},
        run_args(),
        1,
        "in.csv: ragged CSV: data row 3 (line 4) has 3 field(s), the header has 2",
    ),
    Case(
        "ragged_short_row",
        {"spec.yaml": STD, "in.csv": "x,y\n1,2\n3\n5,6\n"},
        run_args(),
        1,
        "in.csv: ragged CSV: data row 2 (line 3) has 1 field(s), the header has 2",
    ),
    Case(
        "blank_line_in_csv",
        {"spec.yaml": STD, "in.csv": "x,y\n1,2\n\n5,6\n"},
        run_args(),
        1,
        "in.csv: ragged CSV: data row 2 (line 3) is blank, the header has 2",
    ),
    Case(
        "unclosed_quote",
        {"spec.yaml": STD, "in.csv": 'x,y\n1,2\n3,"open\n5,6\n'},
        run_args(),
        1,
        """in.csv: malformed CSV: the quoted field (") that opens on line 3 is never closed""",
    ),
    Case(
        "semicolon_delimiter",
        {"spec.yaml": STD, "in.csv": "x;y\n1,5;2\n3,5;4\n"},
        run_args(),
        2,
        "in.csv: the header 'x;y' looks semicolon-separated; prepflow reads comma-separated CSV",
    ),
    Case("tab_delimiter", {"spec.yaml": STD, "in.csv": "x\ty\n1\t2\n"}, run_args(), 2, "looks tab-separated"),
    Case(
        "non_utf8_bytes",
        {"spec.yaml": STD, "in.csv": b"x,y\n1,a\n2,caf\xe9\n"},
        run_args(),
        1,
        "in.csv: is not UTF-8 text: invalid byte 0xE9 at line 3",
    ),
    Case(
        "quoted_newlines_succeed",
        {"spec.yaml": STD, "in.csv": 'x,y\n1,"a\nb"\n2,plain\n3,"say ""hi"""\n'},
        run_args(),
        0,
        "wrote out.parquet (in 3, out 3",
        writes=("out.parquet",),
        check=_check_quoted_newlines,
    ),
    Case(
        "duplicate_header_names",
        {"spec.yaml": STD, "in.csv": "x,y,x\n1,2,3\n"},
        run_args(),
        1,
        "in.csv: duplicate column name 'x' in the CSV header (columns 1 and 3)",
    ),
    Case(
        "stray_text_with_schema_coerce_is_quarantined",
        {"spec.yaml": COERCE, "in.csv": "x,y\n1.5,a\noops,b\n3.5,c\n"},
        run_args(),
        0,
        "quarantined 1 row(s) to out.quarantine.parquet: {'x:coerce(Float64)': 1}",
        writes=("out.parquet", "out.quarantine.parquet"),
        check=_check_stray_quarantined(1, "oops", 2),
    ),
    Case(
        "stray_text_past_inference_window_is_quarantined",
        {"spec.yaml": COERCE, "in.csv": _stray_late()},
        run_args(),
        0,
        "quarantined 1 row(s)",
        writes=("out.parquet", "out.quarantine.parquet"),
        check=_check_stray_quarantined(11_000, "n/a", 11_999),
    ),
    Case(
        "stray_text_without_schema",
        {"spec.yaml": STD, "in.csv": "x,y\n1.5,a\noops,b\n"},
        run_args(),
        2,
        "spec.yaml: steps[0] (scale/standard): column 'x' has dtype String; this step needs numeric columns",
    ),
    # --- values -----------------------------------------------------------------------------
    Case(
        "all_null_column",
        {"spec.yaml": STD, "in.parquet": pl.DataFrame({"x": [None, None, None]}, schema={"x": pl.Float64})},
        run_args(inp="in.parquet"),
        0,
        "wrote out.parquet (in 3, out 3",
        writes=("out.parquet",),
        check=_check_all_null,
    ),
    Case(
        "all_null_csv_column_with_schema",
        {"spec.yaml": COERCE, "in.csv": "x,y\n,a\n,b\n,c\n"},
        run_args(),
        0,
        "wrote out.parquet (in 3, out 3",
        writes=("out.parquet",),
        check=_check_all_null,
    ),
    Case(
        "constant_column",
        {"spec.yaml": STD, "in.csv": "x\n5\n5\n5\n"},
        run_args(),
        0,
        "(in 3, out 3",
        writes=("out.parquet",),
        check=_check_constant,
    ),
    Case(
        "nan_inf_minus_inf",
        {"spec.yaml": STD, "in.csv": "x\nNaN\ninf\n-inf\n1.5\n\n2.5\n"},
        run_args(),
        0,
        "(in 6, out 6",
        writes=("out.parquet",),
        check=_check_nan_inf,
    ),
    Case(
        "values_near_float_max",
        {"spec.yaml": STD, "in.csv": "x\n1e308\n-1e308\n1e308\n5\n"},
        run_args(),
        0,
        "(in 4, out 4",
        writes=("out.parquet",),
        check=_check_huge,
    ),
    Case(
        "one_row",
        {"spec.yaml": STD, "in.csv": "x,y\n7,a\n"},
        run_args(),
        0,
        "(in 1, out 1",
        writes=("out.parquet",),
        check=_check_rows(1),
    ),
    Case(
        "zero_rows_parquet",
        {"spec.yaml": STD, "in.parquet": GOOD.clear()},
        run_args(inp="in.parquet"),
        0,
        "(in 0, out 0",
        writes=("out.parquet",),
        check=_check_rows(0),
    ),
    Case(
        "zero_rows_after_quarantine_warns",
        {"spec.yaml": _schema_spec("      x: {dtype: Float64, checks: {ge: 100}}\n"), "in.csv": "x\n1.5\n2.5\n3.5\n"},
        run_args(),
        0,
        "warning: every input row was quarantined; out.parquet is empty",
        writes=("out.parquet", "out.quarantine.parquet"),
        check=_check_empty_output,
    ),
    # --- the input schema -----------------------------------------------------------------------
    Case(
        "schema_column_missing",
        {"spec.yaml": _schema_spec("      x: {dtype: Float64}\n      z: {dtype: Int64}\n"), "in.csv": GOOD_CSV},
        run_args(),
        1,
        "in.csv: does not match the input schema: column 'z' is missing",
    ),
    Case(
        "strict_extra_column",
        {"spec.yaml": _schema_spec("      x: {dtype: Float64}\n", extra="    strict: true\n"), "in.csv": GOOD_CSV},
        run_args(),
        1,
        "column 'y' is not in the schema (strict: true)",
    ),
    Case(
        "wrong_dtype_without_coerce",
        {"spec.yaml": _schema_spec("      x: {dtype: Float64}\n"), "in.csv": "x\n1\n2\n"},
        run_args(),
        1,
        "column 'x' has dtype Int64, expected Float64",
    ),
    Case(
        "invalid_rows_with_on_invalid_rows_fail",
        {
            "spec.yaml": _schema_spec("      x: {dtype: Float64, checks: {le: 3}}\n  on_invalid_rows: fail\n"),
            "in.csv": GOOD_CSV,
        },
        run_args(),
        1,
        "in.csv: 1 row(s) fail the input schema (on_invalid_rows: fail):\n  row 2: x:less_than_or_equal_to(3)",
    ),
    Case(
        "unknown_dtype_in_schema",
        {"spec.yaml": _schema_spec("      x: {dtype: float64}\n"), "in.csv": GOOD_CSV},
        run_args(),
        2,
        "spec.yaml: input: schema.columns.x.dtype: unknown dtype 'float64' (did you mean 'Float64'?)",
    ),
    Case(
        "unknown_check_in_schema",
        {"spec.yaml": _schema_spec("      x: {checks: {gte: 1}}\n"), "in.csv": GOOD_CSV},
        run_args(),
        2,
        "unknown check 'gte' (did you mean 'gt'?)",
    ),
    # --- reading the input: Parquet, folders, paths -------------------------------------------
    Case(
        "truncated_parquet",
        {"spec.yaml": STD, "in.parquet": _parquet_bytes(GOOD)[:200]},
        run_args(inp="in.parquet"),
        1,
        "in.parquet: is a truncated or incomplete Parquet file",
    ),
    Case(
        "csv_named_parquet",
        {"spec.yaml": STD, "in.parquet": GOOD_CSV},
        run_args(inp="in.parquet"),
        1,
        "in.parquet: is not a Parquet file: it does not start with the Parquet magic bytes 'PAR1' "
        "(it looks like text: a CSV saved under a .parquet name?)",
    ),
    Case(
        "folder_without_parquet",
        {"spec.yaml": STD, "data": None, "data/notes.csv": GOOD_CSV},
        run_args(inp="data"),
        2,
        "data: is a folder with no .parquet files",
    ),
    Case(
        "bad_ndjson_line",
        {"spec.yaml": STD, "in.ndjson": '{"x": 1.0}\n{"x": 2.0\n'},
        run_args(inp="in.ndjson"),
        1,
        "in.ndjson: line 2 is not valid JSON",
    ),
    Case("missing_input", {"spec.yaml": STD}, run_args(inp="nope.csv"), 2, "nope.csv: input file not found"),
    Case(
        "output_folder_missing",
        {"spec.yaml": STD, "in.csv": GOOD_CSV},
        run_args(out="nodir/out.parquet"),
        2,
        "nodir/out.parquet: the output folder nodir does not exist",
    ),
    Case(
        "output_is_input",
        {"spec.yaml": STD, "in.csv": GOOD_CSV},
        run_args(out="in.csv"),
        2,
        "in.csv: the output path is the input path; refusing to overwrite the input",
    ),
    Case(
        "output_is_input_other_spelling",
        {"spec.yaml": STD, "sub": None, "in.csv": GOOD_CSV},
        run_args(out="sub/../in.csv"),
        2,
        "refusing to overwrite the input",
    ),
    Case(
        "report_over_input",
        {"spec.yaml": STD, "in.csv": GOOD_CSV},
        run_args("spec.yaml", "in.csv", "out.parquet", "--report", "in.csv"),
        2,
        "refusing to overwrite the input",
    ),
    # --- fitted artifacts -------------------------------------------------------------------------
    Case(
        "fitted_other_format_version",
        {"in.parquet": GOOD, "f.json": _fitted(edit=_set("format_version", 2))},
        apply_args(),
        2,
        "f.json: fitted artifact has format_version 2; this prepflow",
    ),
    Case(
        "fitted_invalid_json",
        {"in.parquet": GOOD, "f.json": _fitted()[:-40]},
        apply_args(),
        2,
        "f.json: not valid JSON (line",
    ),
    Case(
        "fitted_not_an_artifact",
        {"in.parquet": GOOD, "f.json": "[1, 2, 3]"},
        apply_args(),
        2,
        'f.json: not a prepflow fitted artifact (expected "format": "prepflow.fitted")',
    ),
    Case(
        "fitted_unknown_step",
        {"in.parquet": GOOD, "f.json": _fitted(edit=lambda d: d["steps"][0].__setitem__("method", "shell"))},
        apply_args(),
        2,
        "f.json: invalid fitted step scale/shell: unknown method 'shell' for kind 'scale'",
    ),
    Case(
        "fitted_input_schema_mismatch",
        {"in.parquet": GOOD.with_columns(pl.col("x").cast(pl.String)), "f.json": _fitted()},
        apply_args(),
        1,
        "in.parquet: input does not match the schema the pipeline was fitted on: changed dtype(s): "
        "x (Float64 -> String)",
    ),
    Case(
        "fitted_column_missing",
        {"in.parquet": GOOD.drop("x"), "f.json": _fitted()},
        apply_args(),
        1,
        "input does not match the schema the pipeline was fitted on: missing column(s): x",
    ),
    # --- the spec -------------------------------------------------------------------------------
    Case(
        "yaml_syntax_error",
        {"spec.yaml": "steps:\n  - {kind: scale, method: standard\n  - {kind: impute}\n", "in.csv": GOOD_CSV},
        run_args(),
        2,
        "spec.yaml: YAML syntax error at line 3, column 5",
    ),
    Case(
        "spec_not_utf8",
        {"spec.yaml": b"name: caf\xe9\nsteps: []\n", "in.csv": GOOD_CSV},
        run_args(),
        2,
        "spec.yaml: not UTF-8 text",
    ),
    Case(
        "spec_is_a_list",
        {"spec.yaml": "- {kind: scale, method: standard}\n", "in.csv": GOOD_CSV},
        run_args(),
        2,
        "spec.yaml: a spec must be a mapping with a 'steps' list, got list",
    ),
    Case(
        "unknown_top_level_key",
        {"spec.yaml": "step:\n  - {kind: scale, method: standard}\n", "in.csv": GOOD_CSV},
        run_args(),
        2,
        "spec.yaml: unknown top-level key 'step' (did you mean 'steps'?)",
    ),
    Case(
        "unknown_step_kind",
        {"spec.yaml": "steps:\n  - {kind: scael, method: standard}\n", "in.csv": GOOD_CSV},
        run_args(),
        2,
        "spec.yaml: steps[0]: unknown step kind 'scael' (did you mean 'scale'?)",
    ),
    Case(
        "unknown_method",
        {"spec.yaml": "steps:\n  - {kind: scale, method: standart}\n", "in.csv": GOOD_CSV},
        run_args(),
        2,
        "spec.yaml: steps[0]: unknown method 'standart' for kind 'scale' (did you mean 'standard'?)",
    ),
    Case(
        "unknown_parameter",
        {"spec.yaml": "steps:\n  - {kind: scale, method: minmax, feature_rang: [0, 1]}\n", "in.csv": GOOD_CSV},
        run_args(),
        2,
        "spec.yaml: steps[0] (scale/minmax): unknown parameter 'feature_rang' (did you mean 'feature_range'?)",
    ),
    Case(
        "parameter_of_wrong_type",
        {"spec.yaml": "steps:\n  - {kind: scale, method: minmax, feature_range: wide}\n", "in.csv": GOOD_CSV},
        run_args(),
        2,
        "spec.yaml: steps[0] (scale/minmax): parameter 'feature_range': Input should be a valid",
    ),
    Case(
        "columns_not_in_data",
        {"spec.yaml": "steps:\n  - {kind: scale, method: standard, columns: [nope]}\n", "in.csv": GOOD_CSV},
        run_args(),
        2,
        "spec.yaml: steps[0] (scale/standard): column 'nope' is not in the data; available: x, y",
    ),
    Case(
        "zero_steps",
        {"spec.yaml": "name: empty\nsteps: []\n", "in.csv": GOOD_CSV},
        run_args(),
        2,
        "spec.yaml: 'steps' must be a non-empty list of steps (a pipeline needs at least one step)",
    ),
    Case(
        "smote_target_missing",
        {"spec.yaml": SMOTE, "in.parquet": _two_classes().drop("label")},
        run_args(inp="in.parquet"),
        2,
        "spec.yaml: steps[0] (augment/smote): column 'label' is not in the data",
    ),
    Case(
        "smote_single_class",
        {"spec.yaml": SMOTE, "in.parquet": _two_classes(classes=1)},
        run_args(inp="in.parquet"),
        1,
        "spec.yaml: steps[0] (augment/smote): single-class target 'label' (1 class(es)); SMOTE needs two or more",
    ),
    Case(
        "log_on_negative_values",
        {"spec.yaml": "steps:\n  - {kind: scale, method: log, columns: [x]}\n", "in.csv": "x\n-5\n1\n2\n"},
        run_args(),
        1,
        "spec.yaml: steps[0] (scale/log): column 'x' has values <= -1 (min -5)",
    ),
]


# --- running the corpus ---------------------------------------------------------------------


def prepflow_exe() -> str:
    exe = Path(sys.executable).with_name("prepflow")
    return str(exe) if exe.exists() else "prepflow"


def _write(d: Path, files: Files) -> None:
    for name, content in files.items():
        p = d / name
        if content is None:
            p.mkdir(parents=True, exist_ok=True)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, pl.DataFrame):
            {".csv": content.write_csv, ".parquet": content.write_parquet}[p.suffix](p)
        elif isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")


def _snapshot(d: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``d`` (folders as "<dir>")."""
    out = {}
    for p in sorted(d.rglob("*")):
        rel = str(p.relative_to(d))
        out[rel] = "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclass
class Result:
    folder: Path
    before: dict[str, str]
    after: dict[str, str]
    proc: subprocess.CompletedProcess[str]


def _run_case(case: Case, d: Path) -> Result:
    d.mkdir(parents=True)
    _write(d, case.files)
    before = _snapshot(d)
    proc = subprocess.run([prepflow_exe(), *case.args], cwd=d, capture_output=True, text=True, timeout=300, check=False)
    return Result(d, before, _snapshot(d), proc)


@pytest.fixture(scope="module")
def results(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    """Run every selected case concurrently, each in its own folder."""
    wanted = set()
    for item in request.session.items:  # doctest items have no module, unparametrized ones no callspec
        callspec = getattr(item, "callspec", None)
        if getattr(item, "module", None) is request.module and callspec is not None and "case" in callspec.params:
            wanted.add(callspec.params["case"].name)
    root = tmp_path_factory.mktemp("bad_inputs")
    cases = [c for c in CASES if c.name in wanted]
    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as pool:
        done = pool.map(lambda c: (c.name, _run_case(c, root / c.name)), cases)
        return dict(done)


def _param(case: Case) -> Any:
    marks = list(case.marks)
    if case.xfail:
        marks.append(pytest.mark.xfail(reason=case.xfail, strict=True))
    return pytest.param(case, id=case.name, marks=marks)


def test_corpus_is_large_and_covers_every_exit_code():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)
    assert {c.code for c in CASES} == {0, 1, 2}


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input(case: Case, results: dict[str, Result]) -> None:
    res = results[case.name]
    stderr = res.proc.stderr
    assert "Traceback" not in stderr, stderr
    assert res.proc.returncode == case.code, f"exit {res.proc.returncode}, stderr:\n{stderr}"
    assert case.fragment in stderr, f"{case.fragment!r} not in:\n{stderr}"
    # inputs untouched: every file that was there before is byte-for-byte the same
    assert {k: v for k, v in res.after.items() if k in res.before} == res.before
    new = sorted(set(res.after) - set(res.before))
    assert not [n for n in new if Path(n).name.startswith(".prepflow-tmp")], new
    if case.code == 0:
        assert new == sorted(case.writes), new
    else:
        assert new == [], f"a failed run wrote {new}"
        assert stderr.startswith("error: ") and stderr.count("\n") <= 12, stderr  # one paragraph, not a dump
    if case.check is not None:
        case.check(res.folder)


# --- the CSV field-count check, in process ----------------------------------------------------

FIELD = st.one_of(
    st.text(alphabet='ab,"\n x', max_size=6),
    st.sampled_from(["", "1.5", "a,b", 'say "hi"', "two\nlines", '"']),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    width=st.integers(1, 4),
    rows=st.lists(st.lists(FIELD, min_size=1, max_size=5), min_size=1, max_size=8),
    chunk=st.integers(1, 64),
    final_newline=st.booleans(),
    crlf=st.booleans(),
)
def test_field_count_check_agrees_with_the_csv_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, width: int, rows: list[list[str]], chunk: int,
    final_newline: bool, crlf: bool,
) -> None:  # fmt: skip
    buf = io_text.StringIO()
    csv.writer(buf, lineterminator="\r\n" if crlf else "\n").writerows([[f"c{i}" for i in range(width)], *rows])
    text = buf.getvalue() if final_newline else buf.getvalue().rstrip("\r\n")
    p = tmp_path / "f.csv"
    p.write_text(text, encoding="utf-8", newline="")
    monkeypatch.setattr(io, "_CHUNK", chunk)  # records and quotes across chunk boundaries
    reader = csv.reader(text.splitlines(keepends=True) if text else [])
    records = list(reader)
    bad = next((i for i, fields in enumerate(records) if i and len(fields) != width), None)
    if bad is None:
        io._check_fields(p, width)
        assert pl.read_csv(p, infer_schema=False).height == len(records) - 1  # Polars parses it the same way
        return
    with pytest.raises(DataError) as info:
        io._check_fields(p, width)
    assert f"ragged CSV: data row {bad} " in str(info.value)


@pytest.mark.parametrize(
    ("content", "outcome"),
    [
        (b"\nx,y\n1,2\n", "the first line, the CSV header, is blank"),
        (b"x,y\r\n1,2\r\n\r\n", "ragged CSV: data row 2 (line 3) is blank"),
        (b"x,y\n1,2\n3,4", (2, 2)),  # no final newline
        (b"\xef\xbb\xbfx,y\n1,2\n", (1, 2)),  # a UTF-8 byte-order mark
        (b"x\n1\n\n3\n", (3, 1)),  # in a one-column file a blank line is a null, not a ragged row
        (b'x,y\n1,"a,b"\n2,"say ""hi"""\n', (2, 2)),
        (b'x,y\n1,"multi\nline, with comma"\n', (1, 2)),
    ],
)
def test_csv_reading_in_process(tmp_path: Path, content: bytes, outcome: str | tuple[int, int]) -> None:
    p = tmp_path / "f.csv"
    p.write_bytes(content)
    if isinstance(outcome, str):
        with pytest.raises(DataError, match=re.escape(outcome)):
            io.read(p)
    else:
        df = io.read(p)
        assert df.shape == outcome and df.columns[0] == "x"


# --- messages of steps that cannot fit name the spec file and the step -----------------------

STEP_ERRORS = [
    (
        "steps:\n  - {kind: scale, method: standard, columns: [nope]}\n",
        GOOD,
        "steps[0] (scale/standard): column 'nope'",
    ),
    (SMOTE, _two_classes().drop("label"), "steps[0] (augment/smote): column 'label'"),
    (SMOTE, _two_classes(classes=1), "steps[0] (augment/smote): single-class target 'label'"),
    (
        "steps:\n  - {kind: impute, method: mean}\n  - {kind: scale, method: log, columns: [x]}\n",
        pl.DataFrame({"x": [-5.0, 1.0]}),
        "steps[1] (scale/log): column 'x' has values <= -1",
    ),
]


@pytest.mark.parametrize(("spec", "frame", "fragment"), STEP_ERRORS, ids=["columns", "target", "classes", "log"])
def test_fit_errors_name_the_spec_file_and_step(tmp_path: Path, spec: str, frame: pl.DataFrame, fragment: str) -> None:
    from pipelines import commands
    from transforms.errors import PrepflowError

    (tmp_path / "spec.yaml").write_text(spec)
    frame.write_parquet(tmp_path / "in.parquet")
    with pytest.raises(PrepflowError) as info:
        commands.run(tmp_path / "spec.yaml", tmp_path / "in.parquet", tmp_path / "out.parquet")
    assert str(info.value).startswith(f"{tmp_path / 'spec.yaml'}: {fragment}"), str(info.value)
