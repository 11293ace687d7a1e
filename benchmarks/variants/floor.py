"""The floor: one streaming Parquet read + write of the case's input with Polars, no computation."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from benchmarks.cases import Context


def floor(ctx: Context) -> Callable[[], None]:
    def work() -> None:
        pl.scan_parquet(ctx.data.parquet).sink_parquet(ctx.tmp / "floor.parquet")

    return work


CASES = dict.fromkeys(range(1, 8), floor)
