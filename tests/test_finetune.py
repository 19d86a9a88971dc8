"""LoRA fine-tuning on a tiny random Llama: it learns a synthetic task (measured through the real transformers
backend and assess), overlapping splits are refused, the manifest records what was trained, and an
interrupted fine-tune resumes from its checkpoint to the same weights."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from poccheck import models, pipeline
from poccheck.adapters import (
    ADAPTER_WEIGHTS,
    HELDOUT,
    MANIFEST,
    TRANSFORMERS_ONLY,
    read_manifest,
    weights_hash,
)
from poccheck.config.run import RunConfig
from poccheck.errors import FinetuneError, ModelError
from poccheck.finetune.split import split_suite, warnings_for
from poccheck.finetune.train import LoraSettings, TrainProgress
from poccheck.records import content_hash
from poccheck.tasks import load_suites

from .tiny_models import build_model

MAPPING = {"blue": "oil", "green": "seal", "red": "press"}  # the last word decides the answer
FILLER = ["the", "machine", "spindle", "lathe", "part", "noise", "rule", "sky", "press", "seal"]
# The tiny model's final norm and output layer are random and frozen, so its logits cannot grow peaked unless
# the output layer is adapted too; a real model's defaults (attention and MLP projections) need no such help.
TINY = LoraSettings(
    rank=8, alpha=16, dropout=0.0, learning_rate=1e-2, epochs=40, patience=3, batch_size=8,
    target_modules=("q_proj", "v_proj", "o_proj", "lm_head"),
)  # fmt: skip


def synthetic_items(count: int = 60, seed: int = 0) -> list[dict[str, object]]:
    rng = random.Random(seed)
    items: list[dict[str, object]] = []
    seen: set[str] = set()
    while len(items) < count:
        colour = rng.choice(sorted(MAPPING))
        text = " ".join([*rng.sample(FILLER, 3), colour])
        if text in seen:
            continue
        seen.add(text)
        n = len(items)
        split = "test" if n < 18 else "validation" if n < 24 else "train"
        items.append(
            {"id": f"s{n:03d}", "type": "exact", "input": text, "answer": MAPPING[colour], "category": "mapping",
             "split": split}
        )  # fmt: skip
    return items


def write_suite(path: Path, items: list[dict[str, object]], name: str = "synth") -> Path:
    path.write_text(yaml.safe_dump({"name": name, "max_tokens": 4, "items": items}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread: tiny matrices gain nothing from two, and lose a lot on a busy shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("tiny") / "llama", "llama")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POCCHECK_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def trained(
    tiny: Path, cache: Path, one_thread: None, tmp_path_factory: pytest.TempPathFactory
) -> pipeline.FinetuneResult:
    work = tmp_path_factory.mktemp("work")
    suite = write_suite(work / "synth.yaml", synthetic_items())
    control = write_suite(work / "control.yaml", synthetic_items(12, seed=99), name="control")
    return pipeline.finetune(
        suite, f"{tiny}@transformers", control=control, name="synth", settings=TINY, evaluate=work / "out"
    )


def test_tiny_model_learns_the_synthetic_task_measured_through_assess(trained: pipeline.FinetuneResult) -> None:
    analysis = trained.analysis
    assert analysis is not None and analysis.lift is not None
    lift = analysis.lift
    assert lift.first.n == lift.second.n == 18  # the held-out items only, for both candidates
    assert lift.second.successes > lift.first.successes + 5, analysis.heldout
    assert lift.test.c > lift.test.b and lift.test.p_value < 0.05
    assert analysis.lifted
    assert analysis.control and analysis.control[0].first.n == 12
    assert analysis.base.endswith("@transformers") and "+lora:synth" in analysis.tuned
    record = trained.manifest.training
    assert record.validation_loss[-1] < record.validation_loss[0]


def test_the_adapter_folder_is_private(trained: pipeline.FinetuneResult) -> None:
    """Held-out items, weights, manifest and peft's files are the owner's only (SECURITY.md: results are private)."""
    import stat

    paths = [trained.folder, *trained.folder.rglob("*")]
    modes = {str(p.relative_to(trained.folder)): stat.S_IMODE(p.stat().st_mode) for p in paths}
    assert {HELDOUT, MANIFEST} <= set(modes)
    assert all(mode == (0o700 if (trained.folder / name).is_dir() else 0o600) for name, mode in modes.items()), modes


def test_manifest_records_base_data_and_settings(trained: pipeline.FinetuneResult, tiny: Path) -> None:
    manifest = read_manifest(trained.folder)
    base = models.resolve(f"{tiny}@transformers")
    assert manifest.base_fingerprint == base.fingerprint and manifest.base_model == f"{tiny}@transformers"
    assert manifest.adapter_sha256 == weights_hash(trained.folder)
    suite_file = Path(manifest.tasks.path)
    assert manifest.tasks.sha256 == hashlib.sha256(suite_file.read_bytes()).hexdigest()
    assert manifest.split_source == "file"
    assert len(manifest.tasks.items["train"]) == 36 and len(manifest.tasks.items["validation"]) == 6
    assert manifest.tasks.items["test"] == [f"s{n:03d}" for n in range(18)]
    suite = load_suites([suite_file])[0]
    assert manifest.tasks.hashes["train"] == split_suite(suite).hashes("train")
    assert manifest.control is not None and manifest.control.suite == "control"
    assert manifest.hyperparameters["rank"] == 8 and manifest.hyperparameters["learning_rate"] == 1e-2
    assert manifest.hyperparameters["target_modules"] == ["q_proj", "v_proj", "o_proj", "lm_head"]
    assert manifest.mode == "direct" and manifest.export.startswith(TRANSFORMERS_ONLY)  # the base is not GGUF
    assert "peft" in manifest.versions and "torch" in manifest.versions
    assert manifest.training.examples == 36 and manifest.training.steps > 0 and manifest.training.seconds > 0
    heldout = load_suites([trained.heldout])[0]
    assert [i.id for i in heldout.items] == manifest.tasks.items["test"]
    assert not (trained.folder / "checkpoint").exists()
    # the fine-tuned candidate is keyed by base and adapter together
    tuned = models.resolve(trained.tuned_spec)
    assert tuned.fingerprint != base.fingerprint and tuned.base_fingerprint == base.fingerprint
    assert tuned.adapter == str(trained.folder)


def test_report_partial_renders_the_before_after_tables(trained: pipeline.FinetuneResult) -> None:
    from poccheck.report.render import environment

    html = environment().get_template("finetune.html.j2").render(finetune=[trained.analysis])
    assert "Held-out items" in html and "Control suite control" in html and TRANSFORMERS_ONLY in html
    lift = trained.analysis.lift if trained.analysis else None
    assert lift is not None and f"{lift.test.c} / {lift.test.b}" in html


def test_overlapping_train_and_test_items_are_refused(tmp_path: Path, tiny: Path, cache: Path) -> None:
    items = synthetic_items(30)
    leaked = dict(items[25], id="copy-of-s025", split="test")  # a training item again, held out under another id
    leaked["input"] = "  " + str(leaked["input"]).upper() + " "  # case and spacing do not hide it
    suite = write_suite(tmp_path / "leak.yaml", [*items, leaked])
    with pytest.raises(FinetuneError, match=r"'s025' = 'copy-of-s025'"):
        pipeline.finetune(suite, f"{tiny}@transformers", name="leak", settings=TINY)
    assert not (cache / "adapters" / "leak").exists()  # refused before anything was written


def test_control_items_seen_in_training_are_refused(tmp_path: Path, tiny: Path, cache: Path) -> None:
    items = synthetic_items(30)
    suite = write_suite(tmp_path / "suite.yaml", items)
    control = write_suite(tmp_path / "control.yaml", [dict(items[20], id="c1", split="test")], name="control")
    with pytest.raises(FinetuneError, match="control items"):
        pipeline.finetune(suite, f"{tiny}@transformers", control=control, name="ctl", settings=TINY)


def test_assess_refuses_a_fine_tuned_candidate_on_its_training_items(
    trained: pipeline.FinetuneResult, tmp_path: Path
) -> None:
    with pytest.raises(FinetuneError, match="were in its training data"):
        pipeline.assess(
            RunConfig([trained.manifest.tasks.path], [trained.tuned_spec], tmp_path / "out", modes=["direct"])
        )


def test_adapter_on_another_base_or_llama_cpp_is_refused(trained: pipeline.FinetuneResult, tmp_path: Path) -> None:
    other = build_model(tmp_path / "other", "llama", seed=1)
    with pytest.raises(ModelError, match="was trained on"):
        models.resolve(f"{other}+lora:synth")
    with pytest.raises(ModelError, match="no llama.cpp"):
        models.resolve(f"{trained.manifest.base_model.split('@')[0]}+lora:synth@llama.cpp")
    with pytest.raises(ModelError, match="no fine-tuned adapter"):
        models.resolve(f"{other}+lora:missing")


class StopAfter(TrainProgress):
    def __init__(self, steps: int) -> None:
        self.steps, self.seen = steps, 0

    def step(self, epoch: int, loss: float) -> None:
        self.seen += 1
        if self.seen == self.steps:
            raise KeyboardInterrupt


def test_interrupted_fine_tune_resumes_from_its_checkpoint_to_the_same_weights(
    tmp_path: Path, tiny: Path, cache: Path, one_thread: None
) -> None:
    suite = write_suite(tmp_path / "synth.yaml", synthetic_items())
    settings = LoraSettings(
        rank=4, alpha=8, dropout=0.1, learning_rate=5e-3, epochs=2, patience=5, batch_size=8, checkpoint_every=2,
        target_modules=("q_proj", "v_proj"),
    )  # fmt: skip
    spec = f"{tiny}@transformers"
    whole = pipeline.finetune(suite, spec, name="whole", settings=settings)
    with pytest.raises(KeyboardInterrupt):  # 5 steps an epoch: interrupted at step 7, checkpoint after step 6
        pipeline.finetune(suite, spec, name="resumed", settings=settings, progress=StopAfter(7))
    folder = cache / "adapters" / "resumed"
    assert (folder / "checkpoint" / "state.json").exists() and not (folder / "manifest.json").exists()
    with pytest.raises(FinetuneError, match="different fine-tune"):  # other settings: not this checkpoint's run
        pipeline.finetune(suite, spec, name="resumed", settings=LoraSettings(**{**settings.__dict__, "rank": 8}))
    resumed = pipeline.finetune(suite, spec, name="resumed", settings=settings)
    assert resumed.manifest.training.resumed == 1 and resumed.manifest.training.steps == whole.manifest.training.steps
    assert resumed.manifest.training.validation_loss == whole.manifest.training.validation_loss
    first = load_file(str(whole.folder / ADAPTER_WEIGHTS))
    second = load_file(str(folder / ADAPTER_WEIGHTS))
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=1e-6)
    with pytest.raises(FinetuneError, match="already exists"):
        pipeline.finetune(suite, spec, name="resumed", settings=settings)


def test_seeded_split_keeps_duplicates_together_and_is_stable(tmp_path: Path) -> None:
    items = [{k: v for k, v in item.items() if k != "split"} for item in synthetic_items(40)]
    items.append(dict(items[3], id="dup"))
    suite = load_suites([write_suite(tmp_path / "s.yaml", items)])[0]
    split = split_suite(suite, seed=3)
    assert split.source == "seeded" and split_suite(suite, seed=3) == split
    assert len(split.test) + len(split.validation) + len(split.train) == 41
    part_of = {item.id: name for name in ("train", "validation", "test") for item in split.part(name)}  # type: ignore[arg-type]
    assert part_of["dup"] == part_of[items[3]["id"]]
    assert content_hash(suite.items[3]) == content_hash(suite.items[-1])


def test_small_splits_are_warned_about(tmp_path: Path) -> None:
    items = [dict(item, split="train") if item["split"] == "validation" else item for item in synthetic_items(30)]
    suite = load_suites([write_suite(tmp_path / "small.yaml", items)])[0]  # 12 train, 18 test, no validation
    found = " | ".join(warnings_for(split_suite(suite)))
    assert "training items" in found and "no validation items" in found and "held-out items" in found
    enough = warnings_for(split_suite(load_suites([write_suite(tmp_path / "big.yaml", synthetic_items(60))])[0]))
    assert enough == ["only 18 held-out items: a before/after difference will be hard to prove"]
