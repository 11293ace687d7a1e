"""Out of core: ``prepflow run`` streamed on a table larger than comfortable, peak RSS and time per row.

Generates (once, cached) a seeded Parquet file of ``--rows`` rows (default 28M) x 10
Float64 columns, about 2 GB: ``f0``-``f4`` normal, ``f5``-``f9`` log-normal, each with
about 5 % nulls and a few extreme outliers. Generation is itself streamed (1M rows at a
time through PyArrow's ``ParquetWriter``), so it never holds the table. A slice of the
first ``--slice-rows`` rows (default 5M) is written beside it (scan -> sink).

Then, each as the real ``prepflow`` console script in its own process, with the process
tree's RSS sampled with psutil every 50 ms:

1. ``prepflow run`` of median impute -> IQR clip (k = 1.5) -> robust scale on the full
   file, streamed (``engine: {streaming: true}``; ``--exact-quantiles`` and
   ``--chunk-rows`` set the engine block);
2. the same spec in memory (``--no-streaming``) on the slice.

It prints seconds, peak RSS and the per-row time of each, the ratio
``streamed per-row / in-memory per-row``, and the issue's targets (peak RSS <= 1 GB for
the ~2 GB input; time <= 1.5x the in-memory per-row time). ``--stream-slice`` also runs
the streamed job on the slice (same rows as the in-memory run: a per-row comparison
free of the size difference). The phase seconds come from each run's report.

Run: ``.venv/bin/python benchmarks/out_of_core.py [--rows 28M] [--slice-rows 5M]
[--exact-quantiles] [--chunk-rows N] [--dir DIR] [--json PATH]``. The exit code is 1
when a run failed or a target was missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

COLUMNS = tuple(f"f{i}" for i in range(10))
NULL_RATE = 0.05
OUTLIERS_PER_CHUNK = 5
CHUNK = 1_000_000
FORMAT = 1  # bump when the generator changes, so stale caches are regenerated
DEFAULT_DIR = (
    Path(os.environ.get("PREPFLOW_BENCH_CACHE", Path(__file__).resolve().parents[1] / ".benchmarks_cache"))
    / "out_of_core"
)
RSS_TARGET_MB = 1024.0
TIME_TARGET = 1.5
SAMPLE_S = 0.05


def parse_rows(text: str) -> int:
    """``28M``, ``500k``, ``2_000_000`` -> an int."""
    t = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if scale > 1 else t) * scale)


def spec_text(*, exact_quantiles: bool, chunk_rows: int | None) -> str:
    engine = {"streaming": True, "exact_quantiles": exact_quantiles}
    if chunk_rows is not None:
        engine["chunk_rows"] = chunk_rows
    cols = ", ".join(COLUMNS)
    return (
        "name: out-of-core\n"
        f"engine: {json.dumps(engine)}\n"
        "steps:\n"
        f"  - {{kind: impute, method: median, columns: [{cols}]}}\n"
        f"  - {{kind: outliers, method: iqr, k: 1.5, action: clip, columns: [{cols}]}}\n"
        f"  - {{kind: scale, method: robust, columns: [{cols}]}}\n"
    )


# ---------------------------------------------------------------- data


def _chunk(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {}
    for i, name in enumerate(COLUMNS):
        if i < 5:
            x = rng.normal(10.0 * i, 1.0 + i, n)
            scale = 1.0 + i
        else:
            x = rng.lognormal(0.5 * (i - 5), 0.75, n)
            scale = float(np.exp(0.5 * (i - 5)))
        idx = rng.choice(n, OUTLIERS_PER_CHUNK, replace=False)
        x[idx] = rng.choice([-1.0, 1.0], OUTLIERS_PER_CHUNK) * 10.0 ** rng.uniform(4, 6, OUTLIERS_PER_CHUNK) * scale
        cols[name] = x
    return cols


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Write ``rows`` seeded rows to ``path`` 1M rows at a time (one row group each)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    schema = pa.schema([(c, pa.float64()) for c in COLUMNS])
    tmp = path.with_name(path.name + ".partial")
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        done = 0
        while done < rows:
            n = min(CHUNK, rows - done)
            arrays = []
            for x in _chunk(rng, n).values():
                mask = rng.random(n) < NULL_RATE
                arrays.append(pa.array(x, mask=mask))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            done += n
    tmp.replace(path)


def dataset(folder: Path, rows: int, slice_rows: int) -> tuple[Path, Path]:
    """The cached full file and its slice, generated when missing."""
    import polars as pl

    folder.mkdir(parents=True, exist_ok=True)
    full = folder / f"rows{rows}_v{FORMAT}.parquet"
    part = folder / f"rows{rows}_v{FORMAT}_head{slice_rows}.parquet"
    if not full.exists():
        t0 = time.perf_counter()
        print(f"generating {full} ({rows:,} rows) ...", flush=True)
        generate(full, rows)
        print(f"  {time.perf_counter() - t0:.0f} s, {full.stat().st_size / 2**20:.0f} MB", flush=True)
    if not part.exists():
        tmp = part.with_name(part.name + ".partial")
        pl.scan_parquet(full).head(slice_rows).sink_parquet(tmp, compression="zstd")
        tmp.replace(part)
    return full, part


# ---------------------------------------------------------------- measuring


def prepflow_command() -> list[str]:
    """The installed console script beside this interpreter, else ``python -c`` its entry point."""
    exe = Path(sys.executable).with_name("prepflow")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("prepflow")
    return [found] if found else [sys.executable, "-c", "from flows.cli import main; main()"]


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += p.memory_info().rss
    return total


def measured(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float | int | str]:
    """Run ``cmd``; its wall seconds, exit code and the peak RSS of its process tree (sampled)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    ps = psutil.Process(proc.pid)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                peak = max(peak, tree_rss(ps))
            except psutil.NoSuchProcess:
                return
            stop.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    return {
        "rc": proc.returncode,
        "seconds": seconds,
        "peak_mb": peak / 2**20,
        "stderr": err.decode(errors="replace")[-2000:],
    }


def run_job(name: str, spec: Path, data: Path, rows: int, work: Path, *, streaming: bool) -> dict:
    out, report = work / f"{name}.parquet", work / f"{name}.report.json"
    cmd = [
        *prepflow_command(),
        "run",
        str(spec),
        "--input",
        str(data),
        "--output",
        str(out),
        "--report",
        str(report),
        "--quiet",
        "--streaming" if streaming else "--no-streaming",
    ]
    print(f"running {name}: {rows:,} rows, {'streamed' if streaming else 'in memory'} ...", flush=True)
    result = {"name": name, "rows": rows, "streaming": streaming, **measured(cmd)}
    if result["rc"] == 0:
        rep = json.loads(report.read_text())
        result["phases"] = rep.get("seconds", {})
        result["engine"] = rep.get("engine", {})
        result["rows_out"] = rep["rows"]["out"]
        result["output_mb"] = out.stat().st_size / 2**20
    else:
        print(result["stderr"], file=sys.stderr)
    for f in (out, report):
        f.unlink(missing_ok=True)
    result["us_per_row"] = 1e6 * float(result["seconds"]) / rows
    print(f"  rc {result['rc']}, {result['seconds']:.1f} s, peak {result['peak_mb']:.0f} MB", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=parse_rows, default=28_000_000)
    ap.add_argument("--slice-rows", type=parse_rows, default=5_000_000)
    ap.add_argument("--exact-quantiles", action="store_true")
    ap.add_argument("--chunk-rows", type=parse_rows, default=None, help="engine.chunk_rows (default: the engine's)")
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"data cache folder (default {DEFAULT_DIR})")
    ap.add_argument("--stream-slice", action="store_true", help="also run the streamed job on the slice")
    ap.add_argument("--skip-full", action="store_true", help="skip the streamed run on the full file")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.slice_rows > args.rows:
        ap.error("--slice-rows must be <= --rows")

    full, part = dataset(args.dir, args.rows, args.slice_rows)
    results = []
    with tempfile.TemporaryDirectory(prefix="prepflow-ooc-", dir=args.dir) as tmp:
        work = Path(tmp)
        spec = work / "spec.yaml"
        spec.write_text(spec_text(exact_quantiles=args.exact_quantiles, chunk_rows=args.chunk_rows))
        if not args.skip_full:
            results.append(run_job("streamed", spec, full, args.rows, work, streaming=True))
        if args.stream_slice:
            results.append(run_job("streamed_slice", spec, part, args.slice_rows, work, streaming=True))
        results.append(run_job("in_memory", spec, part, args.slice_rows, work, streaming=False))

    size_mb = full.stat().st_size / 2**20
    print()
    print(
        f"input {full.name}: {args.rows:,} rows x {len(COLUMNS)} Float64, {size_mb:.0f} MB on disk "
        f"(~{args.rows * len(COLUMNS) * 8 / 2**20:.0f} MB in memory); quantiles: "
        f"{'exact' if args.exact_quantiles else 'KLL'}; chunk_rows: {args.chunk_rows or 'engine default'}"
    )
    print(f"{'run':<16}{'rows':>12}{'seconds':>10}{'us/row':>9}{'peak MB':>10}  phases (report)")
    for r in results:
        phases = ", ".join(f"{k} {v:.1f}" for k, v in (r.get("phases") or {}).items())
        print(
            f"{r['name']:<16}{r['rows']:>12,}{r['seconds']:>10.1f}{r['us_per_row']:>9.3f}"
            f"{r['peak_mb']:>10.0f}  {phases}"
        )
    failed = any(r["rc"] != 0 for r in results)
    by = {r["name"]: r for r in results}
    ok = not failed
    if "streamed" in by and by["streamed"]["rc"] == 0 and by["in_memory"]["rc"] == 0:
        ratio = by["streamed"]["us_per_row"] / by["in_memory"]["us_per_row"]
        rss_ok = by["streamed"]["peak_mb"] <= RSS_TARGET_MB
        time_ok = ratio <= TIME_TARGET
        ok = ok and rss_ok and time_ok
        print(
            f"\ntarget peak RSS <= {RSS_TARGET_MB:.0f} MB: {by['streamed']['peak_mb']:.0f} MB "
            f"({'met' if rss_ok else 'MISSED'})"
        )
        print(f"target per-row time <= {TIME_TARGET}x in memory: {ratio:.2f}x ({'met' if time_ok else 'MISSED'})")
    if "streamed_slice" in by and by["streamed_slice"]["rc"] == 0 and by["in_memory"]["rc"] == 0:
        same = by["streamed_slice"]["seconds"] / by["in_memory"]["seconds"]
        print(f"streamed / in memory on the same slice: {same:.2f}x")
    if args.json is not None:
        env = {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "memory_gb": psutil.virtual_memory().total / 2**30,
            "load_avg": os.getloadavg(),
        }
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"dir": str(args.dir), "json": str(args.json)},
                    "env": env,
                    "input_mb": size_mb,
                    "results": results,
                },
                indent=2,
                default=str,
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
