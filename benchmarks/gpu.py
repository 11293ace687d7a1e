"""GPU benchmark: median impute -> IQR clip -> robust scale, Polars backend vs CuPy backend.

One command on a machine with a CUDA device and the ``gpu`` extra installed::

    python -m benchmarks.gpu                 # 100M rows x 10 float64 columns
    python -m benchmarks.gpu --rows 10000000 # smaller

The data is generated on the device (``cupy.random``, seeded: normal columns with
5 % NaN as missing values and a few extreme outliers), then copied to the host
as the Polars frame both backends start from. Printed, all measured in this run:

- fit and transform seconds of the Polars backend (all cores) and of the CuPy
  backend, the CuPy times *including* host<->device transfers, and the ratios;
- the fused transform kernels' throughput (bytes read + written per second, data
  already on the device) against device-to-device copy bandwidth (``cupy.copyto``
  of the same bytes): the kernels' distance from the memory-bandwidth bound;
- the largest difference between the two backends' outputs.

Exit codes: 0 done; 3 no usable CUDA device (or CuPy not installed), with the
reason on stderr; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
import polars as pl

EXIT_NO_DEVICE = 3


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000_000, help="rows (default 100M)")
    p.add_argument("--cols", type=int, default=10, help="float64 columns (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1, help="runs of each measurement; the best is printed")
    args = p.parse_args(argv)
    if args.rows < 1000 or args.cols < 1:
        p.error("--rows must be >= 1000 and --cols >= 1")
    return args


def _best(fn: Any, repeat: int, sync: Any = None) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        if sync:
            sync()
        t = time.perf_counter()
        out = fn()
        if sync:
            sync()
        best = min(best, time.perf_counter() - t)
    return best, out


def _generate(cp: Any, rows: int, cols: int, seed: int) -> pl.DataFrame:
    rng = cp.random.default_rng(seed)
    data = {}
    for j in range(cols):
        x = rng.standard_normal(rows, dtype=cp.float64) * (1.0 + j) + 10.0 * j
        x[rng.random(rows) < 0.05] = cp.nan
        x[rng.integers(0, rows, 5)] = 1e6 * (1.0 + j)
        data[f"f{j}"] = cp.asnumpy(x)
        del x
    return pl.DataFrame(data)


def _kernel_throughput(cp: Any, fitted: Any, df: pl.DataFrame) -> tuple[float, float]:
    """(fused kernel GB/s, device copy GB/s) on device-resident columns."""
    from transforms.gpu.execute import GpuSegment
    from transforms.gpu.kernels import launch
    from transforms.gpu.planner import plan_steps

    plan = plan_steps(fitted, df.schema, backend="cupy")
    seg = GpuSegment([p.ops for p in plan.placements], df.schema, xp=cp, precision="float64")  # type: ignore[misc]
    kernels = [k for ks in seg.programs({}) for k in ks]
    dev = {c: cp.asarray(df[c].to_numpy()) for c in seg.columns}
    n = df.height
    counts = [cp.zeros(max(len(k.program.counts), 1), dtype=cp.uint64) for k in kernels]

    def kernels_pass() -> None:
        for k, cnt in zip(kernels, counts, strict=True):
            launch(k.program, cp, {"xin": dev[k.column]}, cnt, n)

    kernels_pass()  # compile
    seconds, _ = _best(kernels_pass, 3, cp.cuda.Device().synchronize)
    moved = sum(2 * dev[k.column].nbytes for k in kernels)  # read values, write values
    src = cp.empty(moved // 2 // 8, dtype=cp.float64)
    dst = cp.empty_like(src)
    copy_s, _ = _best(lambda: cp.copyto(dst, src), 3, cp.cuda.Device().synchronize)
    return moved / seconds / 1e9, 2 * src.nbytes / copy_s / 1e9


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    args = _args(argv)
    from transforms.gpu.array import detect

    dev = detect()
    if not dev.available:
        print(f"benchmarks.gpu: no usable CUDA device: {dev.reason}", file=sys.stderr)
        print("benchmarks.gpu: nothing was measured; run it on a machine with a GPU and prepflow[gpu]", file=sys.stderr)
        return EXIT_NO_DEVICE
    import cupy as cp

    from transforms import IQROutliers, Pipeline, RobustScaler, SimpleImputer
    from transforms.gpu.execute import run
    from transforms.gpu.fit import fit_pipeline
    from transforms.gpu.planner import plan_steps

    sync = cp.cuda.Device().synchronize
    print(f"device: {dev.name} ({dev.total_bytes / 2**30:.0f} GiB), CuPy {dev.cupy_version}, Polars {pl.__version__}")
    print(f"data: {args.rows:,} rows x {args.cols} float64 columns (5% NaN, outliers), generated on the device")
    df = _generate(cp, args.rows, args.cols, args.seed)
    cols = df.columns
    pipe = Pipeline(
        [SimpleImputer(columns=cols, strategy="median"), IQROutliers(columns=cols), RobustScaler(columns=cols)]
    )

    fit_p, fitted = _best(lambda: pipe.fit(df), args.repeat)
    tr_p, out_p = _best(lambda: fitted.transform(df), args.repeat)
    fit_g, (fitted_g, _) = _best(lambda: fit_pipeline(pipe, df, xp=cp), args.repeat, sync)
    cp.get_default_memory_pool().free_all_blocks()
    plan = plan_steps(fitted, df.schema, backend="cupy")
    run(fitted, df.head(10_000), plan)  # compile the kernels outside the timing
    tr_g, res = _best(lambda: run(fitted, df, plan), args.repeat, sync)
    cp.get_default_memory_pool().free_all_blocks()

    diff = 0.0
    for c in cols:
        a, b = res.output[c].to_numpy(), out_p[c].to_numpy()
        diff = max(diff, float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(b), 1.0))))
    same_state = [s.to_dict() for s in fitted_g.steps] == [s.to_dict() for s in fitted.steps]
    kernel_gbs, copy_gbs = _kernel_throughput(cp, fitted, df)

    print(f"{'':24}{'polars':>10}{'cupy':>10}{'ratio':>8}")
    print(f"{'fit (s)':24}{fit_p:10.3f}{fit_g:10.3f}{fit_p / fit_g:8.1f}x")
    print(f"{'transform (s)':24}{tr_p:10.3f}{tr_g:10.3f}{tr_p / tr_g:8.1f}x")
    print(f"{'fit + transform (s)':24}{fit_p + tr_p:10.3f}{fit_g + tr_g:10.3f}{(fit_p + tr_p) / (fit_g + tr_g):8.1f}x")
    print("cupy times include host<->device transfers (input from and output to Polars frames)")
    print(
        f"fused kernels: {kernel_gbs:.0f} GB/s; device copy: {copy_gbs:.0f} GB/s; "
        f"kernels at {kernel_gbs / copy_gbs:.2f} of copy bandwidth"
    )
    print(f"max relative difference of outputs: {diff:.3g}; same fitted state: {same_state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
