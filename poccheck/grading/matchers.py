"""Pure checks of a model's output against an expected answer. Each returns (correct, detail)."""

from __future__ import annotations

import json
import math
import re
import sys
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


# The JSON a model writes is read as standard JSON (RFC 8259) whose numbers fit a double, as a JSON consumer
# reads them: NaN and Infinity are not JSON, and a number beyond a double's range (1e999, an integer of 400 digits)
# is no usable value. Such a candidate is skipped like any other text that does not parse, so no int-to-str digit
# limit, float overflow or non-finite number reaches the comparison or JSON Schema.
_MAX_JSON_INT_DIGITS = 308  # every integer of up to 308 digits converts to a finite float


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_JSON_INT_DIGITS:
        raise ValueError(f"JSON integer of {len(text)} digits is out of range")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"JSON number {text[:20]} is out of range")
    return value


def _json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant)


_WHITESPACE = frozenset(" \t\n\r")
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_NO_VALUE = -1


def json_spans(text: str) -> tuple[list[int], list[int]]:
    """For each position of ``text``: where a JSON value starting there ends, as Python's decoder reads it
    (``-1``: none does; NaN and Infinity are not JSON), and how many arrays and objects deep it nests.

    One pass from the end, without recursion: what a value needs (its string's end, its next element, the rest
    of its members) starts further on, so it is known already. Every position costs a few steps, so a reply of
    10,000 ``[`` or ``[1,`` is read in linear time, where trying the decoder at each bracket is quadratic.
    """
    n = len(text)
    after_space = [n] * (n + 1)  # the first position at or after i that is not JSON whitespace
    after_digits = [n] * (n + 1)  # the first position at or after i that is not a digit
    string_rest = [_NO_VALUE] * (n + 1)  # end of a string whose remaining characters start at i
    end = [_NO_VALUE] * (n + 1)
    depth = [0] * (n + 1)
    items = [_NO_VALUE] * (n + 1)  # end of an array's elements from the element at i on, through the "]"
    items_depth = [0] * (n + 1)
    members = [_NO_VALUE] * (n + 1)  # end of an object's members from the key at i on, through the "}"
    members_depth = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        char = text[i]
        after_space[i] = after_space[i + 1] if char in _WHITESPACE else i
        after_digits[i] = after_digits[i + 1] if char in _DIGITS else i
        if char == '"':
            string_rest[i] = i + 1
        elif char == "\\":
            escaped = text[i + 1 : i + 2]
            if escaped and escaped in '"\\/bfnrt':
                string_rest[i] = string_rest[i + 2]
            elif escaped == "u" and len(hex_digits := text[i + 2 : i + 6]) == 4 and set(hex_digits) <= _HEX:
                string_rest[i] = string_rest[i + 6]
        elif char >= " ":  # control characters are not allowed in a string
            string_rest[i] = string_rest[i + 1]

        if char == '"':
            end[i] = string_rest[i + 1]
        elif char == "-" or char in _DIGITS:
            end[i] = _number_end(text, i, after_digits)
        elif char in "ntf":
            for word in ("null", "true", "false"):
                if text.startswith(word, i):
                    end[i] = i + len(word)
        elif char in "[{":
            first = after_space[i + 1]
            closer = "]" if char == "[" else "}"
            if first < n and text[first] == closer:
                end[i], depth[i] = first + 1, 1
            else:
                rest, rest_depth = (items, items_depth) if char == "[" else (members, members_depth)
                if rest[first] != _NO_VALUE:
                    end[i], depth[i] = rest[first], 1 + rest_depth[first]

        if end[i] != _NO_VALUE:  # the value at i as an array element: then "]" or "," and the next element
            after = after_space[end[i]]
            if after < n and text[after] == "]":
                items[i], items_depth[i] = after + 1, depth[i]
            elif after < n and text[after] == "," and items[following := after_space[after + 1]] != _NO_VALUE:
                items[i], items_depth[i] = items[following], max(depth[i], items_depth[following])
        if char == '"' and end[i] != _NO_VALUE:  # the string at i as an object's key: ":", a value, "}" or ","
            colon = after_space[end[i]]
            value = after_space[colon + 1] if colon < n and text[colon] == ":" else n
            if end[value] != _NO_VALUE:
                after = after_space[end[value]]
                if after < n and text[after] == "}":
                    members[i], members_depth[i] = after + 1, depth[value]
                elif after < n and text[after] == "," and members[following := after_space[after + 1]] != _NO_VALUE:
                    members[i], members_depth[i] = members[following], max(depth[value], members_depth[following])
    return end, depth


def _number_end(text: str, start: int, after_digits: list[int]) -> int:
    """The end of the number JSON reads at ``start`` (-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][-+]?[0-9]+)?), or -1."""
    n = len(text)
    position = start + 1 if text[start] == "-" else start
    if position >= n or text[position] not in _DIGITS:
        return _NO_VALUE
    position = position + 1 if text[position] == "0" else after_digits[position]
    if text[position : position + 1] == "." and text[position + 1 : position + 2] in _DIGITS:
        position = after_digits[position + 1]
    if text[position : position + 1] in ("e", "E"):
        exponent = position + 1 + (text[position + 1 : position + 2] in ("+", "-"))
        if exponent < n and text[exponent] in _DIGITS:
            position = after_digits[exponent]
    return position


def extract_json(text: str) -> Any:
    """The first JSON object or array embedded in ``text``; raises ValueError when there is none.

    The decoder is tried only where :func:`json_spans` finds a whole value nested no deeper than Python's
    recursion limit: each try then succeeds, unless a number in it is out of range or the stack runs out."""
    if "{" in text or "[" in text:
        end, depth = json_spans(text)
        limit = sys.getrecursionlimit()
        for index, char in enumerate(text):
            if char in "{[" and end[index] != _NO_VALUE and depth[index] <= limit:
                try:
                    value, _ = _DECODER.raw_decode(text, index)
                except (ValueError, RecursionError):  # JSONDecodeError is a ValueError, as are the checks above
                    continue
                return value
    raise ValueError("output contains no JSON object")


def _same_number(got: int | float, want: int | float) -> bool:
    """Ints compare exactly (however long); otherwise within a relative 1e-9. An int too large for a float
    is never close to a float (floats stop at 1.8e308)."""
    if isinstance(got, int) and isinstance(want, int):
        return got == want
    try:
        return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-9)
    except OverflowError:
        return False


def _same_value(got: Any, want: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want if isinstance(want, bool) else False
    if isinstance(want, int | float) and isinstance(got, int | float):
        return _same_number(got, want)
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
        except RecursionError:  # uniqueItems, enum or const comparing a value nested hundreds of levels deep
            return False, Message.of("grade.too_deep")
    if expected is not None:
        if not isinstance(value, dict):
            return False, Message.of("grade.not_object")
        wrong = [key for key, want in expected.items() if key not in value or not _same_value(value[key], want)]
        if wrong:
            return False, Message.of("grade.wrong_keys", keys=", ".join(str(k) for k in wrong))
    return True, None
