"""A deterministic scripted model: its answers are written in advance in a YAML file, run as ``FILE@scripted``.

It loads nothing and answers at once, so the runner, resume, grading, analysis and the report can be tested in
seconds, and a plan can be tried end to end before any model is installed. A script::

    # poccheck scripted model
    parameters: 135000000          # optional: the size it stands for (cascades, size fits, own-server costs)
    replies:                       # generations, in the order asked, cycled
      - "42"
      - {error: "server said 500"} # this generation fails with that error
    by_prompt:                     # optional: a reply for any prompt containing the text (checked first, in order)
      "part number": "P-17"
    choices:                       # multiple choice: log-probabilities per choice, in the order asked, cycled
      - [-0.5, -2.0]               # missing or shorter: the remaining choices get -10
    latency_seconds: 0.01          # optional: reported per item (nothing waits)

The results' key is the SHA-256 of the file, so editing the script starts its results over.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from poccheck.backends.base import ChoiceRequest, GenerationRequest
from poccheck.errors import BackendError, ModelError, did_you_mean
from poccheck.records import ChoiceScores, Completion, FinishReason, ModelInfo

UNLISTED_CHOICE = -10.0  # the log-probability of a choice the script gives none for

_REPLY = {
    "oneOf": [
        {"type": "string"},
        {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"],
         "additionalProperties": False},
    ]
}  # fmt: skip
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "parameters": {"type": "integer", "minimum": 1},
        "replies": {"type": "array", "items": _REPLY},
        "by_prompt": {"type": "object", "additionalProperties": _REPLY},
        "choices": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 1}},
        "latency_seconds": {"type": "number", "minimum": 0},
    },
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Script:
    replies: tuple[str | BackendError, ...]
    by_prompt: tuple[tuple[str, str | BackendError], ...]
    choices: tuple[tuple[float, ...], ...]
    latency: float
    parameters: int | None


def read_script(path: Path) -> Script:
    """The script in ``path``; ModelError naming the file, the line and the field when it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
        document = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read the scripted model {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark else ""
        raise ModelError(f"{path}{line}: not valid YAML", "a scripted model is a YAML mapping (see --help)") from exc
    document = {} if document is None else document
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(SCHEMA).iter_errors(document))
    if error is not None:
        at, message = list(error.absolute_path), error.message
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        extra = sorted(str(k) for k in error.instance if k not in known) if isinstance(error.instance, dict) else []
        if error.validator == "additionalProperties" and extra:
            at, message = [*at, extra[0]], f"unknown field {extra[0]!r}{did_you_mean(extra[0], list(known))}"
        where = ".".join(str(p) for p in at) or "the file"
        found = _line(text, at)
        raise ModelError(
            f"{path}{f', line {found}' if found else ''} [{where}]: {message}",
            "fields: parameters, replies, by_prompt, choices, latency_seconds",
        )

    def reply(value: Any) -> str | BackendError:
        return BackendError(value["error"]) if isinstance(value, dict) else str(value)

    return Script(
        replies=tuple(reply(r) for r in document.get("replies", [])),
        by_prompt=tuple((str(k), reply(v)) for k, v in document.get("by_prompt", {}).items()),
        choices=tuple(tuple(float(x) for x in row) for row in document.get("choices", [])),
        latency=float(document.get("latency_seconds", 0.01)),
        parameters=document.get("parameters"),
    )


def _line(text: str, path: list[str | int]) -> int | None:
    """The 1-based line of the value at ``path`` in the YAML text (its deepest part that exists)."""
    node: Any = yaml.compose(text)
    line = None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            key, node = next(((k, v) for k, v in node.value if k.value == str(part)), (None, None))
            if key is not None and part == path[-1]:
                return int(key.start_mark.line) + 1  # a field: the line of its name
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


class ScriptedBackend:
    """Answers from a script; see the module's docstring."""

    choice_batch = 1

    def __init__(self, info: ModelInfo) -> None:
        self.info = info
        self._script = read_script(Path(info.path))
        self._replies: Iterator[str | BackendError] | None = (
            itertools.cycle(self._script.replies) if self._script.replies else None
        )
        self._choices: Iterator[tuple[float, ...]] | None = (
            itertools.cycle(self._script.choices) if self._script.choices else None
        )

    def score_choices(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceScores]:
        scored = []
        for request in requests:
            given = next(self._choices) if self._choices else ()
            count = len(request.continuations)
            logprobs = tuple(given[:count]) + (UNLISTED_CHOICE,) * max(0, count - len(given))
            scored.append(
                ChoiceScores(
                    logprobs, tuple(_tokens(c) for c in request.continuations), _tokens(request.prompt),
                    self._script.latency,
                )
            )  # fmt: skip
        return scored

    def generate(self, request: GenerationRequest) -> Completion:
        reply = next((r for text, r in self._script.by_prompt if text in request.prompt), None)
        if reply is None:
            reply = next(self._replies) if self._replies else ""
        if isinstance(reply, BackendError):
            raise BackendError(reply.message)
        tokens = _tokens(reply)
        finish: FinishReason = "stop"
        if tokens > request.max_tokens:
            reply, tokens, finish = " ".join(reply.split()[: request.max_tokens]), request.max_tokens, "length"
        seconds = self._script.latency
        return Completion(reply, _tokens(request.prompt), tokens, seconds, seconds / 2, finish, -0.1)

    def settings(self) -> dict[str, object]:
        return {"scripted": True}

    def peak_vram(self) -> int | None:
        return None

    def close(self) -> None:
        pass


def _tokens(text: str) -> int:
    """A scripted model's tokens are words (at least one per text)."""
    return max(1, len(text.split()))
