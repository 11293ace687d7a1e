"""Mergeable sufficient statistics: computed per chunk or partition, merged, then finalised.

Each statistic has ``update(values)`` (a Polars Series or 1-D numpy array; nulls and
NaN are counted as missing), ``merge(other)``, ``finalize()`` and a plain-JSON form
``to_dict()`` / ``from_dict(d)``; ``update`` and ``merge`` mutate and return self.

>>> import json
>>> import polars as pl
>>> m = Moments().update(pl.Series([1.0, 2.0, None]))
>>> stat_from_dict(json.loads(json.dumps(m.to_dict(), allow_nan=False))) == m
True
"""

from __future__ import annotations

from typing import Any

from transforms.errors import ArtifactError, did_you_mean
from transforms.stats.counts import Counts
from transforms.stats.moments import Moments
from transforms.stats.sketch import DEFAULT_K, QuantileSketch

__all__ = ["DEFAULT_K", "Counts", "Moments", "QuantileSketch", "stat_from_dict"]

_TYPES: dict[str, type[Moments] | type[Counts] | type[QuantileSketch]] = {
    "moments": Moments,
    "counts": Counts,
    "kll": QuantileSketch,
}


def stat_from_dict(d: Any) -> Moments | Counts | QuantileSketch:
    """Rebuild a statistic from its :meth:`to_dict` form, by its ``"type"`` key."""
    if not isinstance(d, dict):
        raise ArtifactError(f"statistic: expected a JSON object, got {type(d).__name__}")
    kind = d.get("type")
    if not isinstance(kind, str) or kind not in _TYPES:
        hint = did_you_mean(kind, _TYPES) if isinstance(kind, str) else ""
        raise ArtifactError(f"statistic: unknown type {kind!r}{hint}; expected one of {sorted(_TYPES)}")
    return _TYPES[kind].from_dict(d)
