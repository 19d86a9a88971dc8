"""The recommendation: cheapest qualifying option, runners-up and why they lost, and honest 'not yet'."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from poccheck.analysis.deployment import cost_findings
from poccheck.analysis.recommend import items_needed, recommend
from poccheck.analysis.stats import wilson
from poccheck.analysis.summary import AloneTiming, Findings, GradedRow, ModelFindings
from poccheck.config.plan import Plan, PlanWorkload, Targets
from poccheck.records import Grade, ModelInfo, TaskItem
from poccheck.report import ReportContent, render
from poccheck.report.decision import decision_record, schema

from .rows import stored_result


def candidate(
    name: str, parameters: int, right: int, n: int, latency: float = 0.5, completion: int = 20
) -> ModelFindings:
    info = ModelInfo(name, "llama.cpp", f"/m/{name}.gguf", name, parameters, "Q4_K_M", parameters // 2,
                     4096, "llama", "llama", 16, 4, 64)  # fmt: skip
    rows = []
    for index in range(n):
        item = TaskItem(id=f"q{index}", input="?", type="exact", answer="x", category="rules")
        result = stored_result(
            item,
            latency=latency,
            ttft=0.1,
            prompt_tokens=200,
            completion_tokens=completion,
            finish_reason="stop",
            mean_logprob=-0.5,
            error=None,
        )
        rows.append(GradedRow(name, "s", item, result, Grade(index < right, "x")))
    model = ModelFindings(name=name, info=info, error=None, rows=rows, accuracy=wilson(right, n))
    model.latency_p95 = latency
    model.tokens_in, model.tokens_out = 200 * n, 20 * n
    return model


def plan(target: float = 0.7) -> Plan:
    return Plan(
        path=Path("p.yaml"), tasks=(), candidates=(), modes=("fewshot",),
        targets=Targets({"default": target}, p95_latency_seconds=2.0),
        workload=PlanWorkload(tasks_per_day=1000, peak_concurrency=2, hours_per_day=10), currency="USD",
    )  # fmt: skip


def findings(*models: ModelFindings) -> Findings:
    return Findings(list(models), ["rules"], ["s"], models[0].accuracy.n, [])


def test_items_needed_matches_brute_force() -> None:
    needed = items_needed(0.9, 0.8)
    brute = next(n for n in range(1, 5000) if wilson(round(0.9 * n), n).low >= 0.8)
    assert needed == brute
    assert items_needed(0.7, 0.8) is None


def test_cheapest_qualifying_option_wins_and_runners_up_say_why() -> None:
    small = candidate("small", 300_000_000, 40, 100)  # 40%: below target
    large = candidate("large", 3_000_000_000, 95, 100)  # 95%: above target
    advice = recommend(findings(small, large), plan(0.7))
    assert advice.chosen is not None and advice.chosen.candidate == "large"
    assert advice.chosen.deployment == "onprem_cpu"  # cheaper than the GPU server for the same model
    losers = {o.candidate: o for o in advice.runners_up if not o.qualifies}
    assert "below target on rules" in str(losers["small"].why_not()[0])
    assert [m.key.rsplit(".", 1)[0] for m in advice.sensitivity] == [
        "sensitivity.workload_10x",
        "sensitivity.hardware_half",
    ]


def test_nothing_qualifies_names_the_closest_and_what_would_change() -> None:
    small = candidate("small", 300_000_000, 75, 100)  # 75% measured, lower bound ~66% < 70%
    advice = recommend(findings(small), plan(0.7))
    assert advice.chosen is None and advice.closest is not None and advice.closest.candidate == "small"
    assert advice.items_needed is not None and advice.items_needed > 100
    assert any(line.key == "changes.more_items" for line in advice.changes)
    assert any(line.key == "changes.larger_model" for line in advice.changes)


def test_latency_slo_judges_each_deployment_on_its_own_projected_p95() -> None:
    # 9 s an item on this machine does not matter: each server is judged on the p95 projected for it
    quick = candidate("quick", 3_000_000_000, 99, 100, latency=9.0)
    advice = recommend(findings(quick), plan(0.7))
    assert advice.chosen is not None and advice.chosen.latency_projected and advice.chosen.meets_latency
    assert advice.chosen.latency_p95 is not None and advice.chosen.latency_p95 <= 2.0
    # 2,000 output tokens a task cannot be written within 2 s on any server priced
    slow = candidate("slow", 3_000_000_000, 99, 100, latency=0.5, completion=2000)
    advice = recommend(findings(slow), plan(0.7))
    assert advice.chosen is None
    assert advice.closest is not None and [m.key for m in advice.closest.why_not()] == ["why_not.latency_at"]


def test_ties_prefer_the_larger_margin() -> None:
    a = candidate("a", 1_000_000_000, 90, 100)
    b = candidate("b", 1_000_000_000, 97, 100)
    advice = recommend(findings(a, b), plan(0.7))
    assert advice.chosen is not None and advice.chosen.candidate == "b"
    assert advice.chosen.per_month == pytest.approx(next(o for o in advice.runners_up if o.candidate == "a").per_month)


def test_a_task_group_never_answered_is_not_met() -> None:
    partial = candidate("partial", 3_000_000_000, 99, 100)  # answered only "rules"
    both = Findings([partial], ["rules", "spec"], ["s"], 100, [])
    advice = recommend(both, plan(0.7))
    assert advice.chosen is None and advice.closest is not None and advice.closest.worst_group == "spec"


def test_the_decision_page_renders(tmp_path: Path) -> None:
    small = candidate("small", 300_000_000, 75, 100)
    both = findings(small)
    costs = cost_findings(both, plan(0.7))
    advice = recommend(both, plan(0.7), costs)
    page = render(ReportContent(both, costs=costs, advice=advice), tmp_path).read_text(encoding="utf-8")
    assert "Not yet: no candidate meets every target" in page and "assess a model above 1.6B" in page


@pytest.mark.parametrize(
    ("in_flight", "peak", "level"),
    [(4, 4, 4), (4, 2, 1), (4, 3, 4), (4, 1, 1), (3, 2, 3), (5, 3, 5), (1, 4, 1)],  # (3, 2), (5, 3): ties go higher
)
def test_this_machine_is_judged_at_the_measured_concurrency_closest_to_the_peak(
    in_flight: int, peak: int, level: int
) -> None:
    model = candidate("large", 3_000_000_000, 95, 100, latency=3.0)  # 3 s an item with in_flight in flight
    model.in_flight = in_flight
    if in_flight > 1:  # three items timed alone: 1 s each
        model.alone = AloneTiming((1.0, 1.0, 1.0), (3.0, 3.0, 3.0), 3)
    advice = recommend(findings(model), replace(plan(0.7), workload=PlanWorkload(1000, peak, hours_per_day=10)))
    here = advice.this_machine
    assert here is not None and here.candidate == "large" and here.peak_concurrency == peak
    assert here.in_flight == level
    alone = level == 1 and in_flight > 1  # the single-request sample, else the run itself
    assert (here.p95, here.n, here.meets_target) == ((1.0, 3, True) if alone else (3.0, 100, False))
    record = decision_record(cost_findings(findings(model), plan(0.7)), advice, None)
    jsonschema.validate(record, schema())
    assert record["this_machine"]["in_flight"] == level and record["this_machine"]["n"] == here.n


def test_the_decision_page_says_how_this_machine_answered_in_both_languages(tmp_path: Path) -> None:
    model = candidate("large", 3_000_000_000, 95, 100, latency=3.0)
    model.in_flight = 4
    both = findings(model)
    costs = cost_findings(both, plan(0.7))
    advice = recommend(both, plan(0.7), costs)
    render(ReportContent(both, costs=costs, advice=advice), tmp_path, ("en", "ja"))
    en, ja = ((tmp_path / name).read_text(encoding="utf-8") for name in ("report.html", "report.ja.html"))
    assert "On this machine, large answered with a p95 latency of 3.00 s over 100 items with 4 in flight" in en
    assert "misses the 2.00 s target" in en
    assert "同時処理 4 件" in ja and "目標 2.00 秒 を満たしていません" in ja


def test_length_normalised_accuracy_counts_only_choices_scored_by_log_likelihood() -> None:
    from poccheck.analysis.summary import _summarise

    item = TaskItem(id="mc", input="?", type="multiple_choice", answer=0, choices=("a", "b"))
    result = stored_result(
        item,
        latency=0.1,
        ttft=None,
        prompt_tokens=9,
        completion_tokens=0,
        finish_reason=None,
        mean_logprob=None,
        error=None,
    )
    scored = GradedRow("m", "s", item, result, Grade(True, "A. a", correct_norm=False))
    generated = GradedRow("m", "s", item, result, Grade(True, "A. a"))  # a chain of thought's letter: no log-probs
    model = ModelFindings(name="m", info=None, error=None, rows=[generated, generated])
    _summarise(model, [])
    assert model.accuracy.value == 1.0 and model.accuracy_norm is None  # shown as "–", not 0%
    model = ModelFindings(name="m", info=None, error=None, rows=[scored, generated])
    _summarise(model, [])
    assert model.accuracy_norm is not None and (model.accuracy_norm.n, model.accuracy_norm.value) == (1, 0.0)


def test_a_decision_that_cannot_be_worked_out_says_why_in_both_languages(tmp_path: Path) -> None:
    from poccheck import pipeline
    from poccheck.report import ReportContent, render

    failed = ModelFindings(name="gone", info=None, error="model did not load", accuracy=wilson(0, 0))
    found = Findings([failed], ["rules"], ["s"], 0, [])
    costs, advice, problem = pipeline._decision(found, plan())  # no token counts measured, none in the plan
    assert costs is None and advice is None and problem and "token counts" in problem
    path = render(ReportContent(found, decision_problem=problem), tmp_path, ("en", "ja"))
    english = path.read_text(encoding="utf-8")
    japanese = (tmp_path / "report.ja.html").read_text(encoding="utf-8")
    assert 'id="decision"' in english and "No decision: the cost and decision analysis could not" in english
    assert "token counts per task are neither measured" in english and "結論を出せません" in japanese
