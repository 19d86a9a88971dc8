"""Property-based tests of every task loader and of the plan loader (hypothesis, derandomised).

The property: loading any file either gives a suite that ``assess`` can use (every item renders in every prompting
mode and stores as JSON) or raises the loader's own error whose problems each name the file and, where a field is
named, its line or sheet row. Any other exception, or a problem without a location, is a failure. Valid files
written the way Excel and editors write them (Shift_JIS, UTF-8 with BOM, UTF-16, CRLF) read back exactly.

Run time: about 30-45 s on 2 cores (the 100,000-item file once, about 5 s). ``--hypothesis-show-statistics``
prints the examples tried per test.
"""

from __future__ import annotations

import atexit
import csv
import io
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook
from typer.testing import CliRunner

from poccheck.cli import app
from poccheck.config.plan import Plan, load_plan
from poccheck.errors import PlanError, Problem, TaskFileError
from poccheck.records import MODES, Suite
from poccheck.runner import item_record, work_items
from poccheck.tasks import load_suite

from .conftest import EXAMPLES

PROFILE = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=120,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(PROFILE, max_examples=40)

_DIR = Path(tempfile.mkdtemp(prefix="poccheck-props-"))  # removed when the test run ends
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)
_counter = iter(range(10**9))


def fresh_path(suffix: str) -> Path:
    """A new file path in a private folder for this module (hypothesis reruns a test body many times)."""
    folder = _DIR / str(next(_counter))
    folder.mkdir()
    return folder / f"tasks{suffix}"


def write(suffix: str, data: bytes) -> Path:
    path = fresh_path(suffix)
    path.write_bytes(data)
    return path


def check_located(problems: list[Problem], path: Path) -> None:
    assert problems, "an error without problems"
    for problem in problems:
        assert problem.message.strip(), problem
        assert problem.file, problem
        if problem.file.startswith(str(path)):
            assert problem.field is None or problem.line is not None, f"field without a line: {problem}"


def usable(suite: Suite) -> None:
    """What assess does with a suite before any model runs: render every mode and store every item."""
    assert suite.items
    for mode in MODES:
        work = work_items(suite, mode)
        assert len({w.key for w in work}) == len(work)
    json.dumps([item_record(item) for item in suite.items], ensure_ascii=False, default=str)


def outcome(path: Path) -> Suite | TaskFileError:
    """Load ``path``: a usable suite or a located TaskFileError; anything else fails the test."""
    try:
        suite = load_suite(path)
    except TaskFileError as exc:
        check_located(exc.problems, path)
        assert "Traceback" not in str(exc)
        return exc
    usable(suite)
    return suite


def plan_outcome(path: Path) -> Plan | PlanError:
    try:
        return load_plan(path)
    except PlanError as exc:
        check_located(exc.problems, path)
        return exc


# ---------------------------------------------------------------- strategies

TEXT_ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "cp932")


def roundtrips(encoding: str) -> Callable[[str], bool]:
    def ok(text: str) -> bool:
        try:
            return text.encode(encoding).decode(encoding) == text
        except UnicodeError:
            return False

    return ok


# Printable text (no control characters or surrogates), as people type it: ASCII, accents, kana, kanji, fullwidth.
PRINTABLE = st.characters(
    blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp"),
    blacklist_characters="\ufeff",
)
JAPANESE = st.sampled_from(list("不良品検査工程品質合格ラインの何個ですか？、。ー〜－￥①ｱｲｳ「」　"))
WORDS = st.text(st.one_of(PRINTABLE, JAPANESE), min_size=1, max_size=40)
IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,11}", fullmatch=True)


@st.composite
def valid_items(draw: st.DrawFn, encoding: str = "utf-8") -> list[dict[str, Any]]:
    """Items that any loader must accept, with text encodable in ``encoding``."""
    fits = roundtrips(encoding)
    text = WORDS.filter(lambda t: bool(t.strip()) and fits(t))
    plain = text.filter(lambda t: "|" not in t and t == t.strip())
    ids = draw(st.lists(IDS, min_size=1, max_size=8, unique=True))
    items = []
    for item_id in ids:
        kind = draw(st.sampled_from(["exact", "contains", "numeric", "multiple_choice"]))
        item: dict[str, Any] = {"id": item_id, "input": draw(text), "type": kind, "category": draw(plain)}
        if kind == "multiple_choice":
            choices = draw(st.lists(plain, min_size=2, max_size=5, unique=True))
            index = draw(st.integers(0, len(choices) - 1))
            item |= {"choices": choices, "answer": "ABCDE"[index]}
        elif kind == "numeric":
            item["answer"] = str(draw(st.integers(-(10**9), 10**9)))
        else:
            item["answer"] = draw(plain)
        items.append(item)
    return items


def csv_bytes(items: list[dict[str, Any]], encoding: str, delimiter: str = ",") -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")  # as Excel writes it
    writer.writerow(["id", "input", "type", "choices", "answer", "category"])
    for item in items:
        row = [item["id"], item["input"], item["type"], "|".join(item.get("choices", [])), item["answer"]]
        writer.writerow([*row, item["category"]])
    return buffer.getvalue().encode(encoding)


def assert_same_items(suite: Suite, items: list[dict[str, Any]]) -> None:
    assert [i.id for i in suite.items] == [i["id"] for i in items]
    for loaded, written in zip(suite.items, items, strict=True):
        assert loaded.input == written["input"].strip()
        assert loaded.type == written["type"] and loaded.category == written["category"]
        if written["type"] == "multiple_choice":
            assert loaded.choices == tuple(written["choices"])
            assert loaded.answer == "ABCDE".index(written["answer"])
        else:
            assert loaded.answer == written["answer"]


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` truncated, with bytes flipped, inserted or removed: what a broken copy or upload leaves."""
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "truncate":
            data = data[:at]
        elif op == "flip" and data:
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
        elif op == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
        else:
            data = data[:at] + data[at + draw(st.integers(1, 64)) :]
    return data


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.dates(),
    st.sampled_from(["{{ input }}", "{% for x in y %}", "<script>alert(1)</script>", "A", "1", "a|b|c", "|"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(
    ["id", "input", "question", "type", "choices", "answer", "label", "category", "tolerance", "schema", "metadata"]
)
ITEM_TYPES = st.sampled_from(["exact", "contains", "regex", "numeric", "json", "multiple_choice", "mc", "proof", "x"])


@st.composite
def loose_items(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Items that are nearly right: real field names, arbitrary values, some fields missing or misspelt."""
    items = []
    for index in range(draw(st.integers(0, 6))):
        item: dict[str, Any] = {"id": f"i{index}", "input": "text", "type": draw(ITEM_TYPES), "answer": "A"}
        for name in draw(st.lists(FIELD_NAMES, max_size=4)):
            item[name] = draw(VALUES)
        for name in draw(st.lists(st.sampled_from(list(item)), max_size=2)):
            item.pop(name, None)
        if draw(st.booleans()):
            item[draw(st.text(min_size=1, max_size=10))] = draw(VALUES)
        items.append(item)
    return items


SUITE_SETTINGS = st.sampled_from(
    ["name", "description", "language", "prompt_template", "fewshot", "stop", "max_tokens", "defaults", "include",
     "answer_pattern", "nmae"]
)  # fmt: skip
TEMPLATES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "Q: {{ input }}\nA:",
            "{{ input | upper }} {{ choices | join(', ') }}",
            "{{ 1 / 0 }}",
            "{{ input + 1 }}",
            "{{ fewshot[0].input }} {{ input }}",
            "{{ meta.missing }}",
            "{{ ''.__class__.__mro__ }}",
            "{% for i in range(10**9) %}{% endfor %}",
            "{{ input",
            "{% if %}",
        ]
    ),
)


@st.composite
def yaml_documents(draw: st.DrawFn) -> str:
    doc: dict[str, Any] = {}
    for key in draw(st.lists(SUITE_SETTINGS, max_size=4, unique=True)):
        doc[key] = draw(TEMPLATES) if key == "prompt_template" else draw(VALUES)
    doc["items"] = draw(loose_items())
    shape = draw(st.sampled_from(["suite", "list", "value"]))
    value: Any = doc if shape == "suite" else doc["items"] if shape == "list" else draw(VALUES)
    return yaml.safe_dump(value, allow_unicode=draw(st.booleans()), sort_keys=False)


def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


# ---------------------------------------------------------------- valid files read back exactly


@PROFILE
@given(st.sampled_from(TEXT_ENCODINGS).flatmap(lambda e: st.tuples(st.just(e), valid_items(e))), st.booleans())
def test_valid_csv_in_any_excel_encoding_reads_back_exactly(case: tuple[str, list[dict[str, Any]]], tsv: bool) -> None:
    encoding, items = case
    suffix, delimiter = (".tsv", "\t") if tsv else (".csv", ",")
    suite = outcome(write(suffix, csv_bytes(items, encoding, delimiter)))
    assert isinstance(suite, Suite), suite
    assert_same_items(suite, items)


@PROFILE
@given(valid_items(), st.booleans(), st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
def test_valid_jsonl_and_yaml_read_back_exactly(items: list[dict[str, Any]], ascii_only: bool, encoding: str) -> None:
    lines = "\n".join(json.dumps(item, ensure_ascii=ascii_only) for item in items) + "\n"
    suite = outcome(write(".jsonl", lines.encode(encoding)))
    assert isinstance(suite, Suite), suite
    assert_same_items(suite, items)
    text = yaml.safe_dump({"name": "s", "items": items}, allow_unicode=not ascii_only, sort_keys=False)
    suite = outcome(write(".yaml", text.encode(encoding)))
    assert isinstance(suite, Suite), suite
    assert_same_items(suite, items)


@FEW
@given(valid_items(encoding="utf-8"))
def test_valid_xlsx_reads_back_exactly(items: list[dict[str, Any]]) -> None:
    book = Workbook()
    sheet = book.active
    sheet.append(["id", "input", "type", "choices", "answer", "category"])
    for item in items:
        answer = item["answer"]
        number = item["type"] == "numeric" and len(answer) < 15  # Excel stores numbers as floats
        row = [item["id"], item["input"], item["type"], "|".join(item.get("choices", [])), answer, item["category"]]
        row[4] = int(answer) if number else answer
        sheet.append(row)
    path = fresh_path(".xlsx")
    book.save(path)
    suite = outcome(path)
    assert isinstance(suite, Suite), suite
    assert_same_items(suite, items)


# ---------------------------------------------------------------- anything else fails clearly


@PROFILE
@given(st.sampled_from([".csv", ".tsv", ".jsonl", ".yaml", ".xlsx"]), st.binary(max_size=600))
def test_arbitrary_bytes_never_crash(suffix: str, data: bytes) -> None:
    outcome(write(suffix, data))


EXAMPLE_FILES = {
    ".csv": (EXAMPLES / "factory_tasks.csv").read_bytes(),
    ".yaml": (EXAMPLES / "factory_suite.yaml").read_bytes(),
    ".jsonl": "".join(
        json.dumps(item_record(item), ensure_ascii=False) + "\n"
        for item in load_suite(EXAMPLES / "factory_tasks.csv").items
    ).encode(),
    ".csv-sjis": (EXAMPLES / "factory_tasks.csv").read_text(encoding="utf-8").encode("cp932", errors="replace"),
    ".csv-utf16": (EXAMPLES / "factory_tasks.csv").read_text(encoding="utf-8").encode("utf-16"),
}


def _xlsx_example() -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = "tasks"
    with (EXAMPLES / "factory_tasks.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle):
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


EXAMPLE_FILES[".xlsx"] = _xlsx_example()


@PROFILE
@given(st.sampled_from(sorted(EXAMPLE_FILES)).flatmap(lambda k: st.tuples(st.just(k), mutated(EXAMPLE_FILES[k]))))
def test_damaged_copies_of_the_examples_never_crash(case: tuple[str, bytes]) -> None:
    kind, data = case
    outcome(write(kind.split("-")[0], data))


@PROFILE
@given(yaml_documents())
def test_yaml_with_arbitrary_values_never_crashes(text: str) -> None:
    outcome(write(".yaml", text.encode()))


@PROFILE
@given(loose_items(), st.lists(st.text(max_size=30), max_size=3))
def test_jsonl_with_arbitrary_values_never_crashes(items: list[dict[str, Any]], junk: list[str]) -> None:
    lines = [json.dumps(json_safe(item)) for item in items] + junk
    outcome(write(".jsonl", "\n".join(lines).encode()))


CSV_CELLS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["exact", "numeric", "multiple_choice", "regex", "json", "A", "a|b", "a||b", "([", "{", "1e999"]),
)


@PROFILE
@given(
    st.lists(st.one_of(FIELD_NAMES, st.text(max_size=8)), min_size=1, max_size=7),
    st.lists(st.lists(CSV_CELLS, max_size=8), max_size=6),
    st.sampled_from(TEXT_ENCODINGS),
)
def test_csv_with_arbitrary_cells_never_crashes(header: list[str], rows: list[list[str]], encoding: str) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerows([header, *rows])
    outcome(write(".csv", buffer.getvalue().encode(encoding, errors="replace")))


XLSX_CELLS = st.one_of(
    st.none(),
    st.integers(-(10**15), 10**15),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.dates(),
    st.text(PRINTABLE, max_size=12),
    st.sampled_from(["exact", "numeric", "multiple_choice", "A", "a|b"]),
)


@FEW
@given(
    st.lists(st.one_of(FIELD_NAMES, st.none(), st.integers(0, 9)), min_size=1, max_size=6),
    st.lists(st.lists(XLSX_CELLS, max_size=6), max_size=5),
)
def test_xlsx_with_arbitrary_cells_never_crashes(header: list[Any], rows: list[list[Any]]) -> None:
    book = Workbook()
    sheet = book.active
    for row in [header, *rows]:
        sheet.append(row)
    path = fresh_path(".xlsx")
    book.save(path)
    outcome(path)


# ---------------------------------------------------------------- the plan file

GOOD_PLAN = """\
tasks: [suite.yaml]
candidates: [gemma3-270m-q4]
modes: [fewshot, cot]
targets:
  accuracy: {default: 0.8, inspection-rules: 0.9}
  p95_latency_seconds: 5.0
workload: {tasks_per_day: 2000, peak_concurrency: 4, hours_per_day: 10}
currency: JPY
exchange_rate: 150
language: ja
cost_profiles: {}
out: poc
"""
PLAN_KEYS = st.sampled_from(
    ["tasks", "candidates", "modes", "targets", "workload", "currency", "exchange_rate", "language", "cost_profiles",
     "out", "target"]
)  # fmt: skip


def write_plan(data: bytes) -> Path:
    path = write(".yaml", data)
    path.with_name("suite.yaml").write_text("items: []\n", encoding="utf-8")
    return path.rename(path.with_name("poccheck.yaml"))


def test_good_plan_loads() -> None:
    assert isinstance(plan_outcome(write_plan(GOOD_PLAN.encode())), Plan)


@PROFILE
@given(st.dictionaries(PLAN_KEYS, VALUES, max_size=6), st.booleans())
def test_plans_with_arbitrary_values_never_crash(overrides: dict[str, Any], start_from_good: bool) -> None:
    doc = yaml.safe_load(GOOD_PLAN) if start_from_good else {}
    doc.update(overrides)
    plan_outcome(write_plan(yaml.safe_dump(doc, allow_unicode=True).encode()))


@PROFILE
@given(
    st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp932"]).flatmap(
        lambda e: st.tuples(st.just(e), mutated(GOOD_PLAN.replace("poc\n", "結果\n").encode(e)))
    )
)
def test_damaged_plans_never_crash(case: tuple[str, bytes]) -> None:
    plan_outcome(write_plan(case[1]))


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "cp932"])
def test_plan_saved_by_windows_editors_loads(encoding: str) -> None:
    plan = plan_outcome(write_plan(GOOD_PLAN.replace("out: poc", "out: 結果フォルダ").encode(encoding)))
    assert isinstance(plan, Plan) and plan.out.name == "結果フォルダ"


# ---------------------------------------------------------------- crafted adversarial inputs

BILLION_LAUGHS = "a: &a ['x','x','x','x','x','x','x','x','x']\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)
ADVERSARIAL: dict[str, tuple[str, bytes]] = {
    "yaml alias bomb": (
        ".yaml",
        (BILLION_LAUGHS + "items:\n  - {id: a, type: exact, answer: b, input: *i}\n").encode(),
    ),
    "yaml alias bomb in metadata": (
        ".yaml",
        (BILLION_LAUGHS + "items:\n  - {id: a, type: exact, answer: b, input: x, metadata: {m: *i}}\n").encode(),
    ),
    "yaml 5000-digit number": (".yaml", ("items:\n  - {id: 1, input: " + "9" * 5000 + ", type: exact}\n").encode()),
    "jsonl 5000-digit number": (".jsonl", ('{"id": "a", "input": ' + "9" * 5000 + ', "type": "exact"}\n').encode()),
    "yaml nested 10,000 deep": (".yaml", ("items: " + "[" * 10000 + "]" * 10000 + "\n").encode()),
    "jsonl nested 100,000 deep": (".jsonl", ("[" * 100000 + "]" * 100000 + "\n").encode()),
    "yaml recursive alias": (".yaml", b"items:\n  - &a {id: a, input: b, type: exact, answer: c, metadata: {m: *a}}\n"),
    "yaml python tag": (".yaml", b"items: !!python/object/apply:os.system ['echo pwned']\n"),
    "yaml dates as keys": (
        ".yaml",
        b"defaults: {2024-01-01: x}\nitems:\n"
        b"  - {id: a, input: b, type: exact, answer: c, metadata: {2024-01-02: y, 2024-01-03: {2024-01-04: z}}}\n",
    ),
    "yaml date as input": (
        ".yaml",
        b"items:\n  - {id: 2024-01-01, input: 2024-01-01, type: exact, answer: 2024-01-01}\n",
    ),
    "include with NUL": (".yaml", b"include: ['a\\0b.csv']\nitems:\n  - {id: a, input: b, type: exact, answer: c}\n"),
    "include with a huge name": (
        ".yaml",
        ("include: ['" + "x" * 5000 + ".csv']\nitems:\n  - {id: a, input: b, type: exact, answer: c}\n").encode(),
    ),
    "include of a directory": (
        ".yaml",
        b"include: ['.', '..']\nitems:\n  - {id: a, input: b, type: exact, answer: c}\n",
    ),
    "template divides by zero": (
        ".yaml",
        b"prompt_template: '{{ 1 / 0 }}'\nitems:\n  - {id: a, input: b, type: exact, answer: c}\n",
    ),
    "template adds text and number": (
        ".yaml",
        b"prompt_template: '{{ input + 1 }}'\nitems:\n  - {id: a, input: b, type: exact, answer: c}\n",
    ),
    "template needs an exemplar": (
        ".yaml",
        b"prompt_template: '{{ fewshot[0].input }} {{ input }}'\nfewshot: [{input: q, answer: a}]\n"
        b"items:\n  - {id: a, input: b, type: exact, answer: c}\n",
    ),
    "template escapes the sandbox": (
        ".yaml",
        b"prompt_template: \"{{ ''.__class__.__mro__[1].__subclasses__() }}\"\n"
        b"items:\n  - {id: a, input: b, type: exact, answer: c}\n",
    ),
    "csv field over 128 KiB": (".csv", ("id,input,type,answer\na," + "x" * 200_000 + ",exact,b\n").encode()),
    "csv unclosed quote": (".csv", b'id,input,type,answer\na,"never closed,exact,b\n'),
    "csv only a BOM": (".csv", b"\xef\xbb\xbf"),
    "csv BOM and semicolons": (".csv", "\ufeffid;input;type;answer\na;b;exact;c\n".encode()),
    "utf-16 odd length": (".csv", "id,input,type,answer\na,b,exact,c\n".encode("utf-16") + b"\x00"),
    "utf-16 without BOM": (".csv", "id,input,type,answer\na,b,exact,c\n".encode("utf-16-le")),
    "utf-32": (".jsonl", '{"id": "a"}\n'.encode("utf-32")),
    "control characters": (".csv", b"id,input,type,answer\na,b\x07\x1b[31m\x0c,exact,c\n"),
    "zip that is not a workbook": (".xlsx", b"PK\x05\x06" + b"\x00" * 18),
    "tiny zip": (".xlsx", b"PK\x03\x04"),
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_inputs_fail_clearly_or_load(name: str) -> None:
    suffix, data = ADVERSARIAL[name]
    started = time.perf_counter()
    result = outcome(write(suffix, data))
    assert time.perf_counter() - started < 10, "a loader took too long"
    if name.startswith(
        ("yaml alias bomb", "yaml recursive", "yaml python tag", "template", "csv unclosed", "csv only", "utf-32")
    ):
        assert isinstance(result, TaskFileError), f"{name} should be refused"
    if name in {"yaml date as input", "csv BOM and semicolons", "control characters", "yaml dates as keys"}:
        assert isinstance(result, Suite), f"{name} should load: {result}"


def test_damaged_xlsx_members_fail_clearly() -> None:
    """A workbook whose zip is intact but whose sheet XML or compressed data is damaged."""
    import zipfile

    source = io.BytesIO(EXAMPLE_FILES[".xlsx"])
    members = {}
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():
            members[info.filename] = archive.read(info)
    for victim in [n for n in members if n.endswith(".xml")]:
        for damage in (b"<not xml", b"", members[victim][: len(members[victim]) // 2]):
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for name, data in members.items():
                    archive.writestr(name, damage if name == victim else data)
            outcome(write(".xlsx", buffer.getvalue()))


# ---------------------------------------------------------------- size and the CLI


def test_hundred_thousand_items_load_in_seconds() -> None:
    rows = "".join(
        f"i{n},Line {n % 7} made {n} parts; how many were scrapped?,numeric,,{n % 13},cat{n % 5}\r\n"
        for n in range(100_000)
    )
    path = write(".csv", ("id,input,type,choices,answer,category\r\n" + rows).encode("cp932"))
    started = time.perf_counter()
    suite = load_suite(path)
    seconds = time.perf_counter() - started
    assert len(suite.items) == 100_000 and suite.items[-1].id == "i99999" and suite.items[-1].answer == "3"
    assert seconds < 20, f"100,000 items took {seconds:.1f} s"
    duplicate = write(".csv", ("id,input,type,choices,answer,category\r\n" + rows + "i5,again,exact,,x,c\r\n").encode())
    with pytest.raises(TaskFileError) as caught:
        load_suite(duplicate)
    assert [(p.line, p.field) for p in caught.value.problems] == [(100_002, "id")]


@FEW
@given(
    st.sampled_from(sorted(EXAMPLE_FILES)).flatmap(lambda k: st.tuples(st.just(k), mutated(EXAMPLE_FILES[k]))),
)
def test_cli_validate_exits_0_or_1_with_a_message_never_a_traceback(case: tuple[str, bytes]) -> None:
    kind, data = case
    path = write(kind.split("-")[0], data)
    result = CliRunner().invoke(app, ["tasks", "validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 1:
        assert "error" in result.output and path.name in result.output
    else:
        assert "ok" in result.output
