"""The ``prepflow`` command line.

Exit codes: 0 success; 1 the data failed (validation, unparseable values, data a
step cannot fit); 2 bad usage or a bad spec; 3 an internal error (a bug). Errors
are printed as one paragraph naming the file, step and key; ``--verbose`` adds
the traceback.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipelines import commands
from pipelines.engine import ConservationError
from pipelines.errors import EXIT_USAGE, exit_code
from pipelines.optimize.command import register as register_optimize
from pipelines.spec import json_schema
from transforms import registry
from transforms._version import __version__
from transforms.errors import PrepflowError

EXIT_INTERNAL = 3

app = typer.Typer(
    name="prepflow",
    help="Declarative preprocessing pipelines for tabular ML data: fit once, apply anywhere.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

Streaming = Annotated[
    bool | None,
    typer.Option(
        "--streaming/--no-streaming",
        help="Stream the input in bounded memory (default: the spec's engine.streaming; auto picks by size; "
        "apply streams a Parquet/Arrow input with no schema when it is unset).",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display or summary.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")]
InputOpt = Annotated[
    Path, typer.Option("--input", "-i", help="Input file (.csv, .parquet, .arrow, .ndjson) or folder.")
]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Output file; format from its extension.")]
ReportOpt = Annotated[Path | None, typer.Option("--report", help="Write the run report (JSON) here.")]
QuarantineOpt = Annotated[
    Path | None,
    typer.Option("--quarantine", help="Quarantine file for dropped rows (default: <output>.quarantine.parquet)."),
]


@contextmanager
def _guard(verbose: bool) -> Iterator[None]:
    """Turn errors into a one-paragraph message and the documented exit code."""
    try:
        yield
    except typer.Exit:
        raise
    except ConservationError as exc:
        _fail(f"internal error: {exc}", EXIT_INTERNAL, verbose)
    except PrepflowError as exc:
        _fail(f"error: {exc}", exit_code(exc), verbose)
    except KeyboardInterrupt:
        _fail("interrupted; nothing was written", 130, verbose)
    except Exception as exc:  # a bug: still no bare traceback unless asked
        _fail(
            f"internal error ({type(exc).__name__}): {exc}. Re-run with --verbose for the traceback.",
            EXIT_INTERNAL,
            verbose,
        )


def _fail(message: str, code: int, verbose: bool) -> None:
    if verbose:
        err.print(traceback.format_exc(), markup=False)
    err.print(message, markup=False)
    raise typer.Exit(code)


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str], None]]:
    """A Rich progress display of the run's phases, on a terminal only."""
    if quiet or not err.is_terminal:
        yield lambda _phase: None
        return
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True
    ) as bar:
        task: list[Any] = []

        def update(phase: str) -> None:
            if task:
                bar.update(task[0], completed=1)
            task[:] = [bar.add_task(phase, total=1)]

        yield update


def _summary(report: dict[str, Any], quiet: bool) -> None:
    if quiet:
        return
    rows = report.get("rows", {})
    if err.is_terminal and "steps" in report and report["steps"] and "rows_in" in report["steps"][0]:
        table = Table(title=f"prepflow {report['command']}", title_justify="left")
        for col in ("#", "step", "rows in", "rows out", "imputed", "outliers"):
            table.add_column(col, justify="right" if col != "step" else "left")
        for s in report["steps"]:
            table.add_row(
                str(s["index"]),
                s["name"],
                str(s["rows_in"]),
                str(s["rows_out"]),
                str(sum(s.get("imputed", {}).values())) if "imputed" in s else "",
                str(sum(s.get("outliers", {}).values())) if "outliers" in s else "",
            )
        err.print(table)
    parts = ", ".join(f"{k} {v}" for k, v in rows.items())
    target = report.get("output") or report.get("fitted")
    err.print(f"wrote {target} ({parts})", markup=False)
    engine = report.get("engine") or {}
    if engine.get("regime") not in (None, "in_memory"):
        method = engine.get("fit_method") or {}
        quantiles = method.get("quantiles", "exact")
        if quantiles == "kll":
            quantiles = f"KLL sketch k={method['sketch_k']}, rank error <= {method['rank_error']:.2%}"
        err.print(f"engine: {engine['regime']} ({engine.get('reason')}); quantiles: {quantiles}", markup=False)
    q = report.get("quarantine") or {}
    if q.get("rows"):
        err.print(f"quarantined {q['rows']} row(s) to {q['path']}: {q['reasons']}", markup=False)
    if rows.get("in") and rows.get("out") == 0 and "out" in rows:
        err.print(f"warning: every input row was quarantined; {target} is empty", markup=False)


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (YAML).")],
    input: InputOpt,
    output: OutputOpt,
    fitted: Annotated[Path | None, typer.Option("--fitted", help="Also write the fitted pipeline (JSON) here.")] = None,
    quarantine: QuarantineOpt = None,
    report: ReportOpt = None,
    streaming: Streaming = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Fit SPEC on the input, transform it (training mode), write the output."""
    with _guard(verbose), _progress(quiet) as progress:
        result = commands.run(
            spec,
            input,
            output,
            fitted_path=fitted,
            quarantine_path=quarantine,
            report_path=report,
            progress=progress,
            streaming=streaming,
        )
    _summary(result, quiet)


@app.command()
def fit(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (YAML).")],
    input: InputOpt,
    fitted: Annotated[Path, typer.Option("--fitted", help="Where to write the fitted pipeline (JSON).")],
    streaming: Streaming = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Fit SPEC on the input and write the fitted pipeline (JSON)."""
    with _guard(verbose), _progress(quiet) as progress:
        result = commands.fit(spec, input, fitted, progress=progress, streaming=streaming)
    _summary(result, quiet)


@app.command()
def apply(
    fitted: Annotated[Path, typer.Argument(help="Fitted pipeline (JSON) from `prepflow fit` or `run --fitted`.")],
    input: InputOpt,
    output: OutputOpt,
    quarantine: QuarantineOpt = None,
    report: ReportOpt = None,
    streaming: Streaming = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Apply a fitted pipeline to new data (no augmentation), write the output."""
    with _guard(verbose), _progress(quiet) as progress:
        result = commands.apply(
            fitted,
            input,
            output,
            quarantine_path=quarantine,
            report_path=report,
            progress=progress,
            streaming=streaming,
        )
    _summary(result, quiet)


@app.command()
def validate(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (YAML) with an input.schema.")],
    input: InputOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Verbose = False,
) -> None:
    """Check the input against the spec's input schema (exit 0: valid, 1: not)."""
    with _guard(verbose):
        summary = commands.validate(spec, input)
    if as_json:
        out.print(json.dumps(summary, indent=2), markup=False)
    else:
        rows = summary["rows"]
        out.print(f"{summary['input']}: {rows['checked']} row(s) checked, {rows['failing']} failing", markup=False)
        for problem in summary["schema_problems"]:
            out.print(f"  schema: {problem}", markup=False)
        if summary["failures"]:
            table = Table("column", "check", "rows")
            for f in summary["failures"]:
                table.add_row(f["column"], f["check"], str(f["rows"]))
            out.print(table)
            out.print("first failing rows:\n" + summary["first_failures"], markup=False)
    raise typer.Exit(0 if summary["ok"] else 1)


@app.command("infer-schema")
def infer_schema(
    input: InputOpt,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the schema (YAML) here.")] = None,
    verbose: Verbose = False,
) -> None:
    """Infer a starting input schema (YAML) from data: dtypes, nullability, ranges, categories."""
    with _guard(verbose):
        text = commands.infer_schema(input, output)
    if output is None:
        out.print(text, markup=False, end="")
    else:
        err.print(f"wrote {output}", markup=False)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the pipeline spec (for editors)."""
    out.print(json.dumps(json_schema(), indent=2), markup=False)


@app.command()
def steps(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List every step kind/method with its parameters."""
    rows = []
    for entry in registry.entries():
        params = {
            name: info.default if not callable(info.default_factory) else info.default_factory()
            for name, info in entry.cls.model_fields.items()
            if name not in entry.fixed
        }
        rows.append(
            {
                "kind": entry.kind,
                "method": entry.method,
                "class": entry.cls.__name__,
                "params": {
                    k: (v if isinstance(v, (int, float, str, bool, type(None), list, tuple)) else repr(v))
                    for k, v in params.items()
                },
                "description": entry.description,
            }
        )
    if as_json:
        out.print(json.dumps(rows, indent=2, default=str), markup=False)
        return
    table = Table(show_lines=False)
    for col in ("kind", "method", "class", "parameters (defaults)", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        params = ", ".join(f"{k}={v!r}" for k, v in r["params"].items() if k not in ("name",))
        table.add_row(r["kind"], r["method"], r["class"], params, r["description"])
    out.print(table)


register_optimize(app)


def _version(value: bool) -> None:
    if value:
        out.print(f"prepflow {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """prepflow: declarative preprocessing pipelines on Polars."""


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
        sys.exit(code)
