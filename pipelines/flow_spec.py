"""The spec's orchestration keys: ``flow`` (retries, caching), ``schedule`` and ``parameters``.

These keys say how a pipeline runs as a Prefect flow; the engine ignores them.
They are plain data checked by pydantic (no Prefect import here: ``pipelines``
never imports ``prefect``), and ``flows/`` turns them into task options and a
deployment.

```yaml
flow: {retries: 2, retry_delay_seconds: [5, 30]}     # IO tasks (read, write) only
schedule: {cron: "0 2 * * *", timezone: Europe/Paris}  # or interval: 3600, or rrule: "FREQ=..."
parameters:                                           # path templates, relative to the spec's folder
  input: landing/{date}/credit.csv
  output: prepared/{scheduled_start:%Y-%m-%d}.parquet
```

>>> spec = parse_flow_spec({"schedule": {"interval": 60}, "parameters": {"input": "{date}.csv", "output": "o.csv"}})
>>> spec.schedule.interval.total_seconds(), spec.flow.retries
(60.0, 2)
>>> import datetime as dt
>>> render_path("in/{date}/{scheduled_start:%H%M}.csv", dt.datetime(2025, 3, 1, 2, 30))
'in/2025-03-01/0230.csv'
"""

from __future__ import annotations

import datetime as dt
import os
import string
import zoneinfo
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.errors import SpecError
from transforms.errors import did_you_mean

if TYPE_CHECKING:
    from pipelines.spec import PipelineSpec

FLOW_KEYS = ("flow", "schedule", "parameters")
TEMPLATE_FIELDS = ("date", "scheduled_start")
Mode = Literal["run", "fit", "apply"]


class FlowSettings(BaseModel):
    """Task options: retries with backoff on the IO tasks, and reuse of a cached fit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retries: int = Field(2, ge=0, le=20, description="Retries of the read and write tasks (never of validation).")
    retry_delay_seconds: float | list[float] = Field(
        default_factory=lambda: [5.0, 30.0],
        description="Seconds before each retry: one number, or one per retry (the last repeats).",
    )
    cache: bool = Field(True, description="Reuse the fit of an earlier run on unchanged input and spec.")

    @field_validator("retry_delay_seconds")
    @classmethod
    def _non_negative(cls, value: float | list[float]) -> float | list[float]:
        delays = value if isinstance(value, list) else [value]
        if not delays or any(d < 0 for d in delays) or len(delays) > 50:
            raise ValueError("must be a number >= 0 or a list of 1 to 50 such numbers")
        return value


class ScheduleSpec(BaseModel):
    """One of ``cron``, ``interval`` (seconds or ISO 8601 duration) or ``rrule``, in a timezone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cron: str | None = None
    interval: dt.timedelta | None = None
    rrule: str | None = None
    timezone: str | None = Field(None, description="IANA name, e.g. Europe/Paris (default UTC).")
    anchor_date: dt.datetime | None = Field(None, description="Start of the interval grid (interval only).")
    active: bool = True

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown timezone {value!r} (use an IANA name such as 'Europe/Paris')") from exc
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> ScheduleSpec:
        kinds = [k for k in ("cron", "interval", "rrule") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of cron, interval, rrule (got {', '.join(kinds) or 'none'})")
        if self.interval is not None and self.interval.total_seconds() <= 0:
            raise ValueError("interval must be positive")
        if self.anchor_date is not None and self.interval is None:
            raise ValueError("anchor_date is for interval schedules only")
        return self


class ParametersSpec(BaseModel):
    """The flow's parameters for scheduled runs; paths may hold ``{date}`` / ``{scheduled_start:FMT}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str
    output: str | None = None
    fitted: str | None = None
    quarantine: str | None = None
    report: str | None = None
    mode: Mode = "run"

    @field_validator("input", "output", "fitted", "quarantine", "report")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            check_template(value)
        return value

    @model_validator(mode="after")
    def _paths_for_mode(self) -> ParametersSpec:
        if self.mode in ("run", "apply") and self.output is None:
            raise ValueError(f"mode {self.mode!r} needs an 'output' path")
        if self.mode in ("fit", "apply") and self.fitted is None:
            raise ValueError(f"mode {self.mode!r} needs a 'fitted' path")
        return self

    def paths(self) -> dict[str, str | None]:
        """The path parameters by name."""
        return {k: getattr(self, k) for k in ("input", "output", "fitted", "quarantine", "report")}


class FlowSpec(BaseModel):
    """Everything a spec says about running as a flow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flow: FlowSettings = Field(default_factory=FlowSettings)
    schedule: ScheduleSpec | None = None
    parameters: ParametersSpec | None = None

    @model_validator(mode="after")
    def _schedule_needs_parameters(self) -> FlowSpec:
        if self.schedule is not None and self.parameters is None:
            raise ValueError("a 'schedule' needs a 'parameters' block with the input and output paths")
        return self


def check_template(template: str) -> None:
    """Raise ``ValueError`` unless ``template`` only uses ``{date}`` and ``{scheduled_start[:FMT]}``."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"{template!r}: {exc} (write a literal brace as '{{{{' or '}}}}')") from exc
    for name in fields:
        if name not in TEMPLATE_FIELDS:
            raise ValueError(
                f"{template!r}: unknown placeholder {{{name}}}{did_you_mean(name, TEMPLATE_FIELDS)}; "
                f"use {{date}} or {{scheduled_start:%Y-%m-%d}}"
            )


def render_path(template: str, when: dt.datetime) -> str:
    """Fill ``{date}`` (ISO date) and ``{scheduled_start:FMT}`` (strftime) from ``when``."""
    check_template(template)
    return template.format(date=when.date().isoformat(), scheduled_start=when)


def parse_flow_spec(data: Mapping[str, Any], *, source: str = "<spec>") -> FlowSpec:
    """Validate the ``flow``, ``schedule`` and ``parameters`` keys of a spec mapping."""
    try:
        return FlowSpec.model_validate({k: data[k] for k in FLOW_KEYS if data.get(k) is not None})
    except ValidationError as exc:
        raise SpecError(f"{source}: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key '{loc}'")
        elif err["type"] == "value_error":
            message = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
            parts.append(f"{loc}: {message}" if loc else message)
        else:
            parts.append(f"{loc}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(dict.fromkeys(parts))


def load(path: str | os.PathLike[str]) -> tuple[PipelineSpec, FlowSpec]:
    """Read a spec file that may hold the orchestration keys: the pipeline spec and the flow spec.

    The pipeline is parsed without the orchestration keys; its ``raw`` keeps the whole
    file, as ``prepflow run`` records it in the fitted artifact.
    """
    from pipelines.spec import parse_spec, read_yaml  # spec.py validates these keys with this module

    data = read_yaml(path)
    if not isinstance(data, Mapping):
        return parse_spec(data, source=str(path)), FlowSpec()  # parse_spec names the problem
    flow = parse_flow_spec(data, source=str(path))
    spec = parse_spec({k: v for k, v in data.items() if k not in FLOW_KEYS}, source=str(path))
    return replace(spec, raw=dict(data)), flow


def pipeline_part(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The spec without its orchestration keys: what a fit depends on."""
    return {k: v for k, v in raw.items() if k not in FLOW_KEYS}


def json_schema() -> dict[str, Any]:
    """JSON Schema of the three keys (to merge into the spec's schema for editors)."""
    return FlowSpec.model_json_schema()
