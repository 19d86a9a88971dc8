"""Where on the model-size curve a task's reasoning threshold lies, with honest uncertainty.

Accuracy is fitted against log10(parameters) with a four-parameter logistic (floor, ceiling, midpoint, slope;
the floor is fixed at chance for multiple choice) by binomial maximum likelihood, and checked with a
one-breakpoint piecewise-linear fit. The 95% interval for the threshold (the logistic midpoint) is a
profile-likelihood interval: the midpoints whose best curve (floor, ceiling and slope refitted) is within the
chi-square(1) 95% point of the best fit, so every model size is kept and only the items within each model are
treated as random (binomially). That works from three sizes up. When the models scatter about the curve more than
their items explain (a Pearson test, where there are more models than free parameters), the interval also takes in
a bootstrap that resamples models and, within each, its items, and is the span of both. An interval that reaches
the end of the range searched (half a decade beyond the sizes tested) is not an interval: the answer is
"insufficient evidence", as it is with fewer than three model sizes or an interval wider than a decade. A rise
with only the largest (smallest) size beyond it is reported as a threshold above (below) the next size, possibly
beyond the sizes tested, and a fitted midpoint beyond the largest (smallest) size as a threshold above (below) the
sizes tested, not as a number. When a larger model of one family scores significantly below a smaller model of
another, the size effect is confounded by family.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.stats import chi2, fisher_exact

from poccheck.i18n import Message

MIN_SIZES = 3
MAX_INTERVAL_DECADES = 1.0
SEARCH_MARGIN = 0.5  # decades beyond the sizes tested that the midpoint may take
SLOPES = (0.01, 60.0)  # the slope's range, per decade of size
CRITICAL = float(chi2.ppf(0.95, 1))  # the profile-likelihood interval's cut-off (twice the log-likelihood drop)
PROFILE_STEP = 0.02  # decades between the midpoints the profile is worked out at
SCATTER_ALPHA = 0.05  # the Pearson test that adds the bootstrap over models
_EPS = 1e-9


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
    interval: tuple[float, float] | None = None  # log10(parameters), 95%
    confounds: list[Confound] = field(default_factory=list)
    verdict: Message = field(default_factory=lambda: Message.of("verdict.not_fitted"))
    search: tuple[float, float] | None = None  # log10(parameters): the range the midpoint was searched over
    # how the interval was found: "likelihood" (items within each model), or "likelihood+models" when the models
    # scatter more than their items explain and a bootstrap over models widened it; "" when none was worked out
    method: str = ""

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
    span = (float(x.min()) - SEARCH_MARGIN, float(x.max()) + SEARCH_MARGIN)
    best = None
    top = float(np.clip((k / np.maximum(n, 1)).max(), 0.05, 0.999))
    for mid in starts if starts is not None else np.linspace(x.min(), x.max(), 5):
        start = [top, mid, 5.0] if floor is not None else [0.05, top, mid, 5.0]
        bounds = [(0.0, 1.0), span, SLOPES] if floor is not None else [(0.0, 1.0), (0.0, 1.0), span, SLOPES]
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


def _binomial_nll(p: np.ndarray, k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The binomial negative log-likelihood summed over the last axis (the models)."""
    p = np.clip(p, _EPS, 1 - _EPS)
    value: np.ndarray = -(k * np.log(p) + (n - k) * np.log(1 - p)).sum(-1)
    return value


def _solve_level(
    k: np.ndarray, n: np.ndarray, base: np.ndarray, weight: np.ndarray, start: np.ndarray | float, iters: int = 12
) -> np.ndarray:
    """For every row, the a in [0, 1] minimising the binomial NLL of p = base + a * weight (convex in a): Newton's
    method kept inside a bracket that the derivative's sign narrows, the ends taken where the minimum lies there."""

    def derivatives(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = np.clip(base + a[..., None] * weight, _EPS, 1 - _EPS)
        first = -((k / p - (n - k) / (1 - p)) * weight).sum(-1)
        second = ((k / p**2 + (n - k) / (1 - p) ** 2) * weight**2).sum(-1)
        return first, second

    shape = base.shape[:-1]
    at_zero, _ = derivatives(np.zeros(shape))
    at_one, _ = derivatives(np.ones(shape))
    low, high = np.zeros(shape), np.ones(shape)
    a = np.broadcast_to(np.clip(start, 0.0, 1.0), shape).copy()
    for _ in range(iters):
        first, second = derivatives(a)
        rising = first > 0
        high = np.where(rising, a, high)
        low = np.where(rising, low, a)
        step = a - first / np.maximum(second, 1e-300)
        a = np.where((step > low) & (step < high), step, (low + high) / 2)
    return np.where(at_zero >= 0, 0.0, np.where(at_one <= 0, 1.0, a))


def _newton_pair(
    k: np.ndarray, n: np.ndarray, s: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One Newton step for (floor, ceiling) jointly, clipped to [0, 1] and halved until the NLL falls."""
    t = 1 - s
    before = _binomial_nll(lo[..., None] * t + hi[..., None] * s, k, n)
    p = np.clip(lo[..., None] * t + hi[..., None] * s, _EPS, 1 - _EPS)
    r = -(k / p - (n - k) / (1 - p))
    w = k / p**2 + (n - k) / (1 - p) ** 2
    g0, g1 = (r * t).sum(-1), (r * s).sum(-1)
    h00, h01, h11 = (w * t * t).sum(-1), (w * t * s).sum(-1), (w * s * s).sum(-1)
    det = h00 * h11 - h01**2
    regular = det > 1e-9 * h00 * h11
    safe = np.where(regular, det, 1.0)
    d0 = np.where(regular, -(h11 * g0 - h01 * g1) / safe, 0.0)
    d1 = np.where(regular, -(h00 * g1 - h01 * g0) / safe, 0.0)
    done = ~regular
    new_lo, new_hi = lo, hi
    step = 1.0
    for _ in range(6):
        c0, c1 = np.clip(lo + step * d0, 0.0, 1.0), np.clip(hi + step * d1, 0.0, 1.0)
        ok = ~done & (_binomial_nll(c0[..., None] * t + c1[..., None] * s, k, n) < before)
        new_lo, new_hi = np.where(ok, c0, new_lo), np.where(ok, c1, new_hi)
        done |= ok
        if done.all():
            break
        step /= 2
    return new_lo, new_hi


def _best_levels(
    x: np.ndarray, k: np.ndarray, n: np.ndarray, floor: float | None, mids: np.ndarray, slopes: np.ndarray
) -> np.ndarray:
    """The NLL minimised over the ceiling (and the floor, when it is not fixed) for every midpoint (rows) and slope
    (columns, one row of slopes per midpoint or one for all). Both problems are convex in the levels."""
    s = 1 / (1 + np.exp(-np.clip(slopes[..., None] * (x - mids[:, None, None]), -500, 500)))
    top = float(np.clip((k / n).max(), 0.05, 0.999))
    if floor is not None:
        hi = _solve_level(k, n, floor * (1 - s), s, top)
        return _binomial_nll(floor * (1 - s) + hi[..., None] * s, k, n)
    lo = np.full(s.shape[:-1], float(np.clip((k / n).min(), 0.001, 0.95)))
    hi = np.full(s.shape[:-1], top)
    for _ in range(6):  # a joint Newton step, then each level on its own (the step alone can stall at a bound)
        lo, hi = _newton_pair(k, n, s, lo, hi)
        hi = _solve_level(k, n, lo[..., None] * (1 - s), s, hi, 4)
        lo = _solve_level(k, n, hi[..., None] * s, 1 - s, lo, 4)
    return _binomial_nll(lo[..., None] * (1 - s) + hi[..., None] * s, k, n)


def profile_nll(x: np.ndarray, k: np.ndarray, n: np.ndarray, floor: float | None, mids: np.ndarray) -> np.ndarray:
    """The binomial NLL at each fixed midpoint, minimised over the other parameters: the slope on a log grid over
    its whole range (so a second valley is not missed), then three zooms around the best of it."""
    grid = np.linspace(math.log(SLOPES[0]), math.log(SLOPES[1]), 40)
    values = _best_levels(x, k, n, floor, mids, np.exp(grid)[None, :])
    rows = np.arange(len(mids))
    pick = values.argmin(1)
    best, at = values[rows, pick], grid[pick]
    half = grid[1] - grid[0]
    for _ in range(3):
        local = np.clip(at[:, None] + np.linspace(-half, half, 9)[None, :], grid[0], grid[-1])
        values = _best_levels(x, k, n, floor, mids, np.exp(local))
        pick = values.argmin(1)
        better = values[rows, pick] < best
        best = np.where(better, values[rows, pick], best)
        at = np.where(better, local[rows, pick], at)
        half /= 4
    profile: np.ndarray = best
    return profile


def likelihood_interval(
    x: np.ndarray, k: np.ndarray, n: np.ndarray, floor: float | None, fit: Logistic, search: tuple[float, float]
) -> tuple[float, float, float | None]:
    """The 95% profile-likelihood interval for the midpoint over ``search`` (log10 sizes): the midpoints whose best
    curve is within the chi-square(1) 95% point of the best fit (a profile with two valleys gives the span of both).
    An end equal to an end of ``search`` means the interval is not bounded there. Third: the midpoint of a better
    curve than ``fit`` where the profile found one, else None."""
    count = int(round((search[1] - search[0]) / PROFILE_STEP)) + 1
    mids = np.unique(np.append(np.linspace(search[0], search[1], count), np.clip(fit.midpoint, *search)))
    profile = profile_nll(x, k, n, floor, mids)
    fitted = float(_nll(np.array(_params(fit, floor)), x, k, n, floor)[0])
    lowest = min(float(profile.min()), fitted)
    excess = 2 * (profile - lowest) - CRITICAL
    inside = np.flatnonzero(excess <= 0)
    if not len(inside):  # narrower than the grid's resolution of the slope: the fitted midpoint alone
        inside = np.flatnonzero(mids == np.clip(fit.midpoint, *search))
    first, last = int(inside[0]), int(inside[-1])

    def crossing(i: int, j: int) -> float:  # where the excess crosses zero between grid points i and j
        return float(mids[i] + (mids[j] - mids[i]) * excess[i] / (excess[i] - excess[j]))

    low = search[0] if first == 0 else crossing(first - 1, first)
    high = search[1] if last == len(mids) - 1 else crossing(last, last + 1)
    better = float(mids[profile.argmin()]) if profile.min() < fitted - 1e-6 else None
    return low, high, better


def scatter_p_value(x: np.ndarray, k: np.ndarray, n: np.ndarray, fit: Logistic, free: int) -> float | None:
    """Pearson's test of the models' scatter about the fitted curve against binomial item sampling alone; None
    when there are no more models than free parameters (the curve can pass through every point)."""
    dof = len(x) - free
    if dof < 1:
        return None
    p = np.clip(fit(x), 1e-6, 1 - 1e-6)
    pearson = float((((k - n * p) ** 2) / (n * p * (1 - p))).sum())
    return float(chi2.sf(pearson, dof))


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
    """Fit, bound and judge a task group's threshold."""
    pts = [p for p in points if p.n > 0 and p.parameters > 0]
    result = ThresholdFit(list(pts), confounds=confounds(pts))
    sizes = {round(p.log_size, 3) for p in pts}
    if len(sizes) < MIN_SIZES:
        result.verdict = Message.of("verdict.too_few_sizes", count=len(sizes), needed=MIN_SIZES)
        return result
    x = np.array([p.log_size for p in pts])
    k = np.array([p.correct for p in pts], dtype=float)
    n = np.array([p.n for p in pts], dtype=float)
    search = (float(x.min()) - SEARCH_MARGIN, float(x.max()) + SEARCH_MARGIN)
    result.search = search
    fit = fit_logistic(x, k, n, chance)
    assert fit is not None
    low, high, better = likelihood_interval(x, k, n, chance, fit, search)
    if better is not None:  # the profile found a better curve than the optimizer's starts: start from it too
        fit = fit_logistic(x, k, n, chance, starts=[*np.linspace(x.min(), x.max(), 5), better]) or fit
    result.logistic = fit
    result.breakpoint = fit_breakpoint(x, k / n)
    # A step between the two largest sizes is not located: its ceiling is the largest model's accuracy, and a
    # curve still rising past the sizes tested fits the same points as well (the ladder: only the 1.5B model above
    # the others on a task group). Likewise a step between the two smallest. A step: the fitted rise (10% to 90%)
    # fits between the two sizes and the second-largest lies below its 10% point (the smallest above its 90%); a
    # second-largest model part way up the rise helps place it, and the interval then says how well.
    tested = sorted({round(p.log_size, 3): p.parameters for p in pts}.values())
    edges = [math.log10(v) for v in tested]
    rise = 2 * math.log(9) / abs(fit.slope)  # decades from 10% to 90% of the fitted rise
    if fit.midpoint - rise / 2 >= edges[-2] and rise <= edges[-1] - edges[-2]:
        result.verdict = Message.of("verdict.above_tested", below=tested[-2], largest=tested[-1])
        return result
    if fit.midpoint + rise / 2 <= edges[1] and rise <= edges[1] - edges[0]:
        result.verdict = Message.of("verdict.below_tested", above=tested[1], smallest=tested[0])
        return result
    # a midpoint beyond the sizes tested would be an extrapolation, whatever its interval
    if fit.midpoint > edges[-1]:
        result.verdict = Message.of("verdict.beyond_largest", largest=tested[-1])
        return result
    if fit.midpoint < edges[0]:
        result.verdict = Message.of("verdict.beyond_smallest", smallest=tested[0])
        return result
    result.method = "likelihood"
    scatter = scatter_p_value(x, k, n, fit, 3 if chance is not None else 4)
    if scatter is not None and scatter < SCATTER_ALPHA:
        # the models differ by more than their items explain (families, say): resample the models too
        mids = _model_bootstrap(x, k, n, chance, fit, boot, np.random.default_rng(seed))
        if len(mids) < boot // 2:
            result.verdict = Message.of("verdict.bootstrap_failed")
            return result
        b_low, b_high = np.percentile(mids, [2.5, 97.5])
        low, high = min(low, float(b_low)), max(high, float(b_high))
        result.method = "likelihood+models"
    if low <= search[0] + 1e-9 or high >= search[1] - 1e-9:
        result.verdict = Message.of("verdict.unbounded", low=10**low, high=10**high)
        return result
    result.interval = (low, high)
    if high - low > MAX_INTERVAL_DECADES:
        result.verdict = Message.of("verdict.too_wide", decades=high - low, low=10**low, high=10**high)
        return result
    result.verdict = Message.of("verdict.ok")
    return result


def _params(fit: Logistic, floor: float | None) -> list[float]:
    return (
        [fit.ceiling, fit.midpoint, fit.slope]
        if floor is not None
        else [fit.floor, fit.ceiling, fit.midpoint, fit.slope]
    )


def _model_bootstrap(
    x: np.ndarray, k: np.ndarray, n: np.ndarray, floor: float | None, fit: Logistic, boot: int, rng: np.random.Generator
) -> list[float]:
    """Midpoints refitted to resamples of the models and, within each, of its items; resamples with fewer than
    three distinct sizes are dropped."""
    starts = (fit.midpoint, float(np.median(x)))  # resamples start from the full fit
    mids = []
    for _ in range(boot):
        chosen = rng.integers(0, len(x), len(x))  # resample models ...
        if len(np.unique(x[chosen].round(3))) < MIN_SIZES:
            continue
        kb = rng.binomial(n[chosen].astype(int), k[chosen] / n[chosen]).astype(float)  # ... and their items
        refit = fit_logistic(x[chosen], kb, n[chosen], floor, starts=starts)
        if refit is not None:
            mids.append(refit.midpoint)
    return mids


def family_of_name(model: str) -> str:
    """A family label from a model name, e.g. 'SmolLM2-1.7B-Instruct' -> 'smollm2', 'gpt2-xl' -> 'gpt2'."""
    head = model.replace("_", "-").split("/")[-1].split("-")[0].lower()
    return head.rstrip("0123456789.") if head.startswith("openelm") else head
