"""The example suite poccheck ships: ``examples/`` in a checkout, or the copy packaged inside the wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]
SUITE = "factory_suite.yaml"
TASKS = "factory_tasks.csv"


def examples_dir() -> Path:
    """The folder holding the example suite (the wheel's copy first, then the checkout's)."""
    for base in (_PACKAGE / "examples", _PACKAGE.parent / "examples"):
        if (base / SUITE).exists():
            return base
    return _PACKAGE.parent / "examples"


def default_tasks() -> list[Path]:
    """The example suite's two task files, the default of ``poccheck assess``; none when neither copy exists."""
    base = examples_dir()
    return [base / SUITE, base / TASKS] if (base / SUITE).exists() else []
