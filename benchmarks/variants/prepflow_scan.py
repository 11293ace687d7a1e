"""(d') the prepflow library on a lazy scan of the input, collected with the streaming engine.

Timed: ``Pipeline.fit`` on ``pl.scan_parquet`` (the fit queries read the columns they
need), then ``FittedPipeline.transform`` on a second scan of the file, collected with
``engine="streaming"`` into an in-memory DataFrame (training mode, so case 6's SMOTE
adds rows). Case 7 loads the saved JSON artifact and transforms the scan (serving
mode). The file is read twice (once to fit, once to transform), but never held whole
beside the output: this is how a user keeps the memory down on a large file. There is
no read/compute split: reading and computing are interleaved.
"""

from __future__ import annotations

import polars as pl

from benchmarks.cases import Context
from benchmarks.variants.prepflow_lib import Work, fitted_path, import_untimed, pipeline
from transforms import FittedPipeline, Pipeline


def _collect(fitted: FittedPipeline, ctx: Context, *, train: bool) -> pl.DataFrame:
    return fitted.transform(pl.scan_parquet(ctx.data.parquet), train=train).collect(engine="streaming")


def _fit_transform(ctx: Context) -> Work:
    pipe = pipeline(ctx.case)
    import_untimed(ctx.case)

    def work() -> pl.DataFrame:
        return _collect(pipe.fit(pl.scan_parquet(ctx.data.parquet)), ctx, train=True)

    return work


def case7(ctx: Context) -> Work:
    def work() -> pl.DataFrame:
        return _collect(Pipeline.load(fitted_path(ctx)), ctx, train=False)

    return work


CASES = {**dict.fromkeys(range(1, 7), _fit_transform), 7: case7}
