"""The seam between poccheck and an inference engine."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from poccheck.errors import BackendError
from poccheck.records import ChoiceScores, Completion, ModelInfo


@dataclass(frozen=True)
class ChoiceRequest:
    """Score each continuation as a follow-on of ``prompt``."""

    prompt: str
    continuations: tuple[str, ...]


@dataclass(frozen=True)
class GenerationRequest:
    """Greedy generation until a stop string, an end-of-sequence token or ``max_tokens``."""

    prompt: str
    stop: tuple[str, ...]
    max_tokens: int


class Backend(Protocol):
    """An engine that scores choices and generates text for one loaded model."""

    info: ModelInfo

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
class ConcurrentBackend(Protocol):
    """A backend that runs many requests at once (a server): results come back as each one finishes."""

    def run_many(
        self, requests: Sequence[ChoiceRequest | GenerationRequest]
    ) -> Iterator[tuple[int, ChoiceScores | Completion | BackendError]]:
        """Yield ``(index into requests, result)`` in order of completion; a failed item yields its BackendError.

        Raises BackendError when the backend cannot go on at all (the run of this model stops).
        """
        ...
