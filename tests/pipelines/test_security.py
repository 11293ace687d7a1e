"""A spec and a fitted artifact are data: loading them never runs code.

* YAML Python tags (``!!python/object/apply`` ...) are refused with exit 2 and nothing runs;
* a fitted JSON naming modules or ``py/object``-style payloads is refused or inert,
  and loading it never imports a module;
* the one documented import — ``input.schema.model`` of a *spec* — works from PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest
import yaml

from pipelines.errors import SpecError
from pipelines.spec import load_spec, parse_spec
from transforms.errors import ArtifactError
from transforms.pipeline import FittedPipeline

SENTINEL = "prepflow_sentinel_payload"
SENTINEL_SOURCE = '''
"""Imported only if prepflow runs code it should not: leaves a mark file."""
import os
import pathlib

import pandera.polars as pa

pathlib.Path(os.environ.get("PREPFLOW_SENTINEL_MARK", "SENTINEL_IMPORTED")).write_text("imported")


def boom(*args, **kwargs):
    pathlib.Path(os.environ.get("PREPFLOW_SENTINEL_MARK", "SENTINEL_IMPORTED")).write_text("called")


class Model(pa.DataFrameModel):
    x: float = pa.Field(ge=0, nullable=True)
'''
STD = "steps:\n  - {kind: scale, method: standard, columns: [x]}\n"


def prepflow_exe() -> str:
    exe = Path(sys.executable).with_name("prepflow")
    return str(exe) if exe.exists() else "prepflow"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with data, a good fitted artifact and the sentinel module under mods/."""
    d = tmp_path_factory.mktemp("security")
    (d / "mods").mkdir()
    (d / "mods" / f"{SENTINEL}.py").write_text(SENTINEL_SOURCE)
    pl.DataFrame({"x": [1.0, 2.0, -3.0, 4.0], "y": [1, 2, 3, 4]}).write_parquet(d / "in.parquet")
    spec = parse_spec(yaml.safe_load(STD))
    df = pl.read_parquet(d / "in.parquet")
    (d / "good.json").write_text(json.dumps(spec.pipeline().fit(df, spec=spec.raw).to_dict()))
    return d


def _cli(box: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run prepflow with the sentinel module importable; returns the process and its own mark file."""
    mark = box / f"MARK-{uuid.uuid4().hex}"
    env = {**os.environ, "PYTHONPATH": str(box / "mods"), "PREPFLOW_SENTINEL_MARK": str(mark)}
    proc = subprocess.run(
        [prepflow_exe(), *args], cwd=box, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return proc, mark


# --- YAML tags ----------------------------------------------------------------------------------

TAGGED = {
    "object_apply": 'steps: !!python/object/apply:os.system ["touch PWNED"]\n',
    "object_new": "steps:\n  - !!python/object/new:subprocess.Popen [[touch, PWNED]]\n",
    "name_in_param": "steps:\n  - {kind: scale, method: standard, name: !!python/name:os.system }\n",
    "module": f"steps:\n  - {{kind: scale, method: standard, name: !!python/module:{SENTINEL} }}\n",
    "local_tag": "steps:\n  - !Step {kind: scale, method: standard}\n",
}


@pytest.mark.parametrize("text", TAGGED.values(), ids=TAGGED.keys())
def test_yaml_python_tags_are_refused_in_process(tmp_path: Path, text: str) -> None:
    (tmp_path / "spec.yaml").write_text(text)
    before = set(sys.modules)
    with pytest.raises(SpecError, match="could not determine a constructor for the tag"):
        load_spec(tmp_path / "spec.yaml")
    assert SENTINEL not in sys.modules and set(sys.modules) - before == set()
    assert not (tmp_path / "PWNED").exists()


def test_yaml_python_tag_exits_2_and_runs_nothing(box: Path) -> None:
    (box / "tagged.yaml").write_text(TAGGED["object_apply"].replace("touch PWNED", f"touch {box / 'PWNED'}"))
    (box / "tagged_mod.yaml").write_text(TAGGED["module"])
    for spec in ("tagged.yaml", "tagged_mod.yaml"):
        proc, mark = _cli(box, "run", spec, "-i", "in.parquet", "-o", "out.parquet")
        assert proc.returncode == 2, proc.stderr
        assert f"{spec}: " in proc.stderr and "tag" in proc.stderr and "Traceback" not in proc.stderr
        assert not (box / "PWNED").exists() and not mark.exists() and not (box / "out.parquet").exists()


def _alias_bomb(depth: int = 6) -> str:
    lines = ["n0: &n0 [a, a, a, a, a, a, a, a, a, a]"]
    lines += [f"n{i}: &n{i} [{', '.join([f'*n{i - 1}'] * 10)}]" for i in range(1, depth)]
    return "description:\n" + "\n".join("  " + line for line in lines) + "\nsteps: [{kind: scale, method: standard}]\n"


def test_yaml_aliases_are_refused_naming_the_line(tmp_path: Path) -> None:
    """A few hundred bytes of nested aliases ("billion laughs") must not expand at all."""
    (tmp_path / "bomb.yaml").write_text(_alias_bomb(depth=9))
    started = time.perf_counter()
    with pytest.raises(SpecError, match=r"bomb\.yaml: YAML syntax error at line 3, column \d+: YAML aliases"):
        load_spec(tmp_path / "bomb.yaml")
    assert time.perf_counter() - started < 5


def test_messages_print_huge_values_bounded() -> None:
    """Even when an expanded value reaches the spec parser, the message stays one short line."""
    with pytest.raises(SpecError) as info:
        parse_spec(yaml.safe_load(_alias_bomb(depth=6)), source="bomb.yaml")
    assert str(info.value).startswith("bomb.yaml: 'description' must be a string, got ")
    assert len(str(info.value)) < 200, f"the message is {len(str(info.value))} characters long"


# --- fitted artifacts -------------------------------------------------------------------------


def _payloads(good: dict) -> dict[str, dict]:
    """Artifacts that name code in every place a loader might look."""

    def edit(fn):
        data = json.loads(json.dumps(good))
        fn(data)
        return data

    step = lambda d: d["steps"][0]  # noqa: E731
    return {
        "py_object_in_state": edit(lambda d: step(d)["state"].update({"center": {"py/object": f"{SENTINEL}.Model"}})),
        "py_reduce_in_state": edit(
            lambda d: step(d)["state"].update({"scale": {"py/reduce": [{"py/function": f"{SENTINEL}.boom"}]}})
        ),
        "module_as_kind": edit(lambda d: step(d).update({"kind": SENTINEL, "method": "boom"})),
        "class_path_as_method": edit(lambda d: step(d).update({"method": f"{SENTINEL}:Model"})),
        "py_type_key": edit(lambda d: step(d).update({"py/type": f"{SENTINEL}.Model", "__class__": "x"})),
        "tagged_float_with_module": edit(lambda d: step(d)["state"].update({"center": [{"$float": f"{SENTINEL}"}]})),
        "extra_state_field": edit(lambda d: step(d)["state"].update({"__reduce__": f"{SENTINEL}.boom"})),
        "module_path_in_name": edit(lambda d: step(d)["params"].update({"name": f"{SENTINEL}:boom"})),
        "column_name_as_center": edit(lambda d: step(d)["state"].update({"center": ["y"]})),
    }


@pytest.fixture(scope="module")
def payloads(box: Path) -> dict[str, Path]:
    out = {}
    for name, data in _payloads(json.loads((box / "good.json").read_text())).items():
        p = box / f"{name}.json"
        p.write_text(json.dumps(data))
        out[name] = p
    return out


REFUSED = ("module_as_kind", "class_path_as_method", "tagged_float_with_module", "extra_state_field")
INERT = ("module_path_in_name", "py_type_key")  # a name is just a name; unknown step keys are ignored
MISTYPED = ("py_object_in_state", "py_reduce_in_state", "column_name_as_center")


def test_loading_payload_artifacts_never_imports(box: Path, payloads: dict[str, Path]) -> None:
    sys.path.insert(0, str(box / "mods"))
    try:
        before = set(sys.modules)
        outcomes = {}
        for name, path in payloads.items():
            try:
                fitted = FittedPipeline.load(path)
            except ArtifactError as exc:
                outcomes[name] = "refused"
                assert str(path) in str(exc)
            else:
                outcomes[name] = "inert"
                fitted.to_dict()  # round-trips as plain data
        assert SENTINEL not in sys.modules
        assert {m for m in set(sys.modules) - before if not m.startswith(("encodings", "_"))} == set()
    finally:
        sys.path.remove(str(box / "mods"))
    assert {n: outcomes[n] for n in REFUSED + INERT} == {
        **dict.fromkeys(REFUSED, "refused"),
        **dict.fromkeys(INERT, "inert"),
    }


def test_applying_payload_artifacts_runs_nothing(box: Path, payloads: dict[str, Path]) -> None:
    names = (*REFUSED, "py_object_in_state", "py_reduce_in_state")
    with ThreadPoolExecutor(max_workers=max(2, min(6, os.cpu_count() or 2))) as pool:
        runs = pool.map(lambda n: _cli(box, "apply", payloads[n].name, "-i", "in.parquet", "-o", f"{n}.parquet"), names)
    for name, (proc, mark) in zip(names, runs, strict=True):
        # every payload is refused when loading: exit 2
        assert proc.returncode == 2, (name, proc.stderr)
        assert "Traceback" not in proc.stderr and not mark.exists()
        assert not (box / f"{name}.parquet").exists()


@pytest.mark.parametrize("name", MISTYPED)
def test_mistyped_state_is_refused_when_loading(payloads: dict[str, Path], name: str) -> None:
    with pytest.raises(ArtifactError, match="scale/standard"):
        FittedPipeline.load(payloads[name])


def test_apply_never_imports_a_schema_model_named_by_an_artifact(box: Path) -> None:
    data = json.loads((box / "good.json").read_text())
    data["spec"]["input"] = {"schema": {"model": f"{SENTINEL}:Model"}}
    (box / "model_ref.json").write_text(json.dumps(data))
    proc, mark = _cli(box, "apply", "model_ref.json", "-i", "in.parquet", "-o", "model_ref.parquet")
    assert not mark.exists(), "applying a fitted artifact imported a module it named"
    assert proc.returncode == 2 and "never imports code" in proc.stderr


def test_schema_from_artifact_refuses_model_import() -> None:
    """The switch commands.apply uses for schemas read from an artifact."""
    from pipelines.schema import SchemaSpec

    schema = SchemaSpec.model_validate({"model": f"{SENTINEL}:Model"})
    before = set(sys.modules)
    with pytest.raises(ValueError, match="never imports code"):
        schema.compile(allow_import=False)
    assert SENTINEL not in sys.modules and set(sys.modules) == before


# --- the documented import: a spec's schema model -------------------------------------------


def test_spec_schema_model_imports_a_user_dataframe_model(box: Path) -> None:
    (box / "model.yaml").write_text(
        f"input:\n  schema: {{model: '{SENTINEL}:Model'}}\n  on_invalid_rows: quarantine\n{STD}"
    )
    proc, mark = _cli(box, "run", "model.yaml", "-i", "in.parquet", "-o", "model_out.parquet")
    assert proc.returncode == 0, proc.stderr
    assert mark.exists()  # the user's module was imported: this is the one documented import
    assert pl.read_parquet(box / "model_out.parquet").height == 3
    q = pl.read_parquet(box / "model_out.quarantine.parquet")
    assert q["__row"].to_list() == [2] and q["x"].to_list() == [-3.0] and q["__stage"].to_list() == ["input"]
    assert q["__reasons"].to_list() == [["x:greater_than_or_equal_to(0)"]]


def test_spec_schema_model_that_cannot_be_imported_exits_2(box: Path) -> None:
    (box / "nomodel.yaml").write_text(f"input:\n  schema: {{model: 'no_such_module_xyz:Model'}}\n{STD}")
    proc, _ = _cli(box, "run", "nomodel.yaml", "-i", "in.parquet", "-o", "nomodel.parquet")
    assert proc.returncode == 2 and "cannot import schema model 'no_such_module_xyz:Model'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (box / "nomodel.parquet").exists()
