"""The benchmark cases and variants: names, default sizes, and what a variant receives.

Light on purpose (standard library only): the runner and every worker import it.

A *case* is one preprocessing job. Each is measured in up to seven *variants*:

========  ==========================================================================
sklearn   (a) scikit-learn (and imbalanced-learn) estimators on NumPy arrays (``.npy``)
pandas    (b) ``pandas.read_parquet`` + a scikit-learn ``ColumnTransformer``, as a
          typical user writes it (``set_output(transform="pandas")``)
polars    (c) hand-written Polars: one fit query (all quantiles of a column from one
          ``quantile([...])`` call), one transform query
prepflow  (d) the prepflow library: ``transforms.Pipeline`` fit + transform on the
          in-memory frame read with ``pl.read_parquet``
scan      (d') the prepflow library on ``pl.scan_parquet``: fit on the scan, transform
          a second scan collected with the streaming engine (the file is read twice,
          never held whole beside the output)
cli       (e) ``prepflow run SPEC`` (``prepflow apply`` for case 7): Parquet in, Parquet
          out, whole command wall time (interpreter start-up included)
floor     ``pl.scan_parquet(...).sink_parquet(...)`` of the same input, no computation
========  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.data import Dataset


@dataclass(frozen=True)
class Case:
    """One benchmark case: its number, title and default row count."""

    number: int
    title: str
    default_rows: int


CASES: dict[int, Case] = {
    c.number: c
    for c in (
        Case(1, "mean impute -> standard scale", 10_000_000),
        Case(2, "median impute -> robust scale", 10_000_000),
        Case(3, "median impute -> IQR clip -> robust scale -> one-hot", 10_000_000),
        Case(4, "quantile transform (normal output)", 5_000_000),
        Case(5, "z-score outlier drop -> mean impute + missing indicators", 10_000_000),
        Case(6, "mean impute -> SMOTE to balance the label", 1_000_000),
        Case(7, "apply a saved fitted case-3 pipeline to new rows", 10_000_000),
    )
}

VARIANTS = ("sklearn", "pandas", "polars", "prepflow", "scan", "cli", "floor")

LABELS = {
    "sklearn": "(a) scikit-learn/numpy",
    "pandas": "(b) pandas+sklearn",
    "polars": "(c) hand Polars",
    "prepflow": "(d) prepflow library",
    "scan": "(d') prepflow on a scan",
    "cli": "(e) prepflow CLI",
    "floor": "floor (scan->sink)",
}

#: the module of benchmarks.variants that implements each in-process variant
MODULES = {
    "sklearn": "sklearn_numpy",
    "pandas": "pandas_sklearn",
    "polars": "polars_hand",
    "prepflow": "prepflow_lib",
    "scan": "prepflow_scan",
    "floor": "floor",
}

#: case 7 fits its artifacts on a separate training set of at most this many rows
TRAIN_ROWS = 1_000_000

#: parameters shared by every variant of a case
IQR_K = 1.5
ZSCORE_THRESHOLD = 3.0
N_QUANTILES = 1000
SUBSAMPLE = 10_000
K_NEIGHBORS = 5
SEED = 0


@dataclass(frozen=True)
class Context:
    """What a variant gets: its case, the input data, and where to put files.

    ``work`` is a per-case folder in the cache that holds prepared artifacts
    (case 7's fitted pipelines, the CLI's spec) and outlives a run; ``tmp`` is
    a scratch folder for outputs, emptied after every run.
    """

    case: int
    data: Dataset
    work: Path
    tmp: Path
    train: Dataset | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "case": self.case,
            "data": self.data.to_dict(),
            "work": str(self.work),
            "tmp": str(self.tmp),
            "train": self.train.to_dict() if self.train else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Context:
        train = d.get("train")
        return cls(
            case=int(d["case"]),  # type: ignore[call-overload]
            data=Dataset.from_dict(d["data"]),  # type: ignore[arg-type]
            work=Path(str(d["work"])),
            tmp=Path(str(d["tmp"])),
            train=Dataset.from_dict(train) if train else None,  # type: ignore[arg-type]
        )
