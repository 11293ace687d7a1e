"""Random oversampling: duplicate random rows of each minority class.

The new rows are a lazy source (:func:`~transforms.augment._base.new_rows_source`):
when a query first reads them, the rows of the classes that grow are collected, and
per class a seeded ``int_range(len).sample(n, with_replacement=True)`` of row
positions picks the rows that are copied whole, gathered
:data:`~transforms.augment._base.CHUNK_ROWS` at a time. So a streamed run holds the
minority's rows, the positions and one chunk, never the table of copies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import polars as pl
from pydantic import Field

from transforms.augment._base import (
    CHUNK_ROWS,
    AugmentStep,
    FittedClassBalance,
    class_counts_query,
    derive_seed,
    n_to_add,
)
from transforms.base import FitData, FitPlan
from transforms.registry import register


@dataclass(frozen=True)
class FittedOversampler(FittedClassBalance):
    """Balances ``target``: see :class:`FittedClassBalance` for the state."""

    def rows_maker(self) -> Callable[[pl.DataFrame], Iterator[pl.DataFrame]]:
        return self._copies

    def _copies(self, df: pl.DataFrame) -> Iterator[pl.DataFrame]:
        """Random rows of each growing class of ``df`` (the growing classes' rows), a chunk at a time."""
        for i, rows, n in self.growing(df):
            seed = derive_seed(self.step.seed, i)
            picks = pl.int_range(rows.height, eager=True).sample(n, with_replacement=True, seed=seed)
            for start in range(0, n, CHUNK_ROWS):
                yield rows[picks.slice(start, CHUNK_ROWS)]


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
    streams = True

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
