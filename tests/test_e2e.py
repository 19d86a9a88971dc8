"""End to end through the real CLI on the bundled model with real llama.cpp."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from .conftest import EXAMPLES

pytestmark = pytest.mark.model

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> {{ 7*7 }} {% raw %}\x07'

SUITE = f"""
name: e2e
max_tokens: 12
stop: ["\\n"]
fewshot:
  - {{input: "Is 3 more than 2? Answer YES or NO.", answer: "YES"}}
items:
  - {{id: mc1, type: multiple_choice, category: triage, input: "The hydraulic press leaks oil at a seal. What failed?",
      choices: ["the seal", "the paint", "the lunch"], answer: A}}
  - {{id: mc2, type: multiple_choice, category: triage, input: "質問: 日本の首都は？",
      choices: ["東京", "ロンドン"], answer: 東京}}
  - {{id: g1, type: exact, category: rules, input: "Is 5 more than 7? Answer YES or NO.", answer: "NO"}}
  - {{id: g2, type: numeric, category: math, input: "What is 10 plus 5?", answer: 15}}
  - {{id: g3, type: contains, category: rules, input: "Name a metal.", answer: "steel"}}
  - id: hostile
    type: exact
    category: rules
    input: {HOSTILE!r}
    answer: "never"
"""


def cli(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "poccheck", *args], capture_output=True, text=True, timeout=600, **kw)


class TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.scripts = 0
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        self.tags.append(tag)
        if tag == "script":
            self.scripts += 1
        for name, value in attrs:
            assert not name.startswith("on"), f"event handler attribute {name} in report"
            if name in {"src", "href"}:
                assert not (value or "").startswith(("http:", "https:", "//")), f"external {name}: {value}"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT item_id, output, choice_logprobs IS NOT NULL, error FROM results ORDER BY item_id"
        ).fetchall()


def grades(db: Path) -> dict[str, tuple]:
    with sqlite3.connect(db) as con:
        return {r[0]: r[1:] for r in con.execute("SELECT item_id, created, prediction, correct, margin FROM results")}


def test_assess_writes_a_safe_self_contained_report(tmp_path: Path) -> None:
    tasks = tmp_path / "suite.yaml"
    tasks.write_text(SUITE, encoding="utf-8")
    out = tmp_path / "poc"
    done = cli("assess", "--tasks", str(tasks), "--model", "gemma3-270m-q4", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "Report:" in done.stdout
    report = (out / "report.html").read_text(encoding="utf-8")
    parser = TextCollector()
    parser.feed(report)
    assert parser.scripts == 0
    text = "".join(parser.text)
    assert '<script>alert("x")</script>' in text  # shown intact, as text
    assert "{{ 7*7 }}" in text and "{% raw %}" in text
    assert "<script>" not in report and "<img" not in report
    assert "svg" in parser.tags
    assert (out / "report.html").stat().st_mode & 0o777 == 0o600
    assert out.stat().st_mode & 0o777 == 0o700
    stored = rows(out / "poccheck.db")
    assert [r[0] for r in stored] == ["g1", "g2", "g3", "hostile", "mc1", "mc2"]
    assert [r[2] for r in stored] == [0, 0, 0, 0, 1, 1] and all(r[3] is None for r in stored)

    again = cli("assess", "--tasks", str(tasks), "--model", "gemma3-270m-q4", "--out", str(out))
    assert again.returncode == 0 and rows(out / "poccheck.db") == stored  # all skipped, nothing duplicated

    # A changed answer key is re-graded from stored outputs; the model is not run again.
    before = grades(out / "poccheck.db")
    tasks.write_text(SUITE.replace('"the lunch"], answer: A', '"the lunch"], answer: C'), encoding="utf-8")
    regrade = cli("assess", "--tasks", str(tasks), "--model", "gemma3-270m-q4", "--out", str(out))
    assert regrade.returncode == 0 and rows(out / "poccheck.db") == stored
    after = grades(out / "poccheck.db")
    assert after["mc1"][0] == before["mc1"][0]  # same result row, same creation time
    assert after["mc1"][1] == before["mc1"][1] and after["mc1"][2] != before["mc1"][2]  # same pick, new verdict
    assert {k: v for k, v in after.items() if k != "mc1"} == {k: v for k, v in before.items() if k != "mc1"}

    (out / "report.html").unlink()
    rerendered = cli("report", str(out))
    assert rerendered.returncode == 0, rerendered.stderr
    assert (out / "report.html").exists()
    redacted = cli("report", str(out), "--redact")
    assert redacted.returncode == 0 and "alert" not in (out / "report.html").read_text(encoding="utf-8")


def test_invalid_tasks_and_missing_model_fail_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("id,input,type,choices,answer,category\nq1,Pick,multiple_choice,a|b,C,x\n", encoding="utf-8")
    result = cli("assess", "--tasks", str(bad), "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    assert "bad.csv:2 [answer]" in result.stderr and "Traceback" not in result.stderr
    tasks = tmp_path / "suite.yaml"
    tasks.write_text(SUITE, encoding="utf-8")
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model at all")
    result = cli(
        "assess", "--tasks", str(tasks), "--model", str(fake), "--model", "/nope.gguf", "--out", str(tmp_path / "o")
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "not a GGUF model file" in result.stderr and "not found" in result.stderr
    report = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    assert "not a GGUF model file" in report


def test_tasks_validate_and_models_list_commands() -> None:
    ok = cli("tasks", "validate", str(EXAMPLES / "factory_suite.yaml"), str(EXAMPLES / "factory_tasks.csv"))
    assert ok.returncode == 0 and ok.stdout.count("ok") >= 2
    listed = cli("models", "list")
    assert listed.returncode == 0 and "gemma3-270m-q4" in listed.stdout and "Q4_K_M" in listed.stdout
