"""Create a backend for a resolved model, importing the engines (llama.cpp, torch and transformers) and httpx
only when a model needs them: each is an optional dependency, named when it is missing."""

from __future__ import annotations

from dataclasses import dataclass

from poccheck.backends.base import Backend, default_threads
from poccheck.backends.scripted import ScriptedBackend
from poccheck.endpoints import Endpoint, find
from poccheck.errors import ModelError
from poccheck.records import ModelInfo


@dataclass(frozen=True)
class BackendOptions:
    """Choices the user makes for every model of one backend (``--device``, ``--dtype``)."""

    device: str = "auto"
    dtype: str = "auto"
    endpoints: tuple[Endpoint, ...] = ()  # served models, used as NAME@openai
    parallel: int | None = None  # generations decoded together by a local engine (--parallel); None: for the CPU
    repacked_decode: bool = False  # llama.cpp: from 4 in flight, decode on repacked weights (--repacked-decode)
    reprobe: bool = False  # served models: probe the multiple-choice method again, not the output folder's (--reprobe)

    def generation_slots(self) -> int:
        """How many generations a local engine decodes at once: ``parallel``, or twice the CPU cores up to 4
        (decoding one sequence leaves the cores waiting on memory; measured in benchmarks/generation_throughput.py)."""
        if self.parallel is not None:
            return self.parallel
        return max(1, min(4, 2 * default_threads()))


def load_backend(info: ModelInfo, options: BackendOptions | None = None) -> Backend:
    options = options or BackendOptions()
    if info.backend == "llama.cpp":
        try:
            from poccheck.backends.llama_cpp import LlamaCppBackend, LlamaSettings
        except ImportError as exc:
            raise ModelError("the llama.cpp backend needs llama-cpp-python", "pip install llama-cpp-python") from exc
        return LlamaCppBackend(info, LlamaSettings(repacked_decode=options.repacked_decode))
    if info.backend == "transformers":
        try:
            from poccheck.backends.hf import HFSettings, TransformersBackend
        except ImportError as exc:
            raise ModelError(
                "the transformers backend needs torch and transformers",
                "pip install torch==2.13.0 transformers (the README's set-up does this)",
            ) from exc
        return TransformersBackend(info, HFSettings(device=options.device, dtype=options.dtype))
    if info.backend == "openai":
        try:
            from poccheck.backends.openai_http import OpenAIBackend
        except ImportError as exc:
            raise ModelError("the openai backend needs httpx", "pip install httpx") from exc
        return OpenAIBackend(info, find(info.name.rpartition("@")[0], options.endpoints))
    if info.backend == "scripted":
        return ScriptedBackend(info)
    raise ModelError(f"unknown backend {info.backend!r}")
