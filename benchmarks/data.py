"""The benchmark data: a seeded generator, cached as Parquet and ``.npy`` files.

Every dataset has ``rows`` rows of

- ``f0`` .. ``f9``: Float64 features (``f0``-``f4`` normal with different centres
  and spreads, ``f5``-``f9`` log-normal, i.e. skewed), each with about 5 % missing
  values (null in Parquet, NaN in ``X.npy``) and :data:`OUTLIERS_PER_COLUMN`
  extreme outliers (``+/- 10**4 .. 10**6`` times the column's scale);
- ``cat``: a String column with the 8 categories ``A`` .. ``H`` at skewed
  frequencies (no missing values);
- ``label``: an Int64 binary label with about 2 % ones (the minority class).

The same rows are written four ways in ``<cache>/rows<N>_seed<S>/``:
``data.parquet`` (uncompressed, row groups of 1M rows), ``X.npy`` (float64,
``rows x 10``), ``cat.npy`` (int8 category codes, index into :data:`CATEGORIES`) and ``y.npy``
(int64 labels). A ``meta.json`` written last marks a complete dataset; generation is
chunked (1M rows at a time), so a 10M-row dataset never needs more than a few
hundred MB. Only NumPy and PyArrow are imported.

The Parquet file is uncompressed, as ``X.npy`` is: the random floats gain 5 % from
zstd, and decoding zstd cost the Parquet readers about 0.8 s of a 10M-row read that
scikit-learn, reading ``X.npy``, never pays. The CLI and the floor still write their
outputs with prepflow's options (zstd level 1).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FEATURES = tuple(f"f{i}" for i in range(10))
CAT = "cat"
LABEL = "label"
CATEGORIES = ("A", "B", "C", "D", "E", "F", "G", "H")
CATEGORY_P = (0.30, 0.20, 0.15, 0.10, 0.10, 0.08, 0.05, 0.02)
NULL_RATE = 0.05
MINORITY_RATE = 0.02
OUTLIERS_PER_COLUMN = 5
CHUNK = 1_000_000
DEFAULT_CACHE = Path(os.environ.get("PREPFLOW_BENCH_CACHE", Path(__file__).resolve().parents[1] / ".benchmarks_cache"))
FORMAT = 2  # bump when the generator changes, so stale caches are regenerated


@dataclass(frozen=True)
class Dataset:
    """Paths of one cached dataset (see the module docstring)."""

    folder: Path
    rows: int
    seed: int

    @property
    def parquet(self) -> Path:
        return self.folder / "data.parquet"

    @property
    def x_npy(self) -> Path:
        return self.folder / "X.npy"

    @property
    def cat_npy(self) -> Path:
        return self.folder / "cat.npy"

    @property
    def y_npy(self) -> Path:
        return self.folder / "y.npy"

    @property
    def meta(self) -> Path:
        return self.folder / "meta.json"

    def exists(self) -> bool:
        if not self.meta.exists():
            return False
        try:
            return json.loads(self.meta.read_text()).get("format") == FORMAT
        except (OSError, ValueError):
            return False

    def to_dict(self) -> dict[str, object]:
        return {"folder": str(self.folder), "rows": self.rows, "seed": self.seed}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Dataset:
        return cls(Path(str(data["folder"])), int(data["rows"]), int(data["seed"]))  # type: ignore[call-overload]


def dataset(rows: int, seed: int = 0, cache: Path = DEFAULT_CACHE) -> Dataset:
    """The (possibly not yet generated) dataset of ``rows`` rows and ``seed``."""
    return Dataset(Path(cache) / f"rows{rows}_seed{seed}", rows, seed)


def _column(rng: np.random.Generator, j: int, n: int) -> np.ndarray:
    if j < 5:
        return rng.normal(10.0 * j, 1.0 + j, n)
    return rng.lognormal(0.5, 0.25 * (j - 4), n)


def _scale(j: int) -> float:
    return 1.0 + j if j < 5 else 1.0


def _outliers(rows: int, seed: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per column: sorted global row positions of the outliers and their values."""
    rng = np.random.default_rng([seed, 1_000_003])
    out = {}
    for j in range(len(FEATURES)):
        k = min(OUTLIERS_PER_COLUMN, rows)
        pos = np.sort(rng.choice(rows, size=k, replace=False))
        sign = rng.choice([-1.0, 1.0], size=k)
        out[j] = (pos, sign * 10.0 ** rng.uniform(4, 6, size=k) * _scale(j))
    return out


def generate(ds: Dataset, *, progress: bool = True) -> Dataset:
    """Write ``ds`` (all four files) unless a complete copy is cached; returns it."""
    if ds.exists():
        return ds
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    tmp = ds.folder.with_name(ds.folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = ds.rows
    x = np.lib.format.open_memmap(tmp / "X.npy", mode="w+", dtype=np.float64, shape=(n, len(FEATURES)))
    cat = np.lib.format.open_memmap(tmp / "cat.npy", mode="w+", dtype=np.int8, shape=(n,))
    y = np.lib.format.open_memmap(tmp / "y.npy", mode="w+", dtype=np.int64, shape=(n,))
    outliers = _outliers(n, ds.seed)
    categories = np.array(CATEGORIES, dtype=object)
    schema = pa.schema(
        [*((f, pa.float64()) for f in FEATURES), (CAT, pa.string()), (LABEL, pa.int64())],
    )
    with pq.ParquetWriter(tmp / "data.parquet", schema, compression="none") as writer:
        for chunk, lo in enumerate(range(0, n, CHUNK)):
            hi = min(lo + CHUNK, n)
            m = hi - lo
            rng = np.random.default_rng([ds.seed, chunk])
            arrays = []
            for j in range(len(FEATURES)):
                values = _column(rng, j, m)
                missing = rng.random(m) < NULL_RATE
                pos, vals = outliers[j]
                sel = (pos >= lo) & (pos < hi)
                values[pos[sel] - lo] = vals[sel]
                missing[pos[sel] - lo] = False
                x[lo:hi, j] = np.where(missing, np.nan, values)
                arrays.append(pa.array(values, mask=missing))
            codes = rng.choice(len(CATEGORIES), size=m, p=CATEGORY_P).astype(np.int8)
            labels = (rng.random(m) < MINORITY_RATE).astype(np.int64)
            cat[lo:hi] = codes
            y[lo:hi] = labels
            arrays += [pa.array(categories[codes], type=pa.string()), pa.array(labels)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema), row_group_size=CHUNK)
    for arr in (x, cat, y):
        arr.flush()
    del x, cat, y
    meta = {"format": FORMAT, "rows": n, "seed": ds.seed, "seconds": round(time.perf_counter() - started, 2)}
    (tmp / "meta.json").write_text(json.dumps(meta) + "\n")
    shutil.rmtree(ds.folder, ignore_errors=True)
    tmp.rename(ds.folder)
    if progress:
        size = sum(p.stat().st_size for p in ds.folder.iterdir()) / 1e6
        print(f"generated {ds.folder} ({n:,} rows, {size:,.0f} MB) in {meta['seconds']} s", flush=True)
    return ds


if __name__ == "__main__":  # python -m benchmarks.data ROWS [SEED]: generate one dataset
    import sys

    generate(dataset(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0))
