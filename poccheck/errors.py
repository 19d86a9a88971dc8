"""Errors poccheck shows to its users.

Every error carries a message a person can act on and, where there is one, a hint naming the fix.
The CLI prints them without a traceback and exits 1; anything else is a bug.

    PocCheckError
    ├── TaskFileError      a task file cannot be read or holds invalid items (lists every problem)
    │   └── PlanError      the assessment plan (poccheck.yaml) is invalid
    ├── ModelError         a model cannot be found, read or loaded
    ├── BackendError       a backend failed while running an item
    ├── StoreError         the results database is missing, corrupt or foreign
    └── FinetuneError      a fine-tune cannot start or resume (overlapping splits, a foreign checkpoint)
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


class PocCheckError(Exception):
    """Base of all errors meant for the user."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nHint: {self.hint}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a task file: where it is and what it is."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.field:
            where += f" [{self.field}]"
        return f"{where}: {self.message}"


class TaskFileError(PocCheckError):
    """One or more task files are invalid; ``problems`` lists each with file, line and field."""

    what = "task file(s)"
    fix = "fix the listed fields, then run `poccheck tasks validate FILE` again"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        count = len(problems)
        lines = "\n".join(f"  {p}" for p in problems[:200])
        more = f"\n  ... and {count - 200} more" if count > 200 else ""
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in {self.what}:\n{lines}{more}", self.fix)


class PlanError(TaskFileError):
    """The assessment plan file is invalid; ``problems`` lists each with file, line and field."""

    what = "the plan file"
    fix = "fix the listed fields of the plan, then run the command again"


class ModelError(PocCheckError):
    """A model cannot be resolved, read or loaded."""


class BackendError(PocCheckError):
    """A backend failed while running an item."""


class StoreError(PocCheckError):
    """The results database cannot be used."""


class FinetuneError(PocCheckError):
    """A fine-tune cannot start or continue (overlapping splits, a foreign checkpoint, no training items)."""


def did_you_mean(word: str, options: tuple[str, ...] | list[str]) -> str:
    """Return ' (did you mean X?)' when ``word`` is close to one of ``options``."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
