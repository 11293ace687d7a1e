"""Gaussian-noise augmentation: append noisy copies of the training rows.

Noise comes from ``numpy.random.default_rng(seed)``. Polars has no random-normal
expression, so the copies go through one ``LazyFrame.map_batches`` call (with
every pushdown disabled, so the draws never depend on which rows or columns a
later step happens to read); the query stays lazy and the original rows are
never copied into NumPy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import polars as pl
from pydantic import Field

from transforms.augment._base import AugmentStep, FittedAugment, keep_dtype
from transforms.base import FitData, FitPlan, Stat
from transforms.missing import finite
from transforms.registry import register


def _add_noise(df: pl.DataFrame, *, columns: tuple[str, ...], sigma: tuple[float, ...], seed: int) -> pl.DataFrame:
    """Add ``N(0, sigma_j)`` noise to each column; null and NaN stay missing."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((df.height, len(columns)))
    return df.with_columns(
        keep_dtype(df[c].cast(pl.Float64) + noise[:, j] * s, df.schema[c]).alias(c)
        for j, (c, s) in enumerate(zip(columns, sigma, strict=True))
    )


@dataclass(frozen=True)
class FittedGaussianNoise(FittedAugment):
    """Absolute noise std ``sigma`` per column (``std`` times the column's fitted std)."""

    sigma: tuple[float, ...]

    def generate(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        copies = pl.concat([lf] * self.step.copies, how="vertical")  # type: ignore[attr-defined]
        fn = partial(_add_noise, columns=self.columns, sigma=self.sigma, seed=self.step.seed)
        return copies.map_batches(fn)


@register("augment", "gaussian_noise", "Append noisy copies of the rows (noise std relative to each column's std).")
class GaussianNoise(AugmentStep):
    """Append ``copies`` copies of the data with Gaussian noise on numeric columns.

    The noise on column ``c`` has standard deviation ``std * std_c``, where
    ``std_c`` is the population std (ddof=0) of the column's finite values at fit
    (0 for a constant or all-missing column: no noise). Missing values (null,
    NaN) stay missing. Integer columns get rounded noise so that the schema
    never changes.

    Parameters
    ----------
    std
        Noise standard deviation relative to each column's fitted std.
    copies
        Noisy copies of the data to append.
    columns
        Numeric columns to perturb; default: numeric, except the target.
    seed, mark, target
        See :class:`~transforms.augment.AugmentStep`.

    >>> import polars as pl
    >>> df = pl.DataFrame({"x": [1.0, 2.0, 3.0]})
    >>> out = GaussianNoise(columns=["x"], std=0.1, seed=1).fit_transform(df)
    >>> out.height, out["x"].head(3).to_list()
    (6, [1.0, 2.0, 3.0])
    """

    std: float = Field(0.05, ge=0)
    copies: int = Field(1, ge=1)

    fitted_class = FittedGaussianNoise

    def plan(self, schema: pl.Schema, target: str | None) -> FitPlan:
        t = self.effective_target(target)
        cols = self.resolve_columns(schema, t)
        aggs = {str(i): Stat(finite(c, schema[c]).cast(pl.Float64), "std") for i, c in enumerate(cols)}

        def finish(data: FitData) -> FittedGaussianNoise:
            stds = [data.aggregates[str(i)] for i in range(len(cols))]
            sigma = tuple(0.0 if s is None or not math.isfinite(s) else self.std * float(s) for s in stds)
            return FittedGaussianNoise(step=self, columns=cols, sigma=sigma)

        return FitPlan(
            finish=finish, reads=cols, output_schema=self.output_schema(schema), aggregates=aggs, changes_rows=True
        )
