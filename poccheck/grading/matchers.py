"""Pure checks of a model's output against an expected answer. Each returns (correct, detail)."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Any

import jsonschema

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


def match_exact(output: str, answer: str) -> tuple[bool, str]:
    """The first non-empty line equals the answer, ignoring case, width, spacing and end punctuation."""
    got = normalize(first_line(output)).strip(_TRAILING)
    want = normalize(answer).strip(_TRAILING)
    return got == want, "" if got == want else f"expected {want!r}, got {got!r}"


def match_contains(output: str, answer: str) -> tuple[bool, str]:
    ok = normalize(answer) in normalize(output)
    return ok, "" if ok else f"output does not contain {answer!r}"


def match_regex(output: str, pattern: str) -> tuple[bool, str]:
    ok = re.search(pattern, output) is not None
    return ok, "" if ok else f"no match for /{pattern}/"


def first_number(text: str) -> float | None:
    """The first number written in ``text`` (full-width digits and thousands separators allowed)."""
    found = _NUMBER.search(unicodedata.normalize("NFKC", text))
    if not found:
        return None
    try:
        return float(found.group().replace(",", "").replace("−", "-"))
    except ValueError:
        return None


def match_numeric(output: str, answer: str, tolerance: float | None) -> tuple[bool, str]:
    """The first number in the output is within ``tolerance`` (absolute) of the answer."""
    want = float(answer.replace(",", "").replace("_", ""))
    got = first_number(output)
    if got is None:
        return False, "no number in output"
    ok = abs(got - want) <= tolerance if tolerance is not None else math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    return ok, "" if ok else f"expected {want:g}, got {got:g}"


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


def match_json(output: str, expected: dict[str, Any] | None, schema: dict[str, Any] | None) -> tuple[bool, str]:
    """The output holds a JSON object matching ``expected`` key by key and/or valid under ``schema``."""
    try:
        value = extract_json(output)
    except ValueError as exc:
        return False, str(exc)
    if schema is not None:
        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError as exc:
            return False, f"schema: {exc.message}"
    if expected is not None:
        if not isinstance(value, dict):
            return False, "output JSON is not an object"
        wrong = [key for key, want in expected.items() if key not in value or not _same_value(value[key], want)]
        if wrong:
            return False, "wrong or missing keys: " + ", ".join(str(k) for k in wrong)
    return True, ""
