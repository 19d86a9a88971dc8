"""What fine-tuning bought and what it cost: the fine-tuned candidate against its base on the same held-out
items (per task group, exact McNemar), and on the control suite (forgetting)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from poccheck.adapters import Manifest
from poccheck.analysis.reasoning import Paired, paired
from poccheck.analysis.summary import Findings, ModelFindings

SIGNIFICANT = 0.05


@dataclass(frozen=True)
class FinetuneFindings:
    """One adapter: before (``first``) and after (``second``) on the held-out split and on the control suite.

    ``heldout`` and ``control`` hold one :class:`Paired` per task group, the overall one (group None) first.
    """

    adapter: str
    base: str  # label of the base candidate (the same weights without the adapter)
    tuned: str  # label of the fine-tuned candidate
    mode: str
    heldout: list[Paired]
    control: list[Paired]
    control_suite: str | None
    train_items: int
    validation_items: int
    test_items: int
    epochs_run: int
    stopped: str
    train_seconds: float
    peak_rss: int | None
    hyperparameters: dict[str, object]
    export: str
    warnings: tuple[str, ...] = ()

    @property
    def lift(self) -> Paired | None:
        return next((p for p in self.heldout if p.overall), None)

    @property
    def forgetting(self) -> list[Paired]:
        """Control task groups that got significantly worse (p < 0.05, fewer right after than before)."""
        return [p for p in self.control if p.test.c < p.test.b and p.test.p_value < SIGNIFICANT]

    @property
    def lifted(self) -> bool:
        lift = self.lift
        return lift is not None and lift.test.c > lift.test.b and lift.test.p_value < SIGNIFICANT


def analyse_finetunes(findings: Findings, manifests: Mapping[str, Manifest]) -> list[FinetuneFindings]:
    """For each fine-tuned candidate (its adapter folder a key of ``manifests``) with a base candidate in the
    same mode (same base fingerprint, no adapter; the same backend preferred): paired before/after differences."""
    found = []
    for tuned in findings.models:
        info = tuned.info
        if info is None or not info.adapter or info.adapter not in manifests or not tuned.rows:
            continue
        manifest = manifests[info.adapter]
        bases = [
            m
            for m in findings.models
            if m.mode == tuned.mode and m.rows and m.info is not None and not m.info.adapter
            and m.info.fingerprint == manifest.base_fingerprint
        ]  # fmt: skip
        if not bases:
            continue
        base = max(bases, key=lambda m: m.info is not None and m.info.backend == info.backend)  # same engine
        control = manifest.control.suite if manifest.control else None
        found.append(
            FinetuneFindings(
                adapter=manifest.name,
                base=base.label,
                tuned=tuned.label,
                mode=tuned.mode,
                heldout=paired(_only(base, manifest.heldout_suite), _only(tuned, manifest.heldout_suite)),
                control=paired(_only(base, control), _only(tuned, control)) if control else [],
                control_suite=control,
                train_items=len(manifest.tasks.items.get("train", [])),
                validation_items=len(manifest.tasks.items.get("validation", [])),
                test_items=len(manifest.tasks.items.get("test", [])),
                epochs_run=manifest.training.epochs_run,
                stopped=manifest.training.stopped,
                train_seconds=manifest.training.seconds,
                peak_rss=manifest.training.peak_rss,
                hyperparameters=dict(manifest.hyperparameters),
                export=manifest.export,
                warnings=tuple(manifest.warnings),
            )
        )
    return found


def _only(model: ModelFindings, suite: str | None) -> ModelFindings:
    return replace(model, rows=[r for r in model.rows if r.suite == suite])
