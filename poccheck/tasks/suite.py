"""Load task files into suites and validate them (the public entry points of ``poccheck.tasks``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from poccheck.errors import Problem, TaskFileError, did_you_mean
from poccheck.records import COT_TURN_MARKERS, DEFAULT_COT_MAX_TOKENS, MODES, PROMPT_FORMATS, Exemplar, Suite, TaskItem
from poccheck.tasks.columns import HeaderRow, parse_columns, standard_column
from poccheck.tasks.mapping import record_to_item
from poccheck.tasks.prompts import compile_template, render_prompt
from poccheck.tasks.read import LineDict, RawFile, read_file

SUITE_SETTINGS = (
    "name",
    "description",
    "language",
    "prompt_template",
    "fewshot",
    "stop",
    "max_tokens",
    "defaults",
    "include",
    "answer_pattern",
    "prompt_format",
    "cot_max_tokens",
    "cot_stop",
    "repetition_penalty",
    "columns",
)
MAX_TOKENS_LIMIT = 8192


@dataclass(frozen=True)
class TaskCheck:
    """What checking task files found: the valid suites, every problem, and where the header of each table (CSV,
    TSV, sheet) was found, valid or not (``poccheck tasks validate`` shows it)."""

    suites: list[Suite]
    problems: list[Problem]
    headers: list[HeaderRow]


def load_suite(path: str | Path, encoding: str | None = None) -> Suite:
    """Load and validate one task file; raise :class:`TaskFileError` listing every problem."""
    suite, problems = check_suite(Path(path), encoding)
    if problems or suite is None:
        raise TaskFileError(problems)
    return suite


def load_suites(paths: Iterable[str | Path], encoding: str | None = None) -> list[Suite]:
    """Load several task files, reporting the problems of all of them together."""
    suites, problems = check_suites(paths, encoding)
    if problems:
        raise TaskFileError(problems)
    return suites


def check_suites(paths: Iterable[str | Path], encoding: str | None = None) -> tuple[list[Suite], list[Problem]]:
    """Validate several task files: the valid suites and every problem found, including shared suite names."""
    check = check_tasks(paths, encoding)
    return check.suites, check.problems


def check_tasks(paths: Iterable[str | Path], encoding: str | None = None) -> TaskCheck:
    """Validate several task files (see :func:`check_suites`), also telling where each table's header was."""
    suites: list[Suite] = []
    problems: list[Problem] = []
    headers: list[HeaderRow] = []
    for path in paths:
        suite, found, header_rows = _check_suite(Path(path), encoding)
        problems += found
        headers += header_rows
        if suite is not None:
            suites.append(suite)
    names = [s.name for s in suites]
    for suite in suites:
        if names.count(suite.name) > 1:
            problems.append(Problem(suite.path, None, "name", f"suite name {suite.name!r} is used by two task files"))
            break
    return TaskCheck(suites, problems, headers)


def check_suite(path: Path, encoding: str | None = None) -> tuple[Suite | None, list[Problem]]:
    """Read and validate ``path``; return the suite (None when invalid) and all problems found."""
    suite, problems, _ = _check_suite(path, encoding)
    return suite, problems


def _check_suite(path: Path, encoding: str | None) -> tuple[Suite | None, list[Problem], list[HeaderRow]]:
    raw = read_file(path, encoding)
    problems = list(raw.problems)
    headers = [raw.header] if raw.header else []
    if raw.problems and not raw.records:
        return None, problems, headers
    name_in = str(path)
    settings = raw.settings

    def problem(key: str, message: str) -> None:
        problems.append(Problem(name_in, raw.setting_lines.get(key), key, message))

    for key in settings:
        if key not in SUITE_SETTINGS:
            problem(key, f"unknown suite setting{did_you_mean(key, SUITE_SETTINGS)}")

    defaults = settings.get("defaults") or {}
    if not isinstance(defaults, dict):
        problem("defaults", "must be a mapping of item fields")
        defaults = {}
    columns, column_problems = parse_columns(settings.get("columns"))
    column_lines = getattr(settings.get("columns"), "key_lines", {})
    for header_name, message in column_problems:
        where = next((line for key, line in column_lines.items() if str(key) == header_name), None)
        problems.append(Problem(name_in, where or raw.setting_lines.get("columns"), "columns", message))
    provided = {name for name in (standard_column(str(key), columns) for key in defaults) if name}

    records = list(raw.records)
    include = settings.get("include") or []
    if isinstance(include, str):
        include = [include]
    if not isinstance(include, list):
        problem("include", "must be a list of task file paths")
        include = []
    for entry in include:
        target = (path.parent / str(entry)).resolve()
        if target.suffix.lower() in {".yaml", ".yml"}:
            problem("include", f"{entry}: included files must be .csv, .jsonl or .xlsx")
            continue
        sub: RawFile = read_file(target, encoding, columns, provided)
        problems += sub.problems
        records += sub.records
        headers += [sub.header] if sub.header else []

    items: list[TaskItem] = []
    first_line: dict[str, tuple[str, int | None]] = {}
    for record in records:
        item, found = record_to_item(record, defaults, columns)
        problems += found
        if item is None:
            continue
        if item.id in first_line:
            where, line = first_line[item.id]
            problems.append(
                Problem(record.file, record.line, "id", f"duplicate id {item.id!r} (first used at {where}:{line})")
            )
            continue
        first_line[item.id] = (record.file, record.line)
        items.append(item)
    if not records and not problems:
        problems.append(Problem(name_in, raw.line, "items", "no items"))

    fewshot = _fewshot(settings.get("fewshot"), name_in, raw.setting_lines.get("fewshot"), problems)
    stop = _stop(settings.get("stop", ["\n\n"]), problem, "stop", ("\n\n",))
    cot_stop = (
        _stop(settings["cot_stop"], problem, "cot_stop", default_cot_stop(stop), allow_empty=True)
        if "cot_stop" in settings
        else default_cot_stop(stop)
    )
    max_tokens = _token_budget(settings.get("max_tokens", 64), problem, "max_tokens", 64)
    cot_max_tokens = _token_budget(
        settings.get("cot_max_tokens", DEFAULT_COT_MAX_TOKENS), problem, "cot_max_tokens", DEFAULT_COT_MAX_TOKENS
    )
    penalty = settings.get("repetition_penalty", 1.0)
    if isinstance(penalty, bool) or not isinstance(penalty, int | float) or not 0 < penalty <= 100:
        problem("repetition_penalty", f"must be a number above 0 and at most 100 (1: none), got {penalty!r}")
        penalty = 1.0
    prompt_format = settings.get("prompt_format", "auto")
    if prompt_format not in PROMPT_FORMATS:
        hint = did_you_mean(prompt_format, PROMPT_FORMATS) if isinstance(prompt_format, str) else ""
        problem("prompt_format", f"must be one of {', '.join(PROMPT_FORMATS)}, got {prompt_format!r}{hint}")
        prompt_format = "auto"
    template = settings.get("prompt_template")
    if template is not None:
        if not isinstance(template, str) or not template.strip():
            problem("prompt_template", "must be non-empty text (a Jinja2 template)")
            template = None
        else:
            try:
                compile_template(template)
            except jinja2.TemplateSyntaxError as exc:
                line = raw.setting_lines.get("prompt_template")
                problems.append(
                    Problem(
                        name_in,
                        line,
                        "prompt_template",
                        f"template syntax error on its line {exc.lineno}: {exc.message}",
                    )
                )
                template = None
            except RecursionError:
                problem("prompt_template", "template nested too deeply")
                template = None
    pattern = settings.get("answer_pattern")
    if pattern is not None:
        try:
            if not isinstance(pattern, str) or re.compile(pattern).groups < 1:
                raise re.error("needs one capturing group ( ... ) around the answer")
        except re.error as exc:
            problem("answer_pattern", f"bad answer pattern {pattern!r}: {exc}")
            pattern = None
    text_settings = {}
    for key in ("name", "description", "language"):
        value = settings.get(key)
        if value is not None and not isinstance(value, str | int | float):
            problem(key, "must be text")
        elif value is not None:
            text_settings[key] = str(value)

    suite = Suite(
        name=text_settings.get("name") or path.stem,
        path=name_in,
        items=tuple(items),
        description=text_settings.get("description", ""),
        language=text_settings.get("language", "en"),
        prompt_template=template,
        fewshot=fewshot,
        stop=stop,
        max_tokens=max_tokens,
        answer_pattern=pattern,
        prompt_format=prompt_format,
        cot_max_tokens=cot_max_tokens,
        cot_stop=cot_stop,
        repetition_penalty=float(penalty),
    )
    if template is not None:
        problems += _check_template(suite, raw.setting_lines.get("prompt_template"))
    if problems:
        return None, problems, headers
    return suite, [], headers


def _check_template(suite: Suite, line: int | None) -> list[Problem]:
    """Render every item in every prompting mode: a template is the user's code, and may fail in any way."""
    for item in suite.items:
        for mode in MODES:
            try:
                render_prompt(suite, item, mode)
            except Exception as exc:  # noqa: BLE001 - e.g. UndefinedError, ZeroDivisionError, TypeError, SecurityError
                message = f"template fails for item {item.id!r} in {mode} mode: {type(exc).__name__}: {exc}"
                return [Problem(suite.path, line, "prompt_template", message)]
    return []


def _fewshot(value: Any, file: str, line: int | None, problems: list[Problem]) -> tuple[Exemplar, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append(Problem(file, line, "fewshot", "must be a list of {input, answer} exemplars"))
        return ()
    exemplars = []
    for index, entry in enumerate(value):
        where = entry.line if isinstance(entry, LineDict) else line
        if not isinstance(entry, dict) or not entry.get("input") or entry.get("answer") in (None, ""):
            problems.append(Problem(file, where, f"fewshot[{index}]", "each exemplar needs input and answer"))
            continue
        choices = entry.get("choices") or []
        exemplars.append(
            Exemplar(
                str(entry["input"]),
                str(entry["answer"]),
                tuple(str(c) for c in choices if c is not None),
                str(entry["rationale"]) if entry.get("rationale") else None,
                str(entry["category"]) if entry.get("category") else None,
            )
        )
    return tuple(exemplars)


def default_cot_stop(stop: tuple[str, ...]) -> tuple[str, ...]:
    """Stop strings for a chain of thought when the suite gives none: the next question's marker, and the suite's
    own stop strings except those that are only line breaks or spaces (they would end a chain at its first
    paragraph break, before its answer)."""
    return tuple(dict.fromkeys((*COT_TURN_MARKERS, *(s for s in stop if s.strip()))))


def _token_budget(value: Any, problem: Any, key: str, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS_LIMIT:
        problem(key, f"must be a whole number from 1 to {MAX_TOKENS_LIMIT}, got {value!r}")
        return default
    return value


def _stop(value: Any, problem: Any, key: str, default: tuple[str, ...], allow_empty: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if value is None and allow_empty:
        value = []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problem(key, "must be a list of non-empty strings" + (" (or an empty list)" if allow_empty else ""))
        return default
    return tuple(value)
