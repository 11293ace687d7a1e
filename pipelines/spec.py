"""The YAML pipeline spec: parsing with errors that name the file, step and key.

A spec is data: it is read with ``yaml.safe_load`` (no Python tags), and steps are
looked up in the step registry by ``kind``/``method`` — a spec cannot name code.

>>> spec = parse_spec({"name": "demo", "steps": [{"kind": "scale", "method": "standard", "columns": ["x"]}]})
>>> spec.steps[0]
StandardScaler(name=None, columns=['x'], with_mean=True, with_std=True)
"""

from __future__ import annotations

import os
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import ConfigDict, Field, ValidationError, create_model

from pipelines.engine_spec import ENGINE_KEYS, EngineSpec, parse_engine_spec
from pipelines.errors import SpecError, UsageError
from pipelines.flow_spec import FLOW_KEYS, FlowSettings, FlowSpec, ParametersSpec, ScheduleSpec, parse_flow_spec
from pipelines.schema import InputSpec, OutputSpec
from transforms import registry
from transforms.base import Step
from transforms.columns import ColumnSelector
from transforms.errors import ConfigError, did_you_mean
from transforms.pipeline import Pipeline

TOP_LEVEL_KEYS = (
    "name",
    "description",
    "target",
    "input",
    "output",
    "steps",
    "search",
    "constraints",
    *FLOW_KEYS,
    *ENGINE_KEYS,
)


@dataclass(frozen=True)
class PipelineSpec:
    """A parsed spec: the steps as validated :class:`~transforms.base.Step` objects."""

    steps: tuple[Step, ...]
    name: str | None = None
    description: str | None = None
    target: str | None = None
    input: InputSpec = field(default_factory=InputSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    flow: FlowSpec = field(default_factory=FlowSpec)
    engine: EngineSpec = field(default_factory=EngineSpec)
    raw: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<spec>"

    def pipeline(self) -> Pipeline:
        """The library pipeline this spec declares."""
        return Pipeline(self.steps, target=self.target, name=self.name)


def _short(value: Any, limit: int = 80) -> str:
    """A bounded repr for messages: a huge value never becomes a huge message."""
    text = reprlib.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors/aliases: a few hundred bytes of nested
    aliases ("billion laughs") would otherwise expand into gigabytes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in a spec", event.start_mark
            )
        return super().compose_node(parent, index)


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """The parsed YAML of a spec file (safe: no Python tags, no aliases), errors naming file and position."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: spec file not found" if not path.exists() else f"{path}: is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise SpecError(f"{path}: YAML syntax error at {where}: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not a valid YAML spec: {exc}") from exc


def load_spec(path: str | os.PathLike[str]) -> PipelineSpec:
    """Read and validate a YAML spec file."""
    return parse_spec(read_yaml(path), source=str(path))


def check_top_level(data: Any, keys: Sequence[str], *, source: str, needs: str) -> None:
    """``data`` is a mapping of known top-level ``keys`` whose ``name``/``description``/``target`` are strings."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: a spec must be a mapping with {needs}, got {type(data).__name__}")
    for key in data:
        if key not in keys:
            raise SpecError(
                f"{source}: unknown top-level key '{key}'{did_you_mean(str(key), keys)}; known: {', '.join(keys)}"
            )
    for key in ("name", "description", "target"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise SpecError(f"{source}: '{key}' must be a string, got {_short(data[key])}")


def parse_spec(data: Any, *, source: str = "<spec>") -> PipelineSpec:
    """Validate a spec given as plain data (the parsed YAML)."""
    check_top_level(data, TOP_LEVEL_KEYS, source=source, needs="a 'steps' list")
    if "search" in data or "constraints" in data:
        from pipelines.optimize.space import parse_search  # the optimizer's block, checked here too

        parse_search(data, source=source)
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise SpecError(f"{source}: 'steps' must be a non-empty list of steps (a pipeline needs at least one step)")
    parsed = tuple(parse_step(s, where=f"{source}: steps[{i}]") for i, s in enumerate(steps))
    input_, output = parse_edges(data, source=source)
    flow = parse_flow_spec(data, source=source)
    engine = parse_engine_spec(data, source=source)
    return PipelineSpec(
        steps=parsed,
        name=data.get("name"),
        description=data.get("description"),
        target=data.get("target"),
        input=input_,
        output=output,
        flow=flow,
        engine=engine,
        raw=dict(data),
        source=source,
    )


def parse_edges(data: Mapping[str, Any], *, source: str = "<spec>") -> tuple[InputSpec, OutputSpec]:
    """The ``input:`` and ``output:`` blocks (schemas), validated."""
    out = []
    for key, model in (("input", InputSpec), ("output", OutputSpec)):
        try:
            out.append(model.model_validate(data.get(key) or {}))
        except ValidationError as exc:
            raise SpecError(f"{source}: {key}: {_describe_plain(exc)}") from exc
    return out[0], out[1]


def _describe_plain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key '{loc}'")
        elif err["type"] == "value_error":
            parts.append(f"{loc}: {err['ctx']['error'] if 'ctx' in err else err['msg']}")
        else:
            parts.append(f"{loc}: {err['msg']} (got {_short(err.get('input'))})")
    return "; ".join(dict.fromkeys(parts))


def parse_step(data: Any, *, where: str) -> Step:
    """One step mapping ``{kind, method, **params}`` to a validated step."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: a step must be a mapping with 'kind' and 'method', got {_short(data)}")
    params = dict(data)
    kind, method = params.pop("kind", None), params.pop("method", None)
    if kind is None or method is None:
        raise SpecError(f"{where}: a step needs both 'kind' and 'method' (got keys: {', '.join(map(str, data))})")
    try:
        entry = registry.lookup(str(kind), str(method))
    except ConfigError as exc:
        raise SpecError(f"{where}: {exc}") from exc
    label = f"{where} ({kind}/{method})"
    for key in entry.fixed:
        if key in params:
            raise SpecError(f"{label}: '{key}' is set by the method '{method}'; remove it")
    try:
        return entry.cls.model_validate({**params, **entry.fixed})
    except ValidationError as exc:
        raise SpecError(f"{label}: {_describe(exc, entry.cls)}") from exc


def _describe(exc: ValidationError, cls: type[Step]) -> str:
    """A one-line description of pydantic errors in terms of spec keys."""
    known = [k for k in cls.model_fields if k not in ("kind", "method")]
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "step"
        key = str(err["loc"][0]) if err["loc"] else ""
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown parameter '{key}'{did_you_mean(key, known)}; known: {', '.join(known)}")
        elif err["type"] == "value_error" and not err["loc"]:
            parts.append(str(err["ctx"]["error"]) if "ctx" in err else err["msg"])
        else:
            parts.append(f"parameter '{loc}': {err['msg']} (got {_short(err.get('input'))})")
    return "; ".join(dict.fromkeys(parts))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec, for editors (``prepflow schema``)."""
    step_models = []
    for entry in registry.entries():
        fields: dict[str, Any] = {
            "kind": (Literal[entry.kind], ...),  # type: ignore[valid-type]
            "method": (Literal[entry.method], ...),  # type: ignore[valid-type]
        }
        for name, info in entry.cls.model_fields.items():
            if name in entry.fixed:
                continue
            if name == "columns":
                fields[name] = (list[str] | ColumnSelector | None, None)
            else:
                fields[name] = (info.annotation, info)
        model = create_model(
            f"{entry.kind.title()}{entry.method.title().replace('_', '')}Step",
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
            __doc__=entry.description,
            **fields,
        )
        step_models.append(model)
    spec_model = create_model(
        "PipelineSpec",
        __config__=ConfigDict(extra="forbid"),
        __doc__="A prepflow pipeline spec.",
        name=(str | None, None),
        description=(str | None, None),
        target=(str | None, None),
        input=(InputSpec | None, None),
        output=(OutputSpec | None, None),
        flow=(FlowSettings | None, None),
        schedule=(ScheduleSpec | None, None),
        parameters=(ParametersSpec | None, None),
        engine=(EngineSpec | None, None),
        search=(dict[str, Any] | None, None),
        constraints=(dict[str, Any] | None, None),
        steps=(list[Union[tuple(step_models)]], Field(min_length=1)),  # type: ignore[misc]
    )
    schema = spec_model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "prepflow pipeline spec"
    return schema
