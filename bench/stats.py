"""Medians, spreads and side-by-side (interleaved) timing of alternatives.

Every comparison in the benchmarks runs its alternatives in the same rounds, in rotating order,
so a burst of load from something else on the machine hits all of them rather than one. Each
figure is the median over rounds with its interquartile range; each ratio is computed per round
and then summarised the same way.
"""

import statistics
import time
from collections.abc import Callable


def quantile(values: list[float], q: float) -> float:
    """The q-quantile by linear interpolation (q in [0, 1])."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: list[float]) -> dict:
    """Median with interquartile range and min–max, over repeated runs."""
    return {
        "median": statistics.median(values),
        "q1": quantile(values, 0.25),
        "q3": quantile(values, 0.75),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def interleave(
    variants: dict[str, Callable[[], float]],
    *,
    rounds: int,
    between: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Run each variant once per round, rotating the order; collect what each call returns.

    A variant returns its own measurement (seconds per operation, requests per second, ...).
    `between` runs after every round, e.g. to delete the rows the round inserted.
    """
    names = list(variants)
    results: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(variants[name]())
        if between is not None:
            between()
    return results


def ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """Per-round ratios of two series measured in the same rounds."""
    return [n / d for n, d in zip(numerator, denominator, strict=True)]


def per_call(fn: Callable[[], object], calls: int) -> Callable[[], float]:
    """A variant timing `calls` back-to-back calls of fn; returns seconds per call."""

    def run() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls

    return run
