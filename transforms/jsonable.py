"""Plain-JSON encoding of fitted state.

Fitted state holds floats that may be infinite or NaN (an outlier bound of ``inf``,
the mean of an all-null column). Standard JSON has no such numbers, so they are
written as ``{"$float": "inf"}`` and read back exactly. Nothing else is tagged, and
nothing in a fitted artifact ever names code to import.

>>> encode({"lo": float("-inf"), "v": [1.0, float("nan")]})
{'lo': {'$float': '-inf'}, 'v': [1.0, {'$float': 'nan'}]}
>>> decode(encode({"lo": float("-inf")}))
{'lo': -inf}
"""

from __future__ import annotations

import math
from typing import Any

_TAG = "$float"
_NAMES = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def encode(value: Any) -> Any:
    """Return ``value`` with non-finite floats tagged and tuples turned into lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return {_TAG: "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(value, dict):
        if len(value) == 1 and _TAG in value:
            name = value[_TAG]
            if name not in _NAMES:
                raise ValueError(f"unknown tagged float {name!r}")
            return _NAMES[name]
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value
