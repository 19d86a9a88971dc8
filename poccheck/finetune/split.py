"""Train / validation / test splits of a suite, content hashes, the overlap guard and the held-out task file.

An item's split comes from its ``split`` field (``train``, ``validation``/``val``/``dev``, ``test``/``heldout``);
when a suite marks no item, a seeded split is made per category, keeping items with the same content together.
Items are compared by a hash of what the model reads (input and choices, with case and spacing folded), so a
question copied under another id still counts as the same item.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from poccheck.errors import FinetuneError
from poccheck.records import LETTERS, Exemplar, Suite, TaskItem, content_hash

Part = Literal["train", "validation", "test"]
PARTS: tuple[Part, ...] = ("train", "validation", "test")
ALIASES: dict[str, Part] = {
    "train": "train", "training": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "test": "test", "heldout": "test", "held-out": "test", "held_out": "test", "eval": "test",
}  # fmt: skip
TEST_FRACTION = 0.4
VALIDATION_FRACTION = 0.1
SMALL_TRAIN = 20  # fewer training items than this rarely lift accuracy measurably


def set_hash(hashes: Iterable[str]) -> str:
    """One hash for a set of items (order-free)."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()[:20]


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Split:
    """A suite's items in three parts; ``source`` says whether the task file marked them or a seed chose."""

    suite: Suite
    train: tuple[TaskItem, ...]
    validation: tuple[TaskItem, ...]
    test: tuple[TaskItem, ...]
    source: Literal["file", "seeded"]
    seed: int

    def part(self, name: Part) -> tuple[TaskItem, ...]:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]

    def hashes(self, name: Part) -> list[str]:
        return sorted({content_hash(item) for item in self.part(name)})


def split_suite(suite: Suite, seed: int = 0) -> Split:
    """Split by the items' ``split`` fields, or, when none has one, by a seeded draw per category."""
    marked = [item for item in suite.items if "split" in item.metadata]
    if marked:
        parts: dict[Part, list[TaskItem]] = {p: [] for p in PARTS}
        for item in suite.items:
            value = str(item.metadata.get("split", "test")).strip().lower()
            if value not in ALIASES:
                raise FinetuneError(
                    f"{item.source or suite.path}:{item.line or '?'}: item {item.id!r} has split {value!r}",
                    "use train, validation or test (items without a split are held out for testing)",
                )
            parts[ALIASES[value]].append(item)
        result = Split(suite, tuple(parts["train"]), tuple(parts["validation"]), tuple(parts["test"]), "file", seed)
    else:
        result = _seeded(suite, seed)
    check_no_overlap(result.train + result.validation, result.test, "the training items", "the held-out items")
    if not result.train:
        raise FinetuneError(
            f"{suite.path} has no training items",
            "mark items with split: train, or leave every split empty for a seeded split",
        )
    if not result.test:
        raise FinetuneError(f"{suite.path} has no held-out (test) items", "mark some items with split: test")
    return result


def _seeded(suite: Suite, seed: int) -> Split:
    """Per category: groups of identical content shuffled with ``seed``; 40% test, 10% validation, rest train."""
    by_category: dict[str, dict[str, list[TaskItem]]] = defaultdict(lambda: defaultdict(list))
    for item in suite.items:
        by_category[item.category][content_hash(item)].append(item)
    parts: dict[Part, list[TaskItem]] = {p: [] for p in PARTS}
    rng = random.Random(seed)
    for category in sorted(by_category):
        groups = [by_category[category][h] for h in sorted(by_category[category])]
        rng.shuffle(groups)
        n = len(groups)
        n_test = max(1, round(n * TEST_FRACTION)) if n >= 2 else 0
        n_val = round(n * VALIDATION_FRACTION) if n - n_test >= 4 else 0
        for index, group in enumerate(groups):
            part: Part = "test" if index < n_test else "validation" if index < n_test + n_val else "train"
            parts[part] += group
    order = {item.id: i for i, item in enumerate(suite.items)}
    ordered = {p: tuple(sorted(items, key=lambda it: order[it.id])) for p, items in parts.items()}
    return Split(suite, ordered["train"], ordered["validation"], ordered["test"], "seeded", seed)


def check_no_overlap(first: Sequence[TaskItem], second: Sequence[TaskItem], first_name: str, second_name: str) -> None:
    """Refuse when any item of ``second`` reads the same as an item of ``first`` (by content hash)."""
    seen = {content_hash(item): item for item in first}
    clashes = [(seen[h], item) for item in second if (h := content_hash(item)) in seen]
    if clashes:
        shown = "; ".join(f"{a.id!r} = {b.id!r}" for a, b in clashes[:5])
        more = f" and {len(clashes) - 5} more" if len(clashes) > 5 else ""
        raise FinetuneError(
            f"{len(clashes)} of {second_name} also appear among {first_name} (same text): {shown}{more}",
            "a model tested on what it was trained on shows a lift that is not real; remove or re-split those items",
        )


def warnings_for(split: Split) -> list[str]:
    found = []
    if len(split.train) < SMALL_TRAIN:
        found.append(f"only {len(split.train)} training items: fewer than {SMALL_TRAIN} rarely gives a measurable lift")
    if not split.validation:
        found.append("no validation items: training runs every epoch without early stopping")
    if len(split.test) < 30:
        found.append(f"only {len(split.test)} held-out items: a before/after difference will be hard to prove")
    return found


def heldout_document(split: Split, name: str) -> dict[str, Any]:
    """The test part as a task-file document (YAML-ready) with the suite's own settings, named ``name``."""
    suite = split.suite
    document: dict[str, Any] = {
        "name": name,
        "description": f"Held-out items of {suite.name} ({split.source} split, seed {split.seed}), "
        f"never shown in fine-tuning.",
        "language": suite.language,
        "prompt_format": suite.prompt_format,
        "max_tokens": suite.max_tokens,
        "stop": list(suite.stop),
        "cot_max_tokens": suite.cot_max_tokens,
        "cot_stop": list(suite.cot_stop),
        "repetition_penalty": suite.repetition_penalty,
    }
    if suite.prompt_template:
        document["prompt_template"] = suite.prompt_template
    if suite.answer_pattern:
        document["answer_pattern"] = suite.answer_pattern
    if suite.fewshot:
        document["fewshot"] = [_exemplar_document(ex) for ex in suite.fewshot]
    document["items"] = [_item_document(item) for item in split.test]
    return document


def _exemplar_document(ex: Exemplar) -> dict[str, Any]:
    entry: dict[str, Any] = {"input": ex.input, "answer": ex.answer}
    if ex.choices:
        entry["choices"] = list(ex.choices)
    if ex.rationale:
        entry["rationale"] = ex.rationale
    if ex.category:
        entry["category"] = ex.category
    return entry


def _item_document(item: TaskItem) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": item.id, "type": item.type, "category": item.category, "input": item.input}
    if item.is_multiple_choice:
        entry["choices"] = list(item.choices)
        entry["answer"] = LETTERS[item.answer]
    elif item.answer is not None:
        entry["answer"] = item.answer
    if item.tolerance is not None:
        entry["tolerance"] = item.tolerance
    if item.schema is not None:
        entry["schema"] = item.schema
    if item.metadata:
        entry["metadata"] = dict(item.metadata)
    return entry
