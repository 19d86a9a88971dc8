from __future__ import annotations

import json
import math
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poccheck.grading import grade_choices, grade_text, matchers
from poccheck.grading.matchers import extract_json, first_number, json_spans, match_exact, match_json, match_numeric
from poccheck.i18n import Message
from poccheck.records import TaskItem


def item(type_: str, answer, **kw) -> TaskItem:
    return TaskItem(id="i", input="x", type=type_, answer=answer, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("output", "answer", "ok"),
    [
        (" REJECT.\nBecause rule 2", "reject", True),
        ("\n\nAccept", "ACCEPT", True),
        ("ＲＥＪＥＣＴ", "reject", True),
        ("合格。", "合格", True),
        ("REJECTED", "reject", False),
        ("", "x", False),
    ],
)
def test_exact(output: str, answer: str, ok: bool) -> None:
    assert match_exact(output, answer)[0] is ok


def test_contains_and_regex() -> None:
    assert grade_text(item("contains", "Spindle"), "the SPINDLE bearing").correct
    assert not grade_text(item("contains", "coolant"), "spindle").correct
    assert grade_text(item("regex", r"\bL[1-3]\b"), "line L2 stopped").correct
    assert not grade_text(item("regex", r"^\d+$"), "12 units").correct


@pytest.mark.parametrize(
    ("text", "number"),
    [("It is 1,234.5 units", 1234.5), ("−3 degrees", -3.0), ("１２個", 12.0), ("about .5", 0.5), ("none", None)],
)
def test_first_number(text: str, number: float | None) -> None:
    assert first_number(text) == number


def test_numeric_tolerance() -> None:
    assert match_numeric("96.4%", "96", 0.5)[0]
    assert not match_numeric("96.6%", "96", 0.5)[0]
    assert match_numeric("= 0.30000000000000004", "0.3", None)[0]
    assert match_numeric("no digits", "1", None) == (False, Message.of("grade.no_number"))


def test_json_extraction_and_comparison() -> None:
    assert extract_json('Sure: {"a": {"b": [1, 2]}} done') == {"a": {"b": [1, 2]}}
    with pytest.raises(ValueError):
        extract_json("{broken")
    ok, _ = match_json('{"part_no": "kp-4410", "qty": 85, "extra": 1}', {"part_no": "KP-4410", "qty": "85"}, None)
    assert ok
    ok, detail = match_json('{"part_no": "KP-4411"}', {"part_no": "KP-4410", "qty": 1}, None)
    assert not ok and detail is not None and "part_no" in str(detail) and "qty" in str(detail)
    schema = {"type": "object", "properties": {"qty": {"type": "integer"}}, "required": ["qty"]}
    assert match_json('{"qty": 1200}', None, schema)[0]
    ok, detail = match_json('{"qty": "1200"}', None, schema)
    assert not ok and detail is not None and detail.key == "grade.schema"
    assert match_json("true", {"a": 1}, None)[0] is False


def test_json_a_model_writes_is_standard_json_with_numbers_a_double_holds() -> None:
    assert extract_json('x [{"a": 5}, {"b": 2}') == {"a": 5}  # an array cut off: its first whole object
    assert extract_json('{"n": NaN} {"n": Infinity} {"n": 1e999} {"n": 1' + "0" * 400 + '} {"n": 2}') == {"n": 2}
    assert extract_json('{"n": 1' + "0" * 300 + "}") == {"n": 10**300}
    with pytest.raises(ValueError):
        extract_json('{"n": ' + "1" * 5000 + "}")  # past the int-to-str digit limit: not a usable value either
    assert match_json('{"n": 1' + "0" * 300 + "}", {"n": 1e300}, None)[0]
    assert not match_json('{"n": 1e300}', {"n": 10**400}, None)[0]  # an int beyond floats is close to no float
    assert match_json('{"n": 10}', {"n": 10**400}, None)[1] == Message.of("grade.wrong_keys", keys="n")
    tags = {"properties": {"tags": {"uniqueItems": True}}}
    deep = "[" * 900 + "]" * 900
    assert match_json('{"tags": [' + deep + ", " + deep + "]}", None, tags) == (False, Message.of("grade.too_deep"))


def test_json_is_found_in_linear_time_however_a_model_repeats_brackets(monkeypatch: pytest.MonkeyPatch) -> None:
    tries: list[int] = []
    decode = matchers._DECODER.raw_decode

    def counted(text: str, index: int) -> tuple[object, int]:
        tries.append(index)
        return decode(text, index)

    monkeypatch.setattr(matchers._DECODER, "raw_decode", counted)
    limit = sys.getrecursionlimit()
    for runaway in ("[" * 10_000, "[1," * 3_333, '{"a":' * 2_000, '{"a":[' * 1_500 + "}", "[1," * 3_333 + "]"):
        with pytest.raises(ValueError):
            extract_json(runaway)
        assert not tries, runaway[:10]  # no whole value: the decoder is never tried
    assert extract_json("[" * 10_000 + "]") == [] and len(tries) <= limit  # only values it can nest, and few
    tries.clear()
    assert extract_json("[" * 5_000 + "]" * 5_000) is not None and len(tries) <= limit


JSON_PIECES = [*' []{}"\\,:01-.eE+utrnlfax\n\x01', "\\u00e9", "\\ud800", "\\uZZ", "null", '"a"', "[1,"]


@settings(derandomize=True, database=None, deadline=None, max_examples=400)
@given(st.lists(st.sampled_from(JSON_PIECES), max_size=25).map("".join))
def test_json_spans_read_every_position_as_the_decoder_does(text: str) -> None:
    end, depth = json_spans(text)
    for index in range(len(text)):
        try:
            value, stop = json.JSONDecoder().raw_decode(text, index)
        except json.JSONDecodeError:
            assert end[index] == -1, (text, index)
        else:
            assert (end[index], depth[index]) == (stop, nesting(value)), (text, index)


def nesting(value: object) -> int:
    if isinstance(value, dict):
        value = list(value.values())
    return 1 + max(map(nesting, value), default=0) if isinstance(value, list) else 0


def test_multiple_choice_grade_margin_and_length_norm() -> None:
    mc = item("multiple_choice", 1, choices=("a", "a much longer choice"))
    grade = grade_choices(mc, [-2.0, -6.0])
    assert not grade.correct and grade.prediction == "A. a"
    assert math.isclose(grade.margin or 0, 4.0)
    assert grade.correct_norm  # -6/20 > -2/1
    with pytest.raises(ValueError):
        grade_choices(mc, [-1.0])


def test_generation_grader_rejects_mc_items() -> None:
    with pytest.raises(ValueError):
        grade_text(item("multiple_choice", 0, choices=("a", "b")), "a")


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Sam has 3 and 4. So the answer is 7.", "7"),
        ("First the answer is 2. Wait. The answer is (B).", "(B)"),
        ("計算すると12個になる。答えは12個です。", "12個"),
        ("答えは「合格」。", "合格"),
        ("So the correct answer is REWORK.", "REWORK"),
        ("Therefore, the final answer is: 42", "42"),
        ("正解は「再加工」です。", "再加工"),
        ("I am not sure.", None),
    ],
)
def test_answer_extraction(text: str, answer: str | None) -> None:
    from poccheck.grading.grade import extract_answer

    assert extract_answer(text) == answer


def test_cot_grading_counts_unparseable_answers_apart() -> None:
    from poccheck.grading.grade import choice_from_text, grade_output

    mc = item("multiple_choice", 1, choices=("red", "blue", "green"))
    assert grade_output(mc, "Sky is blue. So the answer is (B).", None, "cot").correct
    assert grade_output(mc, "So the answer is blue.", None, "cot").correct
    missing = grade_output(mc, "Hmm, maybe", None, "cot")
    assert not missing.correct and not missing.answered
    numeric = item("numeric", "12")
    assert grade_output(numeric, "10 + 2. So the answer is 12.", None, "cot").correct
    assert not grade_output(numeric, "10 + 2 = 12", None, "cot").answered
    assert grade_output(numeric, "result: 12", None, "cot", r"result: (\d+)").correct
    assert choice_from_text("c)", ("a", "b", "c")) == 2 and choice_from_text("purple", ("a", "b")) is None
