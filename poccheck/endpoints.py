"""Models served over HTTP by an OpenAI-compatible server: vLLM, TGI, llama.cpp's server, Ollama or a cloud API.

An endpoint is named in the plan's ``endpoints:`` section (or with ``--endpoint NAME=URL#MODEL``) and used as the
candidate ``NAME@openai``. Its identity (the results' model fingerprint) is the base URL and the model name;
the API key is read from the environment variable the endpoint names, at run time only, and is never stored.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from poccheck.errors import ModelError
from poccheck.records import ModelInfo

Api = Literal["completions", "chat"]
APIS: tuple[Api, ...] = ("completions", "chat")
MultipleChoice = Literal["auto", "logprobs", "generation"]
MULTIPLE_CHOICE: tuple[MultipleChoice, ...] = ("auto", "logprobs", "generation")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Endpoint:
    """How to reach one served model. Only ``base_url`` and ``model`` change results (see :func:`describe`)."""

    name: str
    base_url: str  # e.g. http://gpu-server:8000/v1 (paths /completions, /chat/completions, /models follow it)
    model: str  # the server's model name (vLLM: --served-model-name; Ollama: the tag)
    api: Api = "completions"
    api_key_env: str | None = None  # name of the environment variable holding the key, never the key itself
    timeout_seconds: float = 120.0
    max_retries: int = 4
    concurrency: int = 4
    parameters: int | None = None  # for size-based analysis (cascades, threshold fits, projected own servers)
    price: str | None = None  # a cloud_apis entry of the cost profiles: price the measured tokens with it
    multiple_choice: MultipleChoice = "auto"  # auto: log-likelihood where the server returns prompt log-probs
    tokenizer: str | None = None  # a .gguf file or Hugging Face folder to count tokens when the server does not
    extra_body: Mapping[str, Any] = field(default_factory=dict)  # merged into every request (e.g. repeat_penalty)

    @property
    def spec(self) -> str:
        return f"{self.name}@openai"

    def api_key(self) -> str | None:
        """The key from the environment, or None when the endpoint needs none; ModelError when it is unset."""
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ModelError(
                f"endpoint {self.name}: the environment variable {self.api_key_env} (its API key) is not set",
                f"export {self.api_key_env}=... before running poccheck (keys are never read from files)",
            )
        return key


def endpoint_record(endpoint: Endpoint) -> dict[str, Any]:
    """An endpoint as JSON-ready data (``Endpoint(**record)`` reads it back): how to reach the model and the name
    of the variable that holds its key, never a key (an Endpoint has none)."""
    record = {f.name: getattr(endpoint, f.name) for f in fields(endpoint)}
    record["extra_body"] = dict(endpoint.extra_body)
    return record


def fingerprint(endpoint: Endpoint) -> str:
    """The results' model identity: base URL and served model name (never the key)."""
    text = f"openai|{endpoint.base_url.rstrip('/')}|{endpoint.model}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe(spec_text: str, endpoint: Endpoint) -> ModelInfo:
    """A :class:`ModelInfo` for an endpoint; size and price come from its configuration."""
    return ModelInfo(
        name=spec_text,
        backend="openai",
        path=f"{endpoint.base_url.rstrip('/')}#{endpoint.model}",
        fingerprint=fingerprint(endpoint),
        parameters=endpoint.parameters,
        quantization="served",
        architecture=endpoint.api,
        family=None,
        price=endpoint.price,
    )


def find(name: str, endpoints: Sequence[Endpoint]) -> Endpoint:
    for endpoint in endpoints:
        if endpoint.name == name:
            return endpoint
    known = ", ".join(e.name for e in endpoints) or "none"
    raise ModelError(
        f"no endpoint named {name!r} (defined: {known})",
        "define it under endpoints: in the plan, or pass --endpoint NAME=URL#MODEL",
    )


def parse_option(text: str, api_key_env: str | None = None, concurrency: int = 4) -> Endpoint:
    """Parse ``--endpoint NAME=URL#MODEL`` (e.g. ``vllm=http://gpu:8000/v1#Qwen/Qwen2.5-7B-Instruct``)."""
    name, sep, rest = text.partition("=")
    url, hash_sign, model = rest.rpartition("#")
    hint = "write --endpoint NAME=URL#MODEL, e.g. vllm=http://gpu-server:8000/v1#Qwen/Qwen2.5-7B-Instruct"
    if not sep or not hash_sign or not name.strip() or not model.strip():
        raise ModelError(f"cannot read --endpoint {text!r}", hint)
    if not re.match(r"https?://", url):
        raise ModelError(f"--endpoint {text!r}: the URL must start with http:// or https://", hint)
    if api_key_env is not None and not ENV_NAME.fullmatch(api_key_env):
        raise ModelError(f"--api-key-env {api_key_env!r} is not an environment variable name", "e.g. OPENAI_API_KEY")
    return Endpoint(
        name=name.strip(), base_url=url, model=model.strip(), api_key_env=api_key_env, concurrency=concurrency
    )


def from_plan(name: str, entry: Mapping[str, Any]) -> Endpoint:
    """An endpoint from a plan entry already checked against the plan's schema."""
    return Endpoint(
        name=name,
        base_url=str(entry["base_url"]),
        model=str(entry["model"]),
        api=entry.get("api", "completions"),
        api_key_env=entry.get("api_key_env"),
        timeout_seconds=float(entry.get("timeout_seconds", 120.0)),
        max_retries=int(entry.get("max_retries", 4)),
        concurrency=int(entry.get("concurrency", 4)),
        parameters=int(entry["parameters"]) if entry.get("parameters") is not None else None,
        price=entry.get("price"),
        multiple_choice=entry.get("multiple_choice", "auto"),
        tokenizer=entry.get("tokenizer"),
        extra_body=dict(entry.get("extra_body") or {}),
    )


def record(endpoint: Endpoint) -> dict[str, Any]:
    """JSON-ready configuration (the key's variable name, never its value)."""
    return {
        "name": endpoint.name, "base_url": endpoint.base_url, "model": endpoint.model, "api": endpoint.api,
        "api_key_env": endpoint.api_key_env, "timeout_seconds": endpoint.timeout_seconds,
        "max_retries": endpoint.max_retries, "concurrency": endpoint.concurrency, "parameters": endpoint.parameters,
        "price": endpoint.price, "multiple_choice": endpoint.multiple_choice, "tokenizer": endpoint.tokenizer,
        "extra_body": dict(endpoint.extra_body),
    }  # fmt: skip


ENDPOINT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["base_url", "model"],
    "additionalProperties": False,
    "properties": {
        "base_url": {"type": "string", "pattern": "^https?://"},
        "model": {"type": "string", "minLength": 1},
        "api": {"enum": list(APIS)},
        "api_key_env": {"type": "string", "pattern": f"^{ENV_NAME.pattern}$"},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
        "max_retries": {"type": "integer", "minimum": 0, "maximum": 20},
        "concurrency": {"type": "integer", "minimum": 1, "maximum": 512},
        "parameters": {"type": "number", "exclusiveMinimum": 0},
        "price": {"type": "string", "minLength": 1},
        "multiple_choice": {"enum": list(MULTIPLE_CHOICE)},
        "tokenizer": {"type": "string", "minLength": 1},
        "extra_body": {"type": "object"},
    },
}
