"""The model-size ladder end to end: the four real ladder models and SmolLM2 a second time through transformers,
few-shot and chain of thought, in chat and in raw format, from the shipped ladder plan (examples/ladder.yaml) to
both report languages. A few items of each task group keep it to minutes on two cores; `make ladder` runs them all.
"""

from __future__ import annotations

import json
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest
import yaml

from poccheck import models, pipeline
from poccheck.analysis.reasoning import analyse_reasoning
from poccheck.report.decision import schema

from .conftest import EXAMPLES, ROOT
from .test_e2e import cli
from .test_prompt_formats import stored as results

pytestmark = pytest.mark.model

LADDER = ("smollm2-135m-q4", "gemma3-270m-q4", "qwen2.5-coder-0.5b-q4", "qwen2.5-coder-1.5b-q4")
ITEMS = ("insp-002", "mt-001", "math-001", "spec-001")  # one of each task group: exact, multiple choice, number, JSON
COT_TOKENS = 96
TRANSFORMERS = "smollm2-135m-q4@transformers"  # for attention evidence: few-shot only


def small_suite(path: Path) -> Path:
    """The example suite cut to ``ITEMS``, its exemplars and settings kept (a smaller chain-of-thought budget)."""
    doc = yaml.safe_load((EXAMPLES / "factory_suite.yaml").read_text(encoding="utf-8"))
    doc["items"] = [item for item in doc["items"] if item["id"] in ITEMS]
    doc["cot_max_tokens"] = COT_TOKENS
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def ladder_plan(tmp_path: Path) -> Path:
    plan = yaml.safe_load((ROOT / "examples" / "ladder.yaml").read_text(encoding="utf-8"))
    assert plan["candidates"] == [*LADDER, {"model": TRANSFORMERS, "modes": ["fewshot"]}]
    assert plan["modes"] == ["fewshot", "cot"]
    plan["tasks"] = [str(small_suite(tmp_path / "suite.yaml"))]
    path = tmp_path / "ladder.yaml"
    path.write_text(yaml.safe_dump(plan, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def page_text(path: Path) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8"))))


class WideTables(HTMLParser):
    """The tables with more than eight header cells (one per model or attention head, so they grow with the run)
    that are not inside a ``div.scroll``: at 9 models they widened the whole page."""

    def __init__(self) -> None:
        super().__init__()
        self.scrolls: list[bool] = []
        self.table: tuple[bool, int] | None = None  # (inside a scroll, header cells)
        self.unscrolled: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "div":
            self.scrolls.append("scroll" in (dict(attrs).get("class") or "").split())
        elif tag == "table":
            self.table = (any(self.scrolls), 0)
        elif tag == "th" and self.table is not None:
            self.table = (self.table[0], self.table[1] + 1)

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self.scrolls:
            self.scrolls.pop()
        elif tag == "tr" and self.table is not None and self.table[1]:
            inside, cells = self.table
            if cells > 8 and not inside:
                self.unscrolled.append(cells)
            self.table = None


@pytest.fixture(scope="module")
def ladder_installed() -> None:
    missing = [name for name in LADDER if not models.installed(name)]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (make ladder-setup)")


def test_the_ladder_in_chat_and_raw_format_gives_four_sizes_and_a_decision(
    tmp_path: Path, ladder_installed: None
) -> None:
    plan = ladder_plan(tmp_path)
    out = tmp_path / "ladder"
    done = cli("assess", "--plan", str(plan), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]

    stored = results(out)
    assert all(r.error is None for r in stored), [r.error for r in stored if r.error]
    per_model = {name: [r for r in stored if r.model == name] for name in {r.model for r in stored}}
    assert sorted(per_model) == sorted([*LADDER, TRANSFORMERS])
    assert all(len(per_model[name]) == len(ITEMS) * 2 for name in LADDER)
    assert {r.mode for r in per_model[TRANSFORMERS]} == {"fewshot"} and len(per_model[TRANSFORMERS]) == len(ITEMS)
    # instruct models in their chat template, the base Gemma in plain text
    for name, found in per_model.items():
        chat = [r for r in found if "<|im_start|>" in r.prompt]
        assert len(chat) == (0 if name.startswith("gemma") else len(found)), name

    _, findings = pipeline.render_report(out)
    reasoning = analyse_reasoning(findings)
    assert reasoning.scaling and reasoning.sizes == 4  # the same weights through transformers are not a fifth size
    for group in reasoning.scaling:
        assert sorted(p.parameters for p in group.fit.points) == [134_515_008, 268_098_176, 494_032_768, 1_543_714_304]
    cut = sum(1 for r in stored if r.finish_reason in {"length", "context", "loop"})
    english = page_text(out / "report.html")
    japanese = page_text(out / "report.ja.html")
    for text in ("Decision", "1.54B", "494M", "chat template", "plain text", "Does chain-of-thought help?"):
        assert text in english, text
    for text in ("結論", "1.54B", "494M"):
        assert text in japanese, text
    for name in ("report.html", "report.ja.html"):
        wide = WideTables()
        wide.feed((out / name).read_text(encoding="utf-8"))
        assert wide.unscrolled == [], name  # tables of one column per model scroll on their own
    if cut:
        assert "Generations cut short and chains without an answer" in english
    # decision.json: valid, and the option it recommends (or the closest) is the one the Decision page names
    decision = json.loads((out / "decision.json").read_text(encoding="utf-8"))
    jsonschema.validate(decision, schema())
    assert decision["status"] in {"recommended", "not_yet"} and decision["options"]
    named = decision["recommendation"] or decision["closest"]
    option = next(o for o in decision["options"] if o["id"] == named)
    decision_text = english[english.index("Decision") : english.index("Accuracy targets")]
    assert option["candidate"] in decision_text
    # the models without attention views are named once each, whatever the number of modes
    listed = english[english.index("No attention views for") + len("No attention views for") :].split(":")[0]
    assert sorted(name.strip() for name in listed.split(",")) == sorted(LADDER)

    raw_out = tmp_path / "ladder-raw"
    four = [arg for name in LADDER for arg in ("--model", name)]
    raw = cli("assess", "--plan", str(plan), *four, "--prompt-format", "raw", "--limit", "1", "--out", str(raw_out))
    assert raw.returncode == 0, raw.stderr[-3000:]
    raw_rows = results(raw_out)
    assert raw_rows and all(r.error is None and "<|im_start|>" not in r.prompt for r in raw_rows)
    assert {r.mode for r in raw_rows} == {"fewshot", "cot"} and {r.model for r in raw_rows} == set(LADDER)
    raw_page = page_text(raw_out / "report.html")
    # the methods text names both formats; only the chat run shows models in their template
    assert "plain text" in raw_page and raw_page.count("chat template") < english.count("chat template")
