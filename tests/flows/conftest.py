"""One Prefect test server for the whole session, and small specs and data to run through it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest

SPEC = """\
name: loans
target: label
input:
  schema:
    columns:
      age:    {dtype: Float64, nullable: true, checks: {ge: 0, le: 120}}
      income: {dtype: Float64, nullable: true, checks: {ge: 0}}
      city:   {dtype: String, nullable: true}
      label:  {dtype: Int64, checks: {isin: [0, 1]}}
  on_invalid_rows: quarantine
output:
  schema:
    columns:
      age: {dtype: Float64, nullable: false}
steps:
  - {kind: impute, method: median, columns: [age, income]}
  - {kind: outliers, method: zscore, columns: [income], threshold: 3.0, action: drop}
  - {kind: scale, method: standard, columns: [age, income]}
  - {kind: encode, method: onehot, columns: [city]}
"""


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory):
    """A temporary Prefect server (SQLite) for every flow test; fit caches in a temporary folder."""
    from prefect.settings import (
        PREFECT_LOCAL_STORAGE_PATH,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-storage")
    with (
        temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage, PREFECT_SERVER_ANALYTICS_ENABLED: False}),
        prefect_test_harness(server_startup_timeout=120),
    ):
        yield


def loans_frame(n: int = 3000, seed: int = 3) -> pl.DataFrame:
    """Loans with missing values, an income outlier, invalid ages and labels."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 12, n).round(1)
    income = rng.lognormal(10, 0.5, n).round(2)
    income[7] = 5e7
    df = pl.DataFrame(
        {
            "age": age,
            "income": income,
            "city": rng.choice(["paris", "lyon", "nice"], n).tolist(),
            "label": (rng.random(n) < 0.2).astype(np.int64),
        }
    )
    row = pl.int_range(n)
    return df.with_columns(
        pl.when(row % 11 == 0).then(None).when(row == 5).then(150.0).otherwise(pl.col("age")).alias("age"),
        pl.when(row % 17 == 0).then(None).otherwise(pl.col("city")).alias("city"),
        pl.when(row == 9).then(2).otherwise(pl.col("label")).alias("label"),
    )


@pytest.fixture
def loans(tmp_path: Path) -> tuple[Path, Path]:
    """(spec, input CSV) in a fresh folder."""
    spec = tmp_path / "loans.yaml"
    spec.write_text(SPEC)
    data = tmp_path / "loans.csv"
    loans_frame().write_csv(data)
    return spec, data


@pytest.fixture
def spec_with(tmp_path: Path):
    """Write the loans spec plus ``extra`` YAML (e.g. orchestration keys) to ``name``; returns its path."""

    def write(extra: str, name: str = "spec.yaml", replace: tuple[str, str] | None = None) -> Path:
        path = tmp_path / name
        base = SPEC if replace is None else SPEC.replace(*replace)
        path.write_text(base + textwrap.dedent(extra))
        return path

    return write


@pytest.fixture
def frame():
    """The loans frame factory (``n`` rows, ``seed``)."""
    return loans_frame


@pytest.fixture(scope="session")
def loans_source():
    """(the loans spec text, the loans frame factory), for fixtures broader than one test."""
    return SPEC, loans_frame
