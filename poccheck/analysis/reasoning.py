"""Reasoning analysis over graded results: chain-of-thought lift, the proof probe by rule and depth, and where
each task group sits on the model-size curve (with the published study's points where the task matches)."""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from poccheck.analysis.scaling import Point, ThresholdFit, family_of_name, threshold
from poccheck.analysis.stats import McNemar, Proportion, mcnemar_exact, wilson
from poccheck.analysis.summary import Findings, GradedRow, ModelFindings
from poccheck.config.run import DEFAULT_TARGET
from poccheck.i18n import Message
from poccheck.records import TaskItem


@dataclass(frozen=True)
class Paired:
    """Two conditions on the same items in one task group: accuracy of each and an exact McNemar test
    (``test.b``: items only the first got right; ``test.c``: only the second)."""

    group: str | None  # a task category, or None for all the items together
    first: Proportion
    second: Proportion
    unanswered: int  # items the second left without a parseable answer
    test: McNemar

    @property
    def overall(self) -> bool:
        return self.group is None


@dataclass(frozen=True)
class Lift:
    """Chain of thought (second) against a baseline mode (first) for one model."""

    model: str
    baseline_mode: str
    diff: Paired


@dataclass(frozen=True)
class ProbeCell:
    rule: str
    hops: int
    strict: Proportion
    lenient: Proportion


@dataclass(frozen=True)
class DepthProfile:
    label: str
    by_hops: list[tuple[int, Proportion, Proportion]]  # hops, strict, lenient
    longest_solved: int | None  # the longest chain solved strictly at >= target accuracy


@dataclass
class ScalingGroup:
    name: str  # the task category
    mode: str
    fit: ThresholdFit
    chance: float | None
    published: ThresholdFit | None = None
    published_label: str = ""
    hops: int | None = None  # proofs: the group of this many steps within the category


@dataclass
class Reasoning:
    lifts: list[Lift] = field(default_factory=list)
    probe: dict[str, list[ProbeCell]] = field(default_factory=dict)  # by model label
    profiles: list[DepthProfile] = field(default_factory=list)
    scaling: list[ScalingGroup] = field(default_factory=list)
    target: float = DEFAULT_TARGET

    @property
    def fitted(self) -> list[ScalingGroup]:
        return [g for g in self.scaling if g.fit.sufficient]

    @property
    def unfitted(self) -> list[ScalingGroup]:
        return [g for g in self.scaling if not g.fit.sufficient]

    @property
    def unfitted_by_verdict(self) -> list[tuple[Message, list[ScalingGroup]]]:
        """The unfitted groups gathered by why no threshold could be placed, in order of first appearance."""
        gathered: dict[tuple[str, str], tuple[Message, list[ScalingGroup]]] = {}
        for group in self.unfitted:
            verdict = group.fit.verdict
            key = (verdict.key, repr(sorted(verdict.values.items())))
            gathered.setdefault(key, (verdict, []))[1].append(group)
        return list(gathered.values())

    @property
    def sizes(self) -> int:
        return max((len({round(p.log_size, 3) for p in g.fit.points}) for g in self.scaling), default=0)

    @property
    def published(self) -> list[ScalingGroup]:
        """One group per published task (category level), for the reference charts."""
        seen: dict[str, ScalingGroup] = {}
        for g in self.scaling:
            if g.published is not None and g.hops is None and g.published_label not in seen:
                seen[g.published_label] = g
        return list(seen.values())


def paired(first: ModelFindings, second: ModelFindings) -> list[Paired]:
    """All the items both answered (group None, first), then each task category: the two results with an exact
    McNemar test. A category may be called anything, ``all`` included: it is never merged with the whole."""
    a = {r.key: r for r in first.rows}
    b = {r.key: r for r in second.rows}
    both = [k for k in a if k in b]
    categories: dict[str, list[str]] = defaultdict(list)
    for key in both:
        categories[a[key].item.category].append(key)
    groups: list[tuple[str | None, list[str]]] = [(None, both)] if both else []
    groups += sorted(categories.items())
    result = []
    for group, keys in groups:
        only_first = sum(1 for k in keys if a[k].correct and not b[k].correct)
        only_second = sum(1 for k in keys if b[k].correct and not a[k].correct)
        result.append(
            Paired(
                group,
                wilson(sum(a[k].correct for k in keys), len(keys)),
                wilson(sum(b[k].correct for k in keys), len(keys)),
                sum(1 for k in keys if (g := b[k].grade) is not None and not g.answered),
                mcnemar_exact(only_first, only_second),
            )
        )
    return result


def lifts(findings: Findings) -> list[Lift]:
    """Per model and category (and overall): CoT against direct (or few-shot) with an exact McNemar test."""
    by_model: dict[str, dict[str, ModelFindings]] = defaultdict(dict)
    for m in findings.models:
        by_model[m.name][m.mode] = m
    found = []
    for name, modes in by_model.items():
        base_mode = "direct" if "direct" in modes else "fewshot"
        if "cot" in modes and base_mode in modes:
            found += [Lift(name, base_mode, diff) for diff in paired(modes[base_mode], modes["cot"])]
    return found


def proof_hops(item: TaskItem) -> int | None:
    """A proof item's number of steps (``metadata.hops``, 1 when absent); None when it is not a whole number."""
    value = item.metadata.get("hops", 1)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def probe_cells(model: ModelFindings) -> list[ProbeCell]:
    cells: dict[tuple[str, int], list[GradedRow]] = defaultdict(list)
    for row in model.rows:
        if row.item.type == "proof" and (hops := proof_hops(row.item)) is not None:
            cells[(str(row.item.metadata.get("rule", row.item.category)), hops)].append(row)
    return [
        ProbeCell(
            rule, hops,
            wilson(sum(r.correct for r in rows), len(rows)),
            wilson(sum(bool(r.grade and r.grade.lenient) for r in rows), len(rows)),
        )
        for (rule, hops), rows in sorted(cells.items())
    ]  # fmt: skip


def depth_profile(model: ModelFindings, cells: list[ProbeCell], target: float) -> DepthProfile | None:
    if not cells:
        return None
    by_hops: dict[int, list[ProbeCell]] = defaultdict(list)
    for cell in cells:
        by_hops[cell.hops].append(cell)
    rows = []
    longest: int | None = None
    still_solving = True
    for hops in sorted(by_hops):
        group = by_hops[hops]
        strict = wilson(sum(c.strict.successes for c in group), sum(c.strict.n for c in group))
        lenient = wilson(sum(c.lenient.successes for c in group), sum(c.lenient.n for c in group))
        rows.append((hops, strict, lenient))
        still_solving = still_solving and strict.value >= target  # every shorter chain must be solved too
        if still_solving:
            longest = hops
    return DepthProfile(model.label, rows, longest)


@lru_cache(maxsize=16)
def published_fit(task: str, metric: str, settings: tuple[str, ...] | None = None) -> ThresholdFit:
    """The published study's data for one task, fitted with poccheck's method (cached: it takes seconds)."""
    return threshold(published_points(task, metric, settings), 0.2 if task == "csqa" else None)


def published_points(task: str, metric: str, settings: tuple[str, ...] | None = None) -> list[Point]:
    """The published study's figures for one task (packaged with poccheck, sources cited in the file)."""
    text = resources.files("poccheck").joinpath("data/published_thresholds.csv").read_text(encoding="utf-8")
    return points_from_csv(text, task, metric, settings)


def points_from_csv(text: str, task: str, metric: str, settings: tuple[str, ...] | None = None) -> list[Point]:
    """Points from a results table with columns model, params_billions, task, setting, metric, value and n (of the
    given settings only, when given)."""
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return [
        Point(r["model"], family_of_name(r["model"]), float(r["params_billions"]) * 1e9,
              round(float(r["value"]) * int(r["n"])), int(r["n"]))
        for r in rows
        if r["task"] == task and r["metric"] == metric and (settings is None or r["setting"] in settings)
    ]  # fmt: skip


STUDY_3SHOT_1HOP = ("cot_3shot_1hop_v1", "cot_3shot_hop1_2steps_rev1", "cot_3shot_hop1_3steps_rev1")
_RULE_NAMES = {
    "implication_elimination": "implication elimination", "conjunction_introduction": "conjunction introduction",
    "conjunction_elimination": "conjunction elimination", "disjunction_introduction": "disjunction introduction",
    "disjunction_elimination": "disjunction elimination", "proof_by_contradiction": "proof by contradiction",
}  # fmt: skip
# task group (category) -> the study's task, metric, settings and the label the report gives its points. Proofs
# are compared strictly, as poccheck grades them (`correct`); the study's suites (`poccheck tasks prontoqa-study`)
# name their groups prontoqa_<rule>, a probe's proof by contradiction is compared with the study's 8-shot figures.
PUBLISHED_TASKS: dict[str, tuple[str, str, tuple[str, ...] | None, str]] = {
    "csqa": ("csqa", "accuracy", None, "CommonsenseQA, 7-shot chain of thought"),
    "commonsenseqa": ("csqa", "accuracy", None, "CommonsenseQA, 7-shot chain of thought"),
    "proof_by_contradiction": (
        "prontoqa_ood:proof_by_contradiction", "proof_success_rate(strict)", ("cot_8shot_1hop_v1",),
        "PrOntoQA-OOD proof by contradiction, 8-shot, strict",
    ),
    **{
        f"prontoqa_{rule}": (
            f"prontoqa_ood:{rule}", "proof_success_rate(strict)", STUDY_3SHOT_1HOP,
            f"PrOntoQA-OOD {name}, 3-shot 1-hop, strict",
        )
        for rule, name in _RULE_NAMES.items()
    },
}  # fmt: skip


def scaling_groups(findings: Findings, with_published: bool = True) -> list[ScalingGroup]:
    """One threshold fit per task group (category, and category x hops for proofs of several depths) and mode."""
    rows_by: dict[tuple[str, int | None, str], dict[str, tuple[ModelFindings, list[GradedRow]]]] = defaultdict(dict)
    weights: set[tuple[str, str]] = set()  # the same file run by two backends is one point: the first candidate's
    for m in findings.models:
        if m.info is None or not m.info.parameters or (m.info.fingerprint, m.mode) in weights:
            continue
        weights.add((m.info.fingerprint, m.mode))
        groups: dict[tuple[str, int | None], list[GradedRow]] = defaultdict(list)
        for row in m.rows:
            groups[(row.item.category, None)].append(row)
            if row.item.type == "proof" and (hops := proof_hops(row.item)) is not None:
                groups[(row.item.category, hops)].append(row)
        for (group, hops), rows in groups.items():
            rows_by[(group, hops, m.mode)][m.name] = (m, rows)
    depths: dict[str, set[int]] = defaultdict(set)
    for group, hops, _ in rows_by:
        if hops is not None:
            depths[group].add(hops)
    result = []
    for (group, hops, mode), per_model in sorted(rows_by.items(), key=lambda e: (e[0][0], e[0][1] or 0, e[0][2])):
        if hops is not None and len(depths[group]) == 1:
            continue  # every proof of the group has this depth: the same items as the group's own fit
        points = [
            Point(m.name, m.info.family or family_of_name(m.name), float(m.info.parameters),
                  sum(r.correct for r in rows), len(rows))
            for m, rows in per_model.values()
            if m.info and m.info.parameters
        ]  # fmt: skip
        any_rows = next(iter(per_model.values()))[1]
        chance = None
        if all(r.item.is_multiple_choice for r in any_rows) and mode != "cot":
            chance = sum(1 / len(r.item.choices) for r in any_rows) / len(any_rows)
        entry = ScalingGroup(group, mode, threshold(points, chance), chance, hops=hops)
        match = PUBLISHED_TASKS.get(group.strip().lower())
        if with_published and match:
            task, metric, settings, label = match
            entry.published = published_fit(task, metric, settings)
            entry.published_label = label
        result.append(entry)
    return result


def analyse_reasoning(findings: Findings, target: float = DEFAULT_TARGET) -> Reasoning:
    reasoning = Reasoning(lifts=lifts(findings), target=target)
    for m in findings.models:
        cells = probe_cells(m)
        if cells:
            reasoning.probe[m.label] = cells
            profile = depth_profile(m, cells, target)
            if profile:
                reasoning.profiles.append(profile)
    reasoning.scaling = scaling_groups(findings)
    return reasoning
