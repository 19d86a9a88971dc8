"""Whatever a model writes, the report renders (issue #14, item 5).

Numbers of any size written as text (an int of 10,000 digits, ``1e999``, ``NaN``, ``-0``), control characters, NUL
bytes, lone surrogates, 10,000-character runs, broken JSON, HTML and script go through every grader (each item
type, each prompting mode), then through ``assess`` as a model's replies (stored, re-graded, analysed) and into the
report in English and Japanese: no exception, every reply stored, and every reply shown as inert text.

The model is a scripted backend behind the real runner, so nothing is loaded. Run time: about 20 s on 2 cores.
"""

from __future__ import annotations

import contextlib
import functools
import html
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from poccheck import pipeline, runner
from poccheck.analysis.summary import Findings
from poccheck.backends import ChoiceRequest, GenerationRequest
from poccheck.cli import app
from poccheck.config.run import RunConfig
from poccheck.grading.grade import grade_output
from poccheck.i18n import LANGUAGES, Translator
from poccheck.probe.generate import probe_suite
from poccheck.records import ITEM_TYPES, MODES, ChoiceScores, Completion, ModelInfo, Suite
from poccheck.report.render import report_file
from poccheck.store import DB_NAME
from poccheck.tasks import load_suite

from .test_hostile_text import HOSTILE, Page, assert_inert, parse
from .test_loader_properties import PROFILE, fresh_path

# What SmolLM2 answered to a numeric item, which stopped the report with decimal.InvalidOperation in Babel.
SMOLLM2_ANSWER = "1,200,000,000,000,000,000,000,000,000,000,000,000,000,000,000,0"


def every_item_type() -> dict[str, Any]:
    """A suite with an item of every type the task format has, each grader's options included."""
    proofs = [probe_suite(["implication_elimination"], [2], 1, lang)["items"][0] for lang in ("en", "ja")]
    for proof, lang in zip(proofs, ("en", "ja"), strict=True):
        proof["id"] = f"proof-{lang}"
    return {
        "name": "every type",
        "items": [
            {"id": "mc", "input": "Which way?", "choices": ["left", "right"], "answer": "A"},
            {"id": "exact", "type": "exact", "input": "Capital of Japan?", "answer": "Tokyo"},
            {"id": "contains", "type": "contains", "input": "Name a city.", "answer": "Tokyo"},
            {"id": "regex", "type": "regex", "input": "A number?", "answer": r"^\s*-?\d+(?:\.\d+)?\s*$"},
            {"id": "numeric", "type": "numeric", "input": "6 x 7?", "answer": "42"},
            {"id": "numeric-tol", "type": "numeric", "input": "About?", "answer": "1,234.5", "tolerance": 0.5},
            {"id": "numeric-tiny", "type": "numeric", "input": "Small?", "answer": "0.0001"},
            {"id": "json", "type": "json", "input": "Order?", "answer": {"total": 5, "items": ["a"], "ok": True}},
            {
                "id": "json-schema",
                "type": "json",
                "input": "Tags?",
                "schema": {
                    "type": "object",
                    "required": ["n"],
                    "properties": {
                        "n": {"type": "number", "multipleOf": 0.5, "maximum": 1e300},
                        "tags": {"type": "array", "uniqueItems": True},
                        "kind": {"enum": [[1, 2], "x"]},
                    },
                },
            },
            {"id": "json-both", "type": "json", "input": "Both?", "answer": {"n": 10}, "schema": {"type": "object"}},
            *proofs,
        ],
    }


@functools.cache
def suite_file() -> Path:
    path = fresh_path(".yaml")
    path.write_text(yaml.safe_dump(every_item_type(), allow_unicode=True), encoding="utf-8")
    return path


@functools.cache
def suite() -> Suite:
    loaded = load_suite(suite_file())
    assert {item.type for item in loaded.items} == set(ITEM_TYPES)  # a new item type must join this suite
    return loaded


# ---------------------------------------------------------------- what a model may write

DIGIT_RUN = st.tuples(st.sampled_from("123456789"), st.integers(0, 10_000)).map(lambda t: t[0] + "0" * t[1])
NUMBER_TEXT = st.one_of(
    st.floats().map(repr),  # nan, inf, -0.0, 5e-324, 1.7976931348623157e+308
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:,.3f}"),
    st.integers(-(10**40), 10**40).map(lambda n: f"{n:,}"),
    DIGIT_RUN,  # up to 10,001 digits: past float range and the int-to-str digit limit
    st.integers(0, 2500).map(lambda n: "1,2" + "00,0" * n),  # the SmolLM2 reply, longer
    st.sampled_from(
        ["NaN", "-nan", "Infinity", "-Infinity", "inf", "1e999", "-1e999", "1e-999", "0e0", "-0", "−5", "１２３",
         "٣٫٥", "1e", ".5", "5.", "1_000", "0x1F", "1" * 5000 + "e-5000", "9" * 400 + ".5"]
    ),
)  # fmt: skip
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
JSON_TEXT = st.one_of(
    JSON_VALUE.map(json.dumps),  # with NaN and Infinity, which are not JSON
    st.tuples(JSON_VALUE.map(json.dumps), st.integers(0, 40)).map(lambda t: t[0][: t[1]]),  # cut off
    st.sampled_from(
        ['{"total": 5, "items": ["a"], "ok": true}', '{"n": 1e999}', '{"n": ' + "1" * 5000 + "}",
         '{"n": 1' + "0" * 400 + "}", '{"n": NaN, "tags": [1, 1]}', '{"n": 0.5, "kind": [1, 2]}',
         "[" * 990 + "]" * 990, '{"n": 1, "tags": [' + "[" * 980 + "]" * 980 + ", []]}",
         '{"total": 5, "items": ["a"], "ok": true', '{"a": "\\ud800"}', "{'single': 'quotes'}"]
    ),
)  # fmt: skip
RUN = st.sampled_from(
    ["a", "[", "{", '{"a":', "[1,", "1,", "<b>", "\x00", "か", "であり、", "すべての", "は", "assume ", "Suppose that ",
     "the answer is ", "答えは", " ", "\n", ".", "é", "\ud800", "9", "-", "e", "\\", '"']
).map(lambda piece: (piece * (10_000 // len(piece) + 1))[:10_000])  # fmt: skip
CONTROL = st.text(st.characters(max_codepoint=0x1F) | st.sampled_from(["\x7f", "\x85", "\u2028", "\ufeff", "\u202e"]))
SURROGATES = st.lists(st.integers(0xD800, 0xDFFF).map(chr) | st.sampled_from("ab😀"), max_size=6).map("".join)
PIECE = st.one_of(
    NUMBER_TEXT, JSON_TEXT, CONTROL, SURROGATES, st.sampled_from(HOSTILE), st.text(max_size=30),
    st.sampled_from(["Tokyo", "A", "(B)", "b)", "right", "42", "1,234.7", "Sam is a wumpus."]),
)  # fmt: skip
MODEL_OUTPUT = st.one_of(
    RUN,
    st.tuples(st.sampled_from(["", "The answer is ", "答えは", "\n\n"]), st.lists(PIECE, min_size=1, max_size=3)).map(
        lambda t: t[0] + " ".join(t[1])
    ),
)
LOGPROB = st.floats() | st.sampled_from([0.0, -1e-300, -1e300])  # what an engine may report, NaN and ±inf too

# outputs each test below starts with, whatever hypothesis then draws
HOSTILE_OUTPUTS = [
    SMOLLM2_ANSWER,
    "1" * 10_000,
    "The answer is 1e999.",
    "NaN",
    "assume " * 1500 + "Sam is a wumpus.",
    "ボブは" + "か" * 10_000,
    "[" * 10_000,
    '{"n": 0.5, "tags": [' + "[" * 900 + "]" * 900 + ", []]}",
    '</td></tr></table><script>alert("x")</script>\x00\ud800',
]


# ---------------------------------------------------------------- every grader


@settings(PROFILE, max_examples=150)
@given(text=MODEL_OUTPUT, logprobs=st.lists(LOGPROB, min_size=2, max_size=2))
@example(text=SMOLLM2_ANSWER, logprobs=[-1.0, -2.0])
@example(text="[" * 10_000, logprobs=[float("nan"), float("-inf")])
@example(text="assume " * 1500 + "Sam is a wumpus.", logprobs=[float("inf"), float("-inf")])
@example(text='{"n": 0.5, "tags": [' + "[" * 900 + "]" * 900 + ", []]}", logprobs=[0.0, 0.0])
def test_every_grader_takes_any_output_and_explains_it_in_both_languages(text: str, logprobs: list[float]) -> None:
    for item in suite().items:
        for mode in MODES:
            scores = logprobs if item.is_multiple_choice and mode != "cot" else None
            grade = grade_output(item, text, scores, mode, suite().answer_pattern)
            assert isinstance(grade.correct, bool) and isinstance(grade.prediction, str)
            if grade.detail is None:
                continue
            for language in LANGUAGES:
                t = Translator(language)
                shown = t.text(grade.detail, html=True)
                assert "<" not in shown and html.unescape(shown) == t.text(grade.detail), (item.id, mode)


def test_the_smollm2_answer_is_graded_as_the_number_it_spells() -> None:
    item = next(i for i in suite().items if i.id == "numeric")
    grade = grade_output(item, SMOLLM2_ANSWER, None)
    assert not grade.correct and grade.detail is not None
    assert Translator("en").text(grade.detail) == "expected 42, got 1.2E46"
    assert Translator("ja").text(grade.detail) == "正解は 42、回答は 1.2E46"


# ---------------------------------------------------------------- stored, analysed and shown


class Scripted:
    """A backend whose replies are given: generation ``n`` returns ``outputs[n % len(outputs)]``."""

    choice_batch = 1

    def __init__(self, info: ModelInfo, outputs: Sequence[str], logprobs: Sequence[float], mean_logprob: float) -> None:
        self.info = info
        self.outputs = list(outputs)
        self.logprobs = list(logprobs)
        self.mean_logprob = mean_logprob
        self.generated = 0

    def score_choices(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceScores]:
        return [
            ChoiceScores(tuple(self.logprobs[: len(r.continuations)]), (1,) * len(r.continuations), 12, 0.01)
            for r in requests
        ]

    def generate(self, request: GenerationRequest) -> Completion:
        text = self.outputs[self.generated % len(self.outputs)]
        self.generated += 1
        return Completion(text, 12, 64, 0.25, 0.05, "length", self.mean_logprob)

    def settings(self) -> dict[str, object]:
        return {"scripted": True}

    def peak_vram(self) -> int | None:
        return None

    def close(self) -> None:
        pass


@contextlib.contextmanager
def scripted_model(
    outputs: Sequence[str], logprobs: Sequence[float] = (-1.0, -2.0), mean_logprob: float = -0.5
) -> Iterator[str]:
    """The model spec ``scripted`` for ``assess``: resolved, loaded and run by the real runner, replying ``outputs``."""
    info = ModelInfo(
        name="scripted", backend="llama.cpp", path="/models/scripted.gguf", fingerprint="fp-scripted",
        parameters=135_000_000, quantization="Q8_0", file_size=145_000_000, context_length=2048,
        architecture="llama", family="smollm2", layers=30, kv_heads=3, head_dim=64,
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner.models, "resolve", lambda spec, endpoints=(), check=None: info)
        patch.setattr(runner.models, "check_memory", lambda info, context_tokens: None)
        patch.setattr(runner, "load_backend", lambda info, options: Scripted(info, outputs, logprobs, mean_logprob))
        yield info.name


def assess(
    out: Path, outputs: Sequence[str], logprobs: Sequence[float] = (-1.0, -2.0), mean: float = -0.5
) -> pipeline.AssessResult:
    with scripted_model(outputs, logprobs, mean) as model:
        result = pipeline.assess(RunConfig([suite_file()], [model], out, modes=MODES))
    (outcome,) = result.outcome.models
    assert outcome.error is None, outcome.error  # a reply the store cannot hold would fail the model here
    with contextlib.closing(sqlite3.connect(out / DB_NAME)) as db:
        stored = db.execute("SELECT COUNT(*) FROM results WHERE error IS NULL").fetchone()[0]
    assert stored == outcome.done == len(suite().items) * len(MODES)  # every reply stored
    return result


def text_of(page: Page) -> str:
    return "".join(page.text)


def check_pages(out: Path, findings: Findings, primary: str = "en") -> None:
    """Both pages render every wrong answer and why it is wrong as inert text."""
    for language in LANGUAGES:
        page, raw = parse(out / report_file(language, primary=language == primary))
        assert_inert(page)
        assert f'<html lang="{language}">' in raw
        shown = text_of(page)
        t = Translator(language)
        for model in findings.models:
            for row in model.failures:
                assert row.grade is not None
                assert row.grade.prediction in shown, (language, row.item.id, row.grade.prediction[:80])
                if row.grade.detail is not None:
                    assert t.text(row.grade.detail) in shown, (language, row.item.id)


@settings(PROFILE, max_examples=6)
@given(
    outputs=st.lists(MODEL_OUTPUT, min_size=1, max_size=3),
    logprobs=st.lists(LOGPROB, min_size=2, max_size=2),
    mean=LOGPROB,
)
@example(outputs=HOSTILE_OUTPUTS, logprobs=[float("-inf"), float("-inf")], mean=float("nan"))
def test_any_replies_are_stored_graded_and_shown_escaped_in_both_languages(
    outputs: list[str], logprobs: list[float], mean: float
) -> None:
    out = fresh_path("").with_name("poc")  # in a folder of its own
    result = assess(out, outputs, logprobs, mean)
    check_pages(out, result.findings)


def test_poccheck_report_renders_the_huge_number_smollm2_wrote(tmp_path: Path) -> None:
    """The reported failure: the results were stored, then the report stopped on the grading detail of this reply;
    ``poccheck report`` on the same folder stopped the same way."""
    out = tmp_path / "poc"
    findings = assess(out, [SMOLLM2_ANSWER]).findings
    expected = {"en": "expected 42, got 1.2E46", "ja": "正解は 42、回答は 1.2E46"}
    for lang in LANGUAGES:
        done = CliRunner().invoke(app, ["report", str(out), "--lang", lang])
        assert done.exit_code == 0, done.output + repr(done.exception)
        check_pages(out, findings, primary=lang)
        assert expected[lang] in text_of(parse(out / "report.html")[0])
