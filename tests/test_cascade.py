"""The hybrid cascade on a constructed case whose best escalation share is known."""

from __future__ import annotations

import pytest

from poccheck.analysis.cascade import simulate
from poccheck.analysis.summary import GradedRow, ModelFindings
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
