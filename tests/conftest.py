from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (CI included), so a pass or a failure is reproducible;
# HYPOTHESIS_PROFILE=explore draws new ones, to look for more.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SHARED = ROOT.parent / "shared"


def saved_results(db: Path, columns: str = "item_key", timeout: float = 5.0) -> list[tuple[Any, ...]]:
    """The result rows a running (or stopped) assess has committed, for polling it from a test: [] while the
    database file or its tables do not exist yet (the file appears a moment before its schema). Never creates
    the file."""
    if not db.exists():
        return []
    try:
        with closing(sqlite3.connect(db, timeout=timeout)) as connection:
            return connection.execute(f"SELECT {columns} FROM results").fetchall()
    except sqlite3.Error:
        return []


@pytest.fixture(scope="session")
def bundled_model() -> Path:
    """The bundled Gemma 3 270M GGUF (assembled once into the user's cache)."""
    from poccheck.models import bundled_path

    return bundled_path()


@pytest.fixture()
def write(tmp_path: Path):
    """Write a file under tmp_path: text (UTF-8) or bytes."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return _write
