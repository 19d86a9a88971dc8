"""Grade stored outputs against items. Grading is pure, so changing an answer key means re-grading, not re-running."""

from __future__ import annotations

from collections.abc import Sequence

from poccheck.grading import matchers
from poccheck.records import Grade, TaskItem

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def grade_choices(item: TaskItem, logprobs: Sequence[float]) -> Grade:
    """Grade a multiple-choice item from each choice's log-likelihood.

    ``correct`` uses the raw sum of log-probabilities (acc); ``correct_norm`` divides each by the
    choice's length in characters (acc_norm, as lm-evaluation-harness does). ``margin`` is the gap in
    log-probability between the best and the second-best choice: a confidence signal.
    """
    if len(logprobs) != len(item.choices):
        raise ValueError(f"item {item.id}: {len(logprobs)} scores for {len(item.choices)} choices")
    best = max(range(len(logprobs)), key=lambda i: logprobs[i])
    normed = [lp / max(len(choice), 1) for lp, choice in zip(logprobs, item.choices, strict=True)]
    best_norm = max(range(len(normed)), key=lambda i: normed[i])
    ordered = sorted(logprobs, reverse=True)
    margin = ordered[0] - ordered[1] if len(ordered) > 1 else None
    return Grade(
        correct=best == item.answer,
        prediction=f"{LETTERS[best]}. {item.choices[best]}",
        correct_norm=best_norm == item.answer,
        margin=margin,
        detail="" if best == item.answer else f"gold {LETTERS[item.answer]}. {item.choices[item.answer]}",
    )


def grade_text(item: TaskItem, output: str) -> Grade:
    """Grade a generated output with the item's grader."""
    if item.type == "exact":
        ok, detail = matchers.match_exact(output, item.answer)
    elif item.type == "contains":
        ok, detail = matchers.match_contains(output, item.answer)
    elif item.type == "regex":
        ok, detail = matchers.match_regex(output, item.answer)
    elif item.type == "numeric":
        ok, detail = matchers.match_numeric(output, item.answer, item.tolerance)
    elif item.type == "json":
        ok, detail = matchers.match_json(output, item.answer, item.schema)
    else:
        raise ValueError(f"item {item.id}: {item.type} is not a generation type")
    return Grade(correct=ok, prediction=output.strip(), detail=detail)


def grade_output(item: TaskItem, text: str, choice_logprobs: Sequence[float] | None) -> Grade:
    """Grade a stored output: choice scores for multiple choice, text otherwise."""
    if item.is_multiple_choice:
        if choice_logprobs is None:
            raise ValueError(f"item {item.id}: no choice scores stored")
        return grade_choices(item, choice_logprobs)
    return grade_text(item, text)
