"""What running a job as a Prefect flow costs over ``prepflow run``, on a 1M-row job.

The same spec and input go through the CLI's job layer (``pipelines.commands.run``,
what ``prepflow run`` calls) and through ``flows.preprocess`` against a Prefect
server that is already up (a temporary local one, SQLite), in one process, after a
warm-up run of each. The flow's fit cache is off for the comparison (every run
fits), then a run that reuses the cached fit is timed too. The outputs are
compared byte for byte.

Run: ``.venv/bin/python benchmarks/flow_overhead.py [--rows 1000000] [--repeat 5]``
Target: the flow adds at most 2 s.

Measured (2 shared CPUs, 1-min load average 4.3 from other users' jobs; median
of 9 interleaved runs): ``prepflow run`` 2.47 s, the flow 4.31 s: +1.84 s
(+1.79 s as the median of the paired differences), of which +1.36 s remain with
Prefect's flow-run heartbeats off. The same day, the previous flow (every
intermediate frame written to the run folder as Arrow IPC and read back by the
next task) against this one, interleaved in one process: +2.15 s against +1.60 s
(load 4.2), +2.08 s against +1.17 s (load 6.2); with heartbeats off, +1.46 s
against +1.19 s (load 3.0). Under a heavier load (7 to 9) the previous flow
measured +2.4 to +3.5 s.

Where the flow's time goes beyond the job itself (load 3 to 5): Prefect's flow
run start (API client with its TLS context, create the flow run, set it
Running, result storage lookup) ~0.2 s, and its end (Completed state) ~0.2 s;
five task runs ~0.01 s each in this process, but ~0.07 CPU-s each on the server,
whose ~0.7 CPU-s per run competes with Polars for the same CPUs; the three
artifacts, one API call each, ~0.15 s; the run folder writes (clean rows and
outputs, never the input) ~0.15 s. On top of that, Prefect (3.9.1 here; on by default since early 2026) sends
flow-run heartbeats from a thread that sleeps in 1 s steps and is joined when
the run ends: the run's length is rounded up to the next whole second after the
heartbeat thread started, +0.5 s on average, and the runs' wall times cluster
one second apart. The "heartbeats off" line shows the flow without them
(``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` unset); they are Prefect's way of
detecting crashed runs, so the flow leaves them on.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

SPEC = """\
name: credit-1m
target: default
input:
  schema:
    columns:
      age:        {dtype: Float64, nullable: true, checks: {ge: 18, le: 110}}
      income:     {dtype: Float64, nullable: true, checks: {ge: 0}}
      debt_ratio: {dtype: Float64, nullable: true, checks: {ge: 0}}
      n_accounts: {dtype: Int64, checks: {ge: 0}}
      employment: {dtype: String, nullable: true}
      region:     {dtype: String}
      default:    {dtype: Int64, checks: {isin: [0, 1]}}
  on_invalid_rows: quarantine
steps:
  - {kind: impute, method: median, columns: [age, income], add_indicator: true}
  - {kind: impute, method: most_frequent, columns: [employment]}
  - {kind: outliers, method: iqr, columns: [income, debt_ratio], k: 1.5, action: clip}
  - {kind: outliers, method: zscore, columns: [age], threshold: 4.0, action: drop}
  - {kind: scale, method: robust, columns: [age, income, debt_ratio, n_accounts]}
  - {kind: encode, method: onehot, columns: [employment, region], handle_unknown: ignore}
"""


def make_input(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    age = rng.normal(42, 12, rows).round(0)
    age[rng.random(rows) < 0.0005] = 150.0
    df = pl.DataFrame(
        {
            "id": np.arange(rows),
            "age": age,
            "income": rng.lognormal(10.3, 0.6, rows).round(2),
            "debt_ratio": rng.gamma(2.0, 0.2, rows).round(4),
            "n_accounts": rng.poisson(3, rows),
            "employment": rng.choice(["employed", "self_employed", "unemployed", "retired"], rows).tolist(),
            "region": rng.choice(["north", "south", "east", "west"], rows).tolist(),
            "default": (rng.random(rows) < 0.07).astype(np.int64),
        }
    ).with_columns(
        pl.when(pl.int_range(rows) % 23 == 0).then(None).otherwise(pl.col("income")).alias("income"),
        pl.when(pl.int_range(rows) % 31 == 0).then(None).otherwise(pl.col("employment")).alias("employment"),
    )
    df.write_parquet(path)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def children_cpu() -> float:
    """CPU seconds used so far by this process's live child processes (the Prefect server)."""
    total, me = 0.0, os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def timed(fn, samples: dict[str, list[float]]) -> None:
    """Run ``fn``; record wall time, this process's CPU time and the server's CPU time."""
    wall, cpu, server = time.perf_counter(), time.process_time(), children_cpu()
    fn()
    samples["wall"].append(time.perf_counter() - wall)
    samples["cpu"].append(time.process_time() - cpu)
    samples["server"].append(children_cpu() - server)


def median(samples: dict[str, list[float]]) -> dict[str, float]:
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    work = Path(tempfile.mkdtemp(prefix="prepflow-bench-"))
    os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(work / "prefect-storage")
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from flows import preprocess
    from pipelines import commands

    data, spec = work / "credit-1m.parquet", work / "spec.yaml"
    make_input(data, args.rows)
    spec.write_text(SPEC)
    no_cache = work / "spec-no-cache.yaml"
    no_cache.write_text(SPEC + "flow: {cache: false}\n")
    print(f"{args.rows:,} rows, {data.stat().st_size / 2**20:.1f} MiB Parquet; {os.cpu_count()} CPUs", flush=True)

    exe = Path(sys.executable).with_name("prepflow")
    started = time.perf_counter()
    subprocess.run([str(exe), "run", str(spec), "-i", str(data), "-o", str(work / "exe.parquet"), "-q"], check=True)
    exe_wall = time.perf_counter() - started

    started = time.perf_counter()
    cli: dict[str, list[float]] = {"wall": [], "cpu": [], "server": []}
    flow: dict[str, list[float]] = {"wall": [], "cpu": [], "server": []}
    cached: dict[str, list[float]] = {"wall": [], "cpu": [], "server": []}
    quiet: dict[str, list[float]] = {"wall": [], "cpu": [], "server": []}
    loads: list[float] = []

    def without_heartbeats(i: int) -> None:
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            preprocess(str(no_cache), str(data), str(work / f"quiet-{i}.parquet"))

    with prefect_test_harness(server_startup_timeout=180):
        print(f"Prefect server up in {time.perf_counter() - started:.1f} s (not counted)", flush=True)
        commands.run(spec, data, work / "warm.parquet")
        preprocess(str(no_cache), str(data), str(work / "warm-flow.parquet"))
        for i in range(args.repeat):  # interleaved, so that both see the same machine load
            timed(lambda i=i: commands.run(spec, data, work / f"cli-{i}.parquet"), cli)
            timed(lambda i=i: preprocess(str(no_cache), str(data), str(work / f"flow-{i}.parquet")), flow)
            timed(lambda i=i: without_heartbeats(i), quiet)
            loads.append(os.getloadavg()[0])
        preprocess(str(spec), str(data), str(work / "fill-cache.parquet"))
        for i in range(2):
            timed(lambda i=i: preprocess(str(spec), str(data), str(work / f"cached-{i}.parquet")), cached)

    same = {digest(p) for p in work.glob("*.parquet") if p.name != data.name and "quarantine" not in p.name}
    c, f, k, q = median(cli), median(flow), median(cached), median(quiet)
    print(
        f"load average (1 min) during the runs: median {statistics.median(loads):.1f}, "
        f"{min(loads):.1f} to {max(loads):.1f}, on {os.cpu_count()} CPUs"
    )
    print(f"{'median of ' + str(args.repeat):34s}  wall s   CPU s (this process + server)")
    print(f"{'prepflow run (console script)':34s} {exe_wall:6.2f}   (one run, incl. start-up)")
    print(f"{'prepflow run (job layer)':34s} {c['wall']:6.2f}   {c['cpu']:5.2f} + {c['server']:4.2f}")
    print(f"{'flow, fitting every run':34s} {f['wall']:6.2f}   {f['cpu']:5.2f} + {f['server']:4.2f}")
    print(f"{'flow, fit reused from the cache':34s} {k['wall']:6.2f}   {k['cpu']:5.2f} + {k['server']:4.2f}")
    print(f"{'flow, Prefect heartbeats off':34s} {q['wall']:6.2f}   {q['cpu']:5.2f} + {q['server']:4.2f}")
    print(f"wall times, job layer: {[round(t, 2) for t in cli['wall']]}; flow: {[round(t, 2) for t in flow['wall']]}")
    extra_cpu = f["cpu"] + f["server"] - c["cpu"] - c["server"]
    paired = statistics.median(b - a for a, b in zip(cli["wall"], flow["wall"], strict=True))
    print(
        f"overhead of the flow: {f['wall'] - c['wall']:+.2f} s wall (ratio {f['wall'] / c['wall']:.2f}x; "
        f"median of the paired differences {paired:+.2f} s), {extra_cpu:+.2f} CPU s; target: <= +2 s"
    )
    print(f"overhead with Prefect's flow-run heartbeats off: {q['wall'] - c['wall']:+.2f} s wall")
    print(f"outputs byte-identical across CLI and flow runs: {len(same) == 1}")


if __name__ == "__main__":
    main()
