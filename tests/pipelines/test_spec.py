"""Spec parsing: valid specs build pipelines; invalid ones name the file, step and key."""

from __future__ import annotations

import json

import pytest

from pipelines.errors import SpecError, UsageError
from pipelines.spec import json_schema, load_spec, parse_spec
from transforms import registry


def _err(data, source="p.yaml") -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(data, source=source)
    return str(info.value)


def test_valid_spec_builds_steps_with_fixed_params():
    spec = parse_spec({"target": "y", "steps": [{"kind": "scale", "method": "robust", "quantile_range": [10, 90]}]})
    assert spec.steps[0].quantile_range == (10.0, 90.0)
    assert spec.pipeline().target == "y"


def test_unknown_kind_suggests_the_closest():
    msg = _err({"steps": [{"kind": "scael", "method": "standard"}]})
    assert "p.yaml: steps[0]" in msg and "did you mean 'scale'" in msg


def test_unknown_method_suggests_the_closest():
    msg = _err({"steps": [{"kind": "scale", "method": "standrad"}]})
    assert "did you mean 'standard'" in msg


def test_unknown_parameter_names_step_and_key():
    msg = _err(
        {"steps": [{"kind": "scale", "method": "standard"}, {"kind": "scale", "method": "robust", "quantile": 1}]}
    )
    assert "steps[1] (scale/robust)" in msg and "unknown parameter 'quantile'" in msg


def test_wrong_type_names_the_parameter():
    msg = _err({"steps": [{"kind": "scale", "method": "minmax", "feature_range": "wide"}]})
    assert "parameter 'feature_range'" in msg and "'wide'" in msg


def test_invalid_value_is_explained():
    msg = _err({"steps": [{"kind": "scale", "method": "minmax", "feature_range": [1, 0]}]})
    assert "min < max" in msg


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"steps": []}, "at least one step"),
        ({}, "at least one step"),
        ([1, 2], "must be a mapping"),
        ({"steps": [{"kind": "scale"}]}, "needs both 'kind' and 'method'"),
        ({"steps": ["scale"]}, "a step must be a mapping"),
        ({"stpes": []}, "did you mean 'steps'"),
        ({"target": 3, "steps": [{"kind": "scale", "method": "standard"}]}, "'target' must be a string"),
    ],
)
def test_structural_errors(data, fragment):
    assert fragment in _err(data)


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("steps:\n  - {kind: scale, method: standard\n  - oops: [\n")
    with pytest.raises(SpecError, match=r"bad\.yaml: YAML syntax error at line \d+, column \d+"):
        load_spec(p)


def test_yaml_python_tags_are_refused(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("steps: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(SpecError, match="YAML"):
        load_spec(p)


def test_missing_spec_file_is_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_spec(tmp_path / "nope.yaml")


def test_json_schema_lists_every_registered_step():
    schema = json_schema()
    text = json.dumps(schema)
    for entry in registry.entries():
        assert f'"const": "{entry.method}"' in text or f'"enum": ["{entry.method}"]' in text
    assert schema["properties"]["steps"]["minItems"] == 1
