"""How often the threshold's 95% interval covers the true threshold, on studies drawn from a known curve.

Each simulated study draws every model's score binomially (``--items`` items per model) from a logistic of
accuracy against log10(parameters): chance 0.25, ceiling 0.85, midpoint 1.6B parameters, and a slope that takes
accuracy from 10% to 90% of the way from chance to the ceiling over one decade of size. The models' sizes are
log-spaced from 0.1B to 10B, at each given number of sizes. Each study goes through
``poccheck.analysis.scaling.threshold`` as a report's task group would (chance known), and the outcome is counted:

- fitted: an interval was worked out inside the range searched (the verdict is "ok", or "too wide" when it spans
  more than a decade); coverage and the median width are over these;
- not fitted: the interval reaches the end of the range searched (or the bootstrap over models failed);
- at the edge: the rise is a step next to the largest (smallest) size, or its fitted midpoint lies beyond the sizes
  tested, and the report says the threshold lies above (below) a size instead of giving an interval; "true" is
  the share of those statements that hold for the true midpoint.

Seeded: the same arguments print the same table.

    python benchmarks/threshold_coverage.py [--sizes 3 4 6] [--studies 200] [--items 100] [--boot 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from poccheck.analysis.scaling import Logistic, Point, threshold

CHANCE, CEILING, MIDPOINT = 0.25, 0.85, math.log10(1.6e9)
SLOPE = 2 * math.log(9)  # 10% to 90% of the rise over one decade
TRUE = Logistic(CHANCE, CEILING, MIDPOINT, SLOPE)
EDGE = {"verdict.above_tested", "verdict.below_tested", "verdict.beyond_largest", "verdict.beyond_smallest"}
FITTED = {"verdict.ok", "verdict.too_wide"}


@dataclass
class Coverage:
    """The outcomes of one design's simulated studies."""

    sizes: list[float]
    studies: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    covered: int = 0  # fitted intervals that contain the true midpoint
    widths: list[float] = field(default_factory=list)  # decades, fitted intervals
    reported: int = 0  # verdict ok: a threshold with its interval in the report
    reported_covered: int = 0
    edge_true: int = 0  # edge statements ("above 1B") that hold for the true midpoint

    @property
    def fitted(self) -> int:
        return sum(self.verdicts[key] for key in FITTED)

    @property
    def edge(self) -> int:
        return sum(self.verdicts[key] for key in EDGE)

    @property
    def not_fitted(self) -> int:
        return self.studies - self.fitted - self.edge

    @property
    def coverage(self) -> float:
        return self.covered / self.fitted if self.fitted else float("nan")


def _edge_holds(key: str, values: dict[str, float]) -> bool:
    """Whether an edge statement ("the threshold lies above 1B") holds for the true midpoint."""
    if key == "verdict.above_tested":
        return math.log10(values["below"]) < MIDPOINT
    if key == "verdict.below_tested":
        return math.log10(values["above"]) > MIDPOINT
    if key == "verdict.beyond_largest":
        return math.log10(values["largest"]) < MIDPOINT
    return math.log10(values["smallest"]) > MIDPOINT


def simulate(count: int, studies: int, items: int = 100, boot: int = 300, seed: int = 0) -> Coverage:
    """``studies`` studies of ``count`` models log-spaced from 0.1B to 10B, ``items`` items each."""
    sizes = [float(v) for v in np.geomspace(0.1e9, 10e9, count)]
    rng = np.random.default_rng([seed, count])
    result = Coverage(sizes)
    accuracy = TRUE(np.log10(np.array(sizes)))
    for study in range(studies):
        correct = rng.binomial(items, accuracy)
        points = [
            Point(f"m{i}", "one", size, int(c), items) for i, (size, c) in enumerate(zip(sizes, correct, strict=True))
        ]
        fit = threshold(points, chance=CHANCE, boot=boot, seed=study)
        key = fit.verdict.key
        result.studies += 1
        result.verdicts[key] += 1
        if key in EDGE:
            result.edge_true += _edge_holds(key, dict(fit.verdict.values))
        if key in FITTED and fit.interval is not None:
            low, high = fit.interval
            inside = low <= MIDPOINT <= high
            result.covered += inside
            result.widths.append(high - low)
            if key == "verdict.ok":
                result.reported += 1
                result.reported_covered += inside
    return result


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "–"


def row(c: Coverage) -> str:
    design = f"{len(c.sizes)} ({', '.join(f'{s / 1e9:.3g}' for s in c.sizes)})"
    width = f"{statistics.median(c.widths):.2f}" if c.widths else "–"
    return (
        f"| {design} | {c.studies} | {_share(c.fitted, c.studies)} | {_share(c.not_fitted, c.studies)} "
        f"| {_share(c.edge, c.studies)} ({_share(c.edge_true, c.edge)} true) | {_share(c.covered, c.fitted)} "
        f"({c.covered}/{c.fitted}) | {width} | {_share(c.reported, c.studies)} "
        f"({_share(c.reported_covered, c.reported)} covered) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 4, 6], help="numbers of model sizes (designs)")
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--items", type=int, default=100, help="items per model")
    parser.add_argument("--boot", type=int, default=300, help="resamples of the bootstrap over models, where used")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        f"true curve: chance {CHANCE}, ceiling {CEILING}, midpoint 1.6B, slope {SLOPE:.2f} per decade "
        f"(10%-90% of the rise in one decade); {args.items} items per model; seed {args.seed}"
    )
    print()
    print(
        "| design: sizes (B) | studies | fitted | not fitted (interval reaches the bounds) | at the edge "
        "| coverage among fitted | median width (decades) | threshold reported (interval ≤ 1 decade) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    details = []
    for count in args.sizes:
        started = time.perf_counter()
        c = simulate(count, args.studies, args.items, args.boot, args.seed)
        print(row(c), flush=True)
        verdicts = ", ".join(f"{key.removeprefix('verdict.')} {n}" for key, n in c.verdicts.most_common())
        details.append(f"{count} sizes: {verdicts} ({time.perf_counter() - started:.0f} s)")
    print()
    for line in details:
        print(line)


if __name__ == "__main__":
    main()
