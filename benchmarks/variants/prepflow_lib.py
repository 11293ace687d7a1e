"""(d) the prepflow library, and the files the CLI variant (e) runs from.

Timed: ``pl.read_parquet``, ``Pipeline.fit`` and ``FittedPipeline.transform`` on the
in-memory DataFrame (training mode, so case 6's SMOTE adds rows); case 7 loads the
saved JSON artifact and transforms (serving mode). :func:`prepare` writes the
CLI's ``spec.yaml`` (from :func:`pipeline` via ``Pipeline.to_spec``, so both
variants run the same steps), case 7's fitted artifact, and the input's in-memory
size (``input_size.json``).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from benchmarks.cases import IQR_K, K_NEIGHBORS, N_QUANTILES, SEED, SUBSAMPLE, ZSCORE_THRESHOLD, Context
from benchmarks.data import CAT, FEATURES, LABEL
from benchmarks.timing import loaded
from transforms import (
    SMOTE,
    IQROutliers,
    OneHotEncoder,
    Pipeline,
    QuantileScaler,
    RobustScaler,
    SimpleImputer,
    StandardScaler,
    ZScoreOutliers,
)

Work = Callable[[], Any]
F = list(FEATURES)


def pipeline(case: int) -> Pipeline:
    """The prepflow pipeline of a case (case 7 applies case 3's)."""
    steps = {
        1: [SimpleImputer(columns=F, strategy="mean"), StandardScaler(columns=F)],
        2: [SimpleImputer(columns=F, strategy="median"), RobustScaler(columns=F)],
        3: [
            SimpleImputer(columns=F, strategy="median"),
            IQROutliers(columns=F, k=IQR_K, action="clip"),
            RobustScaler(columns=F),
            OneHotEncoder(columns=[CAT], handle_unknown="ignore"),
        ],
        4: [
            QuantileScaler(
                columns=F, n_quantiles=N_QUANTILES, output_distribution="normal", subsample=SUBSAMPLE, seed=SEED
            )
        ],
        5: [
            ZScoreOutliers(columns=F, threshold=ZSCORE_THRESHOLD, action="drop"),
            SimpleImputer(columns=F, strategy="mean", add_indicator=True),
        ],
        6: [SimpleImputer(columns=F, strategy="mean"), SMOTE(columns=F, ratio=1.0, k_neighbors=K_NEIGHBORS, seed=SEED)],
    }[3 if case == 7 else case]
    return Pipeline(steps, target=LABEL, name=f"benchmark-case-{case}")


def spec_path(ctx: Context) -> Path:
    return ctx.work / "spec.yaml"


def fitted_path(ctx: Context) -> Path:
    return ctx.work / "prepflow_fitted.json"


def import_untimed(case: int) -> None:
    """Import what a case's steps import on first use, so that the timing leaves it out.

    Case 6's SMOTE imports SciPy's k-d tree on first use (its neighbour search, tree or
    brute force, needs nothing else).
    """
    if case == 6:
        importlib.import_module("scipy.spatial")


def _fit_transform(ctx: Context) -> Work:
    pipe = pipeline(ctx.case)
    import_untimed(ctx.case)

    def work() -> pl.DataFrame:
        df = pl.read_parquet(ctx.data.parquet)
        loaded()
        return pipe.fit(df).transform(df, train=True)

    return work


def case7(ctx: Context) -> Work:
    def work() -> pl.DataFrame:
        fitted = Pipeline.load(fitted_path(ctx))
        df = pl.read_parquet(ctx.data.parquet)
        loaded()
        return fitted.transform(df)

    return work


def prepare(ctx: Context) -> None:
    """Write the CLI's spec, case 7's fitted artifact and the input's in-memory size."""
    spec = pipeline(ctx.case).to_spec()
    spec_path(ctx).write_text(yaml.safe_dump(spec, sort_keys=False))
    if ctx.case == 7 and ctx.train is not None:
        pipeline(7).fit(pl.read_parquet(ctx.train.parquet)).save(fitted_path(ctx))
    size = pl.read_parquet(ctx.data.parquet).estimated_size()
    (ctx.work / "input_size.json").write_text(json.dumps({"bytes": size, "rows": ctx.data.rows}) + "\n")


CASES = {**dict.fromkeys(range(1, 7), _fit_transform), 7: case7}
