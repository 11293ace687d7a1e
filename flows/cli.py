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
from pipelines.cli import InputOpt, QuarantineOpt, ReportOpt, Verbose, app, err, out

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


ModeOpt = Annotated[
    str,
    typer.Option(
        "--mode",
        help="run: fit and transform; fit: write the fitted pipeline (--fitted) only; apply: transform with --fitted.",
    ),
]
DaskAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--dask-address",
        help="Scheduler of a running Dask cluster (tcp://host:8786): one task per input partition on its workers.",
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        help="Without --dask-address: run partitions on a local Dask cluster of this many worker processes.",
    ),
]
MODES = ("run", "fit", "apply")


def _distributed(spec: Path, input: Path, output: Path | None, address: str | None, workers: int | None) -> bool:
    """Whether ``flow-run`` fans out over Dask: asked for, set in the spec, or a folder-to-folder run."""
    if address is not None or workers is not None:
        return True
    from pipelines.flow_spec import load as load_spec
    from pipelines.partitions import is_partitioned

    pipeline, _ = load_spec(spec)
    if pipeline.engine.executor == "dask":
        return True
    return is_partitioned(input) and output is not None and not output.suffix


@app.command("flow-run")
def flow_run(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (YAML).")],
    input: InputOpt,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output file (format from its extension), or folder for partitions."),
    ] = None,
    fitted: Annotated[
        Path | None,
        typer.Option("--fitted", help="Fitted pipeline (JSON): written by run (optional) and fit, read by apply."),
    ] = None,
    quarantine: QuarantineOpt = None,
    report: ReportOpt = None,
    mode: ModeOpt = "run",
    dask_address: DaskAddressOpt = None,
    workers: WorkersOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    verbose: Verbose = False,
) -> None:
    """Run SPEC once as a Prefect flow (like `run`, with tasks, retries, caching and artifacts).

    A folder or glob of Parquet partitions written to an output folder, or any
    run with --dask-address, --workers or the spec's `engine: {executor: dask}`,
    runs one task per partition on a Dask cluster and writes one output
    partition per input partition, then `_SUCCESS`.
    """
    with cli._guard(verbose):
        from prefect.exceptions import PrefectException

        from pipelines.errors import UsageError

        if mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)} (got {mode!r})")

        def text(path: Path | None) -> str | None:
            return None if path is None else str(path)

        try:
            if _distributed(spec, input, output, dask_address, workers):
                from flows.distributed import preprocess_partitioned

                result = preprocess_partitioned(
                    str(spec),
                    str(input),
                    text(output),
                    fitted=text(fitted),
                    quarantine=text(quarantine),
                    report=text(report),
                    mode=mode,  # type: ignore[arg-type]
                    dask_address=dask_address,
                    workers=workers,
                )
            else:
                from flows.flow import preprocess

                result = preprocess(
                    str(spec),
                    str(input),
                    text(output),
                    fitted=text(fitted),
                    quarantine=text(quarantine),
                    report=text(report),
                    mode=mode,  # type: ignore[arg-type]
                )
        except PrefectException as exc:
            cli._fail(f"error: the flow run failed: {exc}", 1, verbose)
    if as_json:
        out.print(json.dumps(result, indent=2, default=str), markup=False)
    else:
        cli._summary(result, quiet=False)
        if "partitions" in result:
            parts = result["partitions"]
            err.print(f"{parts['count']} partition(s) on {result.get('cluster', 'dask')}", markup=False)


NO_BENCHMARKS = (
    "error: `prepflow bench` runs the benchmark suite of a source checkout (benchmarks/ beside transforms/), "
    "which this installation does not have: clone the repository, `pip install -e '.[dev]'` in it and run "
    "`prepflow bench` (or `python -m benchmarks`) there"
)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def bench(ctx: typer.Context) -> None:
    """Run the benchmark suite against scikit-learn, pandas and hand-written Polars (`prepflow bench --help`)."""
    try:
        from benchmarks.runner import main as run_benchmarks
    except ImportError:
        cli._fail(NO_BENCHMARKS, 2, False)
    raise typer.Exit(run_benchmarks(ctx.args, prog="prepflow bench"))


def main() -> None:
    """Console-script entry point."""
    cli.main()
