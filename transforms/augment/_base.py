"""Shared machinery of augmentation steps: training-only rows, seeds, the mark column.

An augmentation step adds rows only in training mode (``apply(..., train=True)``,
which the engine uses while fitting and in ``prepflow run``). In serving mode
(``train=False``) the frame is returned unchanged, except that ``mark=True``
adds the Boolean :data:`MARK_COLUMN` column (all False) so that both modes give the
same schema. Output rows are the input rows in their original order followed by
the new rows. New rows copy every column they do not generate (an ``id``, the
engine's row index) from the input row they were made from.

>>> import polars as pl
>>> from transforms import RandomOversampler
>>> df = pl.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 0, 1]})
>>> fitted = RandomOversampler(target="y", mark=True).fit(df)
>>> fitted.transform(df, train=True)[MARK_COLUMN].to_list()
[False, False, False, True]
>>> fitted.transform(df).columns
['x', 'y', '__augmented']
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import polars as pl
from pydantic import Field

from transforms import columns as _columns
from transforms.base import Fitted, Step
from transforms.errors import ColumnError, ConfigError

#: the Boolean column that ``mark=True`` adds: True for rows an augmentation step made
MARK_COLUMN = "__augmented"
#: an engine's hidden Boolean column: when a step's input has it, the rows the step adds get True
#: in it (the input's rows keep their value), so the engine can tell them apart
ADDED_COLUMN = "__added"
#: new rows a class-balancing step makes at a time, per class (fixed: a seed gives the same rows
#: however the query runs). Case 6 in memory, 1M rows: what SMOTE adds peaked at 152-185 MB with
#: 2**16, 182-199 MB with 2**17, 169-180 MB in one chunk; making 960k rows took 0.07-0.09 s each way
CHUNK_ROWS = 1 << 16


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed derived from ``seed`` and ``keys`` (stable across versions).

    >>> derive_seed(0, 1) == derive_seed(0, 1) != derive_seed(0, 2)
    True
    """
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def n_to_add(counts: tuple[int, ...], ratio: float) -> tuple[int, ...]:
    """Rows to add per class so that each non-majority class reaches ``ratio * majority``.

    The formula is imbalanced-learn's for a float ``sampling_strategy``:
    ``int(n_majority * ratio - n_class)`` (truncated), and classes already at or
    above that size get none.

    >>> n_to_add((10, 3, 7), 1.0)
    (0, 7, 3)
    >>> n_to_add((10, 3), 0.55)
    (0, 2)
    """
    if not counts:
        return ()
    majority = max(counts)
    return tuple(max(0, int(majority * ratio - n)) for n in counts)


class AugmentStep(Step):
    """Parameters every augmentation step has.

    Parameters
    ----------
    seed
        Seed of every random draw: the same seed and data give the same rows.
    mark
        Add the Boolean ``__augmented`` column (True for new rows) in both modes.
    target
        The label column; None uses the pipeline's target.
    """

    seed: int = Field(0, ge=0)
    mark: bool = False
    target: str | None = None

    #: whether the step can run streamed: its new rows need only the rows of the classes that
    #: grow, not the whole table (see :func:`new_rows_source`)
    streams: ClassVar[bool] = False

    def effective_target(self, target: str | None) -> str | None:
        """The step's own ``target``, else the pipeline's."""
        return self.target if self.target is not None else target

    def require_target(self, schema: pl.Schema, target: str | None) -> str:
        """The label column, checked to exist; a clear error when there is none."""
        t = self.effective_target(target)
        if t is None:
            raise ConfigError(f"{self.label}: needs a target column; set `target:` on the step or the pipeline")
        _columns.resolve([t], schema, step=self.label)
        return t

    def require_class_target(self, schema: pl.Schema, target: str | None) -> str:
        """Like :meth:`require_target`, and the column must hold class labels."""
        t = self.require_target(schema, target)
        dtype = schema[t]
        if not (dtype.is_integer() or dtype in (pl.String, pl.Boolean, pl.Categorical) or isinstance(dtype, pl.Enum)):
            raise ColumnError(
                f"{self.label}: target '{t}' has dtype {dtype}; it needs class labels "
                "(an integer, string, categorical or boolean column)"
            )
        return t

    def output_schema(self, schema: pl.Schema) -> pl.Schema:
        """``schema`` plus the mark column when ``mark`` is set."""
        return pl.Schema({**schema, MARK_COLUMN: pl.Boolean()}) if self.mark else schema


def class_counts_query(
    target: str, dtype: pl.DataType, extra: list[pl.Expr] | None = None
) -> Callable[[pl.LazyFrame], pl.LazyFrame]:
    """A fit query: one row per non-null class of ``target`` with its count ``__n``.

    Categorical and enum labels come back as strings; ``extra`` adds per-class
    aggregations.
    """
    key = pl.col(target).cast(pl.String) if _is_categorical(dtype) else pl.col(target)

    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        return (
            lf.filter(pl.col(target).is_not_null())
            .group_by(key.alias(target))
            .agg(pl.len().alias("__n"), *(extra or []))
            .sort(target)
        )

    return build


def _is_categorical(dtype: pl.DataType) -> bool:
    return dtype == pl.Categorical or isinstance(dtype, pl.Enum)


def class_filter(target: str, dtype: pl.DataType, value: Any) -> pl.Expr:
    """True for rows whose label is ``value`` (categorical labels compared as strings)."""
    col = pl.col(target).cast(pl.String) if _is_categorical(dtype) else pl.col(target)
    return col.eq_missing(value)


@dataclass(frozen=True)
class FittedAugment(Fitted):
    """Base of fitted augmentation steps: adds rows in training mode only.

    Subclasses implement :meth:`generate`, the new rows as a LazyFrame with the
    input's schema. In serving mode the step reads no column (a frame without
    the target passes), in training mode ``columns`` plus :meth:`labels`.
    """

    @property
    def changes_rows(self) -> bool:
        return True

    def labels(self) -> tuple[str, ...]:
        """Label columns the step reads in training mode besides ``columns``."""
        return ()

    def reads(self, *, train: bool = False) -> tuple[str, ...]:
        if not train:
            return ()
        return tuple(dict.fromkeys((*self.columns, *self.labels())))

    def generate(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        """The new rows (same schema as ``lf``), lazily."""
        raise NotImplementedError

    def prepare(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        """Schema changes applied in both modes before rows are added (none by default)."""
        return lf

    def apply(self, lf: pl.LazyFrame, *, train: bool = False) -> pl.LazyFrame:
        lf = self.prepare(lf)
        marked = MARK_COLUMN in lf.collect_schema()
        mark = self.step.mark and not marked  # type: ignore[attr-defined]
        if not train:
            return lf.with_columns(pl.lit(False).alias(MARK_COLUMN)) if mark else lf
        new = self.generate(lf)
        if mark or marked:
            new = new.with_columns(pl.lit(True).alias(MARK_COLUMN))
        if ADDED_COLUMN in lf.collect_schema():
            new = new.with_columns(pl.lit(True).alias(ADDED_COLUMN))
        if mark:
            lf = lf.with_columns(pl.lit(False).alias(MARK_COLUMN))
        return pl.concat([lf, new], how="vertical")


def new_rows_source(
    seeds: pl.LazyFrame, schema: pl.Schema, make: Callable[[pl.DataFrame], Iterator[pl.DataFrame]]
) -> pl.LazyFrame:
    """New rows, lazily: ``make``'s frames (each with ``schema``) from the rows of ``seeds``, one at a time.

    A Polars IO source (``register_io_source``): when a query first reads it, ``seeds``
    (rows the new ones are made from: the growing classes, a small share of a large
    table) is collected with the streaming engine, and each frame ``make`` yields is
    passed on before the next is made. So a streamed query holds ``seeds`` and one
    frame, never all the new rows. Every read runs ``make`` again (same seeds, same rows).

    >>> lf = pl.LazyFrame({"x": [1.0, 2.0, 3.0]})
    >>> twice = new_rows_source(lf.filter(pl.col("x") > 1), lf.collect_schema(), lambda df: iter([df, df * 10]))
    >>> twice.collect()["x"].to_list()
    [2.0, 3.0, 20.0, 30.0]
    """
    from polars.io.plugins import register_io_source

    def source(
        with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, _batch_size: int | None
    ) -> Iterator[pl.DataFrame]:
        left = n_rows
        for frame in make(seeds.collect(engine="streaming")):
            if predicate is not None:
                frame = frame.filter(predicate)
            if left is not None:
                frame = frame.head(left)
                left -= frame.height
            yield frame if with_columns is None else frame.select(with_columns)
            if left == 0:
                return

    return register_io_source(source, schema=schema)


def keep_dtype(values: pl.Series, dtype: pl.DataType) -> pl.Series:
    """Generated float values written back in the column's dtype.

    Float columns keep their precision; integer columns are rounded to the
    nearest integer and clipped to the dtype's range, so augmentation never
    changes a schema.

    >>> keep_dtype(pl.Series([1.6, -300.0, None]), pl.Int8).to_list()
    [2, -128, None]
    """
    if dtype.is_integer():
        values = values.round()
        try:
            info = np.iinfo(str(dtype).lower())
        except (TypeError, ValueError):  # Int128 and UInt128: no NumPy counterpart, no clipping
            pass
        else:
            values = values.clip(_float_bound(int(info.min)), _float_bound(int(info.max)))
    return values.cast(dtype, strict=False)


def _float_bound(bound: int) -> float:
    """The float nearest ``bound`` that does not overflow it (2**63 - 1 is not a float)."""
    f = float(bound)
    return f if int(f) == bound else float(np.nextafter(f, 0.0))


@dataclass(frozen=True)
class FittedClassBalance(FittedAugment):
    """Classes of ``target`` (sorted), their fitted counts and the rows added to each.

    The new rows are a lazy source (:func:`new_rows_source`) over the rows of the classes
    that grow: subclasses implement :meth:`rows_maker`.
    """

    target: str
    classes: tuple[Any, ...]
    counts: tuple[int, ...]
    n_new: tuple[int, ...]

    def labels(self) -> tuple[str, ...]:
        return (self.target,)

    def generate(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        grow = [v for v, n in zip(self.classes, self.n_new, strict=True) if n > 0]
        if not grow:
            return lf.clear()
        schema = lf.collect_schema()
        keep = pl.any_horizontal(class_filter(self.target, schema[self.target], v) for v in grow)
        return new_rows_source(lf.filter(keep), schema, self.rows_maker())

    def rows_maker(self) -> Callable[[pl.DataFrame], Iterator[pl.DataFrame]]:
        """The function of the growing classes' rows that yields the new rows, at most :data:`CHUNK_ROWS`
        per frame. Built where the query is, not where it runs (there Polars' thread pool answers 1)."""
        raise NotImplementedError

    def growing(self, df: pl.DataFrame) -> Iterator[tuple[int, pl.DataFrame, int]]:
        """For each class that grows and has rows in ``df``: its index, its rows and the rows to add."""
        dtype = df.schema[self.target]
        for i, (value, n) in enumerate(zip(self.classes, self.n_new, strict=True)):
            if n <= 0:
                continue
            rows = df.filter(class_filter(self.target, dtype, value))
            if rows.height:
                yield i, rows, n
