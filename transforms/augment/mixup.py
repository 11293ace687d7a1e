"""Mixup (Zhang et al. 2018): convex combinations of random pairs of rows.

Row pairs and weights come from ``numpy.random.default_rng(seed)`` inside one
``LazyFrame.map_batches`` call; the arithmetic itself is Polars (so nulls
propagate: a missing value in either row gives a missing mixed value).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import polars as pl
from pydantic import Field

from transforms import columns as _columns
from transforms.augment._base import AugmentStep, FittedAugment
from transforms.base import FitData, FitPlan
from transforms.errors import ColumnError
from transforms.missing import float_dtype
from transforms.registry import register


def _mix_batch(df: pl.DataFrame, *, mixed: tuple[str, ...], alpha: float, copies: int, seed: int) -> pl.DataFrame:
    """``copies`` mixed rows per row of ``df``: ``lam * row_i + (1 - lam) * row_j``."""
    n = df.height
    if n == 0:
        return df
    rng = np.random.default_rng(seed)
    first = np.tile(np.arange(n), copies)
    second = rng.permuted(np.tile(np.arange(n), (copies, 1)), axis=1).ravel()
    lam = rng.beta(alpha, alpha, size=n * copies)
    base = df[np.where(lam >= 0.5, first, second)]
    a, b = df[first], df[second]
    weight = pl.Series(lam)
    return base.with_columns(
        (a[c] * weight + b[c] * (1.0 - weight)).cast(df.schema[c]).alias(c) for c in mixed if c in df.columns
    )


@dataclass(frozen=True)
class FittedMixup(FittedAugment):
    """Feature ``columns`` and label ``target_columns`` that are mixed (no learned statistics)."""

    target_columns: tuple[str, ...]

    def labels(self) -> tuple[str, ...]:
        return self.target_columns

    def prepare(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        schema = lf.collect_schema()
        present = [c for c in (*self.columns, *self.target_columns) if c in schema]
        return lf.with_columns(pl.col(c).cast(float_dtype(schema[c])) for c in present)

    def generate(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        fn = partial(
            _mix_batch,
            mixed=(*self.columns, *self.target_columns),
            alpha=self.step.alpha,  # type: ignore[attr-defined]
            copies=self.step.copies,  # type: ignore[attr-defined]
            seed=self.step.seed,
        )
        return lf.map_batches(fn)


@register("augment", "mixup", "Mixup: append convex combinations of random row pairs, labels mixed alike.")
class Mixup(AugmentStep):
    """Append ``copies`` mixed rows per row: ``lam * x_i + (1 - lam) * x_j``, ``lam ~ Beta(alpha, alpha)``.

    Each copy pairs every row ``i`` with a row ``j`` of a seeded random
    permutation. Feature and label columns are mixed; other columns copy the
    row with the larger weight. Mixed columns are written as floats (Float32
    stays, others become Float64) in both modes, so training and serving schemas
    agree; serving keeps the values. A missing value in either row of a pair
    gives a missing value.

    Parameters
    ----------
    alpha
        Parameter of the Beta(alpha, alpha) mixing weight.
    copies
        Mixed rows to append per row.
    target_columns
        Label columns to mix (a one-hot target is several numeric columns);
        None mixes the target, which must then be numeric or boolean.
    columns
        Numeric features to mix; default: numeric, except the labels.
    seed, mark, target
        See :class:`~transforms.augment.AugmentStep`.

    >>> import polars as pl
    >>> df = pl.DataFrame({"x": [0.0, 1.0], "y": [0, 1]})
    >>> out = Mixup(target="y", seed=0).fit_transform(df)
    >>> out.schema["y"], out.height
    (Float64, 4)
    >>> bool(((out["x"] - out["y"]).abs() < 1e-12).all())
    True
    """

    alpha: float = Field(0.2, gt=0)
    copies: int = Field(1, ge=1)
    target_columns: list[str] | None = None

    fitted_class = FittedMixup

    def plan(self, schema: pl.Schema, target: str | None) -> FitPlan:
        t = self.effective_target(target)
        if self.target_columns is not None:
            labels = _columns.resolve(list(self.target_columns), schema, step=self.label)
        elif t is not None:
            labels = _columns.resolve([t], schema, step=self.label)
        else:
            labels = ()
        for c in labels:
            if not (schema[c].is_numeric() or schema[c] == pl.Boolean):
                raise ColumnError(
                    f"{self.label}: label column '{c}' has dtype {schema[c]}; mixup mixes labels as numbers: "
                    "one-hot encode it and set `target_columns`"
                )
        cols = self.resolve_columns(schema, t)
        if self.columns is None:
            cols = tuple(c for c in cols if c not in labels)
        elif set(cols) & set(labels):
            raise ColumnError(f"{self.label}: column(s) {sorted(set(cols) & set(labels))} are both features and labels")
        mixed = set(cols) | set(labels)
        out_schema = pl.Schema({c: (float_dtype(d) if c in mixed else d) for c, d in schema.items()})

        def finish(data: FitData) -> FittedMixup:
            return FittedMixup(step=self, columns=cols, target_columns=labels)

        return FitPlan(
            finish=finish,
            reads=(*cols, *labels),
            output_schema=self.output_schema(out_schema),
            changes_rows=True,
        )
