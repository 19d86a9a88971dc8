"""Headers of task tables as Japanese offices make them: Japanese column names, a suite's own names (``columns:``),
a title above the header, and one clear problem for a header that lacks required columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from typer.testing import CliRunner

from poccheck.cli import app
from poccheck.errors import Problem
from poccheck.pipeline import validate
from poccheck.tasks import load_suite
from poccheck.tasks.columns import COLUMN_NAMES

JA_HEADER = "問題ID,問題,種類,選択肢,正解,カテゴリ\n"
JA_ROWS = "j1,不良品は何個ですか？,numeric,,12,品質\nj2,どの処置ですか？,multiple_choice,合格|手直し|廃棄,B,検査\n"
TITLE = "評価用問題集（2026年度）"


def problems_of(*paths: Path) -> list[Problem]:
    problems = validate(list(paths)).problems
    return problems


def workbook(path: Path, rows: list[list[Any]], title: str = "Sheet1") -> Path:
    book = Workbook()
    sheet = book.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def check_japanese_items(path: Path) -> None:
    suite = load_suite(path)
    numeric, choice = suite.items
    assert (numeric.id, numeric.input, numeric.type, numeric.answer, numeric.category) == (
        "j1",
        "不良品は何個ですか？",
        "numeric",
        "12",
        "品質",
    )
    assert choice.type == "multiple_choice" and choice.choices == ("合格", "手直し", "廃棄") and choice.answer == 1
    assert choice.category == "検査" and numeric.metadata == {} and choice.metadata == {}


# ---------------------------------------------------------------- Japanese header names


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp932"])
def test_japanese_header_csv_loads(write, encoding: str) -> None:
    check_japanese_items(write("ja.csv", (JA_HEADER + JA_ROWS).encode(encoding)))


def test_japanese_header_workbook_loads(tmp_path: Path) -> None:
    rows = [line.split(",") for line in (JA_HEADER + JA_ROWS).splitlines()]
    check_japanese_items(workbook(tmp_path / "ja.xlsx", [[cell or None for cell in row] for row in rows]))


# The names offices use for each standard column (all of them in COLUMN_NAMES, which the README lists).
JAPANESE_NAMES = {
    "id": ["問題ID", "ID", "番号", "設問ID", "問題番号"],
    "input": ["問題", "問題文", "質問", "入力", "設問"],
    "type": ["種類", "形式", "問題形式", "タイプ"],
    "choices": ["選択肢"],
    "answer": ["正解", "答え", "解答", "模範解答"],
    "category": ["カテゴリ", "カテゴリー", "分類", "区分"],
    "tolerance": ["許容誤差"],
}
STANDARD_HEADER = ["id", "input", "type", "choices", "answer", "category", "tolerance"]
ROW = ["n1", "何個？", "numeric", "", "12", "品質", "0.5"]


@pytest.mark.parametrize(
    ("column", "name"), [(column, name) for column, names in JAPANESE_NAMES.items() for name in names]
)
def test_each_japanese_name_reads_as_its_column(write, column: str, name: str) -> None:
    assert name.lower() == column or name in COLUMN_NAMES[column]
    header = [name if c == column else c for c in STANDARD_HEADER]
    item = load_suite(write("t.csv", ",".join(header) + "\n" + ",".join(ROW) + "\n")).items[0]
    assert (item.id, item.input, item.type, item.answer, item.category, item.tolerance) == (
        "n1",
        "何個？",
        "numeric",
        "12",
        "品質",
        0.5,
    )
    assert item.metadata == {}


def test_header_names_ignore_width_case_and_spaces(write) -> None:
    path = write("t.csv", "ＩＤ,Input, 問題 形式 ,ｶﾃｺﾞﾘ,Answer\nw1,幅,exact,品質,OK\n")
    item = load_suite(path).items[0]
    assert (item.id, item.input, item.type, item.category, item.answer) == ("w1", "幅", "exact", "品質", "OK")


def test_japanese_keys_in_yaml_and_jsonl_items(write) -> None:
    yaml_text = "items:\n  - {問題ID: y1, 問題文: 質問です, 種類: exact, 正解: はい}\n"
    yaml_item = load_suite(write("t.yaml", yaml_text)).items[0]
    assert (yaml_item.id, yaml_item.input, yaml_item.answer) == ("y1", "質問です", "はい")
    line = '{"設問ID": "j1", "設問": "どれ？", "選択肢": ["赤", "青"], "答え": "B", "分類": "色"}\n'
    jsonl_item = load_suite(write("t.jsonl", line)).items[0]
    assert jsonl_item.choices == ("赤", "青") and jsonl_item.answer == 1 and jsonl_item.category == "色"


def test_two_columns_for_one_field_are_one_problem(write) -> None:
    problems = problems_of(write("t.csv", "id,問題,問題文,type,answer\na,x,y,exact,z\n"))
    assert len(problems) == 1, problems
    assert (problems[0].line, problems[0].field) == (1, "問題文")
    assert "'問題' and '問題文' both stand for input" in problems[0].message


# ---------------------------------------------------------------- a header without the required columns


def test_missing_required_columns_are_one_problem_on_the_header(write) -> None:
    path = write("t.csv", "問題No,問い,種類,正解\nq1,一,exact,a\nq2,二,exact,b\nq3,三,exact,c\n")
    problems = problems_of(path)
    assert len(problems) == 1, problems
    problem = problems[0]
    assert (problem.line, problem.field) == (1, None)
    assert "the header has no column for id, input" in problem.message
    assert "columns found: 問題No, 問い, 種類, 正解" in problem.message
    assert "closest: 問題No → id?, 問い → input?" in problem.message
    assert "columns:" in problem.message


def test_missing_type_column_is_one_problem_and_choices_or_defaults_stand_in_for_it(write) -> None:
    problems = problems_of(write("t.csv", "id,input,answer\na,x,1\nb,y,2\n"))
    assert len(problems) == 1 and problems[0].line == 1 and "no column for type" in problems[0].message
    assert "closest" not in problems[0].message  # nothing in the header is close to "type"
    assert load_suite(write("mc.csv", "id,input,choices,answer\na,x,p|q,B\n")).items[0].answer == 1
    write("plain.csv", "id,input,answer\na,x,1\n")
    suite = load_suite(write("s.yaml", "defaults: {type: exact}\ninclude: [plain.csv]\n"))
    assert suite.items[0].type == "exact"


def test_workbook_header_without_required_columns_is_one_problem_at_its_row(tmp_path: Path) -> None:
    path = workbook(
        tmp_path / "t.xlsx",
        [[TITLE], [], ["番号", "問い", "種類", "正解"], ["a", "x", "exact", "y"], ["b", "x", "exact", "y"]],
        title="問題集",
    )
    problems = problems_of(path)
    assert len(problems) == 1, problems
    assert problems[0].file.endswith("t.xlsx[問題集]") and problems[0].line == 3
    assert "no column for input (columns found: 番号, 問い, 種類, 正解; closest: 問い → input?)" in problems[0].message


# ---------------------------------------------------------------- a title above the header


def test_workbook_with_a_title_and_a_blank_row_above_the_header(tmp_path: Path) -> None:
    header = ["id", "input", "type", "choices", "answer", "category"]
    items = [
        ["a1", "外径は規格内か", "exact", None, "合格", "検査"],
        ["a2", "不良率は何%か", "numeric", None, 4, "計算"],
        ["a3", "処置は", "multiple_choice", "合格|手直し|廃棄", "C", "検査"],
        ["a4", "図番は", "regex", None, r"DWG-\d+", "仕様"],
    ]
    good = workbook(tmp_path / "good.xlsx", [[TITLE], [], header, *items])
    suite = load_suite(good)
    assert [(i.id, i.line) for i in suite.items] == [("a1", 4), ("a2", 5), ("a3", 6), ("a4", 7)]
    assert suite.items[2].answer == 2
    broken = [row[:] for row in items]
    broken[1][4] = "four"  # sheet row 5
    problems = problems_of(workbook(tmp_path / "bad.xlsx", [[TITLE], [], header, *broken]))
    assert [(p.line, p.field) for p in problems] == [(5, "answer")], problems
    assert "not a number" in problems[0].message


def test_csv_with_a_title_keeps_the_file_line_numbers(write) -> None:
    title = f"{TITLE},,,,,,,\n,,,,,,,\n"  # Excel writes every row as wide as the widest
    rows = 'k1,"二行の\n問題",exact,,a,c,,\nk2,ok,exact,,,c,,\n'
    problems = problems_of(write("t.csv", title + "id,input,type,choices,answer,category,,\n" + rows))
    assert [(p.line, p.field) for p in problems] == [(6, "answer")], problems
    suite = load_suite(write("ok.csv", "\n" + TITLE + "\n\n" + JA_HEADER + JA_ROWS))
    assert [i.line for i in suite.items] == [5, 6]


def test_semicolon_csv_with_a_title(write) -> None:
    suite = load_suite(write("t.csv", "Prüfkatalog 2026;;;\nid;input;type;answer\na;b;exact;c\n"))
    assert suite.items[0].answer == "c" and suite.items[0].line == 3


def test_tasks_validate_says_which_row_was_the_header(tmp_path: Path) -> None:
    book = workbook(
        tmp_path / "t.xlsx", [[TITLE], [], ["id", "input", "type", "answer"], ["a", "b", "exact", "c"]], "tasks"
    )
    plain = tmp_path / "plain.csv"
    plain.write_text("id,input,type,answer\na,b,exact,c\n", encoding="utf-8")
    japanese = tmp_path / "ja.csv"
    japanese.write_text(JA_HEADER + JA_ROWS, encoding="utf-8")
    result = CliRunner().invoke(app, ["tasks", "validate", str(book), str(plain), str(japanese)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "t.xlsx[tasks]: header on row 3 (rows 1-2 above it skipped)" in output
    assert "ja.csv: header on line 1; columns 問題ID → id, 問題 → input, 種類 → type" in output
    assert "plain.csv: header" not in output  # an ordinary header on the first line goes without saying


# ---------------------------------------------------------------- a suite's own header names


def test_suite_columns_map_custom_header_names(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text(
        f"{TITLE}\n社内番号,設問内容,回答方式,模範解答,区分,分類\nk1,これは？,exact,はい,安全,B\n", encoding="utf-8"
    )
    sheet = [["社内番号", "設問内容", "回答方式", "模範解答"], ["k2", "次は？", "contains", "いいえ"]]
    workbook(tmp_path / "items.xlsx", sheet)
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(
        "name: co\ncolumns:\n  社内番号: id\n  設問内容: input\n  回答方式: type\n  分類: metadata\n"
        "include: [items.csv, items.xlsx]\n"
        "items:\n  - {社内番号: y1, 設問内容: YAML, 回答方式: exact, answer: z}\n",
        encoding="utf-8",
    )
    suite = load_suite(suite_file)
    assert [(i.id, i.input, i.type, i.answer) for i in suite.items] == [
        ("y1", "YAML", "exact", "z"),
        ("k1", "これは？", "exact", "はい"),
        ("k2", "次は？", "contains", "いいえ"),
    ]
    assert suite.items[1].category == "安全" and suite.items[1].metadata == {"分類": "B"}
    assert suite.items[1].line == 3


def test_unknown_column_target_is_a_clear_error(write) -> None:
    write("items.csv", "社内番号,設問内容,type,answer\nk1,x,exact,y\n")
    path = write("s.yaml", "name: s\ncolumns:\n  社内番号: idd\n  設問内容: 問題文\ninclude: [items.csv]\n")
    problems = [p for p in problems_of(path) if p.file == str(path)]
    assert [(p.line, p.field) for p in problems] == [(3, "columns"), (4, "columns")], problems
    assert "unknown column 'idd' (did you mean 'id'?)" in problems[0].message
    assert "unknown column '問題文' (did you mean 'input'?)" in problems[1].message
    assert "use one of id, input, type" in problems[0].message
    bad = problems_of(write("m.yaml", "columns: [id]\nitems:\n  - {id: a, input: b, type: exact, answer: c}\n"))
    assert len(bad) == 1 and (bad[0].line, bad[0].field) == (1, "columns") and "must be a mapping" in bad[0].message


def test_the_same_column_in_full_width_and_half_width_is_a_problem(write) -> None:
    problems = problems_of(write("t.csv", "id,ＩＤ,input,type,answer\na,b,x,exact,z\n"))
    assert [(p.line, p.field) for p in problems] == [(1, "ＩＤ")], problems
