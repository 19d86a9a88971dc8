"""A model's own chat template, applied so that task text stays text.

The template is the model's Jinja source (GGUF ``tokenizer.chat_template``, or a Hugging Face tokenizer's
``chat_template``), rendered in Jinja's immutable sandbox with the helpers chat templates expect
(``raise_exception``, ``strftime_now``, ``tojson``, ``bos_token``, ``eos_token``, ``add_generation_prompt=True``,
``tools=None``).

Task text is untrusted: an item may contain ``<|im_end|>`` or ``<start_of_turn>``, and those must reach the model as
the characters they are, not as the special tokens that end or start a turn. So the template is rendered with a
random marker in place of each turn's content. What lies between the markers is the template's own text,
tokenized with special tokens parsed; each marker becomes that turn's content, tokenized as plain text.
The template never sees the content itself, so it cannot act on it either.
"""

from __future__ import annotations

import datetime as _dt
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from poccheck.errors import BackendError, ModelError
from poccheck.records import EffectiveFormat, ModelInfo, PromptFormat, Turn

# What a template is tried on when a model's format is chosen: one question, and exemplars before it.
PROBES: tuple[tuple[Turn, ...], ...] = (
    (Turn("user", "Hi"),),
    (Turn("user", "Hi"), Turn("assistant", "Hello"), Turn("user", "Bye")),
)


@dataclass(frozen=True)
class Piece:
    """A stretch of a rendered chat: the template's text (``template``: special-token strings in it are special
    tokens) or a turn's content (plain text, whatever it contains)."""

    text: str
    template: bool


class TemplateFailure(Exception):
    """The template called ``raise_exception`` (it refuses these messages)."""


def _raise_exception(message: str) -> None:
    raise TemplateFailure(message)


def _strftime_now(format: str) -> str:  # noqa: A002 - the name templates call it with
    return _dt.datetime.now().strftime(format)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class ChatTemplate:
    """One model's chat template; compiled on first use, so a broken template fails only the runs that use it."""

    def __init__(self, source: str, model: str, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source
        self.model = model
        self.bos_token = bos_token
        self.eos_token = eos_token
        self._compiled: jinja2.Template | None = None

    def _template(self) -> jinja2.Template:
        if self._compiled is None:
            env = ImmutableSandboxedEnvironment(
                trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
            )
            env.filters["tojson"] = _tojson
            env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
            try:
                self._compiled = env.from_string(self.source)
            except jinja2.TemplateSyntaxError as exc:
                raise ModelError(
                    f"the chat template of {self.model} has a syntax error on its line {exc.lineno}: {exc.message}",
                    "assess it with --prompt-format raw",
                ) from None
        return self._compiled

    def check(self) -> None:
        """Render the probe conversations; raise :class:`ModelError` naming the model if the template fails."""
        for turns in PROBES:
            try:
                self.render(turns)
            except BackendError as exc:
                raise ModelError(f"{exc.message}", "assess it with --prompt-format raw") from None

    def render(self, turns: Sequence[Turn]) -> tuple[Piece, ...]:
        """The chat as the model reads it, ending with the assistant's reply about to begin, in pieces.

        Raises :class:`BackendError` when the template fails, or hides, repeats or reorders a turn's content."""
        template = self._template()
        contents = [turn.content for turn in turns]
        nonce = secrets.token_hex(8)
        while any(nonce in text for text in contents):  # pragma: no cover - 64 random bits
            nonce = secrets.token_hex(8)
        marks = [f"\u27e6{nonce}:{index}\u27e7" for index in range(len(turns))]
        messages = [{"role": turn.role, "content": mark} for turn, mark in zip(turns, marks, strict=True)]
        try:
            text = template.render(
                messages=messages,
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                tools=None,
                documents=None,
            )
        except (TemplateFailure, jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError) as exc:
            raise BackendError(f"the chat template of {self.model} fails: {type(exc).__name__}: {exc}") from None
        pieces: list[Piece] = []
        position = 0
        for mark, content in zip(marks, contents, strict=True):
            found = text.find(mark, position)
            if found < 0 or text.count(mark) != 1:
                raise BackendError(
                    f"the chat template of {self.model} does not show each message once and in order, "
                    "so task text cannot be kept apart from it"
                )
            if found > position:
                pieces.append(Piece(text[position:found], True))
            pieces.append(Piece(content, False))
            position = found + len(mark)
        if position < len(text):
            pieces.append(Piece(text[position:], True))
        return tuple(pieces)

    def text(self, turns: Sequence[Turn]) -> str:
        """The rendered chat as one text (for the results database and the report)."""
        return "".join(piece.text for piece in self.render(turns))


def chat_tokens(pieces: Sequence[Piece], tokenize: Callable[[str, bool], list[int]], bos: int | None) -> list[int]:
    """Token ids of a rendered chat: ``tokenize(text, special)`` parses special tokens in the template's pieces only.

    ``bos`` is the beginning-of-sequence id when the model's prompts start with one: it is added unless the
    template already put it first, so it appears exactly once."""
    tokens: list[int] = []
    for piece in pieces:
        if piece.text:
            tokens += tokenize(piece.text, piece.template)
    if bos is not None and not (tokens and tokens[0] == bos):
        tokens.insert(0, bos)
    return tokens


def resolve_format(
    requested: PromptFormat, template: ChatTemplate | None, model: str, adapter: str | None = None
) -> EffectiveFormat:
    """The format a local model's prompts take: ``chat`` where asked for (or, under ``auto``, where the model
    has a template), else ``raw``. Raises :class:`ModelError` for ``chat`` without a usable template.

    A fine-tuned model (``adapter``) learned raw prompts (``poccheck finetune`` trains on them), so ``auto`` keeps
    it on raw text: what is learned is what is tested."""
    if requested == "raw" or (requested == "auto" and adapter):
        return "raw"
    if template is None:
        if requested == "chat":
            raise ModelError(
                f"{model} has no chat template (tokenizer.chat_template), so prompt format chat cannot be used",
                "use --prompt-format auto (raw text for models without a template) or raw",
            )
        return "raw"
    template.check()
    return "chat"


class ChatPrompting:
    """What a local backend that holds a model's chat template (``_chat``, or None) answers about its prompts;
    the llama.cpp and transformers backends share it."""

    info: ModelInfo
    _chat: ChatTemplate | None

    def prompt_format(self, requested: PromptFormat) -> EffectiveFormat:
        return resolve_format(requested, self._chat, self.info.name, self.info.adapter)

    def chat_text(self, turns: tuple[Turn, ...]) -> str:
        if self._chat is None:
            raise BackendError(f"{self.info.name} has no chat template")
        return self._chat.text(turns)
