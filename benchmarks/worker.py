"""One measured variant in a fresh interpreter: ``python -m benchmarks.worker JSON``.

The argument is a JSON object: ``action`` (``run`` or ``prepare``), ``variant``,
``ctx`` (a :class:`~benchmarks.cases.Context` as a dict) and ``repeat`` (default 1).
``run`` imports the variant's module (timed separately as ``import_s``), builds the
case's ``work`` and times only ``work()``: read the input, fit, transform,
materialise the output in memory. With ``repeat`` > 1 the work runs that many times
in the process and ``work_s`` is the fastest (``work_times`` has them all, the first
one cold). It prints one JSON line: ``work_s``, ``import_s``, ``startup_s``
(interpreter start to this module, from the runner's ``BENCH_SPAWN_TS``), the
process's peak RSS before and after the work (``ru_maxrss``), the output's shape,
and the fastest run's split at the variant's :func:`benchmarks.timing.loaded` mark:
``load_s``, ``compute_s`` and ``rss_loaded`` (null without a mark). ``prepare`` calls
the module's ``prepare(ctx)`` (untimed artifacts).
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
from typing import Any

from benchmarks import timing
from benchmarks.cases import MODULES, Context


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _shape(out: Any) -> list[int] | None:
    if isinstance(out, tuple):
        out = out[0]
    shape = getattr(out, "shape", None)
    return list(shape) if shape is not None else None


def main(argv: list[str]) -> int:
    entered = time.time()
    started = time.perf_counter()
    spawned = float(os.environ.get("BENCH_SPAWN_TS", entered))
    args = json.loads(argv[0])
    ctx = Context.from_dict(args["ctx"])
    module = importlib.import_module(f"benchmarks.variants.{MODULES[args['variant']]}")
    if args["action"] == "prepare":
        prepare = getattr(module, "prepare", None)
        if prepare is not None:
            prepare(ctx)
        print(json.dumps({"prepared": True}))
        return 0
    work = module.CASES[ctx.case](ctx)
    import_s = time.perf_counter() - started
    rss_before, peak_before = timing.rss_now(), _peak()
    times, shape, split = [], None, {"load_s": None, "compute_s": None, "rss_loaded": None}
    for _ in range(int(args.get("repeat", 1))):
        timing.start()
        t0 = time.perf_counter()
        out = work()
        t1 = time.perf_counter()
        times.append(t1 - t0)
        shape = _shape(out)
        del out  # the next repetition must not hold two outputs at once
        mark = timing.mark()
        if mark and t1 - t0 == min(times):
            at = mark["loaded_at"]
            split = {"load_s": at - t0, "compute_s": t1 - at, "rss_loaded": mark["rss_loaded"]}
    result = {
        "work_s": min(times),
        "work_times": times,
        **split,
        "import_s": import_s,
        "startup_s": max(entered - spawned, 0.0),
        "rss_before": rss_before,
        "peak_before": peak_before,
        "peak": _peak(),
        "shape": shape,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
