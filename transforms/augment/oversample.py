"""Random oversampling: duplicate random rows of each minority class.

Pure lazy Polars: per minority class a ``filter`` and a seeded
``int_range(len).sample(n, with_replacement=True)`` of row positions that every
column is gathered with, so whole rows are copied; no UDF, streaming-friendly.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from pydantic import Field

from transforms.augment._base import (
    AugmentStep,
    FittedClassBalance,
    class_counts_query,
    class_filter,
    derive_seed,
    n_to_add,
)
from transforms.base import FitData, FitPlan
from transforms.registry import register


@dataclass(frozen=True)
class FittedOversampler(FittedClassBalance):
    """Balances ``target``: see :class:`FittedClassBalance` for the state."""

    def generate(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        dtype = lf.collect_schema()[self.target]
        parts = []
        for i, (value, n) in enumerate(zip(self.classes, self.n_new, strict=True)):
            if n <= 0:
                continue
            rows = pl.int_range(pl.len()).sample(n, with_replacement=True, seed=derive_seed(self.step.seed, i))
            parts.append(lf.filter(class_filter(self.target, dtype, value)).select(pl.all().gather(rows)))
        return pl.concat(parts, how="vertical") if parts else lf.clear()


@register("augment", "oversample", "Duplicate random rows of minority classes until they reach ratio * majority.")
class RandomOversampler(AugmentStep):
    """Random oversampling with replacement of each minority class of ``target``.

    Each class other than the majority grows by ``int(n_majority * ratio -
    n_class)`` rows (counts learned at fit; nothing for classes already that
    large), which is imbalanced-learn's rule for a float ``sampling_strategy``;
    for more than two classes the same ratio applies to every class (``ratio=1``
    is imbalanced-learn's ``"not majority"``). Rows with a null target are kept
    but never sampled. ``columns`` is not used: whole rows are copied.

    Parameters
    ----------
    ratio
        Size each minority class grows to, as a share of the majority, in (0, 1].
    seed, mark, target
        See :class:`~transforms.augment.AugmentStep`; ``target`` is required
        (here or on the pipeline).

    >>> import polars as pl
    >>> df = pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": ["a", "a", "a", "b"]})
    >>> out = RandomOversampler(target="y", seed=3).fit_transform(df)
    >>> out["y"].value_counts(sort=True).rows()
    [('a', 3), ('b', 3)]
    """

    ratio: float = Field(1.0, gt=0, le=1)

    fitted_class = FittedOversampler

    def plan(self, schema: pl.Schema, target: str | None) -> FitPlan:
        t = self.require_class_target(schema, target)

        def finish(data: FitData) -> FittedOversampler:
            frame = data.queries["counts"]
            counts = tuple(int(n) for n in frame["__n"])
            return FittedOversampler(
                step=self,
                columns=(t,),
                target=t,
                classes=tuple(frame[t].to_list()),
                counts=counts,
                n_new=n_to_add(counts, self.ratio),
            )

        return FitPlan(
            finish=finish,
            reads=(t,),
            output_schema=self.output_schema(schema),
            queries={"counts": class_counts_query(t, schema[t])},
            changes_rows=True,
        )
