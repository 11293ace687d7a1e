"""Mergeable count, mean, sum of squared deviations, min and max of a numeric column.

Each chunk's partial is computed with a two-pass algorithm in float64 (mean first,
then the squared deviations from it) and partials are combined with the parallel
formula of Chan, Golub and LeVeque, so splitting the data into chunks in any order
gives the same mean and variance to rounding, with no catastrophic cancellation.

>>> import polars as pl
>>> m = Moments().update(pl.Series([1.0, None, 3.0])).merge(Moments().update(pl.Series([float("nan"), 5.0])))
>>> m.finalize()  # doctest: +NORMALIZE_WHITESPACE
{'n': 3, 'missing': 2, 'mean': 3.0, 'var': 2.6666666666666665, 'std': 1.632993161855452,
 'min': 1.0, 'max': 5.0, 'sum': 9.0}
>>> Moments.from_dict(m.to_dict()) == m
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import polars as pl

from transforms import jsonable
from transforms.errors import ArtifactError

__all__ = ["Moments", "float_values"]

TYPE = "moments"


def as_series(values: pl.Series | np.ndarray) -> pl.Series:
    """Return ``values`` as a Polars Series; a numpy array must be 1-D.

    Object arrays (e.g. floats with ``None``) are converted through a list so that
    ``None`` becomes a null.
    """
    if isinstance(values, pl.Series):
        return values
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"expected a 1-D array, got shape {values.shape}")
        if values.dtype.kind == "O":
            return pl.Series(values.tolist(), strict=False)
        return pl.Series(values)
    raise TypeError(f"expected a polars Series or a 1-D numpy array, got {type(values).__name__}")


def float_values(values: pl.Series | np.ndarray) -> tuple[np.ndarray, int]:
    """Return ``(x, missing)``: the float64 values that are neither null nor NaN, and how many were.

    Accepts numeric and boolean data; anything else raises ``TypeError``.

    >>> float_values(pl.Series([1, None, 3]))
    (array([1., 3.]), 1)
    """
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "biuf":
        x = values.astype(np.float64, copy=False)
        missing = 0
    else:
        s = as_series(values)
        if not (s.dtype.is_numeric() or s.dtype in (pl.Boolean, pl.Null)):
            name = f" {s.name!r}" if s.name else ""
            raise TypeError(f"column{name} has dtype {s.dtype}; expected a numeric or boolean column")
        missing = s.null_count()
        x = s.drop_nulls().cast(pl.Float64).to_numpy()
    nan = np.isnan(x)
    n_nan = int(np.count_nonzero(nan))
    if n_nan:
        x = x[~nan]
    return x, missing + n_nan


@dataclass
class Moments:
    """Mergeable moments of a numeric column.

    ``n`` counts the values seen (null and NaN excluded), ``missing`` the nulls and
    NaN. ``mean`` and ``m2`` (the sum of squared deviations from the mean) are 0.0
    while ``n == 0``, the neutral element of the merge; ``min`` and ``max`` are
    ``None`` then. Infinite values propagate as NumPy would (a chunk holding
    ``inf`` gives ``mean == inf`` and ``var`` NaN): callers pass finite values.

    Precision: each partial's mean is a float64, so merging many partials of data
    far from zero adds a relative variance error of about ``ulp(mean) / (sqrt(n) * std)``
    (1e9 + N(0, 10) over 1e6 values in 100 chunks: ~1e-11; naive sums of squares: ~1).
    """

    n: int = 0
    missing: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float | None = None
    max: float | None = None

    @classmethod
    def from_parts(cls, n: int, mean: float, m2: float, min: float | None, max: float | None, missing: int = 0) -> Self:
        """Build from a partial computed elsewhere (Polars, CuPy); ``mean``/``m2``/``min``/``max`` ignored if n == 0."""
        n, missing = int(n), int(missing)
        if n < 0 or missing < 0:
            raise ValueError(f"n and missing must be >= 0, got n={n}, missing={missing}")
        if n == 0:
            return cls(missing=missing)
        if min is None or max is None:
            raise ValueError("min and max are required when n > 0")
        if float(m2) < 0:
            raise ValueError(f"m2 (sum of squared deviations) must be >= 0, got {m2}")
        return cls(n=n, missing=missing, mean=float(mean), m2=float(m2), min=float(min), max=float(max))

    def update(self, values: pl.Series | np.ndarray) -> Self:
        """Add a chunk of values (nulls and NaN are counted in ``missing``); return self."""
        x, missing = float_values(values)
        n = x.size
        if n == 0:
            self.missing += missing
            return self
        with np.errstate(invalid="ignore", over="ignore"):
            mean = float(np.mean(x))
            d = x - mean
            # corrected two-pass: sum(d) is the rounding error left in the first-pass mean
            drift = float(np.sum(d))
            m2 = float(np.sum(d * d))
            if math.isfinite(drift):  # +-inf in the chunk: keep NumPy's mean (inf) and m2 (nan)
                m2 -= drift * drift / n
                mean += drift / n
        return self.merge(
            Moments(n=n, missing=missing, mean=mean, m2=max(m2, 0.0), min=float(np.min(x)), max=float(np.max(x)))
        )

    def merge(self, other: Moments) -> Self:
        """Combine ``other`` into self (Chan et al.); return self. ``other`` is not changed."""
        if not isinstance(other, Moments):
            raise TypeError(f"cannot merge {type(other).__name__} into Moments")
        self.missing += other.missing
        if other.n == 0:
            return self
        if self.n == 0:
            self.n, self.mean, self.m2, self.min, self.max = other.n, other.mean, other.m2, other.min, other.max
            return self
        na, nb = self.n, other.n
        n = na + nb
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + other.m2 + delta * delta * (na / n) * nb  # delta*delta: no OverflowError, unlike **
        self.n = n
        self.min = min(self.min, other.min)  # type: ignore[type-var]
        self.max = max(self.max, other.max)  # type: ignore[type-var]
        return self

    def finalize(self) -> dict[str, Any]:
        """Return n, missing, mean, var and std (ddof=0), min, max and sum (= mean * n); floats are None if n == 0."""
        if self.n == 0:
            return {"n": 0, "missing": self.missing} | dict.fromkeys(("mean", "var", "std", "min", "max", "sum"))
        var = self.m2 / self.n
        return {
            "n": self.n,
            "missing": self.missing,
            "mean": self.mean,
            "var": var,
            "std": math.sqrt(var) if var >= 0 else math.nan,
            "min": self.min,
            "max": self.max,
            "sum": self.mean * self.n,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form; non-finite floats are tagged as in :mod:`transforms.jsonable`."""
        return jsonable.encode(
            {
                "type": TYPE,
                "n": self.n,
                "missing": self.missing,
                "mean": self.mean,
                "m2": self.m2,
                "min": self.min,
                "max": self.max,
            }
        )

    @classmethod
    def from_dict(cls, d: Any) -> Self:
        """Inverse of :meth:`to_dict`; raises ``ArtifactError`` on malformed input."""
        d = _decode(d, TYPE, ("n", "missing", "mean", "m2", "min", "max"))
        n, missing = _count(d, "n"), _count(d, "missing")
        mean, m2 = _float(d, "mean"), _float(d, "m2")
        if n == 0:
            if d["min"] is not None or d["max"] is not None or mean != 0 or m2 != 0:
                raise ArtifactError("moments: n is 0 but mean/m2/min/max are set")
            return cls(missing=missing)
        lo, hi = _float(d, "min"), _float(d, "max")
        if not m2 >= 0 and not math.isnan(m2):
            raise ArtifactError(f"moments: m2 must be >= 0, got {m2}")
        if lo > hi:
            raise ArtifactError(f"moments: min {lo} is greater than max {hi}")
        return cls(n=n, missing=missing, mean=mean, m2=m2, min=lo, max=hi)


def _decode(d: Any, type_: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """Check ``d`` is a dict of the given type with exactly ``keys`` (plus ``type``); untag floats."""
    if not isinstance(d, dict):
        raise ArtifactError(f"{type_}: expected a JSON object, got {type(d).__name__}")
    if d.get("type") != type_:
        raise ArtifactError(f"{type_}: expected type {type_!r}, got {d.get('type')!r}")
    expected = {"type", *keys}
    if set(d) != expected:
        missing, extra = sorted(expected - set(d)), sorted(set(d) - expected)
        raise ArtifactError(f"{type_}: missing keys {missing}, unexpected keys {extra}")
    try:
        return jsonable.decode(d)
    except ValueError as e:
        raise ArtifactError(f"{type_}: {e}") from e


def _count(d: dict[str, Any], key: str) -> int:
    v = d[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ArtifactError(f"{d['type']}: {key!r} must be an integer >= 0, got {v!r}")
    return v


def _float(d: dict[str, Any], key: str) -> float:
    v = d[key]
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise ArtifactError(f"{d['type']}: {key!r} must be a number, got {v!r}")
    return float(v)
