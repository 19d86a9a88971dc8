"""Task files: every format loads, and every kind of bad input is reported with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from openpyxl import Workbook

from poccheck.errors import Problem, TaskFileError
from poccheck.pipeline import validate
from poccheck.tasks import load_suite

from .conftest import EXAMPLES

CSV_HEADER = "id,input,type,choices,answer,category\n"


def problems_of(path: Path) -> list[Problem]:
    problems = validate([path]).problems
    return problems


def only_problem(path: Path) -> Problem:
    problems = problems_of(path)
    assert len(problems) == 1, problems
    return problems[0]


# ---------------------------------------------------------------- formats


def test_examples_load_and_are_big_enough() -> None:
    check = validate([EXAMPLES / "factory_suite.yaml", EXAMPLES / "factory_tasks.csv"])
    suites, problems = check.suites, check.problems
    assert problems == []
    items = [i for s in suites for i in s.items]
    assert len(items) >= 40
    assert {i.type for i in items} == {"multiple_choice", "exact", "contains", "regex", "numeric", "json"}
    assert any(any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in i.input) for i in items)


def test_csv_contract(write) -> None:
    path = write(
        "t.csv",
        CSV_HEADER + 'q1,"Which?",multiple_choice,red|green|blue,B,colours\n'
        "q2,What is 2+2?,numeric,,4,math\n"
        'q3,"Say ""hi""",exact,,hi,\n',
    )
    suite = load_suite(path)
    assert [i.id for i in suite.items] == ["q1", "q2", "q3"]
    q1 = suite.items[0]
    assert q1.choices == ("red", "green", "blue") and q1.answer == 1 and q1.category == "colours"
    assert suite.items[1].answer == "4" and suite.items[2].input == 'Say "hi"'
    assert suite.items[2].category == "general"
    assert suite.name == "t"


def test_csv_answer_by_choice_text_and_extra_columns_become_metadata(write) -> None:
    path = write("t.csv", CSV_HEADER.strip() + ",line,shift\nq1,Pick,multiple_choice,a cat|a dog,a dog,x,L2,night\n")
    item = load_suite(path).items[0]
    assert item.answer == 1
    assert item.metadata == {"line": "L2", "shift": "night"}


@pytest.mark.parametrize(("answer", "index"), [("(B)", 1), ("(A)", 0), ("B", 1), ("A", 0)])
def test_a_letter_in_parentheses_names_a_choice_whose_texts_are_letters(write, answer: str, index: int) -> None:
    choices = "A|B" if answer in {"A", "B"} else "B|A"  # A|B: text and letter agree, so no ambiguity
    path = write("t.csv", CSV_HEADER + f"q1,Pick,multiple_choice,{choices},{answer},x\n")
    assert load_suite(path).items[0].answer == index


def test_jsonl_and_question_alias(write) -> None:
    path = write(
        "t.jsonl",
        '{"id": "a", "question": "Q?", "choices": ["x", "y"], "answer": "A"}\n\n'
        '{"id": "b", "input": "Spec", "type": "json", "answer": {"k": 1}}\n',
    )
    suite = load_suite(path)
    assert suite.items[0].type == "multiple_choice" and suite.items[0].answer == 0
    assert suite.items[1].answer == {"k": 1}


def test_yaml_suite_settings(write) -> None:
    path = write(
        "s.yaml",
        "name: demo\nmax_tokens: 12\nstop: ['END']\n"
        "prompt_template: 'Task: {{ input }}\\nAnswer:'\n"
        "fewshot:\n  - {input: 'one', answer: '1'}\n"
        "items:\n"
        "  - {id: n1, input: 'Two?', type: numeric, answer: 2, tolerance: 0.5}\n"
        "  - id: j1\n    input: Make JSON\n    type: json\n    schema: {type: object, required: [a]}\n",
    )
    suite = load_suite(path)
    assert suite.name == "demo" and suite.max_tokens == 12 and suite.stop == ("END",)
    assert suite.fewshot[0].answer == "1"
    assert suite.items[0].tolerance == 0.5
    assert suite.items[1].schema == {"type": "object", "required": ["a"]} and suite.items[1].answer is None


def test_yaml_include_csv(write) -> None:
    write("items.csv", CSV_HEADER + "c1,Hello,contains,,hell,greet\n")
    path = write("s.yaml", "name: inc\ninclude: [items.csv]\nitems:\n  - {id: y1, input: A, type: exact, answer: B}\n")
    assert [i.id for i in load_suite(path).items] == ["y1", "c1"]


def test_xlsx(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    sheet.append(["id", "input", "type", "choices", "answer", "category", "plant"])
    sheet.append(["x1", "Pick one", "multiple_choice", "up|down", "down", "dir", "Osaka"])
    sheet.append([7, "How many?", "numeric", None, 3, "math", None])
    path = tmp_path / "t.xlsx"
    book.save(path)
    suite = load_suite(path)
    assert suite.items[0].answer == 1 and suite.items[0].metadata == {"plant": "Osaka"}
    assert suite.items[1].id == "7" and suite.items[1].answer == "3"


def test_xlsx_error_names_sheet_and_row(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    sheet.title = "Sheet1"
    sheet.append(["id", "input", "type", "answer"])
    sheet.append(["a", "fine", "exact", "x"])
    sheet.append(["b", "no answer", "exact", None])
    path = tmp_path / "t.xlsx"
    book.save(path)
    problem = only_problem(path)
    assert problem.file.endswith("t.xlsx[Sheet1]") and problem.line == 3 and problem.field == "answer"


# ---------------------------------------------------------------- encodings


def test_shift_jis_csv_is_read(write) -> None:
    text = CSV_HEADER + "j1,不良品は何個ですか？,numeric,,12,品質\n"
    suite = load_suite(write("sjis.csv", text.encode("cp932")))
    assert suite.items[0].input == "不良品は何個ですか？" and suite.items[0].category == "品質"


def test_utf8_bom_and_utf16_csv_are_read(write) -> None:
    text = CSV_HEADER + "j1,検査,exact,,合格,品質\n"
    assert load_suite(write("bom.csv", b"\xef\xbb\xbf" + text.encode())).items[0].id == "j1"
    assert load_suite(write("u16.csv", text.encode("utf-16"))).items[0].answer == "合格"


def test_wrong_encoding(write) -> None:
    data = (CSV_HEADER + "a,ok,exact,,x,c\n").encode() + b"b,\x80\x81\xff\xfe,exact,,y,c\n"
    problem = only_problem(write("bad.csv", data))
    assert "wrong encoding" in problem.message and problem.line == 3


# ---------------------------------------------------------------- each bad case


@pytest.mark.parametrize(
    ("row", "field", "needle"),
    [
        ("q1,Pick,multiple_choice,a|b,,c", "answer", "missing answer"),
        ("q1,Pick,multiple_choice,a|b,E,c", "answer", "not among the choices"),
        ("q1,Pick,multiple_choice,a|b,c,c", "answer", "not among the choices"),
        ("q1,Pick,multiple_choice,B|A,A,c", "answer", "the text of choice B and the letter of choice A"),
        ("q1,Pick,multiple_choice,b|a,a,c", "answer", "write the letter in parentheses, e.g. (B)"),
        ("q1,Pick,multipel_choice,a|b,A,c", "type", "did you mean 'multiple_choice'"),
        ("q1,Pick,regex,,([a-z,c", "answer", "bad regex"),
        ("q1,Pick,numeric,,twelve,c", "answer", "not a number"),
        ("q1,Pick,json,,{not json},c", "answer", "does not parse"),
        ("q1,,exact,,x,c", "input", "missing input"),
        (",Pick,exact,,x,c", "id", "missing id"),
        ("q1,Pick,multiple_choice,a||b,A,c", "choices", "empty"),
        ("q1,Pick,multiple_choice,x|x|b,x,c", "answer", "the text of 2 choices; give the letter"),
        ("q1,Pick,,,x,c", "type", "missing type"),
    ],
)
def test_bad_rows(write, row: str, field: str, needle: str) -> None:
    problem = only_problem(write("t.csv", CSV_HEADER + "ok,Fine,exact,,x,c\n" + row + "\n"))
    assert (problem.line, problem.field) == (3, field)
    assert needle in problem.message
    assert problem.file.endswith("t.csv")


def test_a_choice_written_twice_loads_when_the_answer_is_a_letter(write) -> None:
    # CommonsenseQA's validation set has such items; the letter says which choice is meant
    suite = load_suite(write("t.csv", CSV_HEADER + "q1,Pick,multiple_choice,x|x|b,(B),c\n"))
    assert suite.items[0].choices == ("x", "x", "b") and suite.items[0].answer == 1


def test_duplicate_id_names_both_lines(write) -> None:
    problem = only_problem(write("t.csv", CSV_HEADER + "a,x,exact,,1,c\nb,y,exact,,2,c\na,z,exact,,3,c\n"))
    assert problem.line == 4 and problem.field == "id" and "t.csv:2" in problem.message


def test_invalid_schema(write) -> None:
    path = write("t.yaml", "items:\n  - id: s\n    input: x\n    type: json\n    schema: {type: 12}\n")
    problem = only_problem(path)
    assert problem.line == 5 and problem.field == "schema" and "invalid JSON Schema" in problem.message


@pytest.mark.parametrize("name", ["e.csv", "e.yaml", "e.jsonl"])
def test_empty_file(write, name: str) -> None:
    assert "empty" in only_problem(write(name, "\n  \n")).message


def test_header_only_csv(write) -> None:
    assert "no items" in only_problem(write("h.csv", CSV_HEADER)).message


def test_yaml_errors_have_lines(write) -> None:
    problem = only_problem(write("b.yaml", "items:\n  - id: a\n    input: [unclosed\n"))
    assert problem.line is not None and "invalid YAML" in problem.message
    problems = problems_of(write("k.yaml", "nmae: x\nitems:\n  - {id: a, input: b, type: exact, answer: c, id: d}\n"))
    assert {(p.line, p.field) for p in problems} == {(1, "nmae"), (3, "id")}
    assert "did you mean 'name'" in problems[0].message or "did you mean 'name'" in problems[1].message


def test_bad_template_and_settings(write) -> None:
    path = write(
        "t.yaml",
        "prompt_template: '{{ input '\nmax_tokens: 0\nstop: 5\nitems:\n  - {id: a, input: b, type: exact, answer: c}\n",
    )
    fields = {p.field: p for p in problems_of(path)}
    assert set(fields) == {"prompt_template", "max_tokens", "stop"}
    assert fields["prompt_template"].line == 1


def test_template_with_unknown_variable(write) -> None:
    path = write("t.yaml", "prompt_template: '{{ qestion }}'\nitems:\n  - {id: a, input: b, type: exact, answer: c}\n")
    assert "qestion" in only_problem(path).message


def test_jsonl_bad_line(write) -> None:
    problem = only_problem(write("t.jsonl", '{"id": "a", "input": "b", "type": "exact", "answer": "c"}\n{oops\n'))
    assert problem.line == 2 and "invalid JSON" in problem.message


def test_every_problem_is_reported_at_once(write) -> None:
    rows = "a,,exact,,1,c\nb,y,bogus,,2,c\nc,z,regex,,(,c\n"
    assert len(problems_of(write("t.csv", CSV_HEADER + rows))) == 3


def test_load_suite_raises_with_all_problems(write) -> None:
    with pytest.raises(TaskFileError) as caught:
        load_suite(write("t.csv", CSV_HEADER + "a,,exact,,1,c\nb,y,bogus,,2,c\n"))
    assert len(caught.value.problems) == 2
    assert "t.csv:2 [input]" in str(caught.value)


def test_missing_and_unsupported_files(tmp_path: Path) -> None:
    assert "not found" in only_problem(tmp_path / "nope.csv").message
    (tmp_path / "x.txt").write_text("hi")
    assert "unsupported" in only_problem(tmp_path / "x.txt").message
