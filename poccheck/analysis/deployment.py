"""Turn measured results and an assessment plan into costs per deployment mode and target checks.

Deployment modes: an on-prem CPU server and an on-prem GPU server (their throughput projected from the cost
profile's bandwidth and compute, since poccheck measures on the machine it runs on, not on the server being
priced), and each priced cloud API (list price x the tokens measured per task). Every projected figure says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from poccheck.analysis.cascade import Cascade, simulate
from poccheck.analysis.cost import (
    CostProfiles,
    DeploymentCost,
    Workload,
    cloud_deployment,
    convert,
    kv_cache_bytes,
    onprem_deployment,
)
from poccheck.analysis.stats import Proportion, wilson
from poccheck.analysis.summary import Findings, ModelFindings
from poccheck.plan import Plan


@dataclass(frozen=True)
class CandidateCost:
    candidate: str
    deployment: DeploymentCost
    per_1000_tasks: float  # in the plan's currency
    per_month: float


@dataclass(frozen=True)
class TargetCheck:
    candidate: str
    group: str
    target: float
    accuracy: Proportion
    judged: float  # the lower 95% bound or the point estimate, as the plan says
    met: bool


@dataclass
class CostFindings:
    currency: str
    workload: Workload
    costs: list[CandidateCost] = field(default_factory=list)
    cloud: list[CandidateCost] = field(default_factory=list)
    checks: list[TargetCheck] = field(default_factory=list)
    latency_slo: float | None = None
    use_lower_bound: bool = True
    provenance: list[tuple[str, str, str]] = field(default_factory=list)
    cascades: list[Cascade] = field(default_factory=list)

    def cheapest(self) -> dict[str, CandidateCost]:
        """Each candidate's cheapest deployment that fits in memory: the one home of that choice, read by the
        cascades, the Decision page and the cost tables alike (ties: the first listed)."""
        found: dict[str, CandidateCost] = {}
        for entry in self.costs:
            if entry.deployment.fits_in_memory and (
                entry.candidate not in found or entry.per_month < found[entry.candidate].per_month
            ):
                found[entry.candidate] = entry
        return found

    def meets_all(self, candidate: str) -> bool:
        mine = [c for c in self.checks if c.candidate == candidate]
        return bool(mine) and all(c.met for c in mine)


def _tokens(model: ModelFindings) -> tuple[float, float] | None:
    graded = [r for r in model.rows if r.grade is not None]
    if not graded:
        return None
    return model.tokens_in / len(graded), model.tokens_out / len(graded)


def cost_findings(findings: Findings, plan: Plan) -> CostFindings:
    profiles: CostProfiles = plan.profiles()
    reference = next((m for m in findings.models if _tokens(m)), None)
    measured = _tokens(reference) if reference else None
    workload = plan.workload.to_workload(*(measured or (None, None)))
    result = CostFindings(
        plan.currency, workload, latency_slo=plan.targets.p95_latency_seconds,
        use_lower_bound=plan.targets.use_lower_bound, provenance=profiles.provenance(),
    )  # fmt: skip

    def money(cost: DeploymentCost) -> tuple[float, float]:
        return (
            convert(cost.per_1000_tasks.value, plan.currency, profiles),
            convert(cost.per_month.value, plan.currency, profiles),
        )

    for model in findings.models:  # each model in each prompting mode, priced at that mode's own token counts
        info = model.info
        if info is None or not model.rows or not (info.parameters or info.price in profiles.cloud):
            continue
        tokens = _tokens(model) or (workload.input_tokens, workload.output_tokens)
        own = Workload(workload.tasks_per_day, workload.peak_concurrency, tokens[0], tokens[1], workload.hours_per_day)
        if info.price in profiles.cloud:  # a served cloud model: its list price x the tokens it used per task
            deployment = cloud_deployment(profiles.cloud[info.price], own)
            result.costs.append(CandidateCost(model.label, deployment, *money(deployment)))
            continue
        if not info.parameters:
            continue
        context = math.ceil(tokens[0] + tokens[1])
        kv = (
            kv_cache_bytes(info.layers, info.kv_heads, info.head_dim, context, own.peak_concurrency)
            if info.layers and info.kv_heads and info.head_dim
            else 0
        )
        # on a CPU server the GGUF file runs as it is; elsewhere weights are 16-bit
        cpu_weights = info.file_size if info.path.endswith(".gguf") and info.file_size else info.parameters * 2
        for label, profile, weights in (
            ("onprem_cpu", profiles.onprem_cpu, float(cpu_weights)),
            ("onprem_gpu", profiles.onprem_gpu, float(info.parameters * 2)),
        ):
            deployment = onprem_deployment(
                label, profile, profiles.electricity_price_per_kwh, own,
                parameters=float(info.parameters), weights_bytes=weights, kv_bytes=float(kv),
            )  # fmt: skip
            result.costs.append(CandidateCost(model.label, deployment, *money(deployment)))
    for price in profiles.cloud.values():
        deployment = cloud_deployment(price, workload)
        result.cloud.append(CandidateCost(price.name, deployment, *money(deployment)))
    result.cascades = _cascades(findings, plan, result)
    for model in findings.models:
        groups: dict[str, list[bool]] = {category: [] for category in findings.categories}  # unanswered: not met
        for row in model.rows:
            groups.setdefault(row.item.category, []).append(row.correct)
        for group, outcomes in sorted(groups.items()):
            target = plan.targets.accuracy_for(group)
            if target is None:
                continue
            accuracy = wilson(sum(outcomes), len(outcomes))
            judged = accuracy.low if plan.targets.use_lower_bound else accuracy.value
            met = bool(outcomes) and judged >= target
            result.checks.append(TargetCheck(model.label, group, target, accuracy, judged, met))
    return result


def _cascades(findings: Findings, plan: Plan, costs: CostFindings) -> list[Cascade]:
    """Every pair of a smaller and a larger candidate (same prompting mode), each at its cheapest own server."""
    cheapest = {name: entry.per_1000_tasks / 1000 for name, entry in costs.cheapest().items()}
    targets = list(plan.targets.accuracy.values())
    target = plan.targets.accuracy.get("default", min(targets) if targets else None)
    found = []
    for small in findings.models:
        for large in findings.models:
            if small.mode != large.mode or not (small.info and large.info):
                continue
            if (small.info.parameters or 0) >= (large.info.parameters or 0):
                continue
            if small.label not in cheapest or large.label not in cheapest:
                continue
            cascade = simulate(
                small, large, cheapest[small.label], cheapest[large.label], target,
                use_lower_bound=plan.targets.use_lower_bound,
            )  # fmt: skip
            if cascade is not None:
                found.append(cascade)
    return found
