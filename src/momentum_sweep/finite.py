"""Figures that may be missing or not finite: a diverged model's losses are NaN or infinite, and
its record holds None for them. The one rule for leaving such values out of a mean or a test."""

import math


def is_finite(value) -> bool:
    return value is not None and math.isfinite(value)


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
