"""Pure checks of a model's output against an expected answer. Each returns (correct, detail)."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Any

import jsonschema

from poccheck.i18n import Message

_NUMBER = re.compile(r"[-−]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|[-−]?\.\d+")
_TRAILING = " \t.。!！,、:：;\"'「」『』`"


def normalize(text: str) -> str:
    """Case-fold, unify full-width characters (NFKC) and collapse whitespace."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line
    return ""


def match_exact(output: str, answer: str) -> tuple[bool, Message | None]:
    """The first non-empty line equals the answer, ignoring case, width, spacing and end punctuation."""
    got = normalize(first_line(output)).strip(_TRAILING)
    want = normalize(answer).strip(_TRAILING)
    return got == want, None if got == want else Message.of("grade.expected_got", want=want, got=got)


def match_contains(output: str, answer: str) -> tuple[bool, Message | None]:
    ok = normalize(answer) in normalize(output)
    return ok, None if ok else Message.of("grade.not_contained", answer=answer)


def match_regex(output: str, pattern: str) -> tuple[bool, Message | None]:
    ok = re.search(pattern, output) is not None
    return ok, None if ok else Message.of("grade.no_match", pattern=pattern)


def first_number(text: str) -> float | None:
    """The first number written in ``text`` (full-width digits and thousands separators allowed)."""
    found = _NUMBER.search(unicodedata.normalize("NFKC", text))
    if not found:
        return None
    try:
        return float(found.group().replace(",", "").replace("−", "-"))
    except ValueError:
        return None


def match_numeric(output: str, answer: str, tolerance: float | None) -> tuple[bool, Message | None]:
    """The first number in the output is within ``tolerance`` (absolute) of the answer."""
    want = float(answer.replace(",", "").replace("_", ""))
    got = first_number(output)
    if got is None:
        return False, Message.of("grade.no_number")
    ok = abs(got - want) <= tolerance if tolerance is not None else math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    return ok, None if ok else Message.of("grade.expected_got_number", want=want, got=got)


def extract_json(text: str) -> Any:
    """The first JSON object or array embedded in ``text``; raises ValueError when there is none."""
    decoder = json.JSONDecoder()
    for index, char in enumerate(text):
        if char in "{[":
            try:
                value, _ = decoder.raw_decode(text, index)
            except (json.JSONDecodeError, RecursionError):
                continue
            return value
    raise ValueError("output contains no JSON object")


def _same_value(got: Any, want: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want if isinstance(want, bool) else False
    if isinstance(want, int | float) and isinstance(got, int | float):
        return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(want, str) and isinstance(got, str):
        return normalize(got) == normalize(want)
    if isinstance(want, str) and isinstance(got, int | float):
        return normalize(str(got)) == normalize(want)
    if isinstance(want, dict) and isinstance(got, dict):
        return all(key in got and _same_value(got[key], value) for key, value in want.items())
    if isinstance(want, list) and isinstance(got, list):
        return len(want) == len(got) and all(_same_value(g, w) for g, w in zip(got, want, strict=True))
    return bool(got == want)


def match_json(
    output: str, expected: dict[str, Any] | None, schema: dict[str, Any] | None
) -> tuple[bool, Message | None]:
    """The output holds a JSON object matching ``expected`` key by key and/or valid under ``schema``."""
    try:
        value = extract_json(output)
    except ValueError:
        return False, Message.of("grade.no_json")
    if schema is not None:
        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError as exc:
            return False, Message.of("grade.schema", error=exc.message)
    if expected is not None:
        if not isinstance(value, dict):
            return False, Message.of("grade.not_object")
        wrong = [key for key, want in expected.items() if key not in value or not _same_value(value[key], want)]
        if wrong:
            return False, Message.of("grade.wrong_keys", keys=", ".join(str(k) for k in wrong))
    return True, None
