"""Shared fixtures (a small messy frame, the path of the real console script) and the test order."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOWS = ROOT / "tests" / "flows"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the flow tests last (a stable sort: the order is otherwise unchanged).

    Their session fixtures leave threads behind (Prefect's client services, whose retry
    jitter draws from the global ``random``); a Hypothesis test running beside them sees
    the global random state change mid-draw and warns, as if its strategy used ``random``.
    """
    items.sort(key=lambda item: item.path.is_relative_to(FLOWS))


@pytest.fixture
def messy() -> pl.DataFrame:
    """200 rows: floats with nulls, NaN, +/-inf and outliers; an int, a string and a label."""
    rng = np.random.default_rng(42)
    n = 200
    a = rng.normal(50, 10, n)
    a[[3, 17]] = np.nan
    a[[5]] = 1e4
    b = rng.lognormal(3, 1, n)
    b[[7]] = np.inf
    b[[8]] = -np.inf
    return pl.DataFrame(
        {
            "a": a,
            "b": b,
            "c": rng.integers(0, 100, n),
            "city": rng.choice(["paris", "lyon", "nice"], n).tolist(),
            "label": (rng.random(n) < 0.15).astype(np.int64),
        }
    ).with_columns(
        pl.when(pl.int_range(n) % 9 == 0).then(None).otherwise(pl.col("a")).alias("a"),
        pl.when(pl.int_range(n) % 13 == 0).then(None).otherwise(pl.col("city")).alias("city"),
    )


def prepflow_exe() -> str:
    """The installed ``prepflow`` console script of this interpreter's environment."""
    exe = Path(sys.executable).with_name("prepflow")
    return str(exe) if exe.exists() else (shutil.which("prepflow") or "prepflow")


@pytest.fixture
def cli():
    """Run the real ``prepflow`` console script; returns the CompletedProcess."""

    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [prepflow_exe(), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
        )

    return run
