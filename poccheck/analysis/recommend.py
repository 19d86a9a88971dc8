"""The decision: the cheapest way to run a candidate that meets every accuracy target and the latency SLO.

Options are each measured candidate on each own-server deployment, and each chosen cascade. Accuracy is judged
by the lower end of the 95% interval unless the plan says otherwise. When nothing qualifies, the closest option
is named with what would change the answer, including how many more items would narrow the interval enough. A
sensitivity line says whether the choice changes at ten times the workload or at half the hardware price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from poccheck.analysis.deployment import CostFindings, cost_findings, measured_latency
from poccheck.analysis.stats import Proportion, nearest_rank, wilson
from poccheck.analysis.summary import Findings, ModelFindings
from poccheck.config.plan import Plan
from poccheck.i18n import Message


@dataclass(frozen=True)
class Option:
    candidate: str
    deployment: str  # ``onprem_cpu``, ``onprem_gpu``, ``cloud:<price>`` or ``cascade``
    per_month: float
    per_1000_tasks: float
    worst_margin: float  # smallest (judged accuracy - target) over task groups; >= 0 when all targets are met
    worst_group: str
    meets_accuracy: bool
    meets_latency: bool | None
    fits: bool
    escalated_share: float | None = None  # cascades: the share of tasks sent to the larger model
    latency_p95: float | None = None  # on this deployment, seconds
    latency_projected: bool = True
    ineligible: tuple[Message, ...] = ()  # why the candidate cannot be chosen whatever it scores
    cross_validated: bool = False  # accuracy is cross-validated (cascades), not measured once on every item
    groups: Mapping[str, Proportion] = field(default_factory=dict)  # the accuracy judged, per task group
    folds: int | None = None  # cascades: the cross-validation folds

    @property
    def qualifies(self) -> bool:
        return self.meets_accuracy and self.meets_latency is not False and self.fits and not self.ineligible

    def why_not(self) -> list[Message]:
        reasons = list(self.ineligible)
        if not self.meets_accuracy:
            reasons.append(Message.of("why_not.below_target", group=self.worst_group, points=-self.worst_margin * 100))
        if self.meets_latency is False and self.latency_p95 is not None:
            reasons.append(Message.of("why_not.latency_at", p95=self.latency_p95))
        elif self.meets_latency is False:
            reasons.append(Message.of("why_not.latency"))
        if not self.fits:
            reasons.append(Message.of("why_not.memory"))
        return reasons


@dataclass(frozen=True)
class ThisMachine:
    """A candidate's p95 latency as measured on this machine, at the concurrency measured closest to the plan's
    peak (ties: the higher): the run's requests in flight (``ModelFindings.in_flight``) over every item, or one
    at a time over the single-request sample. The plan's workload, not this, sizes the servers priced."""

    candidate: str
    in_flight: int
    peak_concurrency: int
    p95: float | None
    n: int
    meets_target: bool | None


def this_machine(findings: Findings, candidate: str, peak: int, slo: float | None) -> ThisMachine | None:
    """How ``candidate`` answered on this machine; None for a cascade or a served model (measured elsewhere)."""
    model = next((m for m in findings.models if m.label == candidate and m.rows), None)
    if model is None or model.info is None or model.info.backend == "openai":
        return None
    levels = {model.in_flight: list(measured_latency(model).per_item.values())}
    if model.alone is not None and model.in_flight > 1:
        levels[1] = list(model.alone.alone)
    level = min(levels, key=lambda n: (abs(n - peak), -n))
    p95 = nearest_rank(levels[level], 95)
    meets = None if slo is None or p95 is None else p95 <= slo
    return ThisMachine(candidate, level, peak, p95, len(levels[level]), meets)


@dataclass
class Recommendation:
    chosen: Option | None
    runners_up: list[Option]
    closest: Option | None
    changes: list[Message] = field(default_factory=list)
    sensitivity: list[Message] = field(default_factory=list)
    items_needed: int | None = None
    needs_larger_model: bool = False  # every candidate is below the ~1.6B threshold
    options: list[Option] = field(default_factory=list)  # every option judged, cheapest first
    this_machine: ThisMachine | None = None  # the chosen (else closest) candidate, as measured here


def items_needed(accuracy: float, target: float, limit: int = 20_000) -> int | None:
    """The fewest items for which the lower 95% Wilson bound reaches ``target`` if accuracy stays at
    ``accuracy``; None when accuracy is not above the target or more than ``limit`` items would be needed."""
    if accuracy <= target:
        return None
    for n in range(1, limit + 1):
        if wilson(round(accuracy * n), n).low >= target:
            return n
    return None


def options(findings: Findings, costs: CostFindings) -> list[Option]:
    """Every candidate on every deployment priced for it, and every cascade that has a rule, cheapest first.

    A single candidate is judged on its measured accuracy per group and on the p95 latency of that deployment
    (measured or projected); a cascade on its cross-validated accuracy, escalated share, cost and latency.
    A candidate whose run did not complete (the model did not load, items were never run) is ineligible."""
    by_label: dict[str, ModelFindings] = {m.label: m for m in findings.models}
    checks: dict[str, list[tuple[float, str]]] = {}
    measured: dict[str, dict[str, Proportion]] = {}
    for check in costs.checks:
        measured.setdefault(check.candidate, {})[check.group] = check.accuracy
        margin = check.judged - check.target if check.accuracy.n else -1.0  # a group never answered is not met
        checks.setdefault(check.candidate, []).append((margin, check.group))
    found = []
    for entry in costs.costs:
        model = by_label.get(entry.candidate)
        if model is None or entry.candidate not in checks:
            continue
        margin, group = min(checks[entry.candidate])
        found.append(
            Option(
                entry.candidate, entry.deployment.mode, entry.per_month, entry.per_1000_tasks, margin, group,
                margin >= 0, entry.meets_latency(costs.latency_slo), entry.deployment.fits_in_memory,
                latency_p95=entry.latency.p95 if entry.latency else None,
                latency_projected=entry.latency.projected if entry.latency else True,
                ineligible=ineligible(model), groups=measured[entry.candidate],
            )
        )  # fmt: skip
    for cascade in costs.cascades:
        result = cascade.validated
        if cascade.rule is None or result is None:
            continue
        margin, group = min(result.margins(cascade.targets, cascade.use_lower_bound), default=(0.0, "all"))
        latency = None if costs.latency_slo is None or result.latency_p95 is None else (
            result.latency_p95 <= costs.latency_slo
        )  # fmt: skip
        reasons = tuple(r for m in (cascade.small, cascade.large) if m in by_label for r in ineligible(by_label[m]))
        found.append(
            Option(
                cascade.label, "cascade", result.per_month, result.per_1000_tasks, margin,
                group, margin >= 0, latency, True, result.escalated_share, result.latency_p95,
                cascade.latency_projected, reasons, cross_validated=True,
                groups={g: result.groups[g] for g in cascade.targets if g in result.groups}, folds=cascade.folds,
            )
        )  # fmt: skip
    return sorted(found, key=lambda o: (o.per_month, -o.worst_margin, o.candidate, o.deployment))


def ineligible(model: ModelFindings) -> tuple[Message, ...]:
    """Why a candidate cannot be recommended whatever its accuracy: its run did not complete."""
    reasons = []
    if model.error:
        reasons.append(Message.of("why_not.run_failed", error=model.error))
    missing = model.expected_items - len(model.rows)
    if missing > 0:
        reasons.append(Message.of("why_not.not_run", count=missing))
    return tuple(reasons)


def recommend(findings: Findings, plan: Plan, costs: CostFindings | None = None) -> Recommendation:
    costs = costs or cost_findings(findings, plan)
    ranked = options(findings, costs)
    qualified = [o for o in ranked if o.qualifies]
    result = Recommendation(qualified[0] if qualified else None, [], None, options=ranked)
    if result.chosen:
        result.runners_up = [o for o in ranked if o is not result.chosen][:3]
    else:
        result.closest = max(ranked, key=lambda o: (o.worst_margin, -o.per_month)) if ranked else None
        result.runners_up = ranked[:3]
        result.changes = _what_would_change(findings, costs, result)
    judged = result.chosen or result.closest
    if judged is not None:
        result.this_machine = this_machine(
            findings, judged.candidate, costs.workload.peak_concurrency, costs.latency_slo
        )
    result.sensitivity = _sensitivity(findings, plan, result.chosen)
    return result


def _what_would_change(findings: Findings, costs: CostFindings, result: Recommendation) -> list[Message]:
    changes = []
    closest = result.closest
    if closest is not None:
        check = next(
            (c for c in costs.checks if c.candidate == closest.candidate and c.group == closest.worst_group), None
        )
        if check and costs.use_lower_bound and check.accuracy.value > check.target:
            needed = items_needed(check.accuracy.value, check.target)
            if needed:
                result.items_needed = needed
                changes.append(
                    Message.of(
                        "changes.more_items", accuracy=check.accuracy.value, group=check.group, needed=needed,
                        now=check.accuracy.n, target=check.target,
                    )
                )  # fmt: skip
    modes = {m.mode for m in findings.models}
    if "cot" not in modes:
        changes.append(Message.of("changes.cot"))
    biggest = max((m.info.parameters or 0 for m in findings.models if m.info), default=0)
    if biggest < 1.6e9:
        result.needs_larger_model = True
        changes.append(Message.of("changes.larger_model", parameters=biggest))
    changes.append(Message.of("changes.finetune"))
    return changes


def _sensitivity(findings: Findings, plan: Plan, chosen: Option | None) -> list[Message]:
    if chosen is None:
        return []
    lines = []
    heavy = replace(plan, workload=replace(plan.workload, tasks_per_day=plan.workload.tasks_per_day * 10))
    cheap_profiles = {
        **plan.cost_profiles,
        "onprem_cpu": {**(plan.cost_profiles.get("onprem_cpu") or {}), "purchase_price": _half("onprem_cpu", plan)},
        "onprem_gpu": {**(plan.cost_profiles.get("onprem_gpu") or {}), "purchase_price": _half("onprem_gpu", plan)},
    }
    cheap = replace(plan, cost_profiles=cheap_profiles)
    for case, variant in (("workload_10x", heavy), ("hardware_half", cheap)):
        other = recommend_once(findings, variant)
        if other is None:
            lines.append(Message.of(f"sensitivity.{case}.none"))
        elif (other.candidate, other.deployment) == (chosen.candidate, chosen.deployment):
            lines.append(Message.of(f"sensitivity.{case}.same"))
        else:
            where = Message.of(f"deployment.{other.deployment}", share=other.escalated_share)
            lines.append(Message.of(f"sensitivity.{case}.other", candidate=other.candidate, deployment=where))
    return lines


def recommend_once(findings: Findings, plan: Plan) -> Option | None:
    ranked = options(findings, cost_findings(findings, plan))
    return next((o for o in ranked if o.qualifies), None)


def _half(name: str, plan: Plan) -> float:
    profiles = plan.profiles()
    profile = profiles.onprem_cpu if name == "onprem_cpu" else profiles.onprem_gpu
    return profile.purchase_price / 2
