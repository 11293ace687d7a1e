"""``python -m benchmarks.profile``: where prepflow's time goes, next to hand-written Polars.

For each selected case, in this process (best of ``--repeat`` runs; imports excluded):

- ``read``: ``pl.read_parquet`` of the input;
- prepflow library: ``Pipeline.fit`` with its fit groups (the steps of each and the
  seconds the engine reports), every ``collect``/``collect_all`` it runs (how many
  frames each, seconds), the time spent outside them (Python, NumPy); then
  ``FittedPipeline.transform``;
- hand-written Polars: each eager query (``select``/``with_columns``/``filter``);
- the CLI's job in process (``pipelines.commands.run``, ``apply`` for case 7):
  seconds per phase (read, fit, transform = output + per-step metrics in one
  ``collect_all``, write), beside ``fitted.transform`` alone (what the metrics add)
  and the floor (``scan_parquet -> sink_parquet``), also of the job's own output file
  (a copy of a file shaped like the output: what writing this output costs at least);
- in fresh interpreters: the import time of ``pipelines.cli`` and of ``polars``
  alone (start-up the CLI pays and the floor's in-process timing does not).

Ratios in one profile are comparable; absolute seconds depend on the machine's load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks.cases import CASES, TRAIN_ROWS, Context
from benchmarks.data import DEFAULT_CACHE, dataset, generate
from benchmarks.runner import parse_rows
from benchmarks.variants import polars_hand, prepflow_lib
from pipelines.io import PARQUET_OPTIONS

Log = list[tuple[str, float]]


@contextlib.contextmanager
def recording() -> Iterator[Log]:
    """Record every outermost Polars collect (lazy) or eager query (name, seconds) made inside."""
    log: Log = []
    depth = [0]
    patched: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, label: Callable[..., str]) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    log.append((label(*args, **kwargs), time.perf_counter() - started))

        patched.append((owner, name, original))
        setattr(owner, name, timed)

    wrap(pl, "collect_all", lambda frames, *a, **k: f"collect_all[{len(list(frames))}]")
    wrap(pl.LazyFrame, "collect", lambda *a, **k: "collect")
    for method in ("select", "with_columns", "filter"):
        wrap(pl.DataFrame, method, lambda *a, _m=method, **k: f"df.{_m}")
    try:
        yield log
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


def _best(fn: Callable[[], dict[str, Any]], repeat: int) -> dict[str, Any]:
    """The fastest of ``repeat`` runs of ``fn``, or ``{"error": ...}`` when it fails."""
    try:
        runs = [fn() for _ in range(repeat)]
    except Exception as exc:  # a broken variant is reported, not fatal to the profile
        return {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"}
    return min(runs, key=lambda r: r["total"])


def _fmt_log(log: Log) -> str:
    return ", ".join(f"{name} {s:.3f}" for name, s in log) or "none"


def profile_library(ctx: Context) -> dict[str, Any]:
    """The library variant's work (read, fit, transform), each part timed."""
    out: dict[str, Any] = {}
    started = time.perf_counter()
    if ctx.case == 7:
        fitted = prepflow_lib.Pipeline.load(prepflow_lib.fitted_path(ctx))
        df = pl.read_parquet(ctx.data.parquet)
        out["read_s"] = time.perf_counter() - started
        out["fit_s"], out["fit_log"], out["groups"] = 0.0, [], []
    else:
        df = pl.read_parquet(ctx.data.parquet)
        out["read_s"] = time.perf_counter() - started
        pipe = prepflow_lib.pipeline(ctx.case)
        with recording() as log:
            t0 = time.perf_counter()
            fitted = pipe.fit(df)
            out["fit_s"] = time.perf_counter() - t0
        out["fit_log"] = log
        labels = [s.label for s in pipe.steps]
        out["groups"] = [
            {
                "steps": [labels[i] for i, g in enumerate(fitted.fit_groups) if g == group],
                "seconds": fitted.fit_seconds[group],
            }
            for group in sorted(set(fitted.fit_groups))
        ]
    with recording() as log:
        t0 = time.perf_counter()
        fitted.transform(df, train=True)
        out["transform_s"] = time.perf_counter() - t0
    out["transform_log"] = log
    out["total"] = time.perf_counter() - started
    return out


def profile_hand(ctx: Context) -> dict[str, Any]:
    work = polars_hand.CASES[ctx.case](ctx)
    with recording() as log:
        started = time.perf_counter()
        work()
        total = time.perf_counter() - started
    return {"total": total, "log": log}


def profile_cli(ctx: Context) -> dict[str, Any]:
    from pipelines import commands

    marks: list[tuple[str, float]] = []
    out_path = ctx.tmp / "out.parquet"
    ctx.tmp.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if ctx.case == 7:
        report = commands.apply(
            prepflow_lib.fitted_path(ctx),
            ctx.data.parquet,
            out_path,
            progress=lambda p: marks.append((p, time.perf_counter())),
        )
    else:
        report = commands.run(
            prepflow_lib.spec_path(ctx),
            ctx.data.parquet,
            out_path,
            progress=lambda p: marks.append((p, time.perf_counter())),
        )
    end = time.perf_counter()
    total = end - started
    written = out_path.stat().st_size
    bounds = [*marks, ("end", end)]
    phases = {name: bounds[i + 1][1] - t for i, (name, t) in enumerate(marks)}
    phases["before first phase"] = marks[0][1] - started if marks else 0.0
    # the floor of the job's own output: a streaming copy of a file shaped like it (the floor
    # copies the input; a job writing more columns or costlier ones cannot be faster than this)
    started = time.perf_counter()
    pl.scan_parquet(out_path).sink_parquet(ctx.tmp / "copy.parquet", **PARQUET_OPTIONS)
    output_floor = time.perf_counter() - started
    # the write phase: Parquet encoding vs the fsync of the atomic write
    output = pl.read_parquet(out_path)
    started = time.perf_counter()
    output.write_parquet(ctx.tmp / "again.parquet", **PARQUET_OPTIONS)
    encode = time.perf_counter() - started
    with open(ctx.tmp / "again.parquet", "rb+") as fh:
        started = time.perf_counter()
        os.fsync(fh.fileno())
        fsync = time.perf_counter() - started
    for p in ctx.tmp.iterdir():
        p.unlink()
    return {
        "total": total,
        "phases": phases,
        "report_seconds": report.get("seconds"),
        "write_parquet_s": encode,
        "fsync_s": fsync,
        "output_floor_s": output_floor,
        "regime": report["engine"]["regime"],
        "output_mb": written / 1e6,
    }


def profile_floor(ctx: Context) -> float:
    ctx.tmp.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    pl.scan_parquet(ctx.data.parquet).sink_parquet(ctx.tmp / "floor.parquet", **PARQUET_OPTIONS)
    seconds = time.perf_counter() - started
    (ctx.tmp / "floor.parquet").unlink()
    return seconds


def import_seconds(module: str) -> float:
    """Seconds to import ``module`` in a fresh interpreter."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def profile_case(case: int, rows: int, cache: Path, repeat: int) -> dict[str, Any]:
    data = generate(dataset(rows, 0, cache), progress=False)
    train = generate(dataset(min(rows, TRAIN_ROWS), 1, cache), progress=False) if case == 7 else None
    work = cache / "work" / f"profile_case{case}_rows{rows}"
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(case, data, work, cache / "tmp" / f"profile{case}", train)
    prepflow_lib.prepare(ctx)
    polars_hand.prepare(ctx)

    def read() -> dict[str, Any]:
        started = time.perf_counter()
        pl.read_parquet(data.parquet)
        return {"total": time.perf_counter() - started}

    return {
        "case": case,
        "rows": rows,
        "read": _best(read, repeat),
        "library": _best(lambda: profile_library(ctx), repeat),
        "hand": _best(lambda: profile_hand(ctx), repeat),
        "cli": _best(lambda: profile_cli(ctx), repeat),
        "floor": min(profile_floor(ctx) for _ in range(repeat)),
    }


def describe(p: dict[str, Any]) -> str:
    lib, hand, cli, read = p["library"], p["hand"], p["cli"], p["read"]["total"]
    lines = [f"case {p['case']}: {CASES[p['case']].title} ({p['rows']:,} rows)"]
    failed = {name: p[name]["error"] for name in ("library", "hand", "cli") if "error" in p[name]}
    if failed:
        return "\n".join([*lines, *(f"  {name}: FAILED: {error}" for name, error in failed.items())])
    lines.append(f"  read_parquet                 {read:8.3f} s")
    lines.append(
        f"  prepflow library             {lib['total']:8.3f} s  (read {lib['read_s']:.3f} + fit {lib['fit_s']:.3f} "
        f"+ transform {lib['transform_s']:.3f}) = {lib['total'] / hand['total']:.2f}x hand Polars"
    )
    for i, g in enumerate(lib["groups"]):
        lines.append(f"    fit group {i}: {' + '.join(g['steps'])}: {g['seconds']:.3f} s")
    in_collect = sum(s for _, s in lib["fit_log"])
    lines.append(
        f"    fit: {len(lib['fit_log'])} collect call(s) [{_fmt_log(lib['fit_log'])}], "
        f"{lib['fit_s'] - in_collect:.3f} s outside Polars collects"
    )
    lines.append(f"    transform: [{_fmt_log(lib['transform_log'])}]")
    lines.append(f"  hand Polars                  {hand['total']:8.3f} s  (incl. its read) [{_fmt_log(hand['log'])}]")
    phases = ", ".join(f"{k} {v:.3f}" for k, v in cli["phases"].items())
    lines.append(f"  CLI job in process           {cli['total']:8.3f} s  [{phases}]")
    lines.append(
        f"    write phase vs a plain write_parquet of the same output ({cli['output_mb']:.0f} MB): "
        f"{cli['write_parquet_s']:.3f} s + fsync {cli['fsync_s']:.3f} s"
    )
    if cli["regime"] == "streaming":  # read, transform and write are one pass
        lines.append("    streamed: the transform phase reads, transforms and writes in one pass")
    elif "transform" in cli["phases"]:
        extra = cli["phases"]["transform"] - lib["transform_s"]
        lines.append(f"    CLI transform phase - library transform (metrics, row index, quarantine): {extra:+.3f} s")
    lines.append(f"  floor scan->sink             {p['floor']:8.3f} s  (CLI job = {cli['total'] / p['floor']:.2f}x)")
    out_floor = cli["output_floor_s"]
    lines.append(
        f"  floor of the output          {out_floor:8.3f} s  (scan->sink of the job's output file: "
        f"{out_floor / p['floor']:.2f}x the floor; CLI job = {cli['total'] / out_floor:.2f}x)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="1,2,3,4,5,6,7", help="comma-separated case numbers")
    parser.add_argument("--rows", default="1M", help="as for python -m benchmarks (default 1M for every case)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each part; the fastest is shown")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = parser.parse_args(argv)
    size = parse_rows(args.rows)
    imports = {m: import_seconds(m) for m in ("polars", "transforms", "pipelines.cli")}
    print("import seconds in a fresh interpreter: " + ", ".join(f"{m} {s:.2f}" for m, s in imports.items()))
    profiles = []
    for case in (int(c) for c in args.cases.split(",")):
        p = profile_case(case, size(CASES[case].default_rows), args.cache, args.repeat)
        profiles.append(p)
        print(describe(p), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"imports": imports, "profiles": profiles}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
