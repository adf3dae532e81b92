"""The one reader of numbers stored in result records: strict JSON keeps non-finite values as the
strings "inf", "-inf" and "nan", and hand-made or damaged files may hold anything."""

from __future__ import annotations

import math
from typing import Any


def num(v: Any) -> float | None:
    """A stored number (possibly "inf"/"-inf"/"nan"), or None for anything else (bools too)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def measure(v: Any) -> float | None:
    """A stored measurement such as max_ulp: a number, with NaN read as "no measurement"."""
    f = num(v)
    return None if f is None or math.isnan(f) else f


def nums(x: Any) -> Any:
    """A stored (nested) array as floats, NaN where an element is missing or unreadable."""
    if isinstance(x, list):
        return [nums(y) for y in x]
    f = num(x)
    return math.nan if f is None else f
