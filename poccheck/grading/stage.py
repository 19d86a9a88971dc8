"""Grading as a stage: every stored result graded once against the item stored with it (today's answer key).

The runner stores raw outputs; the pipeline grades what an output folder holds after a run (and ``poccheck report``
again, on purpose, so results kept from earlier runs meet today's answer key), saves the grades, and hands them to
analysis with the stored results.
"""

from __future__ import annotations

from poccheck.grading.grade import grade_output
from poccheck.records import Grade, Mode, Stored

GradeKey = tuple[str, str, str]  # (model fingerprint, item key, settings key): one stored result
GradeUpdate = tuple[str | None, bool | None, float | None, str, str, str]  # prediction, correct, margin, *key


def grade_stored(stored: Stored) -> dict[GradeKey, Grade | None]:
    """The grade of every stored result whose item is stored (None: the model failed on it)."""
    items = {(stored_item.suite, stored_item.item_key): stored_item for stored_item in stored.items}
    grades: dict[GradeKey, Grade | None] = {}
    for result in stored.results:
        found = items.get((result.suite, result.item_key))
        if found is None:
            continue
        key = (result.model_fingerprint, result.item_key, result.settings_key)
        if result.error:
            grades[key] = None
            continue
        mode: Mode = "cot" if found.mode == "cot" else "fewshot"
        grades[key] = grade_output(found.item, result.output, result.choice_logprobs, mode, found.answer_pattern)
    return grades


def grade_updates(grades: dict[GradeKey, Grade | None]) -> list[GradeUpdate]:
    """``grades`` as the rows :meth:`poccheck.store.Store.update_grades` writes."""
    return [
        (grade.prediction if grade else None, grade.correct if grade else None, grade.margin if grade else None, *key)
        for key, grade in grades.items()
    ]
