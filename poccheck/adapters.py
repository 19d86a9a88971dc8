"""LoRA adapters on disk, and the manifest written beside each: what it was trained from, how, and what came out.

An adapter lives in ``$POCCHECK_CACHE/adapters/<name>/`` (default ``~/.cache/poccheck/adapters/<name>/``):
``adapter_model.safetensors`` and ``adapter_config.json`` (peft), ``manifest.json`` (this record),
``heldout.yaml`` (the test split as a task file) and, while training, ``checkpoint/``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from poccheck import paths
from poccheck.errors import FinetuneError, ModelError

MANIFEST = "manifest.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
HELDOUT = "heldout.yaml"
CHECKPOINT = "checkpoint"
GGUF_ADAPTER = "adapter.gguf"
# Everything poccheck (and peft's save_pretrained, which adds a model card) writes into an adapter folder.
ADAPTER_FILES = frozenset(
    {MANIFEST, ADAPTER_WEIGHTS, "adapter_config.json", "README.md", HELDOUT, CHECKPOINT, f"{CHECKPOINT}.partial",
     GGUF_ADAPTER, "adapter.partial"}
)  # fmt: skip
FORMAT = 1
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TRANSFORMERS_ONLY = "transformers backend only"


def adapter_path(name_or_path: str) -> Path:
    """``name`` -> ``$POCCHECK_CACHE/adapters/name``; anything with a slash is a folder path."""
    if "/" in name_or_path or "\\" in name_or_path:
        return Path(name_or_path).expanduser()
    if not NAME_PATTERN.fullmatch(name_or_path):
        raise ModelError(
            f"bad adapter name {name_or_path!r}",
            "use letters, digits, '.', '_' and '-' (up to 64), or give the adapter folder's path",
        )
    return paths.adapters_dir() / name_or_path


def discard_adapter(folder: Path) -> None:
    """``finetune --fresh``: delete what poccheck wrote in ``folder``; refuse a folder that holds anything else.

    ``--name`` may be a path, so this is what stands between ``--name ./ --fresh`` and the user's files."""
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_symlink() or not folder.is_dir():
        raise FinetuneError(f"{folder} is not an adapter folder", "give --name an adapter name or a folder of its own")
    here = folder.resolve()
    if here == Path(here.anchor) or here == Path.home().resolve() or Path.cwd().resolve().is_relative_to(here):
        raise FinetuneError(
            f"refusing to empty {folder}: it is the root, home or current folder, or holds the current folder",
            "give --name an adapter name or a folder of its own",
        )
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in ADAPTER_FILES)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise FinetuneError(
            f"{folder} holds files poccheck did not write ({shown}); --fresh only empties an adapter folder",
            "choose another --name, or move those files away",
        )
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def weights_hash(folder: Path) -> str:
    """SHA-256 of the adapter weights (first 16 hex digits)."""
    return hashlib.sha256((folder / ADAPTER_WEIGHTS).read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class DataRecord:
    """A task file as it was used: path, SHA-256 of its bytes, suite name and per-part content hashes."""

    path: str
    sha256: str
    suite: str
    items: dict[str, list[str]]  # part -> item ids
    hashes: dict[str, list[str]]  # part -> item content hashes (sorted)


@dataclass(frozen=True)
class TrainingRecord:
    """What training did: epochs, steps, losses, the stopping reason, time and memory."""

    epochs_run: int
    steps: int
    best_epoch: int | None
    best_validation_loss: float | None
    train_loss: list[float]  # mean per epoch
    validation_loss: list[float]  # per epoch
    stopped: str  # "early stopping", "max epochs"
    seconds: float  # wall time of the training loop (summed over resumed sessions)
    peak_rss: int | None
    device: str
    dtype: str
    trainable_parameters: int
    examples: int
    target_tokens: int
    resumed: int = 0


@dataclass(frozen=True)
class Manifest:
    name: str
    created: str
    base_model: str
    base_fingerprint: str
    base_path: str
    adapter_sha256: str
    mode: str
    split_source: str
    seed: int
    tasks: DataRecord
    control: DataRecord | None
    heldout_suite: str
    hyperparameters: dict[str, Any]
    training: TrainingRecord
    export: str
    versions: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    format: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @property
    def trained_hashes(self) -> set[str]:
        """Content hashes of every item the adapter saw (train and validation)."""
        return set(self.tasks.hashes.get("train", [])) | set(self.tasks.hashes.get("validation", []))


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    path = folder / MANIFEST
    partial = path.with_suffix(".partial")
    partial.write_text(manifest.to_json() + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(
            f"no fine-tuned adapter at {folder} (no {MANIFEST})",
            "train one with `poccheck finetune`, or check the name after +lora:",
        ) from exc
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    if data.get("format") != FORMAT:
        raise ModelError(f"{path} has manifest format {data.get('format')!r}; this poccheck reads {FORMAT}")
    try:
        tasks = DataRecord(**data.pop("tasks"))
        control = DataRecord(**data["control"]) if data.get("control") else None
        data.pop("control", None)
        training = TrainingRecord(**data.pop("training"))
        return Manifest(tasks=tasks, control=control, training=training, **data)
    except TypeError as exc:
        raise ModelError(f"{path} is not a poccheck adapter manifest: {exc}") from exc
