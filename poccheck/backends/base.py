"""The seam between poccheck and an inference engine."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from poccheck.errors import BackendError, ModelError
from poccheck.records import ChoiceScores, Completion, EffectiveFormat, ModelInfo, PromptFormat, Turn

# A greedy decoder that falls into a loop ("1.1.1.1...", or the same sentence again under a new step number) stays
# in it until its token budget runs out: SmolLM2 and Gemma 3 spent 40% of their chain-of-thought tokens there on
# the example suite. A generation is stopped as looping when its last LOOP_WINDOW tokens repeat with some period of
# at most a third of that, at most LOOP_MISMATCH of them differing from the token one period earlier (a step number
# that counts up). Replayed over 64 chains of the four ladder models generated without it (benchmarks/loop_stop.py,
# 16 items each): it fired on 19 of the 22 that ran to their 512-token budget and on none of the 42 that ended by
# themselves; a 96-token window fired on two of those.
LOOP_WINDOW = 192
LOOP_MAX_PERIOD = LOOP_WINDOW // 3
LOOP_MISMATCH = 0.08
LOOP_RULE = f"last {LOOP_WINDOW} tokens repeat with a period <= {LOOP_MAX_PERIOD}, <= {LOOP_MISMATCH:.0%} differing"


def looping(tokens: Sequence[int], window: int = LOOP_WINDOW) -> bool:
    """Whether a generation's last ``window`` tokens are a loop (see LOOP_RULE: periods up to a third of it)."""
    if len(tokens) < window:
        return False
    tail = np.asarray(tokens[-window:])
    return any(
        np.count_nonzero(tail[period:] != tail[:-period]) <= LOOP_MISMATCH * (window - period)
        for period in range(1, window // 3 + 1)
    )


def default_threads() -> int:
    """The CPU cores this process may run on: a local engine's threads."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ChoiceRequest:
    """Score each continuation as a follow-on of ``prompt``.

    With ``turns`` the prompt is those chat turns in the model's chat template (``prompt`` is then only their
    rendered text, for the record), and each continuation starts the assistant's reply."""

    prompt: str
    continuations: tuple[str, ...]
    turns: tuple[Turn, ...] = ()


@dataclass(frozen=True)
class GenerationRequest:
    """Greedy generation until a stop string, an end-of-sequence token or ``max_tokens``; with ``turns``, the
    assistant's reply to those chat turns (see :class:`ChoiceRequest`). ``repetition_penalty`` other than 1 is
    applied as Hugging Face applies it (:func:`penalise_repeats`)."""

    prompt: str
    stop: tuple[str, ...]
    max_tokens: int
    turns: tuple[Turn, ...] = ()
    repetition_penalty: float = 1.0


def penalise_repeats(
    logits: np.ndarray[Any, np.dtype[np.float32]], seen: np.ndarray[Any, np.dtype[np.bool_]], penalty: float
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Hugging Face's repetition penalty (``RepetitionPenaltyLogitsProcessor``): every token that occurs anywhere
    in the context (``seen``: prompt and generated so far), counted once, has a positive logit divided by
    ``penalty`` and a negative one multiplied by it. Below 1 it rewards repeats (the published study's 0.0001)."""
    chosen = logits[seen]
    out = logits.copy()
    out[seen] = np.where(chosen < 0, chosen * penalty, chosen / penalty)
    return out


class Backend(Protocol):
    """An engine that scores choices and generates text for one loaded model."""

    info: ModelInfo

    @property
    def choice_batch(self) -> int:
        """How many multiple-choice items the runner hands :meth:`score_choices` at once: the items decoded
        together, saved together when the call returns (so the most an interrupted run can lose)."""
        ...

    def score_choices(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceScores]:
        """Return one :class:`ChoiceScores` per request, in order."""
        ...

    def generate(self, request: GenerationRequest) -> Completion:
        """Generate greedily for one request."""
        ...

    def settings(self) -> dict[str, object]:
        """Settings that change outputs (part of each result's key)."""
        ...

    def peak_vram(self) -> int | None:
        """Peak GPU memory in bytes since loading, or None when no GPU is used."""
        ...

    def close(self) -> None:
        """Free the model."""
        ...


@runtime_checkable
class ChatBackend(Protocol):
    """A backend that can prompt a model in its chat format."""

    def prompt_format(self, requested: PromptFormat) -> EffectiveFormat:
        """The format prompts take on this model when ``requested`` is asked for: ``chat`` (its chat template
        is applied to requests with turns) or ``raw``. Raises ModelError when ``chat`` is impossible."""
        ...

    def chat_text(self, turns: tuple[Turn, ...]) -> str:
        """The text the model reads for these turns (its chat template applied). Raises BackendError."""
        ...


def effective_format(backend: object, requested: PromptFormat, model: str) -> EffectiveFormat:
    """The prompt format ``backend`` gives a suite that asks for ``requested``; a backend without chat support
    prompts with raw text (and refuses ``chat``)."""
    if isinstance(backend, ChatBackend):
        return backend.prompt_format(requested)
    if requested == "chat":
        raise ModelError(f"{model} cannot be prompted in a chat format", "use --prompt-format auto or raw")
    return "raw"


@runtime_checkable
class BatchedGenerationBackend(Protocol):
    """A local engine that decodes several generations together."""

    def batch_key(self, parallel: int) -> dict[str, object]:
        """What the results' key must add when ``parallel`` generations are decoded together: nothing where each
        output is what the item gives alone (llama.cpp below its tiled kernels' batch size, without repacked
        decoding), else what sets the numbers apart (llama.cpp's tiled or repacked decode steps, transformers'
        padded batch size), so results computed otherwise are not mixed with them."""
        ...

    def generate_many(
        self, requests: Sequence[GenerationRequest], parallel: int
    ) -> Iterator[tuple[int, Completion | BackendError]]:
        """Yield ``(index into requests, result)`` as each generation finishes, at most ``parallel`` in flight; a
        request that cannot run yields its BackendError. Outputs are those each request gives alone."""
        ...


@runtime_checkable
class ConcurrentBackend(Protocol):
    """A backend that runs many requests at once (a server): results come back as each one finishes.
    ``concurrency``: the most requests it has in flight, so the number a measured latency was taken at."""

    @property
    def concurrency(self) -> int: ...

    def run_many(
        self, requests: Sequence[ChoiceRequest | GenerationRequest]
    ) -> Iterator[tuple[int, ChoiceScores | Completion | BackendError]]:
        """Yield ``(index into requests, result)`` in order of completion; a failed item yields its BackendError.

        Raises BackendError when the backend cannot go on at all (the run of this model stops).
        """
        ...
