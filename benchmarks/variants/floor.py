"""The floor: one streaming Parquet read + write of the case's input with Polars, no computation.

Written with the options prepflow writes its outputs with (``pipelines.io.PARQUET_OPTIONS``),
so that the floor and the CLI pay for the same encoding.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from benchmarks.cases import Context
from pipelines.io import PARQUET_OPTIONS


def floor(ctx: Context) -> Callable[[], None]:
    def work() -> None:
        pl.scan_parquet(ctx.data.parquet).sink_parquet(ctx.tmp / "floor.parquet", **PARQUET_OPTIONS)

    return work


CASES = dict.fromkeys(range(1, 8), floor)
