"""Turn raw records into validated :class:`TaskItem` values (pure; no I/O).

Every problem found is returned with its file, line and field, so a user can fix a file in one pass.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from typing import Any

import jsonschema

from poccheck.errors import Problem, did_you_mean
from poccheck.records import ITEM_TYPES, LETTERS, PRONTOQA_CHECKER, ItemType, TaskItem
from poccheck.tasks.columns import ALIASES, STANDARD_COLUMNS, ColumnMap, standard_column
from poccheck.tasks.read import RawRecord

KNOWN_FIELDS = STANDARD_COLUMNS
FIELD_ALIASES = ALIASES  # other names of the standard fields (question, 問題, 正解, ...): see tasks/columns.py
TYPE_ALIASES: dict[str, ItemType] = {
    "mc": "multiple_choice",
    "mcq": "multiple_choice",
    "multiple-choice": "multiple_choice",
    "multiplechoice": "multiple_choice",
    "number": "numeric",
    "regexp": "regex",
}
CHOICE_SEPARATOR = "|"


def record_to_item(
    record: RawRecord, defaults: dict[str, Any] | None = None, columns: ColumnMap | None = None
) -> tuple[TaskItem | None, list[Problem]]:
    """Map one raw record to a TaskItem, or return the problems that prevent it.

    Field names are read as :func:`~poccheck.tasks.columns.standard_column` reads them (``問題`` is ``input``),
    with the suite's ``columns`` first; other names are kept as metadata."""
    problems: list[Problem] = []
    fields: dict[str, Any] = {standard_column(str(k), columns) or str(k): v for k, v in (defaults or {}).items()}
    for key, value in record.fields.items():
        fields[standard_column(key, columns) or key] = value
    lines = {standard_column(key, columns) or key: line for key, line in record.field_lines.items()}

    def problem(name: str | None, message: str) -> None:
        problems.append(Problem(record.file, lines.get(name, record.line) if name else record.line, name, message))

    item_id = _text(fields.get("id"))
    if not item_id:
        problem("id", "missing id")
    text = fields.get("input")
    if text is None or not _text(text):
        problem("input", "missing input text")
    elif not isinstance(text, str | int | float):
        problem("input", "must be text")

    choices, choice_problem = _choices(fields.get("choices"))
    if choice_problem:
        problem("choices", choice_problem)

    raw_type = _text(fields.get("type")).lower()
    item_type: ItemType | None
    if not raw_type:
        item_type = "multiple_choice" if choices else None
        if item_type is None:
            problem("type", f"missing type; use one of {', '.join(ITEM_TYPES)}")
    elif raw_type in ITEM_TYPES:
        item_type = raw_type  # type: ignore[assignment]
    elif raw_type in TYPE_ALIASES:
        item_type = TYPE_ALIASES[raw_type]
    else:
        item_type = None
        problem(
            "type", f"unknown type {raw_type!r}{did_you_mean(raw_type, ITEM_TYPES)}; use one of {', '.join(ITEM_TYPES)}"
        )

    tolerance: float | None = None
    if fields.get("tolerance") not in (None, ""):
        try:
            tolerance = float(str(fields["tolerance"]).replace(",", ""))
            if not math.isfinite(tolerance) or tolerance < 0:
                raise ValueError
        except ValueError:
            problem("tolerance", f"must be a non-negative number, got {fields['tolerance']!r}")

    schema: dict[str, Any] | None = None
    if fields.get("schema") not in (None, ""):
        schema, schema_problem = _schema(fields["schema"])
        if schema_problem:
            problem("schema", schema_problem)

    answer: Any = None
    raw_answer = fields.get("answer")
    has_answer = raw_answer is not None and _text(raw_answer) != ""
    if item_type == "multiple_choice":
        if len(choices) < 2 and not choice_problem:
            problem("choices", "multiple_choice needs at least two choices")
        if not has_answer:
            problem("answer", "missing answer")
        elif choices:
            answer = _choice_index(_text(raw_answer), choices)
            if isinstance(answer, str):
                problem("answer", answer)
                answer = None
            elif answer is None:
                letters = f"A-{LETTERS[min(len(choices), 26) - 1]}"
                problem(
                    "answer",
                    f"answer {_text(raw_answer)!r} is not among the choices "
                    f"(give a letter {letters} or a choice's exact text)",
                )
    elif item_type is not None:
        if choices:
            problem("choices", f"choices are only used by multiple_choice items, not {item_type}")
        if item_type == "json":
            if has_answer:
                answer, answer_problem = _json_answer(raw_answer)
                if answer_problem:
                    problem("answer", answer_problem)
            elif schema is None and "schema" not in problems_fields(problems):
                problem("answer", "missing answer: a json item needs an expected object or a schema")
        elif not has_answer:
            problem("answer", "missing answer")
        elif item_type == "regex":
            answer = _text(raw_answer)
            try:
                with warnings.catch_warnings():  # "possible nested set" and the like: a valid pattern all the same
                    warnings.simplefilter("ignore", FutureWarning)
                    re.compile(answer)
            except re.error as exc:
                problem("answer", f"bad regex {answer!r}: {exc}")
        elif item_type == "numeric":
            answer = _text(raw_answer)
            if _parse_number(answer) is None:
                problem("answer", f"numeric answer {answer!r} is not a number")
        elif item_type == "proof":
            answer = _text(raw_answer)
            meta = fields.get("metadata")
            if isinstance(meta, dict) and meta.get("checker") == PRONTOQA_CHECKER:  # premises come from the question
                if "Prove:" not in _text(fields.get("input")):
                    problem("input", "a PrOntoQA proof item's input must end with the question's 'Prove: ...' goal")
            else:
                premises = meta.get("premises") if isinstance(meta, dict) else None
                if not isinstance(premises, list) or not all(isinstance(p, str) for p in premises):
                    problem("metadata", "a proof item needs metadata.premises: the list of premise sentences")
                if not isinstance(meta, dict) or not meta.get("name"):
                    problem("metadata", "a proof item needs metadata.name: the individual the premises are about")
        else:
            answer = _text(raw_answer)

    metadata: dict[str, Any] = {}
    explicit = fields.get("metadata")
    if isinstance(explicit, dict):
        metadata.update({str(k): _plain(v) for k, v in explicit.items()})
    elif explicit not in (None, ""):
        problem("metadata", "must be a mapping of names to values")
    for key, value in fields.items():
        if key not in KNOWN_FIELDS:
            metadata[str(key)] = _plain(value)

    if problems or item_type is None:
        return None, problems
    return (
        TaskItem(
            id=item_id,
            input=_text(text),
            type=item_type,
            answer=answer,
            category=_text(fields.get("category")) or "general",
            choices=choices,
            tolerance=tolerance,
            schema=schema,
            metadata=metadata,
            source=record.file,
            line=record.line,
        ),
        [],
    )


def problems_fields(problems: list[Problem]) -> set[str | None]:
    return {p.field for p in problems}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(_plain(value), ensure_ascii=False)
    return str(value).strip()


def _plain(value: Any) -> Any:
    """``value`` as JSON data: text keys, and text for anything JSON has no type for (such as dates)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _choices(value: Any) -> tuple[tuple[str, ...], str | None]:
    if value is None or value == "":
        return (), None
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(CHOICE_SEPARATOR)]
    elif isinstance(value, list):
        if any(isinstance(v, dict | list) for v in value):
            return (), "each choice must be plain text"
        parts = [_text(v) for v in value]
    else:
        return (), f"must be a list or text separated by '{CHOICE_SEPARATOR}'"
    if any(not part for part in parts):
        return (), "a choice is empty (check for a doubled or trailing '|')"
    if len(parts) > len(LETTERS):
        return (), f"at most {len(LETTERS)} choices are supported"
    return tuple(parts), None


def _choice_index(answer: str, choices: tuple[str, ...]) -> int | None | str:
    """The index of the choice ``answer`` names, by its exact text or its letter (``B`` or ``(B)``); None when it
    names none, or a message when it names two (choices ``B``, ``A`` with answer ``A``: text of the second, letter
    of the first)."""
    if choices.count(answer) > 1:  # a choice written twice (CommonsenseQA has a few): only its letter says which
        return f"answer {answer!r} is the text of {choices.count(answer)} choices; give the letter of the one meant"
    by_text = choices.index(answer) if answer in choices else None
    letter = answer.strip().strip("()").upper()
    by_letter = LETTERS.index(letter) if len(letter) == 1 and letter in LETTERS[: len(choices)] else None
    if by_text is not None and by_letter is not None and by_text != by_letter and answer.strip().upper() == letter:
        return (
            f"answer {answer!r} is ambiguous: it is the text of choice {LETTERS[by_text]} and the letter of choice "
            f"{letter}; write the letter in parentheses, e.g. ({LETTERS[by_text]}) for the choice whose text it is"
        )
    return by_text if by_text is not None else by_letter


def _parse_number(text: str) -> float | None:
    cleaned = text.strip().replace(",", "").replace("_", "")
    try:
        number = float(cleaned)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _json_answer(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, dict | list):
        return value, None
    try:
        parsed = json.loads(str(value))
    except json.JSONDecodeError as exc:
        return None, f"expected a JSON object, but it does not parse: {exc.msg} at column {exc.colno}"
    except RecursionError:
        return None, "expected a JSON object, but it is nested too deeply"
    if not isinstance(parsed, dict):
        return None, "expected a JSON object ({...})"
    return parsed, None


def _schema(value: Any) -> tuple[dict[str, Any] | None, str | None]:
    schema, problem = _json_answer(value) if not isinstance(value, dict) else (value, None)
    if problem:
        return None, problem.replace("expected a JSON object", "the schema must be a JSON object")
    if not isinstance(schema, dict):
        return None, "the schema must be a JSON object"
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return None, f"invalid JSON Schema: {exc.message}"
    return schema, None
