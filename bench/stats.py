"""Percentiles for the benchmarks' latency figures (nearest rank, no numpy needed)."""

from __future__ import annotations

from collections.abc import Sequence


def pct(sorted_values: Sequence[float], p: float) -> float:
    """The p-th percentile of already sorted values by nearest rank; NaN when empty."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]
