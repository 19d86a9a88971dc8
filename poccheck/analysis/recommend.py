"""The decision: the cheapest way to run a candidate that meets every accuracy target and the latency SLO.

Options are each measured candidate on each own-server deployment, and each chosen cascade. Accuracy is judged
by the lower end of the 95% interval unless the plan says otherwise. When nothing qualifies, the closest option
is named with what would change the answer, including how many more items would narrow the interval enough. A
sensitivity line says whether the choice changes at ten times the workload or at half the hardware price.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from poccheck.analysis.deployment import CostFindings, cost_findings
from poccheck.analysis.stats import wilson
from poccheck.analysis.summary import Findings, ModelFindings
from poccheck.i18n import Message
from poccheck.plan import Plan


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

    @property
    def qualifies(self) -> bool:
        return self.meets_accuracy and self.meets_latency is not False and self.fits

    def why_not(self) -> list[Message]:
        reasons = []
        if not self.meets_accuracy:
            reasons.append(Message.of("why_not.below_target", group=self.worst_group, points=-self.worst_margin * 100))
        if self.meets_latency is False:
            reasons.append(Message.of("why_not.latency"))
        if not self.fits:
            reasons.append(Message.of("why_not.memory"))
        return reasons


@dataclass
class Recommendation:
    chosen: Option | None
    runners_up: list[Option]
    closest: Option | None
    changes: list[Message] = field(default_factory=list)
    sensitivity: list[Message] = field(default_factory=list)
    items_needed: int | None = None
    needs_larger_model: bool = False  # every candidate is below the ~1.6B threshold


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
    by_label: dict[str, ModelFindings] = {m.label: m for m in findings.models}
    checks: dict[str, list[tuple[float, str]]] = {}
    for check in costs.checks:
        margin = check.judged - check.target if check.accuracy.n else -1.0  # a group never answered is not met
        checks.setdefault(check.candidate, []).append((margin, check.group))
    found = []
    for entry in costs.costs:
        for label, model in by_label.items():
            if label != entry.candidate or label not in checks:
                continue
            margin, group = min(checks[label])
            latency = None
            if costs.latency_slo is not None and model.latency_p95 is not None:
                latency = model.latency_p95 <= costs.latency_slo
            found.append(
                Option(
                    label, entry.deployment.mode, entry.per_month, entry.per_1000_tasks, margin, group,
                    margin >= 0, latency, entry.deployment.fits_in_memory,
                )
            )  # fmt: skip
    chosen = costs.cheapest()  # the deployment each tier of a cascade runs on: the one the cascade was priced at
    cheapest = {
        o.candidate: o
        for o in found
        if o.candidate in chosen and (o.deployment, o.per_month) == (chosen[o.candidate].deployment.mode,
                                                                     chosen[o.candidate].per_month)
    }  # fmt: skip
    for cascade in costs.cascades:
        small, large = cheapest.get(cascade.small), cheapest.get(cascade.large)
        if cascade.chosen is None or small is None or large is None:
            continue
        share = cascade.chosen.escalated_share
        # An own server is priced whole (each tier keeps at least one); a cloud API is paid per token, so a cloud
        # tier costs only the escalated share of the workload. Each task group must meet its own target on the
        # cascade's simulated answers.
        paid = share if large.deployment.startswith("cloud:") else 1.0
        monthly = small.per_month + large.per_month * paid
        margin, group = min(cascade.chosen.group_margins(costs)) if cascade.chosen.groups else (-1.0, "all")
        slow = [by_label[m].latency_p95 for m in (cascade.small, cascade.large) if m in by_label]
        latency = None
        if costs.latency_slo is not None and all(v is not None for v in slow):
            latency = max(v for v in slow if v is not None) <= costs.latency_slo
        found.append(
            Option(
                f"{cascade.small} → {cascade.large}", "cascade", monthly,
                small.per_1000_tasks + large.per_1000_tasks * paid, margin, group, margin >= 0, latency, True, share,
            )
        )  # fmt: skip
    return sorted(found, key=lambda o: (o.per_month, -o.worst_margin))


def recommend(findings: Findings, plan: Plan, costs: CostFindings | None = None) -> Recommendation:
    costs = costs or cost_findings(findings, plan)
    ranked = options(findings, costs)
    qualified = [o for o in ranked if o.qualifies]
    result = Recommendation(qualified[0] if qualified else None, [], None)
    if result.chosen:
        result.runners_up = [o for o in ranked if o is not result.chosen][:3]
    else:
        result.closest = max(ranked, key=lambda o: (o.worst_margin, -o.per_month)) if ranked else None
        result.runners_up = ranked[:3]
        result.changes = _what_would_change(findings, costs, result)
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
