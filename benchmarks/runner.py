"""``python -m benchmarks``: run every case and variant in fresh subprocesses, print a table.

Each run of a variant is its own subprocess (:mod:`benchmarks.worker`, or the
``prepflow`` console script for the CLI variant). Reported per case and variant:

- ``seconds``: median over ``--runs`` of the timed work (read input -> fit ->
  transform -> output in memory) for in-process variants, with interpreter start-up
  and imports excluded; for the CLI, the whole command's wall time;
- ``process s``: median wall time of the whole subprocess (start-up, imports, work);
- ``peak RSS``: median over runs of the subprocess's peak resident memory: the larger
  of its ``ru_maxrss`` (from ``os.wait4``) and the RSS of its process tree sampled
  with psutil every 50 ms;
- ratios of ``seconds`` to the scikit-learn (a), hand-written Polars (c) and floor
  variants of the same case, and of peak RSS to scikit-learn's;
- ``compute s``: of ``seconds``, the part after the input was read (fit and transform
  on data in memory; :mod:`benchmarks.timing`), and its ratios to scikit-learn's and
  hand-written Polars'. The read differs by format (scikit-learn loads raw ``.npy``,
  the others decode uncompressed Parquet), the computing is the engines' own.

``--rows`` takes a multiplier of each case's default size (``0.1``, ``0.5x``) or an
absolute row count used for every case (``200000``, ``200k``, ``2M``): a plain
number below 100 is a multiplier. ``--quick`` is ``--rows 200k --runs 1``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.cases import CASES, LABELS, TRAIN_ROWS, VARIANTS, Context
from benchmarks.data import DEFAULT_CACHE, Dataset, dataset

ROOT = Path(__file__).resolve().parents[1]
QUICK_ROWS = "200k"
MB = 1e6


# ---------------------------------------------------------------------------- sizes


def parse_rows(text: str | None) -> Callable[[int], int]:
    """``--rows`` as a function of a case's default size (see the module docstring).

    >>> parse_rows("0.5")(10_000_000), parse_rows("2x")(1_000_000), parse_rows("200k")(10_000_000)
    (5000000, 2000000, 200000)
    """
    if text is None:
        return lambda default: default
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([xkKmM]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(
            f"--rows: expected a multiplier (0.1, 2x) or a count (200000, 200k, 2M), got {text!r}"
        )
    value, unit = float(m.group(1)), m.group(2).lower()
    if unit == "x" or (not unit and value < 100):
        return lambda default: max(1_000, round(default * value))
    count = round(value * {"k": 1e3, "m": 1e6}.get(unit, 1))
    return lambda default: count


# ---------------------------------------------------------------------------- one run


@dataclass
class Run:
    """One subprocess: its timings, memory, and what went wrong (if anything)."""

    seconds: float | None = None
    process_s: float | None = None
    peak_rss: int | None = None
    import_s: float | None = None
    startup_s: float | None = None
    rss_before: int | None = None
    load_s: float | None = None
    compute_s: float | None = None
    rss_loaded: int | None = None
    shape: list[int] | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _sample_tree(pid: int, stop: threading.Event, peak: list[int]) -> None:
    """Sample the summed RSS of ``pid`` and its descendants every 50 ms into ``peak[0]``."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    while not stop.is_set():
        total = 0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        peak[0] = max(peak[0], total)
        stop.wait(0.05)


def measure(cmd: Sequence[str], *, timeout: float, log: Path) -> tuple[int, float, int, str]:
    """Run ``cmd``; returns exit code, wall seconds, peak RSS (bytes) and its stdout.

    A run past ``timeout`` seconds is killed (exit code -9).
    """
    # bytecode caching on, as in an installed tool: a PYTHONDONTWRITEBYTECODE the caller set would make
    # every process recompile this repository's modules (~0.1 s for the CLI's imports)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env |= {"BENCH_SPAWN_TS": repr(time.time()), "PYTHONHASHSEED": "0"}
    with open(log.with_suffix(".out"), "w+") as out, open(log.with_suffix(".err"), "w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        stop, sampled = threading.Event(), [0]
        sampler = threading.Thread(target=_sample_tree, args=(proc.pid, stop, sampled), daemon=True)
        sampler.start()
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        killer.cancel()
        stop.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        stdout = stderr
    return proc.returncode, wall, max(usage.ru_maxrss * 1024, sampled[0]), stdout


def prepflow_exe() -> str:
    exe = Path(sys.executable).with_name("prepflow")
    return str(exe) if exe.exists() else (shutil.which("prepflow") or "prepflow")


def _worker_cmd(action: str, variant: str, ctx: Context, repeat: int = 1) -> list[str]:
    payload = json.dumps({"action": action, "variant": variant, "ctx": ctx.to_dict(), "repeat": repeat})
    return [sys.executable, "-m", "benchmarks.worker", payload]


def _cli_cmd(ctx: Context) -> list[str]:
    out = ["--input", str(ctx.data.parquet), "--output", str(ctx.tmp / "out.parquet")]
    out += ["--report", str(ctx.tmp / "report.json"), "--quiet"]
    if ctx.case == 7:
        return [prepflow_exe(), "apply", str(ctx.work / "prepflow_fitted.json"), *out]
    return [prepflow_exe(), "run", str(ctx.work / "spec.yaml"), *out]


def run_once(variant: str, ctx: Context, *, timeout: float, repeat: int = 1) -> Run:
    """One measured subprocess of ``variant`` on ``ctx`` (``repeat``: see :mod:`benchmarks.worker`)."""
    shutil.rmtree(ctx.tmp, ignore_errors=True)
    ctx.tmp.mkdir(parents=True)
    cmd = _cli_cmd(ctx) if variant == "cli" else _worker_cmd("run", variant, ctx, repeat)
    code, wall, peak, stdout = measure(cmd, timeout=timeout, log=ctx.work / f"last_{variant}")
    run = Run(process_s=wall, peak_rss=peak)
    if code != 0:
        run.error = _failure(code, stdout, timeout)
    elif variant == "cli":
        run.seconds = wall
        report_path = ctx.tmp / "report.json"
        if report_path.exists():
            report = json.loads(report_path.read_text())
            run.detail = {"report_seconds": report.get("seconds"), "rows": report.get("rows")}
    else:
        data = json.loads(stdout.strip().splitlines()[-1])
        run.seconds, run.import_s, run.startup_s = data["work_s"], data["import_s"], data["startup_s"]
        run.rss_before, run.shape = data["rss_before"], data["shape"]
        run.load_s, run.compute_s, run.rss_loaded = data["load_s"], data["compute_s"], data["rss_loaded"]
        run.detail = {"work_times": data["work_times"]}
    shutil.rmtree(ctx.tmp, ignore_errors=True)
    return run


def _failure(code: int, output: str, timeout: float) -> str:
    if code == -9:
        return f"killed after {timeout:.0f} s (timeout) or by SIGKILL"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}: {_tail(output)}"


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "failed with no output"


# ---------------------------------------------------------------------------- a case


def _median_of(name: str) -> property:
    """A property: the median of ``name`` over a result's successful runs (None when none has it)."""

    def median(self: Result) -> float | None:
        values = [getattr(r, name) for r in self.runs if r.error is None and getattr(r, name) is not None]
        return statistics.median(values) if values else None

    return property(median, doc=f"Median over the successful runs of ``{name}``.")


@dataclass
class Result:
    """Every run of one variant of one case, and their medians."""

    case: int
    variant: str
    rows: int
    runs: list[Run]
    input_bytes: int | None = None

    seconds = _median_of("seconds")
    process_s = _median_of("process_s")
    peak_rss = _median_of("peak_rss")
    rss_before = _median_of("rss_before")
    compute_s = _median_of("compute_s")
    rss_loaded = _median_of("rss_loaded")

    @property
    def error(self) -> str | None:
        errors = [r.error for r in self.runs if r.error]
        return errors[0] if errors and self.seconds is None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "title": CASES[self.case].title,
            "variant": self.variant,
            "rows": self.rows,
            "input_bytes": self.input_bytes,
            "seconds": self.seconds,
            "process_s": self.process_s,
            "peak_rss_bytes": self.peak_rss,
            "rss_after_imports_bytes": self.rss_before,
            "compute_s": self.compute_s,
            "rss_after_read_bytes": self.rss_loaded,
            "error": self.error,
            "runs": [asdict(r) for r in self.runs],
        }


def _generate(ds: Dataset, timeout: float) -> None:
    if ds.exists():
        return
    cmd = [sys.executable, "-m", "benchmarks.data", str(ds.rows), str(ds.seed)]
    subprocess.run(
        cmd, cwd=ROOT, check=True, timeout=timeout, env={**os.environ, "PREPFLOW_BENCH_CACHE": str(ds.folder.parent)}
    )


def run_case(
    case: int,
    rows: int,
    *,
    variants: Sequence[str],
    runs: int,
    cache: Path,
    timeout: float,
    repeat: int = 1,
    echo: Callable[[str], None] = print,
) -> list[Result]:
    """Generate the data, prepare artifacts, then run each variant ``runs`` times."""
    data = dataset(rows, 0, cache)
    train = dataset(min(rows, TRAIN_ROWS), 1, cache) if case == 7 else None
    for ds in filter(None, (data, train)):
        _generate(ds, timeout)
    work = cache / "work" / f"case{case}_rows{rows}"
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(case=case, data=data, work=work, tmp=cache / "tmp" / f"case{case}", train=train)
    # prepflow's prepare writes the CLI's spec, case 7's artifact and the input size (case 6's target)
    libraries = {"prepflow", "scan"} & set(variants)
    needs = {"prepflow"} if "cli" in variants or (case in (6, 7) and libraries) else set()
    if case == 7:
        needs |= {v for v in variants if v in ("sklearn", "pandas", "polars")}
    for variant in sorted(needs):
        code, _, _, out = measure(
            _worker_cmd("prepare", variant, ctx), timeout=timeout, log=work / f"prepare_{variant}"
        )
        if code != 0:
            raise RuntimeError(f"case {case}: preparing {variant} failed: {_tail(out)}")
    size_file = work / "input_size.json"
    input_bytes = json.loads(size_file.read_text())["bytes"] if size_file.exists() else None
    results = []
    for variant in variants:
        result = Result(case, variant, rows, [], input_bytes)
        for _ in range(runs):
            result.runs.append(run_once(variant, ctx, timeout=timeout, repeat=repeat))
        results.append(result)
        echo(
            f"  case {case} {LABELS[variant]:<24} "
            + (f"{result.seconds:9.3f} s" if result.seconds is not None else f"FAILED: {result.error}")
        )
    return results


def run_benchmarks(
    *,
    cases: Iterable[int] = tuple(CASES),
    rows: str | None = None,
    runs: int = 3,
    variants: Sequence[str] = VARIANTS,
    cache: Path = DEFAULT_CACHE,
    timeout: float = 1800.0,
    repeat: int = 1,
    echo: Callable[[str], None] = print,
) -> list[Result]:
    """Run the selected cases and variants; returns every :class:`Result`."""
    size = parse_rows(rows)
    results: list[Result] = []
    for case in cases:
        n = size(CASES[case].default_rows)
        echo(f"case {case}: {CASES[case].title} ({n:,} rows, {runs} run(s) per variant)")
        results += run_case(
            case, n, variants=variants, runs=runs, cache=cache, timeout=timeout, repeat=repeat, echo=echo
        )
    return results


# ---------------------------------------------------------------------------- report


def ratio(results: Sequence[Result], case: int, variant: str, base: str, metric: str = "seconds") -> float | None:
    """``metric`` of ``variant`` over that of ``base`` in ``case`` (None if either is missing)."""
    by = {r.variant: r for r in results if r.case == case}
    a, b = by.get(variant), by.get(base)
    if a is None or b is None:
        return None
    x, y = getattr(a, metric), getattr(b, metric)
    return x / y if x is not None and y else None


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def table(results: Sequence[Result]) -> str:
    """The results as a Markdown table."""
    head = [
        "case",
        "variant",
        "rows",
        "seconds",
        "process s",
        "peak RSS MB",
        "x sklearn",
        "x polars",
        "x floor",
        "RSS x sklearn",
        "compute s",
        "compute x sklearn",
        "compute x polars",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if i > 1 else "---" for i in range(len(head))) + "|"]
    for r in results:
        cells = [
            str(r.case),
            LABELS[r.variant],
            f"{r.rows:,}",
            _fmt(r.seconds, ".2f") if r.error is None else "FAILED",
            _fmt(r.process_s, ".2f"),
            _fmt(None if r.peak_rss is None else r.peak_rss / MB, ",.0f"),
            _fmt(ratio(results, r.case, r.variant, "sklearn"), ".3f"),
            _fmt(ratio(results, r.case, r.variant, "polars"), ".2f"),
            _fmt(ratio(results, r.case, r.variant, "floor"), ".2f"),
            _fmt(ratio(results, r.case, r.variant, "sklearn", "peak_rss"), ".2f"),
            _fmt(r.compute_s, ".2f"),
            _fmt(ratio(results, r.case, r.variant, "sklearn", "compute_s"), ".3f"),
            _fmt(ratio(results, r.case, r.variant, "polars", "compute_s"), ".2f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [r for r in results if r.error]
    lines += [f"\ncase {r.case} {LABELS[r.variant]}: {r.error}" for r in failed]
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    """One goal from the issue, what was measured, and whether it holds."""

    name: str
    limit: float
    value: float | None

    @property
    def met(self) -> bool | None:
        return None if self.value is None else self.value <= self.limit

    def line(self) -> str:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[self.met]
        return f"- {self.name}: {_fmt(self.value, '.3f')} (target <= {self.limit}) -> {verdict}"


def targets(results: Sequence[Result]) -> list[Target]:
    """The issue's targets, evaluated on ``results`` (those of cases that ran).

    The time ratios of the in-memory library (d) are given twice: on the whole run
    (read included) and on the computing alone (``compute``: fit and transform on data
    in memory), the basis of the issue's planning numbers (hand Polars' 0.51 s for case 1
    cannot include a read). The library on a scan (d') has no split; its lines are on
    the whole run, for the targets that name the library alone (cases 2 and 7).
    """
    ran = sorted({r.case for r in results})
    out: list[Target] = []

    def both(name: str, limit: float, case: int, base: str) -> list[Target]:
        return [
            Target(name, limit, ratio(results, case, "prepflow", base)),
            Target(f"{name}, compute", limit, ratio(results, case, "prepflow", base, "compute_s")),
        ]

    def scan(name: str, limit: float, case: int, base: str, metric: str = "seconds") -> list[Target]:
        value = ratio(results, case, "scan", base, metric)
        return [] if value is None else [Target(name, limit, value)]

    if 2 in ran:
        out += both("case 2 prepflow time / sklearn", 0.10, 2, "sklearn")
        out.append(
            Target("case 2 prepflow peak RSS / sklearn", 0.4, ratio(results, 2, "prepflow", "sklearn", "peak_rss"))
        )
        out += scan("case 2 prepflow on a scan, time / sklearn", 0.10, 2, "sklearn")
        out += scan("case 2 prepflow on a scan, peak RSS / sklearn", 0.4, 2, "sklearn", "peak_rss")
    if 1 in ran:
        out += both("case 1 prepflow time / sklearn", 0.15, 1, "sklearn")
        out += both("case 1 prepflow time / hand Polars (case 1 target)", 1.1, 1, "polars")
    for case in ran:
        out += both(f"case {case} prepflow time / hand Polars", 1.2, case, "polars")
        out += both(f"case {case} prepflow time / sklearn", 0.5, case, "sklearn")
    lib6 = next((r for r in results if r.case == 6 and r.variant == "prepflow"), None)
    if lib6 is not None and lib6.input_bytes and lib6.peak_rss is not None:
        out.append(Target("case 6 prepflow peak RSS / input size", 2.0, lib6.peak_rss / lib6.input_bytes))
        if lib6.rss_before is not None:
            grown = (lib6.peak_rss - lib6.rss_before) / lib6.input_bytes
            out.append(Target("case 6 prepflow (peak RSS - RSS after imports) / input size", 2.0, grown))
    if 7 in ran:
        out += [
            Target("case 7 prepflow CLI process / floor process", 1.3, ratio(results, 7, "cli", "floor", "process_s")),
            Target("case 7 prepflow library seconds / floor seconds", 1.3, ratio(results, 7, "prepflow", "floor")),
        ]
        out += scan("case 7 prepflow on a scan, seconds / floor seconds", 1.3, 7, "floor")
    return out


def _environment(args: argparse.Namespace) -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for dist in ("polars", "numpy", "scikit-learn", "imbalanced-learn", "pandas", "pyarrow", "prepflow"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": os.getloadavg(),
        "git_commit": commit.stdout.strip() or None,
        "versions": versions,
        "rows": args.rows,
        "runs": args.runs,
        "repeat": args.repeat,
    }


# ---------------------------------------------------------------------------- CLI


def _cases(text: str) -> list[int]:
    try:
        cases = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cases: expected numbers like 1,2, got {text!r}") from None
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise argparse.ArgumentTypeError(f"--cases: unknown case(s) {unknown}; known: {sorted(CASES)}")
    return cases


def _variants(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"--variants: unknown {unknown}; known: {', '.join(VARIANTS)}")
    return names


def build_parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Benchmark prepflow against scikit-learn, pandas and hand-written Polars (benchmarks/README.md).",
    )
    p.add_argument("--cases", type=_cases, default=list(CASES), help="comma-separated case numbers (default: all)")
    p.add_argument(
        "--variants", type=_variants, default=list(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}"
    )
    p.add_argument(
        "--runs",
        type=int,
        default=None,
        help="runs per variant, each in a fresh process; the median is reported (default 3)",
    )
    p.add_argument(
        "--rows",
        default=None,
        help="a multiplier of each case's default size (0.1, 2x) or a row count for every case (200000, 200k, 2M)",
    )
    p.add_argument("--quick", action="store_true", help=f"--rows {QUICK_ROWS} --runs 1 (explicit --rows/--runs win)")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="in-process variants: time the work this many times per run and keep the fastest (default 1: cold)",
    )
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON")
    p.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help=f"data and artifact cache (default {DEFAULT_CACHE})"
    )
    p.add_argument(
        "--check", action="store_true", help="instead of timing: check that every variant computes the same output"
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds before one run is killed (default 1800)")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks") -> int:
    """``python -m benchmarks`` and ``prepflow bench``: run the cases, print the table; 1 when a run failed."""
    args = build_parser(prog).parse_args(argv)
    if args.quick:
        args.rows = args.rows or QUICK_ROWS
        args.runs = args.runs or 1
    args.runs = args.runs or 3
    try:
        parse_rows(args.rows)
    except argparse.ArgumentTypeError as exc:
        build_parser(prog).error(str(exc))
    if args.check:
        from benchmarks.check import check

        return 0 if check(args.cases, parse_rows(args.rows or "20k")(0), args.cache) else 1
    started = time.perf_counter()
    results = run_benchmarks(
        cases=args.cases,
        rows=args.rows,
        runs=args.runs,
        variants=args.variants,
        cache=args.cache,
        timeout=args.timeout,
        repeat=args.repeat,
    )
    goals = targets(results)
    env = _environment(args)
    print()
    print(table(results))
    print("\nTargets (ratios measured in this run):")
    print("\n".join(t.line() for t in goals))
    total = time.perf_counter() - started
    print(f"\n{env['machine']}, load average at the end {env['load_average'][0]:.1f}; total {total:.0f} s")
    if args.json is not None:
        payload = {
            "environment": env,
            "results": [r.to_dict() for r in results],
            "targets": [{"name": t.name, "limit": t.limit, "value": t.value, "met": t.met} for t in goals],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if any(r.error for r in results) else 0
