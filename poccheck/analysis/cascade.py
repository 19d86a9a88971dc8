"""Hybrid cascade: answer with a small local model, escalate its least confident items to a larger one.

Confidence is the small model's log-prob margin between its best and second choice (multiple choice) or the
mean log-prob of its generated tokens (generation). The two are not on one scale, so the sweep escalates the
same share of each kind: the least confident fraction ``q`` of the small model's multiple-choice items and of
its generation items go to the large model. Every task costs the small model's run; escalated ones also cost
the large model's. The chosen share is the cheapest whose accuracy meets the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poccheck.analysis.stats import Proportion, wilson
from poccheck.analysis.summary import GradedRow, ModelFindings


@dataclass(frozen=True)
class CascadePoint:
    escalated_share: float
    accuracy: Proportion
    cost_per_task: float
    groups: dict[str, Proportion] = field(default_factory=dict)  # accuracy per task group at this share

    def group_margins(self, costs: Any) -> list[tuple[float, str]]:
        """(judged accuracy - target, group) for every group with a target, judged as the plan says."""
        margins = []
        for group, accuracy in self.groups.items():
            target = next((c.target for c in costs.checks if c.group == group), None)
            if target is None:
                continue
            judged = accuracy.low if costs.use_lower_bound else accuracy.value
            margins.append((judged - target, group))
        return margins or [(0.0, "all")]


@dataclass(frozen=True)
class Cascade:
    small: str
    large: str
    points: list[CascadePoint]
    chosen: CascadePoint | None  # cheapest point meeting the target; None when none does
    target: float | None


def confidence(row: GradedRow) -> float | None:
    if row.grade is None:
        return None
    if row.item.is_multiple_choice and row.grade.margin is not None:
        return row.grade.margin
    value = row.result.get("mean_logprob")
    return float(value) if value is not None else None


def simulate(
    small: ModelFindings,
    large: ModelFindings,
    small_cost: float,
    large_cost: float,
    target: float | None = None,
    steps: int = 20,
    use_lower_bound: bool = True,
) -> Cascade | None:
    """Sweep the escalated share from 0 to 1 over the items both models answered."""
    big = {r.key: r for r in large.rows}
    rows = [r for r in small.rows if r.key in big]
    if not rows:
        return None
    # rank within each kind: 0 = least confident; items without a confidence escalate first
    rank: dict[str, float] = {}
    for kind in (True, False):
        group = [r for r in rows if r.item.is_multiple_choice == kind]
        ordered = sorted(group, key=lambda r: c if (c := confidence(r)) is not None else -np.inf)
        for position, row in enumerate(ordered):
            rank[row.key] = (position + 0.5) / len(ordered)
    points = []
    for share in np.linspace(0.0, 1.0, steps + 1):
        escalated = 0
        by_group: dict[str, list[bool]] = {}
        for row in rows:
            if rank[row.key] < share:
                escalated += 1
                outcome = big[row.key].correct
            else:
                outcome = row.correct
            by_group.setdefault(row.item.category, []).append(outcome)
        correct = sum(sum(v) for v in by_group.values())
        cost = small_cost + large_cost * escalated / len(rows)
        groups = {g: wilson(sum(v), len(v)) for g, v in sorted(by_group.items())}
        points.append(CascadePoint(escalated / len(rows), wilson(correct, len(rows)), cost, groups))
    meeting = [
        p for p in points if target is not None and (p.accuracy.low if use_lower_bound else p.accuracy.value) >= target
    ]
    chosen = min(meeting, key=lambda p: (p.cost_per_task, -p.accuracy.value)) if meeting else None
    return Cascade(small.label, large.label, points, chosen, target)
