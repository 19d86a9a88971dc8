"""Create a backend for a resolved model, importing heavy engines only when needed."""

from __future__ import annotations

from poccheck.backends.base import Backend
from poccheck.errors import ModelError
from poccheck.records import ModelInfo


def load_backend(info: ModelInfo) -> Backend:
    if info.backend == "llama.cpp":
        try:
            from poccheck.backends.llama_cpp import LlamaCppBackend
        except ImportError as exc:
            raise ModelError("the llama.cpp backend needs llama-cpp-python", "pip install llama-cpp-python") from exc
        return LlamaCppBackend(info)
    raise ModelError(f"unknown backend {info.backend!r}")
