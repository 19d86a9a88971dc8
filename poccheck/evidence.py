"""Collect attention evidence for a model after its items have run (transformers backend only).

For a few items (by default two failures and one success) it stores an attention view of the model's own
answer, and for every item with a gold answer text it stores the copy-attention score of the teacher-forced
gold text. Both are kept in the results database so ``poccheck report`` can redraw them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Protocol, runtime_checkable

from poccheck.errors import BackendError
from poccheck.grading import grade_output
from poccheck.grading.attention import copy_score, view
from poccheck.records import AttentionCapture, StoredResult, TaskItem, Turn
from poccheck.store import Store

VIEW_FAILURES = 2
VIEW_SUCCESSES = 1
MAX_SCORED_ITEMS = 200


@runtime_checkable
class AttentionBackend(Protocol):
    def capture_attention(self, prompt: str, answer: str, turns: tuple[Turn, ...] = ()) -> AttentionCapture: ...


def gold_text(item: TaskItem) -> str | None:
    """The text a correct answer would contain, when the item has one (a rationale, then the answer)."""
    if item.is_multiple_choice:
        answer: str | None = item.choices[item.answer]
    elif item.type in {"exact", "contains", "numeric"}:
        answer = str(item.answer)
    else:
        answer = None
    rationale = item.metadata.get("rationale")
    if rationale and answer:
        return f" {rationale} The answer is {answer}."
    return f" {answer}" if answer else None


def model_answer(item: TaskItem, output: str, scores: Sequence[float] | None, continuations: Sequence[str]) -> str:
    """The text the model produced (generation) or chose (multiple choice: the best of its choice ``scores``)."""
    if item.is_multiple_choice and scores:
        return continuations[max(range(len(scores)), key=scores.__getitem__)]
    return output


def collect(
    backend: AttentionBackend,
    store: Store,
    fingerprint: str,
    settings_key: str,
    work: Sequence[Any],
) -> None:
    """Compute and store attention views and copy scores that are not stored yet for this model setting."""
    have = store.attention_keys(fingerprint, settings_key)
    results = {r.item_key: r for r in store.results_for(fingerprint, settings_key) if r.error is None}
    graded = [(w, results[w.key], _correct(w, results[w.key])) for w in work if w.key in results]
    failures = [(w, r, ok) for w, r, ok in graded if not ok][:VIEW_FAILURES]
    successes = [(w, r, ok) for w, r, ok in graded if ok][:VIEW_SUCCESSES]
    for w, r, correct in failures + successes:
        if (w.key, "view") in have:
            continue
        answer = model_answer(w.item, r.output, r.choice_logprobs, w.prompt.continuations)
        try:
            capture = backend.capture_attention(w.prompt.text, answer, w.prompt.turns)
        except BackendError:  # e.g. prompt and answer longer than the model's context: no view for this item
            continue
        payload = {"view": asdict(view(capture)), "answer": answer, "correct": correct}
        store.save_attention(fingerprint, settings_key, w.key, "view", payload)
    for w, _, correct in graded[:MAX_SCORED_ITEMS]:
        gold = gold_text(w.item)
        if gold is None or (w.key, "copy") in have:
            continue
        if w.prompt.turns:  # the assistant's reply starts right after the chat template's turn header
            gold = gold.lstrip()
        try:
            score = copy_score(backend.capture_attention(w.prompt.text, gold, w.prompt.turns))
        except BackendError:
            continue
        payload = {"score": asdict(score) if score else None, "correct": correct}
        store.save_attention(fingerprint, settings_key, w.key, "copy", payload)


def _correct(work: Any, result: StoredResult) -> bool:
    """Whether the stored output answers the item (the runner stores outputs ungraded)."""
    grade = grade_output(work.item, result.output, result.choice_logprobs, work.mode, work.suite.answer_pattern)
    return grade.correct
