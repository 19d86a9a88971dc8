"""Fine-tuning, whole: split a suite, train a LoRA adapter on its training split (resuming an interrupted run),
export it to GGUF where the architecture allows, and write it with its manifest and held-out task file under
``$POCCHECK_CACHE/adapters/<name>/``. Assessing the result is the pipeline's job (``pipeline.finetune``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import yaml

from poccheck import models, paths
from poccheck.adapters import (
    GGUF_ADAPTER,
    HELDOUT,
    MANIFEST,
    TRANSFORMERS_ONLY,
    DataRecord,
    Manifest,
    adapter_path,
    discard_adapter,
    read_manifest,
    weights_hash,
    write_manifest,
)
from poccheck.backends.hf import HFSettings, TransformersBackend
from poccheck.backends.registry import BackendOptions
from poccheck.errors import FinetuneError
from poccheck.finetune import split as splits
from poccheck.finetune import train as training
from poccheck.finetune.export import ExportUnsupported, export_gguf_lora
from poccheck.finetune.train import LoraSettings, TrainProgress
from poccheck.host import ENGINES, engine_info
from poccheck.private import make_private, private_umask, secure_dir
from poccheck.records import Mode, Suite, TaskItem, content_hash, stable_hash
from poccheck.tasks import load_suites


@dataclass(frozen=True)
class TrainedAdapter:
    manifest: Manifest
    folder: Path
    heldout: Path
    tuned_spec: str  # the candidate to assess: MODEL+lora:NAME
    base_spec: str  # the same weights without the adapter (transformers)


def train_adapter(
    task_path: str | Path,
    model_spec: str,
    *,
    control: str | Path | None = None,
    name: str | None = None,
    mode: Mode = "direct",
    settings: LoraSettings | None = None,
    fresh: bool = False,
    options: BackendOptions | None = None,
    progress: TrainProgress | None = None,
    encoding: str | None = None,
) -> TrainedAdapter:
    """Train (or resume training) an adapter of ``model_spec`` on the training split of the suite at
    ``task_path``, never on its held-out or validation items, nor on the ``control`` suite's.

    Everything written (held-out items, checkpoints, weights, manifest) is the owner's only (SECURITY.md)."""
    with private_umask():
        return _train(
            task_path, model_spec, control=control, name=name, mode=mode, settings=settings or LoraSettings(),
            fresh=fresh, options=options or BackendOptions(), progress=progress, encoding=encoding,
        )  # fmt: skip


def _train(
    task_path: str | Path,
    model_spec: str,
    *,
    control: str | Path | None,
    name: str | None,
    mode: Mode,
    settings: LoraSettings,
    fresh: bool,
    options: BackendOptions,
    progress: TrainProgress | None,
    encoding: str | None,
) -> TrainedAdapter:
    suite = load_suites([task_path], encoding)[0]
    split = splits.split_suite(suite, settings.seed)
    control_suite = load_suites([control], encoding)[0] if control else None
    if control_suite is not None:
        splits.check_no_overlap(
            split.train + split.validation, control_suite.items, "the training items", "the control items"
        )
    spec = models.parse_spec(model_spec)
    if spec.adapter:
        raise FinetuneError(f"{model_spec} already has an adapter", "fine-tune the base model instead")
    base_spec = f"{spec.target}@transformers"
    name = name or paths.safe_name(suite.name)
    folder = adapter_path(name)
    if (folder / MANIFEST).exists() and not fresh:
        raise FinetuneError(
            f"an adapter named {name!r} already exists ({folder})", "pass --fresh to retrain it, or choose --name"
        )
    if fresh:
        discard_adapter(folder)
    info = models.resolve(base_spec, check=lambda base: models.check_memory(base, 4096))
    secure_dir(folder)
    make_private(folder)  # files an earlier version wrote with the umask's mode
    warnings = splits.warnings_for(split)
    heldout_name = f"{suite.name}-heldout"
    heldout = folder / HELDOUT
    document = yaml.safe_dump(
        splits.heldout_document(split, heldout_name), allow_unicode=True, sort_keys=False, width=1000
    )
    heldout.write_text(f"# poccheck finetune {name}: held-out items of {suite.path}\n{document}", encoding="utf-8")
    load_suites([heldout])  # the file must read back as a valid suite
    backend = TransformersBackend(info, HFSettings(device=options.device, dtype=options.dtype))
    try:
        train_examples, skipped = training.build_examples(backend, suite, split.train, mode, settings.max_length)
        val_examples, skipped_val = training.build_examples(backend, suite, split.validation, mode, settings.max_length)
        if skipped or skipped_val:
            warnings.append(
                f"{len(skipped) + len(skipped_val)} item(s) left out of training (no writable gold answer, or "
                f"longer than {settings.max_length} tokens): {', '.join((skipped + skipped_val)[:5])}"
            )
        identity = stable_hash(
            {
                "base": info.fingerprint,
                "mode": mode,
                # the most epochs and the patience only bound the loop (the learning rate is constant and each
                # epoch's order is seeded on its own), so a stopped run may be resumed with more or fewer epochs
                "settings": replace(settings, epochs=0, patience=0),
                "train": [(e.prompt, e.target) for e in train_examples],
                "validation": [(e.prompt, e.target) for e in val_examples],
            }
        )
        record = training.train(backend, train_examples, val_examples, settings, folder, identity, progress)
    finally:
        backend.close()

    try:
        export_gguf_lora(folder, Path(info.path))
        export = f"llama.cpp and transformers (GGUF LoRA adapter {GGUF_ADAPTER} beside the base GGUF)"
    except ExportUnsupported as exc:
        export = f"{TRANSFORMERS_ONLY} ({exc})"
    parts = {"train": split.train, "validation": split.validation, "test": split.test}
    manifest = Manifest(
        name=name,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        base_model=base_spec,
        base_fingerprint=info.fingerprint,
        base_path=info.path,
        adapter_sha256=weights_hash(folder),
        mode=mode,
        split_source=split.source,
        seed=settings.seed,
        tasks=_data_record(task_path, suite.name, parts),
        control=_data_record(control, control_suite.name, {"control": control_suite.items})
        if control and control_suite else None,
        heldout_suite=heldout_name,
        hyperparameters={k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()},
        training=record,
        export=export,
        versions=engine_info((*ENGINES, "peft")),
        warnings=warnings,
    )  # fmt: skip
    write_manifest(folder, manifest)
    training.clear_checkpoint(folder)
    return TrainedAdapter(manifest, folder, heldout, f"{spec.target}{models.LORA}{name}", base_spec)


def _data_record(path: str | Path, suite_name: str, parts: dict[str, tuple[TaskItem, ...]]) -> DataRecord:
    """Which items of a file went where, by id and by content hash (what :func:`refuse_trained_items` checks)."""
    return DataRecord(
        str(path),
        splits.file_hash(Path(path)),
        suite_name,
        {p: [i.id for i in items] for p, items in parts.items()},
        {p: sorted({content_hash(i) for i in items}) for p, items in parts.items()},
    )


def refuse_trained_items(spec: str, suites: Sequence[Suite]) -> None:
    """A fine-tuned candidate must not be assessed on items it was trained on (compared by content hash)."""
    parsed = models.parse_spec(spec)
    if parsed.adapter is None:
        return
    manifest = read_manifest(adapter_path(parsed.adapter))
    trained = manifest.trained_hashes
    seen = [f"{s.name}/{i.id}" for s in suites for i in s.items if content_hash(i) in trained]
    if seen:
        raise FinetuneError(
            f"{len(seen)} item(s) given to {spec} were in its training data: {', '.join(seen[:5])}"
            + (" ..." if len(seen) > 5 else ""),
            f"assess it on the held-out file {adapter_path(parsed.adapter) / HELDOUT} (and a control suite)",
        )
