"""The ``prepflow`` console script: the pipelines CLI plus the Prefect commands.

``serve``, ``deploy`` and ``flow-run`` are added to :data:`pipelines.cli.app`.
Prefect is imported inside them only, so ``prepflow run`` and the other
commands start as fast as without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines import cli
from pipelines.cli import InputOpt, OutputOpt, QuarantineOpt, ReportOpt, Verbose, app, err, out

SpecsArg = Annotated[list[Path], typer.Argument(help="Pipeline specs (YAML) with 'schedule' and 'parameters'.")]
NO_SERVER = (
    "no Prefect server is configured, and scheduled runs need one (a temporary server has no scheduler "
    "and no UI). Start one in another terminal with `prefect server start`, then "
    "`export PREFECT_API_URL=http://127.0.0.1:4200/api` and run this again."
)


@app.command()
def serve(
    specs: SpecsArg,
    limit: Annotated[int | None, typer.Option("--limit", help="Most flow runs at once.")] = None,
    verbose: Verbose = False,
) -> None:
    """Serve the specs' scheduled deployments until interrupted (Ctrl-C)."""
    with cli._guard(verbose):
        from flows import deployments

        url = deployments.ui_url()
        if url is None:
            cli._fail(f"error: {NO_SERVER}", 2, verbose)
        for spec in specs:
            deployments.build_deployment(spec)  # check every spec before serving any
        err.print(f"serving {len(specs)} deployment(s); Prefect UI: {url}/deployments", markup=False)
        deployments.serve([str(s) for s in specs], limit=limit)


@app.command()
def deploy(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (YAML) with 'schedule' and 'parameters'.")],
    pool: Annotated[str, typer.Option("--pool", help="Work pool whose workers run the deployment.")],
    name: Annotated[str | None, typer.Option("--name", help="Deployment name (default: the spec's name).")] = None,
    verbose: Verbose = False,
) -> None:
    """Create or update the spec's deployment on a work pool."""
    with cli._guard(verbose):
        from flows import deployments

        url = deployments.ui_url()
        if url is None:
            cli._fail(f"error: {NO_SERVER}", 2, verbose)
        deployment_id = deployments.deploy(str(spec), pool, name=name)
        err.print(f"deployed {spec} to work pool {pool!r}: {url}/deployments/deployment/{deployment_id}", markup=False)
        err.print(f"start a worker with: prefect worker start --pool {pool}", markup=False)


@app.command("flow-run")
def flow_run(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (YAML).")],
    input: InputOpt,
    output: OutputOpt,
    fitted: Annotated[Path | None, typer.Option("--fitted", help="Also write the fitted pipeline (JSON) here.")] = None,
    quarantine: QuarantineOpt = None,
    report: ReportOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    verbose: Verbose = False,
) -> None:
    """Run SPEC once as a Prefect flow (like `run`, with tasks, retries, caching and artifacts)."""
    with cli._guard(verbose):
        from prefect.exceptions import PrefectException

        from flows.flow import preprocess

        try:
            result = preprocess(
                str(spec),
                str(input),
                str(output),
                fitted=None if fitted is None else str(fitted),
                quarantine=None if quarantine is None else str(quarantine),
                report=None if report is None else str(report),
            )
        except PrefectException as exc:
            cli._fail(f"error: the flow run failed: {exc}", 1, verbose)
    if as_json:
        out.print(json.dumps(result, indent=2, default=str), markup=False)
    else:
        cli._summary(result, quiet=False)


def main() -> None:
    """Console-script entry point."""
    cli.main()
