"""Turn measured results and an assessment plan into costs per deployment mode and target checks.

Deployment modes: an on-prem CPU server and an on-prem GPU server (their throughput projected from the cost
profile's bandwidth and compute, since poccheck measures on the machine it runs on, not on the server being
priced), and each priced cloud API (list price x the tokens measured per task). Every projected figure says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from poccheck.analysis.cascade import Cascade, Tier, simulate
from poccheck.analysis.cost import (
    DeploymentCost,
    cloud_deployment,
    convert,
    kv_cache_bytes,
    onprem_deployment,
    projected_seconds_per_task,
)
from poccheck.analysis.stats import Proportion, nearest_rank, wilson
from poccheck.analysis.summary import Findings, ModelFindings
from poccheck.config.costs import CostProfiles, ServerProfile, Workload
from poccheck.config.plan import Plan


@dataclass(frozen=True)
class Latency:
    """A candidate's latency on one deployment: per item, and the nearest-rank p95 compared with the SLO.

    Measured where the requests ran on the priced deployment itself (a served model); otherwise projected per
    item from its measured prompt and output tokens with the deployment's throughput model (the same one that
    sizes its servers), one request at a time. A failed item counts as never answered (infinite)."""

    p95: float | None
    projected: bool
    per_item: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CandidateCost:
    candidate: str
    deployment: DeploymentCost
    per_1000_tasks: float  # in the plan's currency
    per_month: float
    latency: Latency | None = None

    def meets_latency(self, slo: float | None) -> bool | None:
        """Whether this deployment's p95 meets the SLO; None without an SLO or a latency."""
        if slo is None or self.latency is None or self.latency.p95 is None:
            return None
        return self.latency.p95 <= slo


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
        """Each candidate's deployment: the cheapest that fits in memory and meets the latency target, else the
        cheapest that fits. The one home of that choice, read by the cascades, the Decision page and the cost
        tables alike (ties: the first listed)."""
        found: dict[str, CandidateCost] = {}
        for entry in self.costs:
            if not entry.deployment.fits_in_memory:
                continue
            best = found.get(entry.candidate)
            rank = (entry.meets_latency(self.latency_slo) is False, entry.per_month)
            if best is None or rank < (best.meets_latency(self.latency_slo) is False, best.per_month):
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
            result.costs.append(CandidateCost(model.label, deployment, *money(deployment), measured_latency(model)))
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
            latency = projected_latency(model, profile, float(info.parameters), weights)
            result.costs.append(CandidateCost(model.label, deployment, *money(deployment), latency))
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


def measured_latency(model: ModelFindings) -> Latency:
    """Latency as measured on the deployment that served the requests."""
    per_item = {r.key: math.inf if r.grade is None or r.result.error else r.result.latency for r in model.rows}
    return Latency(nearest_rank(list(per_item.values()), 95), False, per_item)


def projected_latency(model: ModelFindings, profile: ServerProfile, parameters: float, weights: float) -> Latency:
    """Latency projected on ``profile`` for each item from its measured prompt and output tokens (at least one
    output token: a deployed multiple-choice answer is a generated letter)."""
    per_item = {}
    for row in model.rows:
        if row.grade is None or row.result.error:
            per_item[row.key] = math.inf
            continue
        tokens_in = float(row.result.prompt_tokens)
        tokens_out = max(1.0, float(row.result.completion_tokens))
        per_item[row.key] = projected_seconds_per_task(parameters, weights, tokens_in, tokens_out, profile)
    return Latency(nearest_rank(list(per_item.values()), 95), True, per_item)


def _tier(model: ModelFindings, entry: CandidateCost) -> Tier | None:
    if entry.latency is None:
        return None
    deployment = entry.deployment
    own = deployment.servers_needed > 0 and deployment.capacity_tasks_per_hour
    return Tier(
        model, deployment.mode, entry.per_month, entry.latency.per_item, entry.latency.projected,
        entry.per_month / deployment.servers_needed if own else None,
        deployment.capacity_tasks_per_hour if own else None,
    )  # fmt: skip


def _cascades(findings: Findings, plan: Plan, costs: CostFindings) -> list[Cascade]:
    """Every pair of a smaller and a larger candidate (same prompting mode), each tier on its candidate's
    deployment (:meth:`CostFindings.cheapest`), judged on every task group's target and the latency target."""
    chosen = costs.cheapest()
    targets = {g: t for g in findings.categories if (t := plan.targets.accuracy_for(g)) is not None}
    found = []
    for small in findings.models:
        for large in findings.models:
            if small.mode != large.mode or not (small.info and large.info):
                continue
            if (small.info.parameters or 0) >= (large.info.parameters or 0):
                continue
            if small.label not in chosen or large.label not in chosen:
                continue
            tiers = _tier(small, chosen[small.label]), _tier(large, chosen[large.label])
            if tiers[0] is None or tiers[1] is None:
                continue
            cascade = simulate(
                tiers[0], tiers[1], targets=targets, latency_slo=plan.targets.p95_latency_seconds,
                use_lower_bound=plan.targets.use_lower_bound, tasks_per_day=costs.workload.tasks_per_day,
                hours_per_day=costs.workload.hours_per_day,
            )  # fmt: skip
            if cascade is not None:
                found.append(cascade)
    return found
