"""The runner, resume, grading and the report in seconds, through the shipped scripted backend (``FILE@scripted``:
answers written in advance; nothing is loaded). What only a real engine shows is tested in the *(model)* tests."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from poccheck import models, pipeline
from poccheck.backends.registry import load_backend
from poccheck.backends.scripted import UNLISTED_CHOICE, ScriptedBackend
from poccheck.cli import app
from poccheck.config.run import RunConfig
from poccheck.errors import ModelError
from poccheck.i18n import Translator
from poccheck.store import DB_NAME
from tests.test_data_handling import said

SUITE = """name: shop
max_tokens: 16
items:
  - {id: g1, type: exact, category: rules, input: "Is bore 12.05 mm a defect? Answer YES or NO.", answer: "YES"}
  - {id: g2, type: numeric, category: math, input: "What is 40 plus 2?", answer: 42}
  - {id: g3, type: contains, category: rules, input: "Name the part that failed.", answer: "seal"}
  - {id: m1, type: multiple_choice, category: triage, input: "The press leaks oil. What failed?",
     choices: ["the seal", "the paint"], answer: A}
  - {id: m2, type: multiple_choice, category: triage, input: "Which line makes P-17?",
     choices: ["line A", "line B", "line C"], answer: C}
"""
SCRIPT = """# the answers of a scripted model
parameters: 135000000
by_prompt:
  "12.05 mm": "YES"
  "40 plus 2": "It is 42."
  "part that failed": {error: "server said 503"}
choices:
  - [-0.2, -3.0]
  - [-1.0, -2.0]
"""


def write(tmp_path: Path, script: str = SCRIPT) -> tuple[Path, str]:
    suite = tmp_path / "shop.yaml"
    suite.write_text(SUITE, encoding="utf-8")
    model = tmp_path / "small.yaml"
    model.write_text(script, encoding="utf-8")
    return suite, f"{model}@scripted"


def rows(out: Path) -> dict[str, tuple[int | None, str | None]]:
    with contextlib.closing(sqlite3.connect(out / DB_NAME)) as db:
        return {
            item: (correct, error) for item, correct, error in db.execute("SELECT item_id, correct, error FROM results")
        }


def test_a_scripted_model_is_run_graded_and_reported_in_both_languages(tmp_path: Path) -> None:
    suite, model = write(tmp_path)
    out = tmp_path / "poc"
    done = CliRunner().invoke(app, ["assess", "--tasks", str(suite), "--model", model, "--out", str(out)])
    assert done.exit_code == 0, said(done)
    assert rows(out) == {
        "g1": (1, None), "g2": (1, None), "g3": (None, "server said 503"),  # the scripted failure fails alone
        "m1": (1, None), "m2": (0, None),  # m2's third choice gets UNLISTED_CHOICE: the script picks A, not C
    }  # fmt: skip
    for language in ("en", "ja"):
        assert CliRunner().invoke(app, ["report", str(out), "--lang", language]).exit_code == 0
        page = (out / "report.html").read_text(encoding="utf-8")
        heading = str(Translator(language)("failures.heading"))
        assert "small.yaml@scripted" in page and "server said 503</span>" in page and heading in page


def test_an_interrupted_scripted_run_resumes_with_only_what_is_missing(tmp_path: Path) -> None:
    suite, model = write(tmp_path)
    out = tmp_path / "poc"
    first = pipeline.assess(RunConfig([suite], [model], out, limit=2))
    assert (first.outcome.models[0].done, len(rows(out))) == (2, 2)
    second = pipeline.assess(RunConfig([suite], [model], out))
    (outcome,) = second.outcome.models
    assert (outcome.done, outcome.failed_items, outcome.skipped) == (2, 1, 2)
    third = pipeline.assess(RunConfig([suite], [model], out))
    assert third.outcome.models[0].done == 0 and len(rows(out)) == 5  # nothing duplicated
    assert second.findings.models[0].accuracy == third.findings.models[0].accuracy


def test_editing_the_script_is_another_model(tmp_path: Path) -> None:
    _, model = write(tmp_path)
    before = models.resolve(model)
    Path(model.removesuffix("@scripted")).write_text(SCRIPT.replace("It is 42.", "It is 41."), encoding="utf-8")
    after = models.resolve(model)
    assert before.fingerprint != after.fingerprint and (before.parameters, before.backend) == (135_000_000, "scripted")


def test_replies_are_given_in_order_and_cut_at_the_token_budget(tmp_path: Path) -> None:
    from poccheck.backends import ChoiceRequest, GenerationRequest

    _, model = write(tmp_path, 'replies: ["one two three four", "five"]\nchoices: [[-1.0]]\n')
    backend = load_backend(models.resolve(model))
    assert isinstance(backend, ScriptedBackend)
    first = backend.generate(GenerationRequest("Q", (), 2))
    second = backend.generate(GenerationRequest("Q", (), 2))
    third = backend.generate(GenerationRequest("Q", (), 8))
    assert [(c.text, c.finish_reason) for c in (first, second, third)] == [
        ("one two", "length"), ("five", "stop"), ("one two three four", "stop"),
    ]  # fmt: skip
    (scores,) = backend.score_choices([ChoiceRequest("Q", (" a", " b", " c"))])
    assert scores.logprobs == (-1.0, UNLISTED_CHOICE, UNLISTED_CHOICE)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("replies: [ok]\ntemprature: 0.7\n", "line 2 [temprature]: unknown field 'temprature'"),
        ("choices:\n  - [-1.0, -2.0]\n  - [-1.0, high]\n", "line 3 [choices.1.1]: 'high' is not of type 'number'"),
        ("replies:\n  - ok\n  - {eror: x}\n", "line 3 [replies.1]"),
        ("replies: [ok\n", "not valid YAML"),
        ("parameters: -5\n", "[parameters]: -5 is less than the minimum of 1"),
    ],
)
def test_a_bad_script_names_the_file_line_and_field(tmp_path: Path, script: str, expected: str) -> None:
    suite, model = write(tmp_path, script)
    with pytest.raises(ModelError) as raised:
        load_backend(models.resolve(model))
    assert str(tmp_path / "small.yaml") in raised.value.message and expected in raised.value.message
    done = CliRunner().invoke(app, ["assess", "--tasks", str(suite), "--model", model, "--out", str(tmp_path / "o")])
    assert expected in said(done)  # the model fails alone, with the same message, and the run ends normally


def test_a_missing_script_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="scripted model .*nothing.yaml"):
        models.resolve(f"{tmp_path / 'nothing.yaml'}@scripted")


def test_each_stored_result_is_graded_once_per_assess_by_the_grading_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from poccheck.grading import stage
    from poccheck.store import Store

    calls: list[str] = []
    real = stage.grade_output

    def counted(item: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(item.id)
        return real(item, *args, **kwargs)

    added: list[Any] = []
    add_result = Store.add_result
    monkeypatch.setattr(stage, "grade_output", counted)
    monkeypatch.setattr(
        Store, "add_result", lambda self, run_id, row: (added.append(row), add_result(self, run_id, row))
    )
    suite, model = write(tmp_path)
    pipeline.assess(RunConfig([suite], [model], tmp_path / "poc"))
    assert sorted(calls) == ["g1", "g2", "m1", "m2"]  # once each; g3 failed and has no grade
    assert [r.correct for r in added] == [None] * 5  # the runner stores outputs, ungraded
    assert rows(tmp_path / "poc")["g1"] == (1, None)  # the stage saved the grades
