"""What a flow run shows in the Prefect UI: per-step metrics, validation results, outputs.

The builders are plain functions of the job's report (testable without Prefect);
:func:`publish` creates the artifacts from inside a flow or task run.

>>> report = {"command": "run", "rows": {"in": 3, "out": 3, "quarantined": 0, "augmented": 0},
...           "steps": [{"index": 0, "name": "steps[0] (scale/standard)", "columns": ["x"],
...                      "rows_in": 3, "rows_out": 3, "rows_dropped": 0, "rows_added": 0,
...                      "missing": {"x": 1}}]}
>>> steps_table(report)[0]["metrics"]
'missing: x=1'
>>> artifact_key("Credit scoring", "steps")
'prepflow-credit-scoring-steps'
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

BASE_KEYS = ("index", "name", "kind", "method", "columns", "rows_in", "rows_out", "rows_dropped", "rows_added")


def artifact_key(name: str | None, what: str) -> str:
    """An artifact key (lowercase letters, digits, dashes) for a pipeline's ``what``."""
    slug = re.sub(r"[^a-z0-9]+", "-", (name or "pipeline").lower()).strip("-") or "pipeline"
    return f"prepflow-{slug}-{what}"


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_value, value))
    return str(value)


def steps_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per step: rows in/out/dropped/added and the step's own metrics."""
    rows = []
    for step in report.get("steps", []):
        metrics = {k: v for k, v in step.items() if k not in BASE_KEYS}
        rows.append(
            {
                "index": step["index"],
                "step": step["name"],
                "columns": ", ".join(step.get("columns", [])),
                "rows_in": step.get("rows_in"),
                "rows_out": step.get("rows_out"),
                "rows_dropped": step.get("rows_dropped"),
                "rows_added": step.get("rows_added"),
                "metrics": "; ".join(f"{k}: {_value(v)}" for k, v in metrics.items()),
            }
        )
    return rows


def _cell(text: Any) -> str:
    return str(text).replace("|", r"\|").replace("\n", " ")


def validation_markdown(report: dict[str, Any], validated: dict[str, Any] | None, *, name: str | None = None) -> str:
    """Validation results: input-schema failures per column and check, quarantine per reason."""
    rows = report.get("rows", {})
    lines = [f"# Validation: {name or 'pipeline'}", ""]
    if validated is None or not validated.get("schema"):
        lines.append("No input schema is declared: rows were not checked on the way in.")
    elif validated["failures"]:
        lines += ["## Input schema failures", "", "| column | check | rows |", "| --- | --- | ---: |"]
        lines += [f"| {_cell(f['column'])} | {_cell(f['check'])} | {f['rows']} |" for f in validated["failures"]]
    else:
        lines.append(f"Every one of the {rows.get('in', '?')} input row(s) passes the input schema.")
    quarantine = report.get("quarantine") or {}
    lines.append("")
    if quarantine.get("rows"):
        lines += [
            f"## Quarantine: {quarantine['rows']} row(s)",
            "",
            f"Written to `{quarantine.get('path')}`.",
            "",
            "| reason | rows |",
            "| --- | ---: |",
        ]
        lines += [f"| {_cell(reason)} | {n} |" for reason, n in quarantine.get("reasons", {}).items()]
    elif "quarantine" in report:
        lines.append("No row was quarantined.")
    if rows:
        lines += ["", "Rows: " + ", ".join(f"{k} {v}" for k, v in rows.items()) + "."]
    return "\n".join(lines) + "\n"


def output_paths(report: dict[str, Any]) -> list[str]:
    """Every file the job wrote, main output first."""
    paths = [report.get("output"), (report.get("quarantine") or {}).get("path"), report.get("fitted_output")]
    if report.get("command") == "fit":
        paths = [report.get("fitted")]
    return [p for p in paths if p]


def publish(report: dict[str, Any], validated: dict[str, Any] | None, *, name: str | None) -> list[str]:
    """Create the three artifacts of a finished job; returns their keys."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    keys = []
    if report.get("steps") and "rows_in" in report["steps"][0]:
        keys.append(artifact_key(name, "steps"))
        create_table_artifact(
            table=steps_table(report), key=keys[-1], description=f"prepflow {report['command']}: per-step metrics"
        )
    keys.append(artifact_key(name, "validation"))
    create_markdown_artifact(
        markdown=validation_markdown(report, validated, name=name), key=keys[-1], description="Validation results"
    )
    paths = output_paths(report)
    if paths:
        keys.append(artifact_key(name, "output"))
        create_link_artifact(
            link=Path(paths[0]).resolve().as_uri(),
            link_text=paths[0],
            key=keys[-1],
            description="Outputs: " + ", ".join(paths),
        )
    return keys


def publish_validation_failure(message: str, *, name: str | None) -> str:
    """A markdown artifact for a run stopped by validation; returns its key."""
    from prefect.artifacts import create_markdown_artifact

    key = artifact_key(name, "validation")
    text = f"# Validation failed: {name or 'pipeline'}\n\nNothing was written.\n\n```\n{message}\n```\n"
    create_markdown_artifact(markdown=text, key=key, description="Validation results")
    return key
