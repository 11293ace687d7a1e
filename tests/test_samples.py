"""The shipped sample pipelines run end to end and cover every step kind."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipelines import commands
from pipelines.spec import load_spec
from transforms import Pipeline, registry

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples"
SPECS = sorted(SAMPLES.glob("*.yaml"))
DATA = {p.stem: next(SAMPLES.glob(f"{p.stem}.[cp]*[!y]")) for p in SPECS}


def test_three_samples_cover_every_kind():
    assert len(SPECS) >= 3
    kinds = {step.kind for p in SPECS for step in load_spec(p).steps}
    assert kinds == set(registry.kinds())


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_sample_runs_and_applies(spec: Path, tmp_path: Path):
    data = DATA[spec.stem]
    report = commands.run(
        spec, data, tmp_path / "out.parquet", fitted_path=tmp_path / "f.json", report_path=tmp_path / "r.json"
    )
    rows = report["rows"]
    assert rows["in"] == rows["out"] + rows["quarantined"] - rows["augmented"]
    out = pl.read_parquet(tmp_path / "out.parquet")
    assert out.height == rows["out"]
    # serving: the fitted artifact applied to the same input never augments
    applied = commands.apply(tmp_path / "f.json", data, tmp_path / "applied.parquet")
    assert applied["rows"]["augmented"] == 0
    fitted = Pipeline.load(tmp_path / "f.json")
    assert fitted.fit_rows == rows["in"] - report["quarantine"]["stages"].get("input", 0)
    assert applied["rows"]["in"] == rows["in"]
