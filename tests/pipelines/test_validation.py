"""Input/output validation with pandera, the quarantine, ``validate`` and ``infer-schema``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipelines import validation
from pipelines.errors import DataError
from pipelines.infer import infer_schema
from pipelines.schema import CHECKS, SchemaSpec
from pipelines.spec import parse_spec

FRAME = pl.DataFrame(
    {
        "x": [1.0, 5.0, None, 12.0, math.nan],
        "s": ["ab", "abc", "zz", None, "ab"],
        "k": [1, 1, 2, 3, 4],
    }
)


def _schema(columns: dict[str, Any], **frame: Any) -> Any:
    return SchemaSpec.model_validate({"columns": columns, **frame}).compile()


def _failing(df: pl.DataFrame, columns: dict[str, Any], **frame: Any) -> dict[int, list[str]]:
    """Row index -> sorted "column:check" reasons of the row-level failures."""
    _, failures = validation.check(df, _schema(columns, **frame))
    assert failures.filter(pl.col("index").is_null()).height == 0, failures
    out: dict[int, list[str]] = {}
    for r in failures.iter_rows(named=True):
        out.setdefault(r["index"], []).append(f"{r['column']}:{r['check']}")
    return {k: sorted(v) for k, v in sorted(out.items())}


# --- every check ------------------------------------------------------------------------------

# (check, argument, column, dtype, rows that fail); x = [1, 5, null, 12, NaN]: null and NaN are missing
CHECK_CASES = [
    ("ge", 2, "x", "Float64", [0]),
    ("gt", 1, "x", "Float64", [0]),
    ("le", 5, "x", "Float64", [3]),
    ("lt", 5, "x", "Float64", [1, 3]),
    ("eq", 5, "x", "Float64", [0, 3]),
    ("ne", 5, "x", "Float64", [1]),
    ("in_range", [1, 5], "x", "Float64", [3]),
    ("in_range", {"min": 1, "max": 5, "include_max": False}, "x", "Float64", [1, 3]),
    ("in_range", {"min": 1, "max": 5, "include_min": False}, "x", "Float64", [0, 3]),
    ("isin", [1, 5], "x", "Float64", [3]),  # int values against a float column
    ("isin", [1, 2], "k", "Int64", [3, 4]),
    ("notin", [1], "x", "Float64", [0]),
    ("notin", ["zz"], "s", "String", [2]),
    ("isin", ["ab"], "s", "String", [1, 2]),
    ("isin", ["ab", "zz"], "s", "Categorical", [1]),
    ("str_matches", "^a", "s", "String", [2]),
    ("str_contains", "b", "s", "String", [2]),
    ("str_startswith", "z", "s", "String", [0, 1, 4]),
    ("str_endswith", "c", "s", "String", [0, 2, 4]),
    ("str_length", [2, 2], "s", "String", [1]),
    ("str_length", {"min": 3}, "s", "String", [0, 2, 4]),
    ("str_length", {"max": 2}, "s", "String", [1]),
]


def test_every_check_is_tested():
    assert {c[0] for c in CHECK_CASES} == set(CHECKS)


@pytest.mark.parametrize(("name", "arg", "column", "dtype", "rows"), CHECK_CASES, ids=str)
def test_check_compiles_and_flags_exactly_the_failing_rows(name, arg, column, dtype, rows):
    failing = _failing(FRAME, {column: {"dtype": dtype, "nullable": True, "checks": {name: arg}}}, coerce=True)
    assert list(failing) == rows
    assert all(len(v) == 1 and v[0].startswith(f"{column}:") for v in failing.values())


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ({"checks": {"gte": 1}}, "unknown check 'gte' (did you mean 'gt'?)"),
        ({"checks": {"in_range": [1]}}, "in_range takes [min, max]"),
        ({"checks": {"in_range": {"lo": 1}}}, "in_range: unknown key(s) ['lo']"),
        ({"checks": {"str_length": "long"}}, "str_length takes [min, max]"),
        ({"dtype": "Int64", "checks": {"isin": [1.5]}}, "isin: the value 1.5 cannot occur in a Int64 column"),
        ({"dtype": "Float64", "checks": {"isin": ["a"]}}, "isin: the value 'a' cannot occur in a Float64 column"),
        ({"dtype": "Int64", "checks": {"notin": 3}}, "notin takes a list of values"),
        ({"dtype": "Float64", "checks": {"str_matches": "^a"}}, "check 'str_matches' needs a String column"),
        ({"dtype": "float"}, "unknown dtype 'float'"),
        ({"nulable": True}, "nulable"),
    ],
)
def test_bad_checks_are_spec_errors(column, message):
    with pytest.raises(ValidationError) as info:
        SchemaSpec.model_validate({"columns": {"x": column}})
    assert message in str(info.value)


def test_model_and_columns_are_exclusive_and_model_needs_a_colon():
    with pytest.raises(ValidationError, match="either 'model' or 'columns'"):
        SchemaSpec.model_validate({"model": "a:B", "columns": {"x": {}}})
    with pytest.raises(ValidationError, match=r"package\.module:ClassName"):
        SchemaSpec.model_validate({"model": "a.B"})


# --- nullable, unique, required, strict, ordered, coerce ----------------------------------------


def test_nullable_false_fails_on_null_and_nan():
    assert _failing(FRAME, {"x": {"dtype": "Float64"}}) == {2: ["x:not_nullable"], 4: ["x:not_nullable"]}


def test_nan_is_missing_for_checks_and_kept_as_nan():
    df = pl.DataFrame({"x": [1.0, math.nan, None]})
    schema = _schema({"x": {"dtype": "Float64", "nullable": True, "checks": {"le": 5, "ge": 0}}})
    result = validation.validate_input(df, schema)
    assert result.quarantine is None
    assert result.clean["x"].is_nan().to_list() == [False, True, None]


def test_unique_flags_every_duplicate():
    assert _failing(FRAME, {"k": {"dtype": "Int64", "unique": True}}) == {
        0: ["k:field_uniqueness"],
        1: ["k:field_uniqueness"],
    }


def test_optional_column_may_be_missing():
    assert _failing(FRAME, {"q": {"dtype": "Int64", "required": False}}) == {}


@pytest.mark.parametrize(
    ("columns", "frame", "message"),
    [
        ({"k": {"dtype": "Int64"}}, {"strict": True}, "column 'x' is not in the schema (strict: true)"),
        (
            {"k": {"dtype": "Int64"}, "x": {"dtype": "Float64", "nullable": True}},
            {"ordered": True},
            "columns are not in the declared order",
        ),
        ({"q": {"dtype": "Int64"}}, {}, "column 'q' is missing"),
        ({"k": {"dtype": "Float64"}}, {}, "column 'k' has dtype Int64, expected Float64"),
        ({"s": {"checks": {"ge": 1}}}, {}, "column 's': greater_than_or_equal_to(1) failed"),
    ],
)
def test_schema_level_failures_stop_the_run(columns, frame, message):
    with pytest.raises(DataError) as info:
        validation.validate_input(FRAME, _schema(columns, **frame), source="in.csv")
    text = str(info.value)
    assert text.startswith("in.csv: does not match the input schema: ") and message in text
    assert "\n" not in text and len(text) < 400  # one line, not a Polars plan dump


def test_coerce_casts_value_by_value_and_quarantines_what_cannot_be_cast():
    df = pl.DataFrame({"x": ["1", "2.5", "abc", None, "7"], "n": ["1", "2", "3", "x", "5"]})
    schema = _schema(
        {"x": {"dtype": "Float64", "nullable": True, "checks": {"le": 5}}, "n": {"dtype": "Int64"}}, coerce=True
    )
    result = validation.validate_input(df, schema)
    assert result.clean.schema == pl.Schema({"x": pl.Float64, "n": pl.Int64})
    assert result.clean.rows() == [(1.0, 1), (2.5, 2)]
    assert result.rows.to_list() == [0, 1]
    q = result.quarantine
    assert q is not None
    assert q.columns == ["x", "n", "__row", "__reasons", "__stage"]
    assert q["x"].to_list() == ["abc", None, "7"] and q["n"].to_list() == ["3", "x", "5"]  # original text
    assert q["__row"].to_list() == [2, 3, 4]
    assert q["__reasons"].to_list() == [
        ["x:coerce(Float64)"],
        ["n:coerce(Int64)", "n:not_nullable"],
        ["x:less_than_or_equal_to(5)"],
    ]
    assert q["__stage"].to_list() == ["input"] * 3


def test_column_coerce_without_frame_coerce_is_a_dtype_problem():
    with pytest.raises(DataError, match="column 'x' has dtype String, expected Float64"):
        validation.validate_input(pl.DataFrame({"x": ["1"]}), _schema({"x": {"dtype": "Float64"}}))


def test_on_invalid_rows_fail_lists_the_first_failures():
    df = pl.DataFrame({"x": [float(i) for i in range(30)]})
    with pytest.raises(DataError) as info:
        validation.validate_input(df, _schema({"x": {"checks": {"lt": 5}}}), on_invalid_rows="fail", source="in")
    lines = str(info.value).splitlines()
    assert lines[0] == "in: 25 row(s) fail the input schema (on_invalid_rows: fail):"
    assert lines[1] == "  row 5: x:less_than(5) (value 5.0)"
    assert lines[-1] == "  ... and 15 more" and len(lines) == 12


def test_quarantine_keeps_original_values_positions_and_reasons():
    df = pl.DataFrame({"x": [1.0, -2.0, math.nan, math.inf, 3.0], "s": ["a", "b", "c", "d", "zz"]})
    schema = _schema(
        {"x": {"dtype": "Float64", "nullable": True, "checks": {"ge": 0}}, "s": {"checks": {"str_length": [1, 1]}}}
    )
    result = validation.validate_input(df, schema)
    q = result.quarantine
    assert q is not None
    assert q.select("x", "s").rows() == [(-2.0, "b"), (3.0, "zz")]
    assert q["__row"].to_list() == [1, 4]
    assert q["__reasons"].to_list() == [["x:greater_than_or_equal_to(0)"], ["s:str_length(1, 1)"]]
    assert result.clean["x"].to_list()[2:] == [math.inf] and result.clean["x"].is_nan().to_list()[1]
    assert result.rows.to_list() == [0, 2, 3]
    assert result.clean.height + q.height == df.height


def test_output_schema_failure_names_rows_and_problems():
    schema = _schema({"x": {"dtype": "Float64", "checks": {"le": 1}}, "z": {"dtype": "Int64"}})
    with pytest.raises(DataError) as info:
        validation.validate_output(pl.DataFrame({"x": [0.5, 2.0]}), schema)
    text = str(info.value)
    assert text.startswith("output: the pipeline's output fails the output schema: column 'z' is missing")
    assert "1 row(s) fail:\n  row 1: x:less_than_or_equal_to(1) (value 2.0)" in text


# --- the CLI: output schema, validate, infer-schema ------------------------------------------------


def prepflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("prepflow")
    return subprocess.run(
        [str(exe) if exe.exists() else "prepflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


SPEC = """
input:
  schema:
    coerce: true
    columns:
      x: {dtype: Float64, nullable: true, checks: {le: 3}}
      y: {dtype: String, checks: {isin: [a, b]}}
steps:
  - {kind: scale, method: standard, columns: [x]}
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("validation")
    (d / "spec.yaml").write_text(SPEC)
    (d / "bad.csv").write_text("x,y\n1.5,a\n2.5,b\n3.5,c\noops,a\n")
    (d / "good.csv").write_text("x,y\n1.5,a\n,b\n")
    return d


def test_output_schema_failure_exits_1_and_writes_nothing(work: Path):
    (work / "out_schema.yaml").write_text(
        "steps:\n  - {kind: scale, method: minmax, columns: [x]}\n"
        "output:\n  schema:\n    columns:\n      x: {dtype: Float64, checks: {le: 0.5}}\n"
    )
    (work / "four.csv").write_text("x\n1\n2\n3\n4\n")
    res = prepflow("run", "out_schema.yaml", "-i", "four.csv", "-o", "o.parquet", "--report", "r.json", cwd=work)
    assert res.returncode == 1, res.stderr
    assert res.stderr == (
        "error: output: the pipeline's output fails the output schema: 2 row(s) fail:\n"
        "  row 2: x:less_than_or_equal_to(0.5) (value 0.6666666666666666)\n"
        "  row 3: x:less_than_or_equal_to(0.5) (value 1.0)\n"
    )
    assert "Traceback" not in res.stderr
    assert not (work / "o.parquet").exists() and not (work / "r.json").exists()
    assert not list(work.glob(".prepflow-tmp*"))


def test_validate_exit_1_with_summary(work: Path):
    res = prepflow("validate", "spec.yaml", "-i", "bad.csv", cwd=work)
    assert res.returncode == 1, res.stderr
    assert res.stdout.startswith("bad.csv: 4 row(s) checked, 2 failing")
    assert (
        "first failing rows:\n"
        "  row 2: x:less_than_or_equal_to(3) (value 3.5)\n"
        "  row 2: y:isin(['a', 'b']) (value c)\n"
        "  row 3: x:coerce(Float64) (value oops)"
    ) in res.stdout


def test_validate_json_summary(work: Path):
    res = prepflow("validate", "spec.yaml", "-i", "bad.csv", "--json", cwd=work)
    assert res.returncode == 1
    summary = json.loads(res.stdout)
    assert summary["ok"] is False and summary["rows"] == {"checked": 4, "failing": 2}
    assert summary["failures"] == [
        {"column": "x", "check": "coerce(Float64)", "rows": 1},
        {"column": "x", "check": "less_than_or_equal_to(3)", "rows": 1},
        {"column": "y", "check": "isin(['a', 'b'])", "rows": 1},
    ]
    assert summary["schema_problems"] == []


def test_validate_exit_0_on_valid_data(work: Path):
    res = prepflow("validate", "spec.yaml", "-i", "good.csv", cwd=work)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "good.csv: 2 row(s) checked, 0 failing"


def test_infer_schema_round_trips_through_validate(work: Path, messy: pl.DataFrame):
    messy.write_parquet(work / "messy.parquet")
    res = prepflow("infer-schema", "-i", "messy.parquet", cwd=work)
    assert res.returncode == 0, res.stderr
    inferred = yaml.safe_load(res.stdout)
    spec = {**inferred, "steps": [{"kind": "scale", "method": "standard", "columns": ["a"]}]}
    (work / "inferred_spec.yaml").write_text(yaml.safe_dump(spec))
    res = prepflow("validate", "inferred_spec.yaml", "-i", "messy.parquet", "--json", cwd=work)
    summary = json.loads(res.stdout)
    assert res.returncode == 0, summary
    assert summary["ok"] and summary["rows"] == {"checked": 200, "failing": 0}
    assert inferred["input"]["schema"]["columns"]["city"]["checks"] == {"isin": ["lyon", "nice", "paris"]}


def test_infer_schema_writes_a_yaml_file(work: Path):
    res = prepflow("infer-schema", "-i", "good.csv", "-o", "inferred.yaml", cwd=work)
    assert res.returncode == 0, res.stderr
    assert yaml.safe_load((work / "inferred.yaml").read_text())["input"]["schema"]["coerce"] is True


# --- infer-schema, in process: the data it was inferred from always passes -------------------------

VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([None, math.nan, math.inf, -math.inf, 0.0]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 30),
    data=st.data(),
)
def test_inferred_schema_validates_its_own_data(n: int, data: st.DataObject) -> None:
    col = lambda s: data.draw(st.lists(s, min_size=n, max_size=n))  # noqa: E731
    df = pl.DataFrame(
        {
            "f": col(VALUES),
            "i": col(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))),
            "u": col(st.integers(0, 255)),
            "s": col(st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"]))),
            "t": col(st.text(max_size=5)),
            "b": col(st.one_of(st.none(), st.booleans())),
        },
        schema={"f": pl.Float64, "i": pl.Int64, "u": pl.UInt8, "s": pl.String, "t": pl.String, "b": pl.Boolean},
    )
    inferred = yaml.safe_load(yaml.safe_dump(infer_schema(df)))  # through YAML, as a user pastes it
    spec = parse_spec({"input": {"schema": inferred}, "steps": [{"kind": "scale", "method": "standard"}]})
    assert spec.input.schema_ is not None
    _, failures = validation.check(df, spec.input.schema_.compile())
    assert failures.height == 0, failures


@pytest.mark.parametrize("values", [[9_007_199_254_740_993], [2**63 - 1, 2**62 + 1], [-(2**63), 5]])
def test_inferred_integer_bounds_are_exact_beyond_2_to_the_53(values: list[int]) -> None:
    """Integer bounds are computed in int arithmetic: a float bound would exclude 2**53 + 1 (found by hypothesis)."""
    df = pl.DataFrame({"i": values}, schema={"i": pl.Int64})
    checks = infer_schema(df)["columns"]["i"]["checks"]
    assert checks["ge"] <= min(values) and checks["le"] >= max(values)
    assert all(isinstance(v, int) for v in checks.values())
    spec = parse_spec({"input": {"schema": infer_schema(df)}, "steps": [{"kind": "scale", "method": "standard"}]})
    assert spec.input.schema_ is not None
    assert validation.check(df, spec.input.schema_.compile())[1].height == 0
