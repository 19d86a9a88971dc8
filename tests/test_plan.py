"""The assessment plan file: the default template loads; every mistake is reported with its line and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from poccheck.config.plan import Plan, default_plan_text, load_plan, parse_plan
from poccheck.errors import PlanError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

GOOD = """\
tasks: [suite.yaml, more.csv]
candidates: [gemma3-270m-q4, gemma3-270m-q4@transformers]
modes: [fewshot, cot]
targets:
  accuracy: {default: 0.8, inspection-rules: 0.9}
  p95_latency_seconds: 5.0
workload:
  tasks_per_day: 2000
  peak_concurrency: 4
  hours_per_day: 10
  input_tokens: 300
currency: USD
language: en
cost_profiles:
  onprem_gpu: {purchase_price: 31000}
out: results
"""


def write_plan(tmp_path: Path, text: str) -> Path:
    for name in ("suite.yaml", "more.csv"):
        (tmp_path / name).write_text("placeholder\n", encoding="utf-8")
    path = tmp_path / "poccheck.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> list[tuple[int | None, str | None, str]]:
    path = write_plan(tmp_path, text)
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    assert all(p.file == str(path) for p in caught.value.problems)
    return [(p.line, p.field, p.message) for p in caught.value.problems]


def test_default_plan_loads(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    for name in ("factory_suite.yaml", "factory_tasks.csv"):
        shutil.copy(EXAMPLES / name, tmp_path / "examples" / name)
    path = tmp_path / "poccheck.yaml"
    path.write_text(default_plan_text(), encoding="utf-8")
    plan = load_plan(path)
    assert plan.tasks == (tmp_path / "examples/factory_suite.yaml", tmp_path / "examples/factory_tasks.csv")
    assert plan.candidates == ("gemma3-270m-q4",)
    assert plan.modes == ("fewshot",)
    assert plan.targets.accuracy_for("inspection-rules") == 0.9
    assert plan.targets.accuracy_for("production-math") == 0.8
    assert plan.targets.use_lower_bound is True
    assert (plan.currency, plan.language, plan.out) == ("JPY", "ja", tmp_path / "poc")
    assert "# 目標精度" in default_plan_text()


def test_default_plan_resolves_against_the_project_root() -> None:
    plan, problems = parse_plan(default_plan_text(), ROOT / "poccheck.yaml")
    assert problems == []
    assert plan is not None and all(path.is_file() for path in plan.tasks)


def test_good_plan(tmp_path: Path) -> None:
    plan = load_plan(write_plan(tmp_path, GOOD))
    assert isinstance(plan, Plan)
    assert plan.tasks == (tmp_path / "suite.yaml", tmp_path / "more.csv")
    assert plan.modes == ("fewshot", "cot")
    assert plan.targets.p95_latency_seconds == 5.0
    assert plan.workload.hours_per_day == 10 and plan.workload.output_tokens is None
    assert plan.out == tmp_path / "results"
    # measured token counts win; planned ones fill the gaps
    workload = plan.workload.to_workload(measured_output_tokens=42)
    assert (workload.input_tokens, workload.output_tokens, workload.tasks_per_day) == (300, 42, 2000)
    with pytest.raises(ValueError, match="token counts"):
        plan.workload.to_workload()
    assert plan.profiles().onprem_gpu.purchase_price == 31000


def test_accuracy_shorthand_and_exchange_rate(tmp_path: Path) -> None:
    text = GOOD.replace("accuracy: {default: 0.8, inspection-rules: 0.9}", "accuracy: 0.7")
    text += "exchange_rate: 140\n"
    plan = load_plan(write_plan(tmp_path, text))
    assert plan.targets.accuracy == {"default": 0.7}
    assert plan.profiles().exchange_rates["JPY"] == 140


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("out: results", "outdir: results", (16, "outdir", "unknown key 'outdir' (did you mean 'out'?)")),
        ("more.csv]", "missing.csv]", (1, "tasks[1]", "task file not found")),
        ("inspection-rules: 0.9", "inspection-rules: 1.5", (5, "targets.accuracy.inspection-rules", "between 0 and 1")),
        ("tasks_per_day: 2000", "tasks_per_day: -5", (8, "workload.tasks_per_day", "must be above 0, not -5")),
        ("[fewshot, cot]", "[fewshot, cott]", (3, "modes[1]", "unknown mode 'cott' (did you mean 'cot'?)")),
        ("currency: USD", "currency: EUR", (12, "currency", "unknown currency 'EUR'; use one of JPY, USD")),
        (
            "candidates: [gemma3-270m-q4, gemma3-270m-q4@transformers]",
            "candidates: []",
            (2, "candidates", "at least one"),
        ),
        ("language: en", "language: de", (13, "language", "unknown language 'de'")),
        (
            "purchase_price: 31000",
            "purchse_price: 31000",
            (15, "cost_profiles.onprem_gpu.purchse_price", "did you mean"),
        ),
        ("peak_concurrency: 4", "peak_concurrency: 2.5", (9, "workload.peak_concurrency", "must be a whole number")),
        ("  p95_latency_seconds: 5.0\n", "", None),
    ],
)
def test_each_mistake_is_reported_with_line_and_field(
    tmp_path: Path, old: str, new: str, expected: tuple[int, str, str] | None
) -> None:
    assert old in GOOD
    text = GOOD.replace(old, new)
    if expected is None:  # optional keys may be left out
        assert load_plan(write_plan(tmp_path, text)).targets.p95_latency_seconds is None
        return
    problems = problems_of(tmp_path, text)
    assert len(problems) == 1, problems
    line, field, message = problems[0]
    assert (line, field) == expected[:2]
    assert expected[2] in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = """\
tasks: [suite.yaml, nope.csv]
candidates: []
modes: [fewshoot]
targets:
  accuracy: {default: 1.5}
  p95_latency: 3
workload:
  tasks_per_day: -5
  peak_concurrency: 4
currency: EUR
"""
    problems = problems_of(tmp_path, text)
    assert [(line, field) for line, field, _ in problems] == [
        (1, "tasks[1]"),
        (2, "candidates"),
        (3, "modes[0]"),
        (5, "targets.accuracy.default"),
        (6, "targets.p95_latency"),
        (8, "workload.tasks_per_day"),
        (10, "currency"),
    ]
    messages = " | ".join(message for _, _, message in problems)
    assert "did you mean 'p95_latency_seconds'?" in messages
    assert "did you mean 'fewshot'?" in messages


def test_missing_required_keys_and_bad_files(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "tasks: [suite.yaml]\ncandidates: [m]\n")
    assert problems == [(1, "targets", "missing (required)"), (1, "workload", "missing (required)")]
    assert problems_of(tmp_path, "- a list\n") == [
        (1, None, "a plan must be a mapping of settings (tasks:, candidates:, ...)")
    ]
    [(line, field, message)] = problems_of(tmp_path, "tasks: [a\n")
    assert line == 2 and field is None and message.startswith("invalid YAML")
    [(line, field, message)] = problems_of(tmp_path, GOOD + "currency: JPY\n")
    assert (line, field, message) == (17, "currency", "key given twice")
    with pytest.raises(PlanError, match="plan file not found"):
        load_plan(tmp_path / "absent.yaml")


CANDIDATES = "candidates: [gemma3-270m-q4, gemma3-270m-q4@transformers]"
OWN_MODES = "candidates:\n  - gemma3-270m-q4\n  - {model: gemma3-270m-q4@transformers, modes: [fewshot]}"


def test_a_candidate_may_have_modes_of_its_own(tmp_path: Path) -> None:
    plan = load_plan(write_plan(tmp_path, GOOD.replace(CANDIDATES, OWN_MODES)))
    assert plan.candidates == ("gemma3-270m-q4", "gemma3-270m-q4@transformers")
    assert plan.modes_of("gemma3-270m-q4") == ("fewshot", "cot")
    assert plan.modes_of("gemma3-270m-q4@transformers") == ("fewshot",)


@pytest.mark.parametrize(
    ("entry", "expected", "line_no"),
    [
        ("{model: gemma3-270m-q4@transformers, modes: [fewshot, cott]}", ("candidates[1].modes[1]", "'cott'"), 4),
        ("{model: gemma3-270m-q4@transformers, modes: cott}", ("candidates[1].modes", "did you mean 'cot'"), 4),
        ("{model: gemma3-270m-q4@transformers, mode: [cot]}", ("candidates[1].mode", "unknown key 'mode'"), 4),
        ("{modes: [cot]}", ("candidates[1].model", "missing (required)"), 4),
        ("{model: gemma3-270m-q4, modes: [cot]}", ("candidates[1]", "'gemma3-270m-q4' more than once"), 4),
        # a scalar list item has no line of its own: the list's line
        ("12", ("candidates[1]", "a model name, or a mapping with model: and modes:"), 2),
    ],
)
def test_a_candidates_own_settings_are_checked(
    tmp_path: Path, entry: str, expected: tuple[str, str], line_no: int
) -> None:
    text = GOOD.replace(CANDIDATES, f"candidates:\n  - gemma3-270m-q4\n  - {entry}")
    problems = problems_of(tmp_path, text)
    assert len(problems) == 1, problems
    line, field, message = problems[0]
    assert (line, field) == (line_no, expected[0])
    assert expected[1] in message
