from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SHARED = ROOT.parent / "shared"


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
