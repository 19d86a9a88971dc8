"""`poccheck init` then `poccheck assess --plan` on the bundled model: targets, costs and capacity in the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import EXAMPLES
from .test_e2e import cli

pytestmark = pytest.mark.model


def test_init_then_assess_with_a_plan(tmp_path: Path) -> None:
    plan = tmp_path / "poccheck.yaml"
    made = cli("init", "--out", str(plan))
    assert made.returncode == 0, made.stderr
    again = cli("init", "--out", str(plan))
    assert again.returncode == 1 and "already exists" in again.stderr
    out = tmp_path / "poc"
    done = cli("assess", "--plan", str(plan), "--limit", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    # the plan says language: ja, so report.html is Japanese and report.en.html English, with the same content
    japanese = (out / "report.html").read_text(encoding="utf-8")
    for text in (
        'lang="ja"',
        "結論",
        "目標・費用・必要能力",
        "オンプレミス CPU サーバー",
        "推計",
        "gpt-4o-mini",
        "価格の出典",
        "￥",
    ):
        assert text in japanese, text
    english = (out / "report.en.html").read_text(encoding="utf-8")
    for text in ("Targets, cost and capacity", "Accuracy targets", "on-prem CPU server", "on-prem GPU server",
                 "projected", "gpt-4o-mini", "Where the prices come from", "¥"):  # fmt: skip
        assert text in english, text
    (out / "report.html").unlink()
    assert cli("report", str(out), "--lang", "en").returncode == 0  # costs re-rendered from the store, in English
    assert "on-prem GPU server" in (out / "report.html").read_text(encoding="utf-8")
    assert "オンプレミス GPU サーバー" in (out / "report.ja.html").read_text(encoding="utf-8")
    wrong = cli("report", str(out), "--lang", "fr")
    assert wrong.returncode != 0 and "unknown report language 'fr'" in wrong.stderr and "Traceback" not in wrong.stderr


def test_invalid_plan_names_line_and_field(tmp_path: Path) -> None:
    plan = tmp_path / "bad.yaml"
    plan.write_text("tasks: [nope.csv]\ncandidates: []\ntargets: {accuracy: 1.5}\nworkload: {tasks_per_day: -1}\n")
    result = cli("assess", "--plan", str(plan), "--out", str(tmp_path / "o"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "bad.yaml:1" in result.stderr and "plan file" in result.stderr


def test_two_sizes_give_a_cascade(tmp_path: Path) -> None:
    from .tiny_models import build_model

    tiny = build_model(tmp_path / "tiny", "llama")
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"tasks: [{EXAMPLES / 'factory_tasks.csv'}]\n"
        f"candidates: ['{tiny}@transformers', gemma3-270m-q4]\n"
        "targets: {accuracy: {default: 0.3}}\n"
        "workload: {tasks_per_day: 500, peak_concurrency: 2}\n"
        "currency: USD\n",
        encoding="utf-8",
    )
    out = tmp_path / "poc"
    done = cli("assess", "--plan", str(plan), "--limit", "6", "--out", str(out))
    assert done.returncode == 0, done.stderr
    report = (out / "report.en.html").read_text(encoding="utf-8")  # report.html is Japanese, the plan's default
    assert "Hybrid: answer locally, escalate when unsure" in report
    assert f"{tiny}@transformers → gemma3-270m-q4" in report and "$" in report
