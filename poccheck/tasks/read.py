"""Read task files into raw records that remember where each field came from (I/O only).

Supported: YAML (``.yaml``/``.yml``), JSON Lines (``.jsonl``), CSV (``.csv``/``.tsv``) and Excel (``.xlsx``).
Text files may be UTF-8 (with or without BOM), UTF-16 with BOM, or Shift_JIS (cp932, as Japanese Excel
saves CSV); anything else is reported as a wrong encoding with the offending line.

The header of a CSV, TSV or sheet is the first of its first rows that holds the required columns, under any name
:mod:`poccheck.tasks.columns` accepts (``id`` or ``問題ID``, ...): rows above it (a title, blank rows) are skipped,
and lines and rows keep the numbers the file shows.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from poccheck.errors import Problem
from poccheck.tasks.columns import HEADER_SCAN_ROWS, ColumnMap, HeaderRow, find_header, header_problems, standard_column

TEXT_ENCODINGS = ("utf-8", "cp932")


@dataclass
class RawRecord:
    """One item's fields as read from a file, with the line (or sheet row) of the record and of each field."""

    file: str
    line: int | None
    fields: dict[str, Any]
    field_lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, name: str) -> int | None:
        return self.field_lines.get(name, self.line)


@dataclass
class RawFile:
    """What a task file holds before mapping: suite-level settings (YAML only) and item records; for a table
    (CSV, TSV, a sheet) whose header was found, where it was."""

    path: Path
    settings: dict[str, Any]
    setting_lines: dict[str, int]
    records: list[RawRecord]
    problems: list[Problem]
    line: int | None = None
    header: HeaderRow | None = None


def decode_text(path: Path, data: bytes, encoding: str | None = None) -> tuple[str | None, list[Problem]]:
    """Decode ``data``; return the text, or None and a problem naming the first undecodable line."""
    name = str(path)
    if encoding:
        try:
            return data.decode(encoding), []
        except (UnicodeDecodeError, LookupError) as exc:
            return None, [Problem(name, _line_at(data, exc), None, f"cannot decode as {encoding}: {exc}")]
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), []
        except UnicodeDecodeError as exc:
            return None, [Problem(name, None, None, f"file starts with a UTF-16 mark but is not UTF-16: {exc}")]
    first_error: UnicodeDecodeError | None = None
    for candidate in TEXT_ENCODINGS:
        try:
            return data.decode(candidate), []
        except UnicodeDecodeError as exc:
            first_error = first_error or exc
    assert first_error is not None
    return None, [
        Problem(
            name,
            _line_at(data, first_error),
            None,
            "wrong encoding: the file is not UTF-8, UTF-16 or Shift_JIS (cp932) "
            f"(byte 0x{data[first_error.start]:02x} at offset {first_error.start}); save it as UTF-8",
        )
    ]


def _line_at(data: bytes, exc: Exception) -> int | None:
    start = getattr(exc, "start", None)
    return data.count(b"\n", 0, start) + 1 if isinstance(start, int) else None


def read_file(
    path: Path, encoding: str | None = None, columns: ColumnMap | None = None, provided: Collection[str] = ()
) -> RawFile:
    """Read one task file of any supported format.

    ``columns`` are the suite's own header names (``columns:``) and ``provided`` the fields its ``defaults`` give
    every item (a table needs no column for them); both matter to tables only."""
    suffix = path.suffix.lower()
    name = str(path)
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except (OSError, ValueError) as exc:  # a name too long, or with a NUL byte
        return RawFile(path, {}, {}, [], [Problem(name, None, None, f"cannot open file: {exc}")])
    if not exists:
        return RawFile(path, {}, {}, [], [Problem(name, None, None, "file not found")])
    if is_dir:
        return RawFile(path, {}, {}, [], [Problem(name, None, None, "is a directory, not a task file")])
    if suffix == ".xlsx":
        return _read_xlsx(path, columns, provided)
    if suffix not in {".yaml", ".yml", ".jsonl", ".csv", ".tsv"}:
        return RawFile(
            path,
            {},
            {},
            [],
            [Problem(name, None, None, f"unsupported file type {suffix!r}; use .yaml, .jsonl, .csv or .xlsx")],
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        return RawFile(path, {}, {}, [], [Problem(name, None, None, f"cannot read file: {exc.strerror}")])
    if not data.strip():
        return RawFile(path, {}, {}, [], [Problem(name, None, None, "file is empty")])
    text, problems = decode_text(path, data, encoding)
    if text is None:
        return RawFile(path, {}, {}, [], problems)
    text = text.lstrip("\ufeff")
    if "\x00" in text:
        return RawFile(path, {}, {}, [], [Problem(name, None, None, "file contains NUL bytes; is it binary?")])
    if suffix in {".yaml", ".yml"}:
        return _read_yaml(path, text)
    if suffix == ".jsonl":
        return _read_jsonl(path, text)
    return _read_csv(path, text, columns, provided)


# ---------------------------------------------------------------- YAML


class LineDict(dict[Any, Any]):
    """A mapping from YAML that remembers its own line, each key's line and any repeated keys."""

    line: int = 0
    key_lines: dict[Any, int]
    duplicates: list[tuple[Any, int]]


MAX_ALIAS_EXPANSION = 100_000


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that keeps dates as text and refuses aliases that expand into huge or endless documents."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_aliases(node)
        return self.construct_document(node)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return int(super().construct_yaml_int(node))
        except ValueError as exc:  # more than sys.get_int_max_str_digits() digits
            raise yaml.constructor.ConstructorError(None, None, f"number too long: {exc}", node.start_mark) from None


# Task text is data: "2024-01-01" stays the text the user wrote, not a date.
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_LineLoader.add_constructor("tag:yaml.org,2002:int", _LineLoader.construct_yaml_int)


def _check_aliases(root: yaml.Node) -> None:
    """Refuse documents whose aliases (``*name``) refer to themselves or multiply into too many values."""
    sizes: dict[int, int] = {}
    distinct = 0
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        if finished:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] - distinct > MAX_ALIAS_EXPANSION:
                raise yaml.constructor.ConstructorError(
                    None, None, f"aliases expand to more than {MAX_ALIAS_EXPANSION:,} values", node.start_mark
                )
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_nodes:
            raise yaml.constructor.ConstructorError(None, None, "an alias refers to itself", node.start_mark)
        open_nodes.add(id(node))
        distinct += 1
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    result.duplicates = []
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "found a key that is not a plain value", key_node.start_mark
            ) from None
        if key in result:
            result.duplicates.append((key, line))
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = line
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str) -> Any:
    """Parse YAML safely, keeping line numbers on every mapping (see :class:`LineDict`); dates stay text."""
    return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader is a SafeLoader


def _read_yaml(path: Path, text: str) -> RawFile:
    name = str(path)
    try:
        doc = load_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        return RawFile(path, {}, {}, [], [Problem(name, line, None, f"invalid YAML: {exc.problem or exc}")])
    except yaml.YAMLError as exc:
        return RawFile(path, {}, {}, [], [Problem(name, None, None, f"invalid YAML: {exc}")])
    except RecursionError:
        return RawFile(path, {}, {}, [], [Problem(name, None, None, "invalid YAML: nested too deeply")])
    problems: list[Problem] = []
    if doc is None:
        return RawFile(path, {}, {}, [], [Problem(name, None, None, "file is empty")])
    if isinstance(doc, list):
        settings: dict[str, Any] = {}
        setting_lines: dict[str, int] = {}
        items = doc
        items_line = 1
    elif isinstance(doc, LineDict):
        problems += [Problem(name, line, str(k), "key given twice") for k, line in doc.duplicates]
        settings = {str(k): v for k, v in doc.items() if k != "items"}
        setting_lines = {str(k): v for k, v in doc.key_lines.items()}
        items = doc.get("items", [])
        items_line = doc.key_lines.get("items", doc.line)
        if items is None:
            items = []
        if not isinstance(items, list):
            problems.append(Problem(name, items_line, "items", "must be a list of items"))
            items = []
    else:
        return RawFile(
            path,
            {},
            {},
            [],
            [Problem(name, 1, None, "a YAML task file must be a mapping (suite) or a list of items")],
        )
    records = []
    for index, entry in enumerate(items):
        if not isinstance(entry, LineDict):
            problems.append(Problem(name, items_line, f"items[{index}]", "each item must be a mapping of fields"))
            continue
        problems += [Problem(name, line, str(k), "key given twice") for k, line in entry.duplicates]
        records.append(
            RawRecord(
                name, entry.line, {str(k): v for k, v in entry.items()}, {str(k): v for k, v in entry.key_lines.items()}
            )
        )
    return RawFile(path, settings, setting_lines, records, problems, line=items_line)


# ---------------------------------------------------------------- JSONL


def _read_jsonl(path: Path, text: str) -> RawFile:
    name = str(path)
    records: list[RawRecord] = []
    problems: list[Problem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(name, number, None, f"invalid JSON: {exc.msg} at column {exc.colno}"))
            continue
        except RecursionError:
            problems.append(Problem(name, number, None, "invalid JSON: nested too deeply"))
            continue
        except ValueError as exc:  # a number with more than sys.get_int_max_str_digits() digits
            problems.append(Problem(name, number, None, f"invalid JSON: {exc}"))
            continue
        if not isinstance(value, dict):
            problems.append(Problem(name, number, None, "each line must be a JSON object"))
            continue
        records.append(RawRecord(name, number, value))
    return RawFile(path, {}, {}, records, problems)


# ---------------------------------------------------------------- CSV


def _read_csv(path: Path, text: str, columns: ColumnMap | None, provided: Collection[str]) -> RawFile:
    name = str(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(path, text[:8192]), strict=True)
    problems: list[Problem] = []
    records: list[RawRecord] = []
    rows = _CsvRows(reader)
    stream = iter(rows)
    scanned: list[tuple[int, list[str]]] = []  # (first line, cells) of the rows the header is looked for in
    for start, row in stream:
        if scanned or any(cell.strip() for cell in row):
            scanned.append((start, row))
        if len(scanned) == HEADER_SCAN_ROWS:
            break
    if not scanned:
        if rows.failure:
            line, error = rows.failure
            return RawFile(path, {}, {}, [], [Problem(name, line, None, f"invalid CSV header: {error}")])
        return RawFile(path, {}, {}, [], [Problem(name, None, None, "file is empty")])
    index, missing = find_header([row for _, row in scanned], columns, provided)
    header_line, header = scanned[index]
    if missing:
        return RawFile(path, {}, {}, [], header_problems(name, header_line, header, missing, columns))
    names = [c.strip().lower() for c in header]
    while names and not names[-1]:  # Excel writes every row as wide as the widest, a title or note included
        names.pop()
    for position, column in enumerate(names):
        if not column:
            problems.append(Problem(name, header_line, f"column {position + 1}", "header cell is empty"))
        elif names.index(column) != position:
            problems.append(Problem(name, header_line, column, "column appears twice in the header"))
    problems += header_problems(name, header_line, header, [], columns)

    def take(start: int, row: list[str]) -> None:
        if not any(cell.strip() for cell in row):
            return
        if len(row) > len(names):
            extra = row[len(names) :]
            if any(cell.strip() for cell in extra):
                problems.append(
                    Problem(name, start, None, f"row has {len(row)} cells but the header has {len(names)} columns")
                )
        fields = {column: cell for column, cell in zip(names, row, strict=False) if column and cell.strip() != ""}
        records.append(RawRecord(name, start, fields))

    for start, row in scanned[index + 1 :]:
        take(start, row)
    for start, row in stream:  # the rest of the file, after the rows scanned for the header
        take(start, row)
    if rows.failure:
        problems.append(Problem(name, rows.failure[0], None, f"invalid CSV: {rows.failure[1]}"))
    if not records and not problems:
        problems.append(Problem(name, None, None, "file has a header but no items"))
    return RawFile(path, {}, {}, records, problems, header=_header_row(name, header_line, "line", header, columns))


class _CsvRows:
    """A CSV reader's rows, each with the file line it starts on (a quoted cell may span lines). A malformed row
    ends them, and ``failure`` holds its line and the error."""

    def __init__(self, reader: Iterator[list[str]]) -> None:
        self._reader = reader
        self.failure: tuple[int, csv.Error] | None = None

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        end = 0
        while True:
            try:
                row = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                self.failure = (end + 1, exc)
                return
            start, end = end + 1, self._reader.line_num  # type: ignore[attr-defined]
            yield start, row


def _delimiter(path: Path, sample: str) -> str:
    """Tab for .tsv; for .csv a comma, or a semicolon where the first line with either (a title above the header
    may have neither) has semicolons and no comma, as Excel writes CSV in locales with a decimal comma."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    lines = sample.splitlines()[:HEADER_SCAN_ROWS]
    first_line = next((line for line in lines if "," in line or ";" in line), "")
    return ";" if first_line.count(";") > first_line.count(",") and "," not in first_line else ","


def _header_row(
    where: str, line: int, unit: Literal["line", "row"], header: Sequence[str], columns: ColumnMap | None
) -> HeaderRow:
    renamed = []
    for cell in header:
        standard = standard_column(cell, columns) if cell.strip() else None
        if standard is not None and cell.strip().lower() != standard:
            renamed.append((cell.strip(), standard))
    return HeaderRow(where, line, unit, tuple(renamed))


# ---------------------------------------------------------------- Excel


def _read_xlsx(path: Path, columns: ColumnMap | None, provided: Collection[str]) -> RawFile:
    """Read the sheet named ``tasks`` (else the first). A damaged workbook is a problem, whatever openpyxl raises."""
    from openpyxl import load_workbook

    name = str(path)
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged zip or XML surfaces as zlib, XML, Key or Value errors
        return RawFile(path, {}, {}, [], [Problem(name, None, None, f"not a readable .xlsx workbook: {_reason(exc)}")])
    try:
        return _read_sheet(path, workbook, columns, provided)
    except Exception as exc:  # noqa: BLE001 - sheet XML is parsed lazily, row by row
        return RawFile(path, {}, {}, [], [Problem(name, None, None, f"damaged .xlsx workbook: {_reason(exc)}")])
    finally:
        workbook.close()


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _read_sheet(path: Path, workbook: Any, columns: ColumnMap | None, provided: Collection[str]) -> RawFile:
    name = str(path)
    if not workbook.worksheets:
        return RawFile(path, {}, {}, [], [Problem(name, None, None, "workbook has no worksheet")])
    sheet = workbook["tasks"] if "tasks" in workbook.sheetnames else workbook.worksheets[0]
    where = f"{name}[{sheet.title}]"
    rows = _numbered(sheet.iter_rows(values_only=True))
    scanned: list[tuple[int, tuple[Any, ...]]] = []  # (sheet row, cells) of the rows the header is looked for in
    for number, row in rows:
        if scanned or any(_header_text(cell) for cell in row):
            scanned.append((number, row))
        if len(scanned) >= HEADER_SCAN_ROWS:
            break
    if not scanned:
        return RawFile(path, {}, {}, [], [Problem(where, None, None, "sheet is empty")])
    texts = [[_header_text(cell) for cell in row] for _, row in scanned]
    index, missing = find_header(texts, columns, provided)
    header_line, header = scanned[index][0], texts[index]
    if missing:
        return RawFile(path, {}, {}, [], header_problems(where, header_line, header, missing, columns))
    names = [cell.lower() for cell in header]
    problems: list[Problem] = []
    for position, column in enumerate(names):
        if column and names.index(column) != position:
            problems.append(Problem(where, header_line, column, "column appears twice in the header"))
    problems += header_problems(where, header_line, header, [], columns)
    records = []
    for number, row in itertools.chain(scanned[index + 1 :], rows):
        fields = {}
        for column, cell in zip(names, row, strict=False):
            if not column or cell is None:
                continue
            value = _cell_text(cell)
            if value.strip():
                fields[column] = value
        if fields:
            records.append(RawRecord(where, number, fields))
    if not records and not problems:
        problems.append(Problem(where, None, None, "sheet has a header but no items"))
    return RawFile(path, {}, {}, records, problems, header=_header_row(where, header_line, "row", header, columns))


def _numbered(rows: Iterator[tuple[Any, ...]]) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """Sheet rows with their numbers as Excel shows them (openpyxl yields the missing rows of a sheet as empty)."""
    return enumerate(rows, start=1)


def _header_text(cell: Any) -> str:
    return str(cell).strip() if cell is not None else ""


def _cell_text(cell: Any) -> str:
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell)
