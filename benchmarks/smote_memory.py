"""Case 6's memory: what SMOTE adds once the input is in memory, and a CLI run's whole process, streamed or not.

The benchmark's case 6 target (peak RSS <= 2x the input) is about SMOTE blowing up
memory. At 1M rows the whole process's peak cannot show that: the interpreter with
NumPy, SciPy's k-d tree and Polars is ~100 MB, 1.1x the 86 MB input, before any data,
and reading the Parquet file leaves RSS ~190 MB above that. So this runs case 6 (mean impute
-> SMOTE, k = 5, to 1:1) in each library in a fresh process and reports RSS after the
imports, after reading the input, and the peak (Linux's VmHWM), and **added**: the peak
minus the RSS once the input was read, against the input's in-memory size. The output
itself is ~1.9x the input (the balanced table has 1.96x its rows).

Then ``prepflow run`` of case 6's spec, streamed (``engine.streaming: true``: only the
minority's rows are held, and the new rows are written a chunk at a time) and in memory,
each in a fresh process: its seconds and its whole process's peak RSS against the
input's in-memory size. At 1M rows the input file is one Parquet row group, which a
streamed pass decodes whole; at 10M rows it is ten.

Run: ``.venv/bin/python -m benchmarks.smote_memory [--rows 1M]``. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import yaml

from benchmarks.data import Dataset, dataset, generate
from benchmarks.runner import measure as run_measured
from benchmarks.runner import parse_rows, prepflow_exe
from benchmarks.variants.prepflow_lib import pipeline

ROOT = Path(__file__).resolve().parents[1]

_RSS = """
import json, pathlib, re
def rss():
    text = pathlib.Path("/proc/self/status").read_text()
    return [int(re.search(rf"{k}:\\s+(\\d+)", text).group(1)) * 1024 for k in ("VmRSS", "VmHWM")]
"""

CODE = {
    "prepflow": """
import sys
import polars as pl
import scipy.spatial  # SMOTE's search imports it on use: count it with the imports
from benchmarks.variants.prepflow_lib import pipeline
imports = rss()[0]
df = pl.read_parquet(sys.argv[1])
read, size = rss()[0], df.estimated_size()
out = pipeline(6).fit(df).transform(df, train=True)
print(json.dumps({"imports": imports, "read": read, "peak": rss()[1], "input": size,
                  "output": out.estimated_size(), "rows_out": out.height}))
""",
    "imbalanced-learn": """
import sys
import numpy as np
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import make_pipeline
from sklearn.impute import SimpleImputer
from benchmarks.cases import K_NEIGHBORS, SEED
imports = rss()[0]
X, y = np.load(sys.argv[2]), np.load(sys.argv[3])
read, size = rss()[0], X.nbytes + y.nbytes
pipe = make_pipeline(SimpleImputer(strategy="mean"), SMOTE(k_neighbors=K_NEIGHBORS, random_state=SEED))
Xo, yo = pipe.fit_resample(X, y)
print(json.dumps({"imports": imports, "read": read, "peak": rss()[1], "input": size,
                  "output": Xo.nbytes + yo.nbytes, "rows_out": len(yo)}))
""",
}


def _dataset(rows: int, cache: Path | None) -> Dataset:
    ds = dataset(rows) if cache is None else dataset(rows, cache=cache)
    if not ds.exists():
        generate(ds, progress=False)
    return ds


def measure(rows: int, cache: Path | None = None) -> dict[str, dict[str, int]]:
    """Each library's RSS after imports, after the read, its peak and the sizes (bytes), in a fresh process."""
    ds = _dataset(rows, cache)
    args = [str(ds.parquet), str(ds.x_npy), str(ds.y_npy)]
    out = {}
    for name, code in CODE.items():
        cmd = [sys.executable, "-c", _RSS + textwrap.dedent(code), *args]
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, timeout=1800)
        if res.returncode != 0:
            raise RuntimeError(f"{name} failed: {res.stderr[-2000:]}")
        out[name] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


CLI_RUNS = {"prepflow run, streamed": True, "prepflow run, in memory": False}


def measure_cli(rows: int, cache: Path | None = None) -> dict[str, dict[str, float]]:
    """``prepflow run`` of case 6's spec per regime (fresh process): seconds, peak RSS (bytes), rows out, regime."""
    ds = _dataset(rows, cache)
    spec = pipeline(6).to_spec()
    out = {}
    with tempfile.TemporaryDirectory(prefix="smote-memory-") as tmp:
        work = Path(tmp)
        for name, streaming in CLI_RUNS.items():
            (work / "spec.yaml").write_text(yaml.safe_dump({**spec, "engine": {"streaming": streaming}}))
            files = ["-i", str(ds.parquet), "-o", str(work / "out.parquet"), "--report", str(work / "report.json")]
            cmd = [prepflow_exe(), "run", str(work / "spec.yaml"), *files, "-q"]
            code, wall, peak, stdout = run_measured(cmd, timeout=1800, log=work / "run")
            if code != 0:
                raise RuntimeError(f"{name} failed: {stdout[-2000:]}")
            report = json.loads((work / "report.json").read_text())
            out[name] = {"seconds": wall, "peak": peak, "rows_out": report["rows"]["out"],
                         "regime": report["engine"]["regime"]}  # fmt: skip
    return out


def cli_table(runs: dict[str, dict[str, float]], input_bytes: int) -> str:
    """The CLI runs' table: seconds, peak RSS and its ratio to the input's in-memory size."""
    mb = 2**20
    lines = ["| run | rows out | seconds | peak RSS MB | peak x input |", "|---|---:|---:|---:|---:|"]
    for name, r in runs.items():
        peak, seconds = r["peak"], r["seconds"]
        lines.append(f"| {name} | {r['rows_out']:,} | {seconds:.2f} | {peak / mb:,.0f} | {peak / input_bytes:.2f} |")
    return "\n".join(lines)


def table(results: dict[str, dict[str, int]]) -> str:
    mb = 2**20
    lines = [
        "| library | input MB | output MB | RSS after imports | after read | peak | added (peak - after read) "
        "| added x input | peak x input |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        added = r["peak"] - r["read"]
        lines.append(
            f"| {name} | {r['input'] / mb:.0f} | {r['output'] / mb:.0f} | {r['imports'] / mb:.0f} | "
            f"{r['read'] / mb:.0f} | {r['peak'] / mb:.0f} | {added / mb:.0f} | {added / r['input']:.2f} | "
            f"{r['peak'] / r['input']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", help="a multiplier of the default 1M rows (0.1) or a count (200k, 2M)")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args(argv)
    rows = parse_rows(args.rows)(1_000_000)
    results = measure(rows)
    print(table(results))
    runs = measure_cli(rows)
    print()
    print(cli_table(runs, results["prepflow"]["input"]))
    if args.json:
        args.json.write_text(json.dumps({**results, **runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
