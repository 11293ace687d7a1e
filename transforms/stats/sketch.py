"""Mergeable quantile sketch of a numeric column: Apache DataSketches KLL (doubles).

A sketch of parameter ``k`` answers any quantile in bounded memory. The answer is
an item of the data (an order statistic, with the "inverted CDF" definition: the
smallest item whose inclusive rank is at least the probability), not an
interpolated value; its rank in the data is within ``rank_error`` of the
requested probability with 99% confidence, so it is within that rank distance
of the exact linear-interpolated quantile too. While the sketch holds every item
(n below about ``k``), quantiles are exact order statistics.

KLL compaction is randomised and the Python binding offers no seed: results vary
slightly from run to run and with the order of updates and merges, always within
the bound.

>>> import numpy as np
>>> s = QuantileSketch().update(np.array([3.0, 1.0, np.nan, 2.0]))
>>> s.quantiles([0.0, 0.5, 1.0]), s.n, s.missing
([1.0, 2.0, 3.0], 3, 1)
>>> QuantileSketch.from_dict(s.to_dict()).quantiles([0.5])
[2.0]
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import polars as pl
from datasketches import kll_doubles_sketch

from transforms.errors import ArtifactError
from transforms.stats.moments import _count, _decode, float_values

__all__ = ["DEFAULT_K", "QuantileSketch"]

TYPE = "kll"
DEFAULT_K = 800
"""Rank error about 0.35% (single quantile, 99% confidence); a few tens of KB per sketch."""

_K_MIN, _K_MAX = 8, 65535


class QuantileSketch:
    """Mergeable KLL quantile sketch; nulls and NaN are counted in ``missing``, never sketched."""

    def __init__(self, k: int = DEFAULT_K) -> None:
        if not isinstance(k, int) or isinstance(k, bool) or not _K_MIN <= k <= _K_MAX:
            raise ValueError(f"k must be an integer in [{_K_MIN}, {_K_MAX}], got {k!r}")
        self._sketch = kll_doubles_sketch(k)
        self.missing = 0

    def __repr__(self) -> str:
        return f"QuantileSketch(k={self.k}, n={self.n}, missing={self.missing})"

    @property
    def k(self) -> int:
        return self._sketch.k

    @property
    def n(self) -> int:
        """Number of values sketched (null and NaN excluded)."""
        return self._sketch.n

    @property
    def min(self) -> float | None:
        """Exact minimum, or None when n == 0."""
        return None if self._sketch.is_empty() else self._sketch.get_min_value()

    @property
    def max(self) -> float | None:
        """Exact maximum, or None when n == 0."""
        return None if self._sketch.is_empty() else self._sketch.get_max_value()

    @property
    def rank_error(self) -> float:
        """Normalised rank error of a single quantile (99% confidence) for this ``k``."""
        return kll_doubles_sketch.get_normalized_rank_error(self.k, False)

    def update(self, values: pl.Series | np.ndarray) -> Self:
        """Sketch a chunk of values in one vectorised call; return self."""
        x, missing = float_values(values)
        self.missing += missing
        if x.size:
            # the binding takes writable float64 arrays only (Polars' zero-copy views are read-only)
            self._sketch.update(np.require(x, np.float64, ["C", "W"]))
        return self

    def merge(self, other: QuantileSketch) -> Self:
        """Merge ``other`` into self; ``k`` must match. Return self; ``other`` is not changed."""
        if not isinstance(other, QuantileSketch):
            raise TypeError(f"cannot merge {type(other).__name__} into QuantileSketch")
        if other.k != self.k:
            raise ValueError(f"cannot merge a KLL sketch of k={other.k} into one of k={self.k}")
        self._sketch.merge(other._sketch)
        self.missing += other.missing
        return self

    def quantiles(self, probs: Sequence[float] | np.ndarray) -> list[float] | None:
        """Return the sketch's quantile for each probability in [0, 1], or None when n == 0."""
        p = np.asarray(probs, dtype=np.float64).ravel()
        if not np.all((p >= 0) & (p <= 1)):
            raise ValueError(f"probabilities must lie in [0, 1], got {list(probs)}")
        if self._sketch.is_empty():
            return None
        return list(self._sketch.get_quantiles(p.tolist(), inclusive=True))

    def finalize(self) -> dict[str, Any]:
        """Return ``{"n", "missing", "k", "rank_error"}``; ask for quantiles with :meth:`quantiles`."""
        return {"n": self.n, "missing": self.missing, "k": self.k, "rank_error": self.rank_error}

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: ``k``, ``missing`` and the sketch's binary serialisation in base64."""
        sketch = base64.b64encode(self._sketch.serialize()).decode("ascii")
        return {"type": TYPE, "k": self.k, "missing": self.missing, "sketch": sketch}

    @classmethod
    def from_dict(cls, d: Any) -> Self:
        """Inverse of :meth:`to_dict`; raises ``ArtifactError`` on malformed input."""
        d = _decode(d, TYPE, ("k", "missing", "sketch"))
        k, missing = _count(d, "k"), _count(d, "missing")
        if not _K_MIN <= k <= _K_MAX:
            raise ArtifactError(f"kll: k must be in [{_K_MIN}, {_K_MAX}], got {k}")
        if not isinstance(d["sketch"], str):
            raise ArtifactError(f"kll: 'sketch' must be a base64 string, got {type(d['sketch']).__name__}")
        try:
            raw = base64.b64decode(d["sketch"], validate=True)
        except (binascii.Error, ValueError) as e:
            raise ArtifactError(f"kll: 'sketch' is not valid base64 ({e})") from e
        try:
            sketch = kll_doubles_sketch.deserialize(raw)
        except Exception as e:  # the binding raises RuntimeError/ValueError subclasses on corrupt bytes
            raise ArtifactError(f"kll: 'sketch' cannot be deserialised ({e})") from e
        if sketch.k != k:
            raise ArtifactError(f"kll: 'k' is {k} but the serialised sketch has k={sketch.k}")
        out = cls(k=k)
        out._sketch, out.missing = sketch, missing
        return out
