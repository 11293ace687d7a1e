"""Mergeable category counts of a string, integer, boolean or float column, with a cap.

Counts stay exact while the number of distinct values is at most ``cap``. Beyond
it the ``cap`` most frequent values are kept (ties broken by ascending value, so
the result is deterministic), the rest are folded into ``other`` and ``truncated``
becomes True. Once truncated, a kept value's count is a lower bound (its earlier
occurrences may have gone to ``other``). Nulls, and NaN in float columns, are
counted in ``nulls``.

>>> import polars as pl
>>> c = Counts(cap=2).update(pl.Series(["a", "b", None, "a"])).merge(Counts().update(pl.Series(["c", "b"])))
>>> c.finalize()
{'counts': {'a': 2, 'b': 2}, 'other': 1, 'nulls': 1, 'truncated': True}
>>> Counts.from_dict(c.to_dict()).finalize() == c.finalize()
True
"""

from __future__ import annotations

import math
from typing import Any, Literal, Self

import numpy as np
import polars as pl

from transforms import jsonable
from transforms.errors import ArtifactError
from transforms.stats.moments import _count, _decode, as_series

__all__ = ["Counts"]

TYPE = "counts"
DEFAULT_CAP = 100_000

Kind = Literal["str", "int", "float", "bool"]
_DTYPES: dict[str, pl.DataType] = {"str": pl.String(), "int": pl.Int64(), "float": pl.Float64(), "bool": pl.Boolean()}
# the Python types a JSON value of each kind may have (bool is an int subclass: checked by exact type)
_PY_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (float, int), "bool": (bool,)}
_SCHEMA = {"value": pl.Null(), "count": pl.Int64()}


def _kind(dtype: pl.DataType) -> Kind | None:
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "str"
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_integer():
        return "int"
    if dtype.is_float():
        return "float"
    return None


class Counts:
    """Mergeable value counts with at most ``cap`` distinct values kept.

    The value kind (``"str"``, ``"int"``, ``"float"`` or ``"bool"``) is fixed by the
    first non-empty chunk; a chunk or merge of another kind raises ``TypeError``.
    ``merge`` applies ``self.cap``.
    """

    def __init__(self, cap: int = DEFAULT_CAP) -> None:
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
            raise ValueError(f"cap must be an integer >= 1, got {cap!r}")
        self.cap = cap
        self.kind: Kind | None = None
        self.other = 0
        self.nulls = 0
        self.truncated = False
        self._table = pl.DataFrame(schema=_SCHEMA)  # value, count; at most cap rows, sorted

    def __repr__(self) -> str:
        return (
            f"Counts(cap={self.cap}, kind={self.kind!r}, distinct={self._table.height}, "
            f"other={self.other}, nulls={self.nulls}, truncated={self.truncated})"
        )

    @property
    def table(self) -> pl.DataFrame:
        """The kept counts as a frame ``(value, count)``, most frequent first, ties by ascending value."""
        return self._table

    def update(self, values: pl.Series | np.ndarray) -> Self:
        """Count a chunk of values; return self."""
        s = as_series(values)
        kind = _kind(s.dtype)
        if kind is None:
            if s.dtype == pl.Null:  # all-null chunk of unknown type
                self.nulls += s.len()
                return self
            raise TypeError(f"cannot count values of dtype {s.dtype}; expected string, integer, boolean or float")
        nulls = s.null_count()
        s = s.drop_nulls().cast(_DTYPES[kind])
        if kind == "float":
            nan = s.is_nan()
            nulls += int(nan.sum())
            s = s.filter(~nan)
        chunk = Counts(cap=self.cap)
        chunk.nulls = nulls
        if s.len():
            chunk.kind = kind
            vc = s.rename("value").value_counts(name="count")
            chunk._table = vc.with_columns(pl.col("count").cast(pl.Int64))
        return self.merge(chunk)

    def merge(self, other: Counts) -> Self:
        """Add ``other``'s counts to self, then apply ``self.cap``; return self. ``other`` is not changed."""
        if not isinstance(other, Counts):
            raise TypeError(f"cannot merge {type(other).__name__} into Counts")
        if other.kind is not None and self.kind is not None and other.kind != self.kind:
            raise TypeError(f"cannot merge counts of {other.kind} values into counts of {self.kind} values")
        self.nulls += other.nulls
        self.other += other.other
        self.truncated = self.truncated or other.truncated
        if other.kind is None:
            self._apply_cap(self._table)
            return self
        if self.kind is None:
            self.kind = other.kind
            table = other._table
        else:
            table = pl.concat([self._table, other._table]).group_by("value").agg(pl.col("count").sum())
        self._apply_cap(table)
        return self

    def _apply_cap(self, table: pl.DataFrame) -> None:
        table = table.sort(["count", "value"], descending=[True, False])
        if table.height > self.cap:
            self.other += int(table["count"].slice(self.cap).sum())
            self.truncated = True
            table = table.head(self.cap)
        self._table = table

    def finalize(self) -> dict[str, Any]:
        """Return ``{"counts": {value: count}, "other", "nulls", "truncated"}``, most frequent first."""
        return {
            "counts": dict(zip(self._table["value"].to_list(), self._table["count"].to_list(), strict=True)),
            "other": self.other,
            "nulls": self.nulls,
            "truncated": self.truncated,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: values and counts as two lists, with the value kind as a tag."""
        return jsonable.encode(
            {
                "type": TYPE,
                "cap": self.cap,
                "kind": self.kind,
                "values": self._table["value"].to_list(),
                "counts": self._table["count"].to_list(),
                "other": self.other,
                "nulls": self.nulls,
                "truncated": self.truncated,
            }
        )

    @classmethod
    def from_dict(cls, d: Any) -> Self:
        """Inverse of :meth:`to_dict`; raises ``ArtifactError`` on malformed input."""
        d = _decode(d, TYPE, ("cap", "kind", "values", "counts", "other", "nulls", "truncated"))
        cap, other, nulls = _count(d, "cap"), _count(d, "other"), _count(d, "nulls")
        kind, values, counts, truncated = d["kind"], d["values"], d["counts"], d["truncated"]
        if cap < 1:
            raise ArtifactError(f"counts: cap must be >= 1, got {cap}")
        if not isinstance(truncated, bool):
            raise ArtifactError(f"counts: 'truncated' must be true or false, got {truncated!r}")
        if not isinstance(values, list) or not isinstance(counts, list) or len(values) != len(counts):
            raise ArtifactError("counts: 'values' and 'counts' must be lists of the same length")
        if len(values) > cap:
            raise ArtifactError(f"counts: {len(values)} values exceed the cap {cap}")
        if kind is None:
            if values:
                raise ArtifactError("counts: 'kind' is null but values are given")
        elif kind not in _DTYPES:
            raise ArtifactError(f"counts: unknown value kind {kind!r}; expected one of {sorted(_DTYPES)}")
        elif not {type(v) for v in values} <= set(_PY_TYPES[kind]):
            bad = sorted({type(v).__name__ for v in values} - {t.__name__ for t in _PY_TYPES[kind]})
            raise ArtifactError(f"counts: values of kind {kind!r} must not be of type {', '.join(bad)}")
        if {type(c) for c in counts} - {int} or (counts and min(counts) < 0):
            raise ArtifactError("counts: 'counts' must be integers >= 0")
        if kind == "float" and any(math.isnan(v) for v in values):
            raise ArtifactError("counts: NaN is counted in 'nulls', not as a value")
        out = cls(cap=cap)
        out.other, out.nulls, out.truncated = other, nulls, truncated
        if kind is not None:
            out.kind = kind
            table = pl.DataFrame(
                {"value": pl.Series(values, dtype=_DTYPES[kind]), "count": pl.Series(counts, dtype=pl.Int64)}
            )
            if table["value"].n_unique() != table.height:
                raise ArtifactError("counts: 'values' holds duplicates")
            out._apply_cap(table)
        return out
