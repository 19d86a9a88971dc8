"""The hybrid cascade on a constructed case whose best escalation share is known."""

from __future__ import annotations

import pytest

from poccheck.analysis.cascade import simulate
from poccheck.analysis.cost import DeploymentCost, Estimate, Workload
from poccheck.analysis.deployment import CandidateCost, CostFindings, TargetCheck
from poccheck.analysis.recommend import options
from poccheck.analysis.stats import wilson
from poccheck.analysis.summary import Findings, GradedRow, ModelFindings
from poccheck.records import Grade, TaskItem


def model(name: str, outcomes: list[tuple[bool, float]]) -> ModelFindings:
    rows = []
    for index, (correct, margin) in enumerate(outcomes):
        item = TaskItem(id=f"q{index}", input="?", type="multiple_choice", answer=0, choices=("a", "b"))
        grade = Grade(correct=correct, prediction="A. a", margin=margin)
        rows.append(GradedRow(name, "s", item, {"mean_logprob": None}, grade))
    return ModelFindings(name=name, info=None, error=None, rows=rows)


def test_escalating_exactly_the_unsure_items_is_cheapest_at_the_target() -> None:
    # the small model is right on its 70 confident items and wrong on its 30 least confident ones
    small = model("small", [(True, 5.0 + i) for i in range(70)] + [(False, 0.01 * i) for i in range(30)])
    large = model("large", [(True, 1.0)] * 100)  # always right, ten times the cost
    cascade = simulate(small, large, small_cost=1.0, large_cost=10.0, target=0.99, steps=20, use_lower_bound=False)
    assert cascade is not None and cascade.chosen is not None
    assert cascade.chosen.escalated_share == pytest.approx(0.30)
    assert cascade.chosen.accuracy.value == 1.0
    assert cascade.chosen.cost_per_task == pytest.approx(1.0 + 10.0 * 0.30)
    assert cascade.points[0].accuracy.value == pytest.approx(0.70) and cascade.points[0].cost_per_task == 1.0
    assert cascade.points[-1].escalated_share == 1.0 and cascade.points[-1].cost_per_task == pytest.approx(11.0)
    costs = [p.cost_per_task for p in cascade.points]
    assert costs == sorted(costs)


def test_an_unreachable_target_chooses_nothing() -> None:
    small = model("small", [(False, 1.0)] * 10)
    large = model("large", [(False, 1.0)] * 10)
    cascade = simulate(small, large, 1.0, 5.0, target=0.5)
    assert cascade is not None and cascade.chosen is None
    assert simulate(small, model("other", []), 1.0, 5.0) is None


def test_accuracy_is_kept_per_task_group() -> None:
    small = model("small", [(True, 5.0), (False, 0.1)])
    large = model("large", [(True, 1.0), (True, 1.0)])
    cascade = simulate(small, large, 1.0, 2.0, steps=2)
    assert cascade is not None
    assert cascade.points[0].groups["general"].successes == 1 and cascade.points[-1].groups["general"].successes == 2


def _cost(candidate: str, mode: str, per_month: float) -> CandidateCost:
    money = Estimate(per_month, True, "test")
    deployment = DeploymentCost(mode, money, money, 0 if mode.startswith("cloud:") else 1, True, 0.0, money)
    return CandidateCost(candidate, deployment, per_month / 30, per_month)


@pytest.mark.parametrize(("large_mode", "large_paid"), [("cloud:big-api", 0.30), ("onprem_gpu", 1.0)])
def test_a_cloud_tier_is_paid_for_its_escalated_share_an_own_server_in_full(large_mode: str, large_paid: float) -> None:
    small = model("small", [(True, 5.0 + i) for i in range(70)] + [(False, 0.01 * i) for i in range(30)])
    large = model("large", [(True, 1.0)] * 100)
    cascade = simulate(small, large, small_cost=1.0, large_cost=10.0, target=0.99, steps=20, use_lower_bound=False)
    assert cascade is not None and cascade.chosen is not None
    workload = Workload(tasks_per_day=1000, peak_concurrency=1, input_tokens=100, output_tokens=10)
    costs = CostFindings(
        "USD", workload, costs=[_cost("small", "onprem_cpu", 300.0), _cost("large", large_mode, 3000.0)],
        checks=[TargetCheck(m.name, "general", 0.99, wilson(70, 100), 0.7, False) for m in (small, large)],
        use_lower_bound=False, cascades=[cascade],
    )  # fmt: skip
    findings = Findings([small, large], ["general"], ["s"], 100, [])
    (option,) = [o for o in options(findings, costs) if o.deployment == "cascade"]
    assert option.escalated_share == pytest.approx(0.30)
    assert option.per_month == pytest.approx(300.0 + 3000.0 * large_paid)
    assert option.per_1000_tasks == pytest.approx(10.0 + 100.0 * large_paid)
    assert option.qualifies


def test_each_tier_of_a_cascade_runs_on_its_candidates_cheapest_deployment() -> None:
    small = model("small", [(True, 5.0 + i) for i in range(70)] + [(False, 0.01 * i) for i in range(30)])
    large = model("large", [(True, 1.0)] * 100)
    cascade = simulate(small, large, small_cost=1.0, large_cost=10.0, target=0.99, steps=20, use_lower_bound=False)
    workload = Workload(tasks_per_day=1000, peak_concurrency=1, input_tokens=100, output_tokens=10)
    two_each = [_cost("small", "onprem_gpu", 900.0), _cost("small", "onprem_cpu", 300.0),
                _cost("large", "onprem_cpu", 2000.0), _cost("large", "onprem_gpu", 5000.0)]  # fmt: skip
    costs = CostFindings(
        "USD", workload, costs=two_each,
        checks=[TargetCheck(m.name, "general", 0.99, wilson(70, 100), 0.7, False) for m in (small, large)],
        use_lower_bound=False, cascades=[cascade] if cascade else [],
    )  # fmt: skip
    assert {name: c.deployment.mode for name, c in costs.cheapest().items()} == {
        "small": "onprem_cpu", "large": "onprem_cpu"
    }  # fmt: skip
    findings = Findings([small, large], ["general"], ["s"], 100, [])
    (option,) = [o for o in options(findings, costs) if o.deployment == "cascade"]
    assert option.per_month == pytest.approx(300.0 + 2000.0)  # not the dearest servers, 900 + 5000
