"""Oracle tests of the decision: on randomly generated assessments (per-item results, sizes, costs, targets,
latency targets, runs that stopped), the recommendation equals a brute-force search written here independently,
over every option and every cascade escalation share, for the cheapest option meeting every target on the same
accuracies the Decision page compares (measured on every item for one model; cross-validated for a cascade).
``decision.json`` is checked against its schema and against the options, and the rendered Decision page and
cascade section show the same numbers."""

from __future__ import annotations

import html
import json
import math
import random
import re
from pathlib import Path

import jsonschema
import pytest

from poccheck.analysis.cascade import Cascade, Tier
from poccheck.analysis.deployment import CostFindings, cost_findings
from poccheck.analysis.recommend import Option, recommend
from poccheck.analysis.stats import wilson
from poccheck.analysis.summary import Findings, GradedRow, ModelFindings
from poccheck.config.plan import Plan, PlanWorkload, Targets
from poccheck.i18n import Translator
from poccheck.records import Grade, ModelInfo, TaskItem
from poccheck.report import ReportContent, render
from poccheck.report.decision import decision_record, option_id, schema, write_decision

from .rows import stored_result

GROUPS = ("inspection", "maths", "rules")
SIZES = (135_000_000, 270_000_000, 494_000_000, 1_540_000_000, 3_000_000_000)


def _model(rng: random.Random, name: str, parameters: int, items: int, skill: float) -> ModelFindings:
    info = ModelInfo(name, "llama.cpp", f"/m/{name}.gguf", name, parameters, "Q4_K_M", parameters // 2,
                     4096, "llama", "llama", 24, 4, 64)  # fmt: skip
    rows = []
    for index in range(items):
        multiple = index % 2 == 0
        item = TaskItem(
            id=f"q{index:03d}", input="?", type="multiple_choice" if multiple else "exact",
            answer=0 if multiple else "x", choices=("a", "b", "c", "d") if multiple else (),
            category=GROUPS[index % len(GROUPS)],
        )  # fmt: skip
        correct = rng.random() < skill
        confidence = rng.gauss(2.0 if correct else 0.5, 1.0)  # right answers tend to be surer
        result = stored_result(
            item,
            latency=rng.uniform(0.2, 3.0),
            ttft=0.1,
            prompt_tokens=rng.randint(80, 400),
            completion_tokens=1 if multiple else rng.randint(4, 120),
            finish_reason="stop",
            mean_logprob=None if multiple else -abs(confidence),
            error=None,
        )
        grade = Grade(correct, "A" if multiple else "x", margin=abs(confidence) if multiple else None)
        rows.append(GradedRow(name, "s", item, result, grade))
    accuracy = wilson(sum(r.correct for r in rows), items)
    model = ModelFindings(name=name, info=info, error=None, rows=rows, accuracy=accuracy)
    model.tokens_in = sum(r.result.prompt_tokens for r in rows)
    model.tokens_out = sum(r.result.completion_tokens for r in rows)
    model.expected_items = items
    return model


def assessment(seed: int) -> tuple[Findings, Plan]:
    rng = random.Random(seed)
    items = rng.choice((30, 45, 60, 90))
    sizes = sorted(rng.sample(SIZES, rng.randint(2, 4)))
    models = [_model(rng, f"m{i}", size, items, rng.uniform(0.3, 0.95)) for i, size in enumerate(sizes)]
    if rng.random() < 0.25:  # a run that stopped early: the rest of its items were never run
        victim = rng.choice(models)
        victim.expected_items += rng.randint(1, 10)
    if rng.random() < 0.15:
        rng.choice(models).error = "the server went away"
    targets = {g: round(rng.uniform(0.3, 0.85), 2) for g in GROUPS if rng.random() < 0.8}
    targets.setdefault("default", round(rng.uniform(0.3, 0.8), 2))
    plan = Plan(
        path=Path("p.yaml"), tasks=(), candidates=(), modes=("fewshot",),
        targets=Targets(targets, p95_latency_seconds=rng.choice((None, 0.5, 2.0, 8.0)),
                        use_lower_bound=rng.random() < 0.7),
        workload=PlanWorkload(tasks_per_day=rng.choice((200, 2000, 20_000)), peak_concurrency=rng.randint(1, 8),
                              hours_per_day=rng.choice((8, 10, 24))),
        currency=rng.choice(("USD", "JPY")),
    )  # fmt: skip
    return Findings(models, list(GROUPS), ["s"], items, []), plan


# ------------------------------------------------------------------ the oracle, written without the code under test


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _meets(groups: dict[str, tuple[int, int]], targets: dict[str, float], lower: bool) -> bool:
    for group, target in targets.items():
        right, n = groups.get(group, (0, 0))
        if not n:
            return False
        accuracy = wilson(right, n)
        if (accuracy.low if lower else accuracy.value) < target:
            return False
    return True


def _complete(model: ModelFindings) -> bool:
    return not model.error and len(model.rows) >= model.expected_items


def _share_cost(tier: Tier, share: float, demand: float) -> float:
    if share == 0:
        return 0.0
    if tier.per_server_month is None:
        return tier.per_month * share
    assert tier.capacity_per_hour
    return max(1, math.ceil(demand * share / tier.capacity_per_hour)) * tier.per_server_month


def brute_force_rule(cascade: Cascade, small: Tier, large: Tier, plan: Plan) -> float | None:
    """The cheapest escalation share (then the more accurate, then the smaller) meeting every group's target
    and the latency target on every item both answered, escalating the least confident of each kind first."""
    big = {r.key: r for r in large.model.rows}
    rows = [r for r in small.model.rows if r.key in big]
    demand = plan.workload.tasks_per_day / plan.workload.hours_per_day
    best = None
    for step in range(1, 21):
        share = step / 20
        escalated = set()
        for kind in (True, False):
            mine = sorted((r for r in rows if r.item.is_multiple_choice == kind), key=_sureness)
            escalated |= {r.key for r in mine[: (2 * step * len(mine) + 20) // 40]}  # step/20 of them, half up
        groups: dict[str, tuple[int, int]] = {}
        latencies = []
        for row in rows:
            up = row.key in escalated
            right, n = groups.get(row.item.category, (0, 0))
            groups[row.item.category] = (right + (big[row.key].correct if up else row.correct), n + 1)
            latencies.append(small.latency[row.key] + (large.latency[row.key] if up else 0.0))
        slo = plan.targets.p95_latency_seconds
        if not _meets(groups, cascade.targets, plan.targets.use_lower_bound):
            continue
        if slo is not None and _p95(latencies) > slo:
            continue
        money = small.per_month + _share_cost(large, len(escalated) / len(rows), demand)
        accuracy = sum(r for r, _ in groups.values()) / len(rows)
        key = (round(money, 9), -accuracy, share)
        best = min(best, key) if best else key
    return best[2] if best else None


def _sureness(row: GradedRow) -> float:
    if row.item.is_multiple_choice:
        return row.grade.margin if row.grade and row.grade.margin is not None else -math.inf
    value = row.result.mean_logprob
    return -math.inf if value is None else float(value)


def brute_force_choice(findings: Findings, plan: Plan, costs: CostFindings) -> tuple[float, set[str]] | None:
    """(monthly cost, ids of the options at that cost) of the cheapest option meeting every target."""
    by_label = {m.label: m for m in findings.models}
    targets = {g: t for g in findings.categories if (t := plan.targets.accuracy_for(g)) is not None}
    slo = plan.targets.p95_latency_seconds
    found: list[tuple[float, str]] = []
    for entry in costs.costs:
        model = by_label[entry.candidate]
        groups: dict[str, tuple[int, int]] = {}
        for row in model.rows:
            right, n = groups.get(row.item.category, (0, 0))
            groups[row.item.category] = (right + row.correct, n + 1)
        fast = slo is None or (entry.latency is not None and entry.latency.p95 is not None and entry.latency.p95 <= slo)
        fits = entry.deployment.fits_in_memory
        if _meets(groups, targets, plan.targets.use_lower_bound) and fast and fits and _complete(model):
            found.append((entry.per_month, f"{entry.candidate} @ {entry.deployment.mode}"))
    for cascade in costs.cascades:
        result = cascade.validated
        if result is None or not all(_complete(by_label[m]) for m in (cascade.small, cascade.large)):
            continue
        groups = {g: (p.successes, p.n) for g, p in result.groups.items()}
        fast = slo is None or (result.latency_p95 is not None and result.latency_p95 <= slo)
        if _meets(groups, targets, plan.targets.use_lower_bound) and fast:
            found.append((result.per_month, f"{cascade.small} → {cascade.large} @ cascade"))
    if not found:
        return None
    cheapest = min(money for money, _ in found)
    return cheapest, {name for money, name in found if math.isclose(money, cheapest, rel_tol=1e-9)}


def _tiers(costs: CostFindings, findings: Findings, cascade: Cascade) -> tuple[Tier, Tier]:
    from poccheck.analysis.deployment import _tier

    chosen = costs.cheapest()
    by_label = {m.label: m for m in findings.models}
    small, large = (_tier(by_label[n], chosen[n]) for n in (cascade.small, cascade.large))
    assert small is not None and large is not None
    return small, large


# ------------------------------------------------------------------ the tests


@pytest.mark.parametrize("seed", range(40))
def test_the_recommendation_is_the_brute_force_cheapest_qualifying_option(seed: int) -> None:
    findings, plan = assessment(seed)
    costs = cost_findings(findings, plan)
    advice = recommend(findings, plan, costs)
    for cascade in costs.cascades:
        small, large = _tiers(costs, findings, cascade)
        expected = brute_force_rule(cascade, small, large, plan)
        assert (cascade.rule.share if cascade.rule else None) == pytest.approx(expected), (cascade.small, cascade.large)
    oracle = brute_force_choice(findings, plan, costs)
    if oracle is None:
        assert advice.chosen is None
    else:
        assert advice.chosen is not None
        assert advice.chosen.per_month == pytest.approx(oracle[0])
        assert option_id(advice.chosen) in oracle[1]
    record = decision_record(costs, advice, None)
    jsonschema.validate(record, schema())
    _agrees(record, advice.options, costs)


def _agrees(record: dict, options: list[Option], costs: CostFindings) -> None:  # type: ignore[type-arg]
    assert [o["id"] for o in record["options"]] == [option_id(o) for o in options]
    for data, option in zip(record["options"], options, strict=True):
        assert data["per_month"] == pytest.approx(option.per_month)
        assert data["qualifies"] == option.qualifies
        if option.deployment == "cascade":
            cascade = next(c for c in costs.cascades if f"{c.small} → {c.large}" == option.candidate)
            assert cascade.validated is not None
            assert data["per_month"] == pytest.approx(cascade.validated.per_month)
            assert data["escalated_share"] == pytest.approx(cascade.validated.escalated_share)
            for group, accuracy in data["accuracy"].items():
                assert accuracy["successes"] == cascade.validated.groups[group].successes
                assert accuracy["method"].startswith("cross-validated")
        else:
            checks = {c.group: c for c in costs.checks if c.candidate == option.candidate}
            assert set(data["accuracy"]) == set(checks)
            for group, accuracy in data["accuracy"].items():
                assert accuracy["successes"] == checks[group].accuracy.successes
                assert accuracy["met"] == checks[group].met


def _text(page: str, section: str) -> str:
    start = page.index(f'id="{section}"')
    end = page.index("</section>", start)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page[start:end])).split())


@pytest.mark.parametrize("language", ["en", "ja"])
def test_the_decision_page_the_cascade_section_and_decision_json_agree(tmp_path: Path, language: str) -> None:
    # the first seed whose assessment recommends a cascade with a rule
    for seed in range(200):
        findings, plan = assessment(seed)
        costs = cost_findings(findings, plan)
        advice = recommend(findings, plan, costs)
        if advice.chosen is not None and advice.chosen.deployment == "cascade":
            break
    else:
        pytest.fail("no generated assessment recommends a cascade")
    page = render(ReportContent(findings, costs=costs, advice=advice), tmp_path, (language,)).read_text(
        encoding="utf-8"
    )
    decision = json.loads(write_decision(tmp_path, costs, advice, None).read_text(encoding="utf-8"))
    t = Translator(language, currency=plan.currency)
    chosen = advice.chosen
    assert decision["recommendation"] == option_id(chosen)
    entry = next(o for o in decision["options"] if o["id"] == decision["recommendation"])
    text = _text(page, "decision")
    assert chosen.candidate in text and t.money(entry["per_month"]) in text
    assert t.money(entry["per_1000_tasks"]) in text
    cascade = next(c for c in costs.cascades if f"{c.small} → {c.large}" == chosen.candidate)
    assert cascade.validated is not None
    costs_text = _text(page, "costs")
    paragraph = costs_text[costs_text.index(f"{cascade.small} → {cascade.large}") :]
    assert t.percent(entry["escalated_share"]) in paragraph and t.money(entry["per_month"]) in paragraph
    for group, accuracy in entry["accuracy"].items():
        assert accuracy["successes"] == cascade.validated.groups[group].successes
