"""``python -m benchmarks --check``: do the variants compute the same thing?

Runs every variant of the selected cases once, in this process, on a small
dataset (20k rows by default), turns each output into one float matrix (the
feature columns, then the one-hot or indicator columns, by name) and compares it
with scikit-learn's:

- cases 1, 2, 3, 5, 7: equal to 1e-9 (relative and absolute);
- case 4: every variant draws its own 10k-value subsample, so only the mean
  absolute difference is bounded (< 0.05 in normal scores);
- case 6: synthetic rows come from different random draws; the original rows
  (imputed) must be equal, and the row and class counts must match.

This guards the benchmark, not the library: a variant that does less work than
the others would make its timings meaningless.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.cases import LABELS, MODULES, TRAIN_ROWS, VARIANTS, Context
from benchmarks.data import CATEGORIES, DEFAULT_CACHE, FEATURES, LABEL, dataset, generate

F = list(FEATURES)
EXTRA = {3: [f"cat_{v}" for v in CATEGORIES], 7: [f"cat_{v}" for v in CATEGORIES], 5: [f"{c}__missing" for c in F]}


def canonical(case: int, out: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """The output as (features + extra columns as float64, label or None)."""
    label = None
    if isinstance(out, tuple):
        out, label = out
    if isinstance(out, np.ndarray):
        return out.astype(np.float64), None if label is None else np.asarray(label)
    prefix = "missingindicator_"  # scikit-learn's name of an indicator column
    names = [f"{c.removeprefix(prefix)}__missing" if c.startswith(prefix) else str(c) for c in out.columns]
    index = {n: i for i, n in enumerate(names)}
    wanted = F + EXTRA.get(case, [])
    columns = [out[out.columns[index[n]]] for n in wanted]
    matrix = np.column_stack([np.asarray(_numpy(c), dtype=np.float64) for c in columns])
    if label is None and LABEL in index:
        label = _numpy(out[out.columns[index[LABEL]]])
    return matrix, None if label is None else np.asarray(label)


def _numpy(column: Any) -> np.ndarray:
    to_numpy = column.to_numpy
    try:
        return np.asarray(to_numpy(), dtype=np.float64)
    except (TypeError, ValueError):
        return np.asarray(to_numpy())


def _cli(ctx: Context) -> Any:
    import polars as pl

    from benchmarks.runner import _cli_cmd

    shutil.rmtree(ctx.tmp, ignore_errors=True)
    ctx.tmp.mkdir(parents=True)
    subprocess.run(_cli_cmd(ctx), check=True, capture_output=True)
    return pl.read_parquet(ctx.tmp / "out.parquet")


def compare(case: int, ref: tuple[np.ndarray, Any], got: tuple[np.ndarray, Any], n_input: int) -> str | None:
    """None when ``got`` matches ``ref`` for this case, else what differs."""
    (a, ya), (b, yb) = ref, got
    if a.shape != b.shape:
        return f"shape {b.shape} != {a.shape}"
    if case == 4:
        mad = float(np.nanmean(np.abs(a - b)))
        return None if mad < 0.05 else f"mean abs diff {mad:.3g} >= 0.05"
    if case == 6:  # synthetic rows are random: compare the original rows and the class counts
        a, b = a[:n_input], b[:n_input]
        if ya is not None and yb is not None and not np.array_equal(np.bincount(ya), np.bincount(yb.astype(np.int64))):
            return f"class counts {np.bincount(yb.astype(np.int64))} != {np.bincount(ya)}"
    if not np.allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True):
        return f"values differ (max abs diff {np.nanmax(np.abs(a - b)):.3g})"
    return None


def check(cases: Sequence[int], rows: int = 20_000, cache: Path = DEFAULT_CACHE) -> bool:
    """Compare every variant with scikit-learn's output on each case; print a line per variant."""
    ok = True
    data = generate(dataset(rows, 0, cache), progress=False)
    train = generate(dataset(min(rows, TRAIN_ROWS), 1, cache), progress=False)
    modules = {v: importlib.import_module(f"benchmarks.variants.{m}") for v, m in MODULES.items() if v != "floor"}
    for case in cases:
        work = cache / "work" / f"check_case{case}_rows{rows}"
        work.mkdir(parents=True, exist_ok=True)
        ctx = Context(case, data, work, cache / "tmp" / f"check{case}", train if case == 7 else None)
        for module in modules.values():
            getattr(module, "prepare", lambda _: None)(ctx)
        outputs = {v: canonical(case, m.CASES[case](ctx)()) for v, m in modules.items()}
        outputs["cli"] = canonical(case, _cli(ctx))
        for variant in (v for v in VARIANTS if v in outputs and v != "sklearn"):
            problem = compare(case, outputs["sklearn"], outputs[variant], data.rows)
            ok &= problem is None
            same = {4: "close to scikit-learn's", 6: "same original rows and class counts as scikit-learn"}
            print(f"case {case} {LABELS[variant]}: {problem or same.get(case, 'same as scikit-learn')}")
    return ok
