"""Where on the model-size curve a task's reasoning threshold lies, with honest uncertainty.

Accuracy is fitted against log10(parameters) with a four-parameter logistic (floor, ceiling, midpoint, slope;
the floor is fixed at chance for multiple choice) by binomial maximum likelihood, and checked with a
one-breakpoint piecewise-linear fit. A 95% interval for the threshold (the logistic midpoint) comes from a
bootstrap that resamples models and, within each, its items (binomially). With fewer than three model sizes,
or an interval wider than a decade, the answer is "insufficient evidence", not a number; a rise with only the
largest (smallest) size beyond it is reported as a threshold above (below) the next size, possibly beyond the sizes
tested, not as a number. When a larger model
of one family scores significantly below a smaller model of another, the size effect is confounded by family.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.stats import fisher_exact

from poccheck.i18n import Message

MIN_SIZES = 3
MAX_INTERVAL_DECADES = 1.0


@dataclass(frozen=True)
class Point:
    """One model's result on one task group."""

    model: str
    family: str
    parameters: float
    correct: int
    n: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    @property
    def log_size(self) -> float:
        return math.log10(self.parameters)


@dataclass(frozen=True)
class Logistic:
    floor: float
    ceiling: float
    midpoint: float  # log10(parameters)
    slope: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.floor + (self.ceiling - self.floor) / (1 + np.exp(-self.slope * (x - self.midpoint)))


@dataclass(frozen=True)
class Confound:
    larger: str
    smaller: str
    p_value: float


@dataclass
class ThresholdFit:
    points: list[Point]
    logistic: Logistic | None = None
    breakpoint: float | None = None  # log10(parameters) of the piecewise-linear fit's break
    interval: tuple[float, float] | None = None  # log10(parameters), 95% bootstrap
    confounds: list[Confound] = field(default_factory=list)
    verdict: Message = field(default_factory=lambda: Message.of("verdict.not_fitted"))

    @property
    def sufficient(self) -> bool:
        return self.verdict.key == "verdict.ok"

    @property
    def threshold_parameters(self) -> float | None:
        return 10**self.logistic.midpoint if self.logistic and self.sufficient else None

    @property
    def interval_parameters(self) -> tuple[float, float] | None:
        return (10 ** self.interval[0], 10 ** self.interval[1]) if self.interval and self.sufficient else None


def _nll(
    params: np.ndarray, x: np.ndarray, k: np.ndarray, n: np.ndarray, floor: float | None
) -> tuple[float, np.ndarray]:
    """Binomial negative log-likelihood of the logistic and its gradient."""
    if floor is None:
        lo, hi, mid, slope = params
    else:
        hi, mid, slope = params
        lo = floor
    s = 1 / (1 + np.exp(-np.clip(slope * (x - mid), -500, 500)))
    p = np.clip(lo + (hi - lo) * s, 1e-9, 1 - 1e-9)
    value = float(-(k * np.log(p) + (n - k) * np.log(1 - p)).sum())
    dp = -(k / p - (n - k) / (1 - p))
    ds = (hi - lo) * s * (1 - s)
    grads = [(dp * (1 - s)).sum(), (dp * s).sum(), (dp * ds * -slope).sum(), (dp * ds * (x - mid)).sum()]
    return value, np.array(grads if floor is None else grads[1:])


def fit_logistic(
    x: np.ndarray, k: np.ndarray, n: np.ndarray, floor: float | None = None, starts: Sequence[float] | None = None
) -> Logistic | None:
    """Binomial maximum-likelihood logistic in log10(size); several starting midpoints, the best kept."""
    if len(x) < MIN_SIZES:
        return None
    span = (float(x.min()) - 0.5, float(x.max()) + 0.5)
    best = None
    top = float(np.clip((k / np.maximum(n, 1)).max(), 0.05, 0.999))
    for mid in starts if starts is not None else np.linspace(x.min(), x.max(), 5):
        start = [top, mid, 5.0] if floor is not None else [0.05, top, mid, 5.0]
        bounds = [(0.0, 1.0), span, (0.01, 60.0)] if floor is not None else [(0.0, 1.0), (0.0, 1.0), span, (0.01, 60.0)]
        result = minimize(_nll, start, args=(x, k, n, floor), bounds=bounds, method="TNC", jac=True)
        if best is None or result.fun < best.fun:
            best = result
    assert best is not None
    if floor is None:
        lo, hi, mid, slope = best.x
    else:
        hi, mid, slope = best.x
        lo = floor
    return Logistic(float(lo), float(hi), float(mid), float(slope))


def fit_breakpoint(x: np.ndarray, y: np.ndarray) -> float | None:
    """One-breakpoint continuous piecewise-linear least squares; the breakpoint searched on a fine grid."""
    if len(np.unique(x)) < MIN_SIZES:
        return None
    best: tuple[float, float] | None = None
    for b in np.linspace(x.min(), x.max(), 200)[1:-1]:
        design = np.column_stack([np.ones_like(x), np.minimum(x - b, 0), np.maximum(x - b, 0)])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        sse = float(((design @ coef - y) ** 2).sum())
        if best is None or sse < best[0]:
            best = (sse, float(b))
    return best[1] if best else None


def confounds(points: Sequence[Point], ratio: float = 1.5, alpha: float = 0.01) -> list[Confound]:
    """Pairs where a model at least ``ratio`` times larger, of another family, is significantly worse."""
    found = []
    for big in points:
        for small in points:
            if big.family == small.family or big.parameters < ratio * small.parameters:
                continue
            if big.accuracy >= small.accuracy:
                continue
            table = [[big.correct, big.n - big.correct], [small.correct, small.n - small.correct]]
            p = float(fisher_exact(table, alternative="less").pvalue)
            if p < alpha:
                found.append(Confound(big.model, small.model, p))
    return sorted(found, key=lambda c: c.p_value)


def threshold(points: Sequence[Point], chance: float | None = None, boot: int = 300, seed: int = 0) -> ThresholdFit:
    """Fit, bootstrap and judge a task group's threshold."""
    pts = [p for p in points if p.n > 0 and p.parameters > 0]
    result = ThresholdFit(list(pts), confounds=confounds(pts))
    sizes = {round(p.log_size, 3) for p in pts}
    if len(sizes) < MIN_SIZES:
        result.verdict = Message.of("verdict.too_few_sizes", count=len(sizes), needed=MIN_SIZES)
        return result
    x = np.array([p.log_size for p in pts])
    k = np.array([p.correct for p in pts], dtype=float)
    n = np.array([p.n for p in pts], dtype=float)
    result.logistic = fit_logistic(x, k, n, chance)
    result.breakpoint = fit_breakpoint(x, k / n)
    rng = np.random.default_rng(seed)
    assert result.logistic is not None
    # A step between the two largest sizes is not located: its ceiling is the largest model's accuracy, and a
    # curve still rising past the sizes tested fits the same points as well (the ladder: only the 1.5B model above
    # the others on a task group). Likewise a step between the two smallest.
    tested = sorted({round(p.log_size, 3): p.parameters for p in pts}.values())
    edges = [math.log10(v) for v in tested]
    rise = 2 * math.log(9) / abs(result.logistic.slope)  # decades from 10% to 90% of the fitted rise
    if result.logistic.midpoint >= edges[-2] and rise <= edges[-1] - edges[-2]:
        result.verdict = Message.of("verdict.above_tested", below=tested[-2], largest=tested[-1])
        return result
    if result.logistic.midpoint <= edges[1] and rise <= edges[1] - edges[0]:
        result.verdict = Message.of("verdict.below_tested", above=tested[1], smallest=tested[0])
        return result
    starts = (result.logistic.midpoint, float(np.median(x)))  # resamples start from the full fit
    mids = []
    for _ in range(boot):
        chosen = rng.integers(0, len(pts), len(pts))  # resample models ...
        if len(np.unique(x[chosen].round(3))) < MIN_SIZES:
            continue
        kb = rng.binomial(n[chosen].astype(int), k[chosen] / n[chosen]).astype(float)  # ... and their items
        fit = fit_logistic(x[chosen], kb, n[chosen], chance, starts=starts)
        if fit is not None:
            mids.append(fit.midpoint)
    if len(mids) < boot // 2:
        result.verdict = Message.of("verdict.bootstrap_failed")
        return result
    low, high = np.percentile(mids, [2.5, 97.5])
    result.interval = (float(low), float(high))
    if high - low > MAX_INTERVAL_DECADES:
        result.verdict = Message.of("verdict.too_wide", decades=high - low, low=10**low, high=10**high)
        return result
    result.verdict = Message.of("verdict.ok")
    return result


def family_of_name(model: str) -> str:
    """A family label from a model name, e.g. 'SmolLM2-1.7B-Instruct' -> 'smollm2', 'gpt2-xl' -> 'gpt2'."""
    head = model.replace("_", "-").split("/")[-1].split("-")[0].lower()
    return head.rstrip("0123456789.") if head.startswith("openelm") else head
