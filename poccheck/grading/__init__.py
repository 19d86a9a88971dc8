"""Grading of model outputs."""

from poccheck.grading.grade import grade_choices, grade_output, grade_text

__all__ = ["grade_choices", "grade_output", "grade_text"]
