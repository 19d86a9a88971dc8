"""Grading of model outputs."""

from poccheck.grading.grade import answered_by_letter, grade_choices, grade_output, grade_text

__all__ = ["answered_by_letter", "grade_choices", "grade_output", "grade_text"]
