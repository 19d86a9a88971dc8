"""Grade stored outputs against items. Grading is pure, so changing an answer key means re-grading, not re-running."""

from __future__ import annotations

import re
from collections.abc import Sequence

from poccheck.grading import matchers
from poccheck.grading.prontoqa import check_prontoqa
from poccheck.i18n import Message
from poccheck.probe.check import check_proof
from poccheck.probe.logic import Language
from poccheck.records import LETTERS, PRONTOQA_CHECKER, Grade, Mode, TaskItem, choice_label
from poccheck.tasks.prompts import read_letter


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
        prediction=choice_label(item.choices, best),
        correct_norm=best_norm == item.answer,
        margin=margin,
        detail=None if best == item.answer else _gold(item),
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
    elif item.type == "proof" and item.metadata.get("checker") == PRONTOQA_CHECKER:
        found = check_prontoqa(output, item.input, item.answer)
        return Grade(correct=found.strict, prediction=output.strip(), detail=found.detail, lenient=found.lenient)
    elif item.type == "proof":
        meta = item.metadata
        lang: Language = "ja" if str(meta.get("lang", "en")).startswith("ja") else "en"
        checked = check_proof(output, meta["premises"], item.answer, str(meta["name"]), lang)
        return Grade(correct=checked.strict, prediction=output.strip(), detail=checked.detail, lenient=checked.lenient)
    else:
        raise ValueError(f"item {item.id}: {item.type} is not a generation type")
    return Grade(correct=ok, prediction=output.strip(), detail=detail)


def grade_output(
    item: TaskItem,
    text: str,
    choice_logprobs: Sequence[float] | None,
    mode: Mode = "fewshot",
    answer_pattern: str | None = None,
) -> Grade:
    """Grade a stored output. Multiple choice scored by likelihood uses the choice scores, multiple choice answered
    with a letter (a server without prompt log-probs) the letter in its reply; a chain of thought
    (``cot``) is graded on the answer extracted from it, and counts as unanswered when none can be found.
    Proofs are always checked whole."""
    if item.is_multiple_choice and mode != "cot" and answered_by_letter(text, choice_logprobs):
        return grade_letter(item, text)
    if item.is_multiple_choice and choice_logprobs is not None:
        return grade_choices(item, choice_logprobs)
    if item.type == "proof" or mode != "cot":
        if item.is_multiple_choice:
            raise ValueError(f"item {item.id}: no choice scores stored")
        return grade_text(item, text)
    extracted = extract_answer(text, answer_pattern)
    if extracted is None:
        return Grade(correct=False, prediction=text.strip(), detail=Message.of("grade.unparseable"), answered=False)
    if item.is_multiple_choice:
        index = choice_from_text(extracted, item.choices)
        if index is None:
            return Grade(False, extracted, detail=Message.of("grade.not_a_choice", answer=extracted), answered=False)
        ok = index == item.answer
        return Grade(ok, choice_label(item.choices, index), detail=None if ok else _gold(item))
    graded = grade_text(item, extracted)
    return Grade(graded.correct, extracted, detail=graded.detail)


def answered_by_letter(text: str, choice_logprobs: Sequence[float] | None) -> bool:
    """A multiple-choice answer a server gave as a letter in its reply (no prompt log-probs to score the choices
    with): it has no choice scores, so no margin and no length-normalised answer. Results stored before scores
    became optional hold invented ones instead (0 for the letter read, -100 for every other choice)."""
    if not text:
        return False  # scored choices carry no reply text
    if not choice_logprobs:
        return True
    values = sorted(choice_logprobs, reverse=True)
    return values[0] == 0.0 and all(value == -100.0 for value in values[1:])


def grade_letter(item: TaskItem, text: str) -> Grade:
    """Grade a multiple-choice item from the letter (or choice text) in a reply: no scores, so no margin."""
    index = read_letter(text, item.choices)
    if index is None:
        reply = text.strip()
        return Grade(False, reply, detail=Message.of("grade.not_a_choice", answer=reply), answered=False)
    ok = index == item.answer
    return Grade(ok, choice_label(item.choices, index), detail=None if ok else _gold(item))


def _gold(item: TaskItem) -> Message:
    return Message.of("grade.gold", choice=item.gold_choice)


DEFAULT_ANSWER_PATTERNS = (
    r"(?i)\bthe (?:final |correct |right )?answer is[:\s]*(.+?)(?:\.\s|\.$|\n|$)",
    r"(?:答え|正解)は[:：\s]*「?(.+?)」?(?:です|である|だ)?(?:。|\n|$)",
)


def extract_answer(text: str, pattern: str | None = None) -> str | None:
    """The final answer stated in a chain of thought: the last match of the pattern's first group."""
    found: list[str] = []
    for candidate in [pattern] if pattern else list(DEFAULT_ANSWER_PATTERNS):
        found += [m.group(1) for m in re.finditer(candidate, text)]
        if found:
            break
    if not found:
        return None
    answer = found[-1].strip().strip("*").strip()
    return answer or None


def choice_from_text(answer: str, choices: Sequence[str]) -> int | None:
    """A choice index from '(B)', 'B', 'b)' or the choice's text."""
    letter = re.fullmatch(r"\(?([A-Za-z])\)?(?:[.:)]\s*.*)?", answer.strip())
    if letter and letter.group(1).upper() in LETTERS[: len(choices)]:
        return LETTERS.index(letter.group(1).upper())
    wanted = matchers.normalize(answer).strip(" .。")
    for index, choice in enumerate(choices):
        if matchers.normalize(choice) == wanted:
            return index
    return None
