"""Hybrid cascade: answer with a small model, escalate its least confident items to a larger one.

Confidence is the small model's log-prob margin between its best and second choice (multiple choice) or the
mean log-prob of its generated tokens (generation). The two are not on one scale, so a rule escalates the same
share ``q`` of each kind: it is a confidence threshold per kind, the ``q``-quantile of the small model's
confidence on the items the rule was chosen on. Items without a confidence (failed) escalate first. A small model
with no confidence signal on a kind of item it answered (multiple choice answered with a letter read from a server's
reply has no choice scores; a generation without token log-probs has no mean log-prob) cannot be the small tier:
nothing tells its unsure answers from its sure ones, and ranking ties would pass for a rule. Its cascade has no
points and no rule, and says why (``unscored``).

The rule chosen is the cheapest share (per month, each tier on its own deployment) whose answers meet every task
group's target and the p95 latency target. Choosing it on gold answers and judging it on the same items flatters
it, so the figures a decision uses are cross-validated: the items are split into ``folds`` folds; for each, the
share is chosen on the other folds, its thresholds (quantiles of the other folds' confidences) are applied to the
held-out fold, and the held-out outcomes of all folds are pooled into one accuracy per group (Wilson interval on
the pooled items), one escalated share, one latency distribution and one monthly cost. A fold whose training
items admit no rule escalates everything (the larger model alone). The in-sample sweep is kept for the chart.

Money: every task costs the small tier; the large tier serves the escalated share. An own-server tier is sized
for the share it serves (at least one server when it serves any); a cloud tier is paid per token, so for its
share. An escalated request waits for both tiers: its latency is the sum of the two, per item.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from poccheck.analysis.cost import DAYS_PER_MONTH
from poccheck.analysis.stats import Proportion, nearest_rank, wilson
from poccheck.analysis.summary import GradedRow, ModelFindings

FOLDS = 5
STEPS = 20
FOLD_SEED = 20250601  # fixed, so a report is reproducible from its stored results


@dataclass(frozen=True)
class Tier:
    """One model of a cascade on the deployment it runs on there. Money in the plan's currency."""

    model: ModelFindings
    deployment: str  # ``onprem_cpu``, ``onprem_gpu`` or ``cloud:<price>``
    per_month: float  # serving the whole workload
    latency: Mapping[str, float]  # seconds per item key on that deployment (``math.inf``: the item failed)
    latency_projected: bool
    per_server_month: float | None = None  # own servers: one server's monthly cost; None for a cloud API
    capacity_per_hour: float | None = None  # own servers: tasks an hour one server serves, after utilisation

    def per_month_at(self, share: float, demand_per_hour: float) -> float:
        """Monthly cost of serving ``share`` of the workload: own servers sized for it, a cloud API pro rata."""
        if share <= 0:
            return 0.0
        if self.per_server_month is None or not self.capacity_per_hour:
            return self.per_month * share
        return max(1, math.ceil(demand_per_hour * share / self.capacity_per_hour)) * self.per_server_month


@dataclass(frozen=True)
class CascadePoint:
    """The cascade's answers at one escalation share: accuracy overall and per group, money, latency."""

    escalated_share: float
    accuracy: Proportion
    groups: dict[str, Proportion]
    per_month: float
    per_1000_tasks: float
    latency_p95: float | None  # nearest-rank p95 of the per-item latencies (small + large when escalated)

    def margins(self, targets: Mapping[str, float], use_lower_bound: bool) -> list[tuple[float, str]]:
        """(judged accuracy - target, group) for every group with a target; a group never answered is -1."""
        found = []
        for group, target in sorted(targets.items()):
            accuracy = self.groups.get(group)
            if accuracy is None or not accuracy.n:
                found.append((-1.0, group))
                continue
            found.append(((accuracy.low if use_lower_bound else accuracy.value) - target, group))
        return found

    def meets(self, targets: Mapping[str, float], latency_slo: float | None, use_lower_bound: bool) -> bool:
        if any(margin < 0 for margin, _ in self.margins(targets, use_lower_bound)):
            return False
        return latency_slo is None or (self.latency_p95 is not None and self.latency_p95 <= latency_slo)


@dataclass(frozen=True)
class Rule:
    """The deployable rule: escalate an item when the small model's confidence is below its kind's threshold."""

    share: float  # the share of the items the rule was chosen on that it escalates
    choice_margin: float  # multiple choice: escalate when the best-vs-second log-prob margin is below this
    mean_logprob: float  # generation: escalate when the mean token log-prob is below this


@dataclass(frozen=True)
class Cascade:
    small: str
    large: str
    small_deployment: str
    large_deployment: str
    points: list[CascadePoint]  # in-sample sweep over every item both answered, share 0 to 1
    rule: Rule | None  # chosen on every item; None when no share meets every target
    chosen: CascadePoint | None  # the rule's in-sample point
    validated: CascadePoint | None  # the cross-validated result of choosing the rule (what a decision uses)
    folds: int
    folds_without_rule: int  # folds whose training items admitted no rule (held-out fold escalated entirely)
    targets: dict[str, float] = field(default_factory=dict)
    latency_slo: float | None = None
    use_lower_bound: bool = True
    latency_projected: bool = True
    unscored: int = 0  # answered items without a confidence signal: this small model cannot be a small tier

    @property
    def label(self) -> str:
        """The cascade as an option's candidate: the small model, then the large one."""
        return f"{self.small} → {self.large}"


def confidence(row: GradedRow) -> float | None:
    if row.grade is None:
        return None
    if row.item.is_multiple_choice and row.grade.margin is not None:
        return row.grade.margin
    value = row.result.mean_logprob
    return float(value) if value is not None else None


def without_confidence(rows: Sequence[GradedRow]) -> int:
    """How many answered rows are of a kind (multiple choice, or generation) on which no row has a confidence: 0
    when the model gives a signal on every kind it answered. (A failed row has no confidence either; it escalates
    first and is not counted here.)"""
    kinds: dict[bool, list[bool]] = {}
    for row in rows:
        if row.grade is not None:
            kinds.setdefault(row.item.is_multiple_choice, []).append(confidence(row) is not None)
    return sum(len(found) for found in kinds.values() if not any(found))


def _confidence(row: GradedRow) -> float:
    value = confidence(row)
    return -math.inf if value is None or math.isnan(value) else value


def thresholds(confidences: Mapping[bool, Sequence[float]], share: float) -> tuple[float, float]:
    """(multiple-choice, generation) thresholds that escalate ``share`` of each kind, given each kind's
    confidences sorted ascending: the confidence of the first item kept, so that share x count items (rounded
    half up) lie below it, ties aside."""
    found = []
    for kind in (True, False):
        values = confidences.get(kind, ())
        count = math.floor(share * len(values) + 0.5 + 1e-9)  # half up, robust to share's binary rounding
        found.append(-math.inf if count <= 0 else math.inf if count >= len(values) else values[count])
    return found[0], found[1]


@dataclass(frozen=True)
class _Sim:
    small: Tier
    large: Tier
    big: dict[str, GradedRow]
    demand_per_hour: float
    tasks_per_day: float

    def point(self, rows: Sequence[GradedRow], escalated: set[str]) -> CascadePoint:
        by_group: dict[str, list[bool]] = {}
        latencies = []
        for row in rows:
            key = row.key
            up = key in escalated
            by_group.setdefault(row.item.category, []).append(self.big[key].correct if up else row.correct)
            seconds = self.small.latency.get(key, math.inf)
            if up:
                seconds += self.large.latency.get(key, math.inf)
            latencies.append(seconds)
        share = sum(1 for r in rows if r.key in escalated) / len(rows)
        monthly = self.small.per_month + self.large.per_month_at(share, self.demand_per_hour)
        correct = sum(sum(v) for v in by_group.values())
        return CascadePoint(
            share, wilson(correct, len(rows)), {g: wilson(sum(v), len(v)) for g, v in sorted(by_group.items())},
            monthly, monthly / (self.tasks_per_day * DAYS_PER_MONTH / 1000), nearest_rank(latencies, 95),
        )  # fmt: skip


def simulate(
    small: Tier,
    large: Tier,
    *,
    targets: Mapping[str, float],
    latency_slo: float | None,
    use_lower_bound: bool,
    tasks_per_day: float,
    hours_per_day: float,
    steps: int = STEPS,
    folds: int = FOLDS,
) -> Cascade | None:
    """The cascade of ``small`` then ``large`` over the items both answered; None when they share none. A small
    model without a confidence signal (:func:`without_confidence`) gets a cascade without points or rule that
    counts the items it could not rank (``unscored``)."""
    big = {r.key: r for r in large.model.rows}
    rows = sorted((r for r in small.model.rows if r.key in big), key=lambda r: r.key)
    if not rows:
        return None
    unscored = without_confidence(rows)
    if unscored:
        return Cascade(
            small.model.label, large.model.label, small.deployment, large.deployment, [], None, None, None, 0, 0,
            dict(targets), latency_slo, use_lower_bound, small.latency_projected or large.latency_projected, unscored,
        )  # fmt: skip
    sim = _Sim(small, large, big, tasks_per_day / hours_per_day, tasks_per_day)
    shares = [step / steps for step in range(steps + 1)]
    sureness = {r.key: (r.item.is_multiple_choice, _confidence(r)) for r in rows}

    def escalated_by(chosen: Sequence[GradedRow], rule: tuple[float, float]) -> set[str]:
        return {r.key for r in chosen if sureness[r.key][1] < rule[0 if sureness[r.key][0] else 1]}

    def sorted_kinds(chosen: Sequence[GradedRow]) -> dict[bool, list[float]]:
        kinds: dict[bool, list[float]] = {True: [], False: []}
        for row in chosen:
            kind, value = sureness[row.key]
            kinds[kind].append(value)
        return {kind: sorted(values) for kind, values in kinds.items()}

    def choose(chosen_on: Sequence[GradedRow]) -> tuple[float, tuple[float, float], CascadePoint] | None:
        meeting = []
        kinds = sorted_kinds(chosen_on)
        for share in shares[1:]:  # a cascade escalates something; share 0 is the small model alone
            rule = thresholds(kinds, share)
            point = sim.point(chosen_on, escalated_by(chosen_on, rule))
            if point.meets(targets, latency_slo, use_lower_bound):
                meeting.append((point.per_month, -point.accuracy.value, share, rule, point))
        if not meeting:
            return None
        _, _, share, rule, point = min(meeting, key=lambda m: m[:3])
        return share, rule, point

    everything = sorted_kinds(rows)
    points = [sim.point(rows, escalated_by(rows, thresholds(everything, s))) for s in shares]
    selected = choose(rows)
    k = min(folds, len(rows))
    validated, without = None, 0
    if selected is not None and k >= 2:
        order = np.random.default_rng(FOLD_SEED).permutation(len(rows))
        fold_of = {rows[i].key: position % k for position, i in enumerate(order)}
        escalated: set[str] = set()
        for fold in range(k):
            held = [r for r in rows if fold_of[r.key] == fold]
            inner = choose([r for r in rows if fold_of[r.key] != fold])
            if inner is None:
                without += 1
                escalated.update(r.key for r in held)
            else:
                escalated.update(escalated_by(held, inner[1]))
        validated = sim.point(rows, escalated)
    rule = Rule(selected[0], *selected[1]) if selected else None
    return Cascade(
        small.model.label, large.model.label, small.deployment, large.deployment, points, rule,
        selected[2] if selected else None, validated, k, without, dict(targets), latency_slo, use_lower_bound,
        small.latency_projected or large.latency_projected,
    )  # fmt: skip
