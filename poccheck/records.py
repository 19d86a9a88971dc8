"""Typed values passed between stages: tasks, models, backend outputs and stored results.

They are frozen dataclasses without I/O, so each stage can be tested alone.
"""

from __future__ import annotations

import hashlib
import json
import string
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal

from poccheck.errors import StoreError
from poccheck.i18n import Message

LETTERS = string.ascii_uppercase  # multiple-choice letters: choice i is LETTERS[i]; at most 26 choices


def choice_label(choices: tuple[str, ...], index: int) -> str:
    """A choice as shown and stored: ``"B. line B"``."""
    return f"{LETTERS[index]}. {choices[index]}"


def stable_hash(value: Any) -> str:
    """A short, stable key for a JSON-able value (dict order does not matter): items, settings, fine-tuning data."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


ItemType = Literal["multiple_choice", "exact", "contains", "regex", "numeric", "json", "proof"]
ITEM_TYPES: tuple[ItemType, ...] = ("multiple_choice", "exact", "contains", "regex", "numeric", "json", "proof")
GENERATION_TYPES: tuple[ItemType, ...] = ("exact", "contains", "regex", "numeric", "json", "proof")
# A proof item's ``metadata.checker``: ``prontoqa`` grades a PrOntoQA(-OOD) proof with the published study's
# checker (poccheck.grading.prontoqa), its premises taken from the question; otherwise poccheck's own probe checker.
PRONTOQA_CHECKER = "prontoqa"
Mode = Literal["direct", "fewshot", "cot"]
MODES: tuple[Mode, ...] = ("direct", "fewshot", "cot")
# How prompts are laid out: ``chat`` in the model's own chat template (exemplars as user/assistant turns), ``raw``
# as plain text (the published study's protocol), ``auto`` chat where the model has a template, else raw.
PromptFormat = Literal["auto", "chat", "raw"]
PROMPT_FORMATS: tuple[PromptFormat, ...] = ("auto", "chat", "raw")
EffectiveFormat = Literal["chat", "raw"]
# Why a generation ended.
# stop: a stop string or the end of the model's turn; length: the token budget; context: the model's context size;
# loop: the decoder repeated itself (poccheck.backends.base.looping)
FinishReason = Literal["stop", "length", "context", "loop"]
FINISH_REASONS: tuple[FinishReason, ...] = ("stop", "length", "context", "loop")
# Instruct models explain in paragraphs: measured, Qwen2.5-Coder 0.5B's chains on the example suite run past 256.
DEFAULT_COT_MAX_TOKENS = 512
# Chains of thought run in paragraphs: their default stop strings end only at the next question, never at a blank line.
COT_TURN_MARKERS: tuple[str, ...] = ("\nQ:",)


@dataclass(frozen=True)
class TaskItem:
    """One task the model must do, as read from a task file.

    For ``multiple_choice`` items ``answer`` is the index of the gold choice; for ``json`` items
    it is the expected object (or None when ``schema`` is given); otherwise it is a string.
    """

    id: str
    input: str
    type: ItemType
    answer: Any
    category: str = "general"
    choices: tuple[str, ...] = ()
    tolerance: float | None = None
    schema: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    line: int | None = None

    @property
    def gold_choice(self) -> str:
        """The right choice of a multiple-choice item as shown: ``"B. line B"``."""
        return choice_label(self.choices, self.answer)

    @property
    def is_multiple_choice(self) -> bool:
        return self.type == "multiple_choice"


@dataclass(frozen=True)
class Exemplar:
    """A few-shot example shown before the question."""

    input: str
    answer: str
    choices: tuple[str, ...] = ()
    rationale: str | None = None
    category: str | None = None  # when set, the exemplar is shown only for items of this category


@dataclass(frozen=True)
class Turn:
    """One message of a chat: task text, never template code (it is tokenized as plain text)."""

    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class Suite:
    """A set of items plus how to prompt for them.

    ``max_tokens`` and ``stop`` bound direct answers; a chain of thought (mode ``cot``) has its own
    ``cot_max_tokens`` and ``cot_stop``."""

    name: str
    path: str
    items: tuple[TaskItem, ...]
    description: str = ""
    language: str = "en"
    prompt_template: str | None = None
    fewshot: tuple[Exemplar, ...] = ()
    stop: tuple[str, ...] = ("\n\n",)
    max_tokens: int = 64
    answer_pattern: str | None = None
    prompt_format: PromptFormat = "auto"
    cot_max_tokens: int = DEFAULT_COT_MAX_TOKENS
    cot_stop: tuple[str, ...] = COT_TURN_MARKERS
    repetition_penalty: float = 1.0  # every generation's, as Hugging Face applies it (1.0: plain greedy)

    def stop_for(self, mode: Mode) -> tuple[str, ...]:
        """The stop strings of a generation in ``mode``."""
        return self.cot_stop if mode == "cot" else self.stop

    def max_tokens_for(self, mode: Mode) -> int:
        """The token budget of a generation in ``mode``."""
        return self.cot_max_tokens if mode == "cot" else self.max_tokens


@dataclass(frozen=True)
class ModelInfo:
    """What poccheck knows about a model file before running it."""

    name: str
    backend: str
    path: str
    fingerprint: str
    parameters: int | None = None
    quantization: str | None = None
    file_size: int | None = None
    context_length: int | None = None
    architecture: str | None = None
    family: str | None = None
    layers: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    adapter: str | None = None  # a LoRA adapter folder applied on top (``M+lora:<name>``)
    base_fingerprint: str | None = None  # the base weights' fingerprint when an adapter is applied
    price: str | None = None  # served models: the cloud price profile their measured tokens are priced with
    # the key poccheck before 0.x gave these weights (size + first and last 4 MiB): results stored under it are
    # re-keyed to ``fingerprint`` when the model next runs, so output folders keep resuming
    legacy_fingerprint: str | None = None


@dataclass(frozen=True)
class ChoiceScores:
    """Log-likelihoods of each choice continuation given the prompt."""

    logprobs: tuple[float, ...]
    token_counts: tuple[int, ...]
    prompt_tokens: int
    seconds: float
    text: str = ""  # the reply, when the choice was generated and its letter read (no log-probs to score)
    completion_tokens: int = 0  # tokens generated: a lettered reply, or the one token an echo request returns

    @property
    def input_tokens(self) -> int:
        """Tokens read for this item, whatever the backend: the prompt once and every choice (what costs and
        throughput count). A lettered prompt lists the choices itself and has no continuations."""
        return self.prompt_tokens + sum(self.token_counts)


@dataclass(frozen=True)
class Completion:
    """A generated continuation with its timings."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    ttft: float
    finish_reason: FinishReason
    mean_logprob: float | None = None

    @property
    def decode_tokens_per_second(self) -> float | None:
        decode_time = self.seconds - self.ttft
        if self.completion_tokens <= 1 or decode_time <= 0:
            return None
        return (self.completion_tokens - 1) / decode_time


@dataclass(frozen=True)
class Grade:
    """How an output scored against the item's answer."""

    correct: bool
    prediction: str
    correct_norm: bool | None = None
    margin: float | None = None
    detail: Message | None = None  # why it was graded wrong (or how a proof fared)
    answered: bool = True
    lenient: bool | None = None


@dataclass(frozen=True)
class ResultRow:
    """One stored result: a model's output for one item under one setting."""

    model: str
    model_fingerprint: str
    suite: str
    item_id: str
    item_key: str
    settings_key: str
    mode: str
    category: str
    type: ItemType
    prompt: str
    output: str
    choice_logprobs: tuple[float, ...] | None
    prompt_tokens: int
    completion_tokens: int
    latency: float
    ttft: float | None
    finish_reason: str | None
    mean_logprob: float | None = None
    error: str | None = None
    prediction: str | None = None
    correct: bool | None = None
    margin: float | None = None


@dataclass(frozen=True)
class AttentionCapture:
    """Attention of the answer tokens, captured with eager attention (transformers backend).

    ``weights[layer][head][a][t]`` is how much answer token ``a`` (a query) attends to position ``t`` of the
    whole sequence (prompt then answer); rows cover positions up to and including the query.
    """

    tokens: tuple[str, ...]
    token_ids: tuple[int, ...]
    prompt_length: int
    weights: Any  # numpy array [layers, heads, answer tokens, all tokens]


@dataclass(frozen=True, kw_only=True)
class StoredResult(ResultRow):
    """A result as the store gives it back: the row as it went in, the run that wrote it and when."""

    run_id: int
    created: float


@dataclass(frozen=True)
class StoredItem:
    """A task item as stored with the results (what reports re-grade against): under its content key, with the
    prompting mode and answer pattern it was run with."""

    suite: str
    item_key: str
    mode: str
    answer_pattern: str | None
    item: TaskItem


@dataclass(frozen=True)
class RunRecord:
    """One ``poccheck assess`` into an output folder: when, how it ended, and its manifest (what was asked for)."""

    id: int
    started: float
    finished: float | None
    status: str  # running, done, interrupted or failed
    manifest: dict[str, Any]


@dataclass(frozen=True)
class ModelRun:
    """One model within one run: how far it got, what it cost in time and memory, and the settings it ran with
    (``settings`` as recorded; None for a model that failed to load)."""

    run_id: int
    model: str
    fingerprint: str | None = None
    settings_key: str | None = None
    load_seconds: float | None = None
    peak_rss: int | None = None
    baseline_rss: int | None = None
    items_done: int = 0
    seconds: float | None = None
    error: str | None = None
    settings: dict[str, Any] | None = None
    peak_vram: int | None = None


@dataclass(frozen=True)
class LatencySample:
    """A generated item timed again alone, after its run decoded it with others in flight: single-request latency
    beside the latency stored with its result, and whether the text came out the same."""

    model_fingerprint: str
    settings_key: str
    item_key: str
    latency: float
    ttft: float | None
    completion_tokens: int
    same_output: bool


@dataclass(frozen=True)
class AttentionRecord:
    """Attention evidence stored for one item: a ``view`` of the model's own answer, or the ``copy`` score of the
    gold text. ``view`` and ``score`` are the JSON forms of ``grading.attention``'s AttentionView and CopyScore
    (a layer above the store, which analysis turns them back into)."""

    item_key: str
    kind: Literal["view", "copy"]
    correct: bool
    answer: str | None = None
    view: dict[str, Any] | None = None
    score: dict[str, Any] | None = None


@dataclass(frozen=True)
class Stored:
    """Everything an output folder holds, read at once (``poccheck.store.Store.snapshot``): what analysis works
    from, so that it never touches the database."""

    manifest: dict[str, Any]  # the latest run's manifest ({} before any run)
    runs: tuple[RunRecord, ...]
    items: tuple[StoredItem, ...]
    model_infos: dict[str, ModelInfo]
    model_runs: tuple[ModelRun, ...]
    results: tuple[StoredResult, ...]
    attention: dict[tuple[str, str], tuple[AttentionRecord, ...]]  # (model fingerprint, settings key) -> records
    latency_samples: tuple[LatencySample, ...] = ()


def item_from_record(record: dict[str, Any]) -> TaskItem:
    """The task item stored with a result; a record that is no longer one (a damaged database) is a StoreError."""
    try:
        record = dict(record)
        record["choices"] = tuple(record.get("choices") or ())
        return TaskItem(**record)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"a stored task item is damaged ({exc})",
            "the results database is damaged: restore it from a copy, or run the assessment again into a new --out",
        ) from exc


def content_hash(item: TaskItem) -> str:
    """What the model reads, normalised (NFKC, case-folded, spaces collapsed), hashed: two items that read the
    same have the same hash whatever their ids (the fine-tuning guards compare these)."""
    parts = [item.input, *item.choices]
    text = "\x1f".join(" ".join(unicodedata.normalize("NFKC", p).casefold().split()) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:20]
