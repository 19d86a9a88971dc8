"""Statistics sized for proof-of-concept data: Wilson intervals and latency percentiles."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest


@dataclass(frozen=True)
class Proportion:
    """``successes`` out of ``n`` with a Wilson score interval."""

    successes: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.successes / self.n if self.n else float("nan")


@functools.lru_cache(maxsize=65536)  # scipy's binomtest computes a p-value too; cascades ask for the same ones
def wilson(successes: int, n: int, confidence: float = 0.95) -> Proportion:
    """Proportion with its Wilson score interval (scipy), which stays inside [0, 1] for small n."""
    if n == 0:
        return Proportion(0, 0, float("nan"), float("nan"))
    interval = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Proportion(successes, n, float(interval.low), float(interval.high))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100, linear interpolation) or None for no values."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None


def nearest_rank(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by nearest rank: the smallest value with at least q% of the values at or below
    it. Unlike interpolation it is defined when values are infinite (a failed request counted as never answered)."""
    if not len(values):
        return None
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)])


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)


@dataclass(frozen=True)
class McNemar:
    """Paired comparison of two conditions on the same items: ``b`` items only A got right, ``c`` only B."""

    b: int
    c: int
    p_value: float


def mcnemar_exact(b: int, c: int) -> McNemar:
    """Exact (binomial) McNemar test on the discordant pairs; p = 1 when there are none."""
    p = float(binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
    return McNemar(b, c, p)
