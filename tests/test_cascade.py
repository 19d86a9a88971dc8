"""The hybrid cascade on constructed cases whose best escalation rule is known: per-group targets, the latency
target, own servers sized for their share, and the cross-validated figures a decision uses."""

from __future__ import annotations

import math

import pytest

from poccheck.analysis.cascade import Tier, simulate
from poccheck.analysis.cost import DeploymentCost, Estimate
from poccheck.analysis.deployment import CandidateCost, CostFindings, Latency, TargetCheck
from poccheck.analysis.recommend import options
from poccheck.analysis.stats import wilson
from poccheck.analysis.summary import Findings, GradedRow, ModelFindings
from poccheck.config.costs import Workload
from poccheck.records import Grade, TaskItem

from .rows import stored_result

DAYS = 30.4


def model(name: str, outcomes: list[tuple[bool, float]], groups: list[str] | None = None) -> ModelFindings:
    rows = []
    for index, (correct, margin) in enumerate(outcomes):
        category = groups[index] if groups else "general"
        item = TaskItem(
            id=f"q{index:03d}", input="?", type="multiple_choice", answer=0, choices=("a", "b"), category=category
        )
        grade = Grade(correct=correct, prediction="A. a", margin=margin)
        rows.append(GradedRow(name, "s", item, stored_result(item), grade))
    return ModelFindings(name=name, info=None, error=None, rows=rows, expected_items=len(rows))


def cloud(found: ModelFindings, per_month: float, seconds: float = 1.0) -> Tier:
    return Tier(found, "cloud:x", per_month, {r.key: seconds for r in found.rows}, False)


def own(found: ModelFindings, per_server: float, capacity: float, servers: int, seconds: float = 1.0) -> Tier:
    latency = {r.key: seconds for r in found.rows}
    return Tier(found, "onprem_gpu", per_server * servers, latency, True, per_server, capacity)


def unsure_small() -> ModelFindings:
    """Right on its 70 confident items, wrong on its 30 least confident ones."""
    return model("small", [(True, 5.0 + i) for i in range(70)] + [(False, 0.01 * i) for i in range(30)])


def run(small: Tier, large: Tier, targets: dict[str, float], slo: float | None = None, **kw: float):  # type: ignore[no-untyped-def]
    return simulate(
        small,
        large,
        targets=targets,
        latency_slo=slo,
        use_lower_bound=False,
        tasks_per_day=1000,
        hours_per_day=10,
        **kw,  # type: ignore[arg-type]
    )


def test_escalating_exactly_the_unsure_items_is_cheapest_at_the_target() -> None:
    small, large = unsure_small(), model("large", [(True, 1.0)] * 100)  # always right, ten times the cost
    cascade = run(cloud(small, 1000.0), cloud(large, 10_000.0), {"general": 0.99})
    assert cascade is not None and cascade.chosen is not None and cascade.rule is not None
    assert cascade.rule.share == pytest.approx(0.30) and cascade.chosen.escalated_share == pytest.approx(0.30)
    assert cascade.chosen.accuracy.value == 1.0
    assert cascade.chosen.per_month == pytest.approx(1000.0 + 10_000.0 * 0.30)  # a cloud tier is paid pro rata
    assert cascade.chosen.per_1000_tasks == pytest.approx(4000.0 / DAYS)
    assert cascade.points[0].accuracy.value == pytest.approx(0.70) and cascade.points[0].per_month == 1000.0
    assert cascade.points[-1].escalated_share == 1.0 and cascade.points[-1].per_month == pytest.approx(11_000.0)
    costs = [p.per_month for p in cascade.points]
    assert costs == sorted(costs)
    # the rule is a confidence threshold: every wrong item lies below it, every right one above
    assert 0.29 < cascade.rule.choice_margin <= 5.0
    # cross-validated: chosen on four fifths, applied to the fifth held out; all wrong items still escalate
    validated = cascade.validated
    assert validated is not None and cascade.folds == 5 and cascade.folds_without_rule == 0
    assert validated.accuracy.value == 1.0 and validated.accuracy.n == 100
    assert 0.30 <= validated.escalated_share <= 0.40


def test_escalated_latency_is_the_sum_of_both_tiers_and_the_slo_is_part_of_the_choice() -> None:
    small, large = unsure_small(), model("large", [(True, 1.0)] * 100)
    tiers = cloud(small, 1000.0, seconds=1.0), cloud(large, 10_000.0, seconds=10.0)
    cascade = run(*tiers, {"general": 0.99})
    assert cascade is not None and cascade.chosen is not None
    assert cascade.chosen.latency_p95 == pytest.approx(11.0)  # 30% escalated: the p95 request waits for both
    assert cascade.points[0].latency_p95 == pytest.approx(1.0)
    blocked = run(*tiers, {"general": 0.99}, slo=5.0)  # only <= 5% may escalate within 5 s; 30% must
    assert blocked is not None and blocked.rule is None and blocked.validated is None
    relaxed = run(*tiers, {"general": 0.70}, slo=5.0)  # the small model alone meets 0.70; a cascade escalates
    assert relaxed is not None and relaxed.rule is not None and relaxed.rule.share == pytest.approx(0.05)
    assert relaxed.chosen is not None and relaxed.chosen.latency_p95 == pytest.approx(1.0)


def test_a_failed_item_never_meets_the_latency_target() -> None:
    small, large = unsure_small(), model("large", [(True, 1.0)] * 100)
    latency = {r.key: 1.0 for r in small.rows} | {r.key: math.inf for r in small.rows[:10]}
    tier = Tier(small, "cloud:x", 1000.0, latency, False)
    cascade = run(tier, cloud(large, 10_000.0), {"general": 0.5})
    assert cascade is not None and cascade.points[0].latency_p95 == math.inf


def test_every_group_target_is_met_not_only_the_overall_one() -> None:
    # group a: always right and sure; group b: wrong on its 20 least confident items (confidence 1-2)
    outcomes = [(True, 10.0 + i) for i in range(50)] + [(True, 5.0 + i) for i in range(30)]
    outcomes += [(False, 1.0 + i / 20) for i in range(20)]
    groups = ["a"] * 50 + ["b"] * 50
    small = model("small", outcomes, groups)
    large = model("large", [(True, 1.0)] * 100, groups)
    overall = run(cloud(small, 1000.0), cloud(large, 10_000.0), {"a": 0.85, "b": 0.85})
    assert overall is not None and overall.rule is not None
    assert overall.rule.share == pytest.approx(0.15)  # b: 45 of 50 right; 0.05 would meet 0.85 overall
    per_group = run(cloud(small, 1000.0), cloud(large, 10_000.0), {"a": 0.85, "b": 0.99})
    assert per_group is not None and per_group.rule is not None and per_group.chosen is not None
    assert per_group.rule.share == pytest.approx(0.20)  # group b needs all 20 of its wrong items escalated
    assert per_group.chosen.groups["b"].value == 1.0
    assert [group for _, group in per_group.chosen.margins(per_group.targets, False)] == ["a", "b"]


def test_an_own_server_tier_is_sized_for_its_share_a_cloud_tier_paid_for_it() -> None:
    small, large = unsure_small(), model("large", [(True, 1.0)] * 100)
    # 1,000 tasks over 10 hours: 100 an hour; one large server serves 50 an hour, so all of it needs two
    gpu = own(large, per_server=3000.0, capacity=50.0, servers=2)
    assert gpu.per_month_at(0.0, 100.0) == 0.0
    assert gpu.per_month_at(0.30, 100.0) == 3000.0  # 30 an hour: one server
    assert gpu.per_month_at(0.60, 100.0) == 6000.0
    assert cloud(large, 10_000.0).per_month_at(0.30, 100.0) == pytest.approx(3000.0)
    cascade = run(cloud(small, 1000.0), gpu, {"general": 0.99})
    assert cascade is not None and cascade.chosen is not None
    assert cascade.chosen.per_month == pytest.approx(1000.0 + 3000.0)
    assert cascade.points[-1].per_month == pytest.approx(1000.0 + 6000.0)


def test_an_unreachable_target_chooses_nothing() -> None:
    small = model("small", [(False, 1.0)] * 10)
    large = model("large", [(False, 1.0)] * 10)
    cascade = run(cloud(small, 1.0), cloud(large, 5.0), {"general": 0.5})
    assert cascade is not None and cascade.chosen is None and cascade.rule is None and cascade.validated is None
    assert run(cloud(small, 1.0), cloud(model("other", []), 5.0), {"general": 0.5}) is None


def test_accuracy_is_kept_per_task_group() -> None:
    small = model("small", [(True, 5.0), (False, 0.1)])
    large = model("large", [(True, 1.0), (True, 1.0)])
    cascade = run(cloud(small, 1.0), cloud(large, 2.0), {}, steps=2)
    assert cascade is not None
    assert cascade.points[0].groups["general"].successes == 1 and cascade.points[-1].groups["general"].successes == 2


def _cost(candidate: str, mode: str, per_month: float, p95: float | None = None) -> CandidateCost:
    money = Estimate(per_month, True, "test")
    deployment = DeploymentCost(mode, money, money, 0 if mode.startswith("cloud:") else 1, True, 0.0, money)
    latency = Latency(p95, True) if p95 is not None else None
    return CandidateCost(candidate, deployment, per_month / DAYS, per_month, latency)


def _costs(cascade: object, entries: list[CandidateCost], slo: float | None = None) -> CostFindings:
    workload = Workload(tasks_per_day=1000, peak_concurrency=1, input_tokens=100, output_tokens=10)
    checks = [TargetCheck(m, "general", 0.99, wilson(70, 100), 0.7, False) for m in ("small", "large")]
    return CostFindings(
        "USD", workload, costs=entries, checks=checks, use_lower_bound=False, latency_slo=slo,
        cascades=[cascade] if cascade else [],  # type: ignore[list-item]
    )  # fmt: skip


def test_the_decision_compares_a_cascade_on_its_cross_validated_figures() -> None:
    small, large = unsure_small(), model("large", [(True, 1.0)] * 100)
    cascade = run(cloud(small, 300.0), cloud(large, 3000.0), {"general": 0.99})
    assert cascade is not None and cascade.validated is not None and cascade.chosen is not None
    costs = _costs(cascade, [_cost("small", "cloud:x", 300.0), _cost("large", "cloud:x", 3000.0)])
    findings = Findings([small, large], ["general"], ["s"], 100, [])
    (option,) = [o for o in options(findings, costs) if o.deployment == "cascade"]
    assert option.cross_validated and option.qualifies
    assert option.escalated_share == cascade.validated.escalated_share
    assert option.per_month == pytest.approx(cascade.validated.per_month)
    assert option.per_1000_tasks == pytest.approx(cascade.validated.per_1000_tasks)
    assert option.latency_p95 == cascade.validated.latency_p95


def modes(costs: CostFindings) -> dict[str, str]:
    return {name: entry.deployment.mode for name, entry in costs.cheapest().items()}


def test_each_candidate_gets_its_cheapest_deployment_that_meets_the_latency_target() -> None:
    entries = [
        _cost("small", "onprem_gpu", 900.0, p95=0.5), _cost("small", "onprem_cpu", 300.0, p95=4.0),
        _cost("large", "onprem_cpu", 2000.0, p95=9.0), _cost("large", "onprem_gpu", 5000.0, p95=1.0),
    ]  # fmt: skip
    no_slo = _costs(None, entries)
    assert {n: c.deployment.mode for n, c in no_slo.cheapest().items()} == {
        "small": "onprem_cpu",
        "large": "onprem_cpu",
    }
    with_slo = _costs(None, entries, slo=2.0)
    assert {n: c.deployment.mode for n, c in with_slo.cheapest().items()} == {
        "small": "onprem_gpu",
        "large": "onprem_gpu",
    }
    too_strict = _costs(None, entries, slo=0.1)  # nothing meets it: the cheapest that fits
    assert {n: c.deployment.mode for n, c in too_strict.cheapest().items()} == {
        "small": "onprem_cpu",
        "large": "onprem_cpu",
    }


def test_each_deployment_is_judged_on_its_own_latency() -> None:
    small, large = unsure_small(), model("large", [(True, 1.0)] * 100)
    entries = [_cost("small", "onprem_cpu", 300.0, p95=4.0), _cost("small", "onprem_gpu", 900.0, p95=0.5)]
    costs = _costs(None, entries, slo=2.0)
    costs.checks[0] = TargetCheck("small", "general", 0.5, wilson(70, 100), 0.7, True)
    findings = Findings([small, large], ["general"], ["s"], 100, [])
    found = {o.deployment: o for o in options(findings, costs) if o.candidate == "small"}
    assert found["onprem_cpu"].meets_latency is False and not found["onprem_cpu"].qualifies
    assert [m.key for m in found["onprem_cpu"].why_not()] == ["why_not.latency_at"]
    assert found["onprem_gpu"].meets_latency is True and found["onprem_gpu"].qualifies


def test_a_candidate_whose_run_did_not_complete_is_ineligible_with_why() -> None:
    small = unsure_small()
    small.expected_items = 120  # 20 items were never run
    broken = model("large", [(True, 1.0)] * 100)
    broken.error = "the server went away"
    costs = _costs(None, [_cost("small", "cloud:x", 300.0), _cost("large", "cloud:x", 3000.0)])
    costs.checks[:] = [TargetCheck(m, "general", 0.5, wilson(70, 100), 0.7, True) for m in ("small", "large")]
    found = {o.candidate: o for o in options(Findings([small, broken], ["general"], ["s"], 100, []), costs)}
    assert not found["small"].qualifies and [m.key for m in found["small"].why_not()] == ["why_not.not_run"]
    assert not found["large"].qualifies and [m.key for m in found["large"].why_not()] == ["why_not.run_failed"]
