"""Infer a starting input schema from data (``prepflow infer-schema``).

Per column: the dtype, ``nullable`` when nulls (or NaN) occur, numeric ranges
widened by 10% of the observed range on each side (never below 0 for a column
that is non-negative; no upper bound when ``inf`` occurs, no lower bound when
``-inf`` does), and small category sets (at most ``max_categories`` distinct
strings) as ``isin``. It is a starting point to review, not a verdict; the data it
was inferred from always passes it.

>>> import polars as pl
>>> infer_schema(pl.DataFrame({"age": [20, 40, None], "city": ["a", "b", "a"]}))["columns"]["age"]
{'dtype': 'Int64', 'nullable': True, 'checks': {'ge': 18, 'le': 42}}
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import numpy as np
import polars as pl

from pipelines.schema import DTYPES


def _dtype_name(dtype: pl.DataType) -> str | None:
    name = str(dtype.base_type()) if dtype.base_type() in (pl.Datetime, pl.Duration) else str(dtype)
    return name if name in DTYPES else None


def _round_out(x: float, *, up: bool) -> float:
    """Round outward to three significant digits (a readable bound that still contains x).

    >>> _round_out(0.123456, up=False), _round_out(123456.0, up=True), _round_out(2.2e-313, up=True)
    (0.123, 124000.0, 2.21e-313)
    """
    if x == 0 or not math.isfinite(x):
        return x
    d = Decimal(x)  # exact: no float overflow for tiny (subnormal) or huge values
    rounded = float(d.quantize(Decimal(1).scaleb(d.adjusted() - 2), rounding=ROUND_CEILING if up else ROUND_FLOOR))
    return rounded if (rounded >= x if up else rounded <= x) and math.isfinite(rounded) else x


def _int_bounds(dtype: pl.DataType) -> tuple[int, int]:
    info = np.iinfo(np.dtype(str(dtype).lower()))
    return int(info.min), int(info.max)


def infer_schema(df: pl.DataFrame, *, max_categories: int = 20, widen: float = 0.1) -> dict[str, Any]:
    """A schema dict (the ``input.schema`` block of a spec) describing ``df``."""
    stats = df.select(
        *[pl.col(c).null_count().alias(f"{c}\x1fnulls") for c in df.columns],
        *[pl.col(c).is_nan().sum().alias(f"{c}\x1fnans") for c in df.columns if df.schema[c].is_float()],
        *[
            e
            for c in df.columns
            if df.schema[c].is_numeric()
            for e in (
                pl.col(c).filter(pl.col(c).is_finite()).min().alias(f"{c}\x1fmin"),
                pl.col(c).filter(pl.col(c).is_finite()).max().alias(f"{c}\x1fmax"),
                (pl.col(c) == float("inf")).any().alias(f"{c}\x1f+inf"),
                (pl.col(c) == float("-inf")).any().alias(f"{c}\x1f-inf"),
            )
        ],
        *[pl.col(c).n_unique().alias(f"{c}\x1funique") for c in df.columns if df.schema[c] == pl.String],
    ).row(0, named=True)
    columns: dict[str, Any] = {}
    for c, dtype in df.schema.items():
        spec: dict[str, Any] = {}
        name = _dtype_name(dtype)
        if name:
            spec["dtype"] = name
        spec["nullable"] = bool(stats[f"{c}\x1fnulls"] or stats.get(f"{c}\x1fnans"))
        checks: dict[str, Any] = {}
        lo, hi = stats.get(f"{c}\x1fmin"), stats.get(f"{c}\x1fmax")
        if lo is not None and hi is not None:
            if dtype.is_integer():  # whole numbers the column's dtype can hold, in exact int arithmetic
                pad = math.ceil((hi - lo) * widen)  # beyond 2**53 a float bound would not contain the data
                lo_int, hi_int = _int_bounds(dtype)
                ge = max(lo - pad, 0 if lo >= 0 else lo_int, lo_int)
                le = min(hi + pad, hi_int)
            else:
                pad = (hi - lo) * widen
                ge, le = lo - pad, hi + pad
                if lo >= 0:
                    ge = max(ge, 0)
                ge, le = _round_out(ge, up=False), _round_out(le, up=True)
            checks = {"ge": ge, "le": le}
            if stats[f"{c}\x1f-inf"]:
                del checks["ge"]
            if stats[f"{c}\x1f+inf"]:
                del checks["le"]
        n_unique = stats.get(f"{c}\x1funique")
        if n_unique is not None and n_unique <= max_categories and n_unique < max(df.height / 2, 2):
            checks = {"isin": sorted(df[c].drop_nulls().unique().to_list())}
        if checks:
            spec["checks"] = checks
        columns[c] = spec
    return {"coerce": True, "strict": False, "columns": columns}
