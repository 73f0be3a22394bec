"""Figures that may be missing or not finite: a diverged model's losses are NaN or infinite, and
its record holds None for them. The one home of the rule: a figure counts when it is a finite
number; a missing one (None) is not measured, not a failure."""

import math


def is_finite(value) -> bool:
    return value is not None and math.isfinite(value)


def is_number(value) -> bool:
    """A finite number, and a number at all (a JSON value that is a bool or a string is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and is_finite(value)


def all_finite(*values) -> bool:
    """Whether every figure that was measured is finite (None: not measured)."""
    return all(math.isfinite(v) for v in values if v is not None)


def or_none(value):
    """The value as a float, or None where it is missing or not finite."""
    return float(value) if is_finite(value) else None


def finite(values) -> list[float]:
    """The finite values, in order."""
    return [float(v) for v in values if is_finite(v)]


def mean(values):
    """The mean of the finite values; None if there is none."""
    kept = finite(values)
    return sum(kept) / len(kept) if kept else None
