"""Turn stored results into the findings a report shows: per model and category, with intervals."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from poccheck.analysis.stats import Proportion, median, percentile, wilson
from poccheck.config.manifest import manifest_from_record
from poccheck.grading import answered_by_letter
from poccheck.grading.attention import AttentionView, CopyScore, mean_scores
from poccheck.grading.stage import GradeKey
from poccheck.records import (
    AttentionRecord,
    Grade,
    LatencySample,
    ModelInfo,
    ModelRun,
    RunRecord,
    Stored,
    StoredItem,
    StoredResult,
    TaskItem,
)


@dataclass(frozen=True)
class GradedRow:
    """A stored result with its grade and the item it answers."""

    model: str
    suite: str
    item: TaskItem
    result: StoredResult
    grade: Grade | None
    mode: str = "fewshot"

    @property
    def correct(self) -> bool:
        return self.grade is not None and self.grade.correct

    @property
    def key(self) -> str:
        """The item's identity across models and modes: suite and item id."""
        return f"{self.suite}/{self.item.id}"

    @property
    def letter_answer(self) -> bool:
        """Multiple choice answered with a letter read from a server's reply (no prompt log-probs): it has no choice
        scores, so no margin, no length-normalised answer and no cascade confidence."""
        if self.grade is None or not self.item.is_multiple_choice or self.mode == "cot":
            return False
        return answered_by_letter(self.result.output or "", self.result.choice_logprobs)


@dataclass
class ModelFindings:
    """Everything measured for one model."""

    name: str
    info: ModelInfo | None
    error: str | None
    mode: str = "fewshot"
    rows: list[GradedRow] = field(default_factory=list)
    accuracy: Proportion = field(default_factory=lambda: wilson(0, 0))
    accuracy_norm: Proportion | None = None
    by_category: dict[str, Proportion] = field(default_factory=dict)
    by_type: dict[str, Proportion] = field(default_factory=dict)
    latency_p50: float | None = None
    latency_p95: float | None = None
    ttft_p50: float | None = None
    decode_tokens_per_second: float | None = None
    items_per_second: float | None = None
    peak_rss: int | None = None
    load_seconds: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    errors: int = 0
    capped: int = 0  # generations cut by their token budget (finish reason "length")
    context_cut: int = 0  # generations cut by the model's context size (finish reason "context")
    looped: int = 0  # generations stopped because the model repeated itself (finish reason "loop")
    generated: int = 0  # items answered by generating text (not by scoring choices)
    letter_answers: int = 0  # multiple choice answered with a letter in a server's reply: no choice scores
    unparsed: int = 0  # chains of thought that ended without an answer that could be read
    prompt_formats: dict[str, str] = field(default_factory=dict)  # suite -> "chat" or "raw", as prompted
    expected_items: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    peak_vram: int | None = None
    in_flight: int = 1  # generations decoded together when its latencies were measured (the run's --parallel)
    alone: AloneTiming | None = None  # a sample of its generations timed again one at a time
    views: list[ItemView] = field(default_factory=list)
    copy: CopySummary | None = None

    multimode: bool = False

    @property
    def label(self) -> str:
        """The model's name, with its prompting mode when the assessment ran several."""
        return f"{self.name} · {self.mode}" if self.multimode else self.name

    @property
    def failures(self) -> list[GradedRow]:
        return [r for r in self.rows if not r.correct]

    @property
    def prompt_format(self) -> str | None:
        """The prompt format of every suite when they were prompted alike ("chat" or "raw"), else "mixed"; None
        when no run recorded one."""
        used = set(self.prompt_formats.values())
        return None if not used else used.pop() if len(used) == 1 else "mixed"


@dataclass(frozen=True)
class AloneTiming:
    """Generated items timed again one at a time after a run that had several in flight: each item's latency alone
    and as stored (measured with ``ModelFindings.in_flight`` in flight), paired, and how many texts came out the
    same."""

    alone: tuple[float, ...]
    loaded: tuple[float, ...]
    same_output: int

    @property
    def n(self) -> int:
        return len(self.alone)

    @property
    def alone_p50(self) -> float | None:
        return median(list(self.alone))

    @property
    def loaded_p50(self) -> float | None:
        return median(list(self.loaded))


def alone_timing(rows: Sequence[GradedRow], samples: Sequence[LatencySample]) -> AloneTiming | None:
    """The pairs of a model's sampled items among ``rows`` (None when none was sampled)."""
    by_key = {s.item_key: s for s in samples}
    pairs = [(by_key[r.result.item_key], r.result) for r in rows if r.result.item_key in by_key and not r.result.error]
    if not pairs:
        return None
    return AloneTiming(
        tuple(s.latency for s, _ in pairs), tuple(r.latency for _, r in pairs), sum(s.same_output for s, _ in pairs)
    )


@dataclass(frozen=True)
class ItemView:
    """An attention view of one item's answer, with the item it belongs to."""

    item: TaskItem
    answer: str
    correct: bool
    view: AttentionView


@dataclass(frozen=True)
class CopySummary:
    """Copy-attention score of a model: over all scored items, and split by whether it answered correctly."""

    overall: CopyScore
    correct: CopyScore | None
    wrong: CopyScore | None


@dataclass(frozen=True)
class Agreement:
    """How often two deployment modes of the same weights pick the same multiple-choice answer."""

    first: str
    second: str
    same: int
    items: int

    @property
    def rate(self) -> float:
        return self.same / self.items if self.items else float("nan")


@dataclass
class Findings:
    models: list[ModelFindings]
    categories: list[str]
    suites: list[str]
    items: int
    runs: tuple[RunRecord, ...]
    agreements: list[Agreement] = field(default_factory=list)


def analyse(stored: Stored, grades: Mapping[GradeKey, Grade | None]) -> Findings:
    """Summarise the stored results of the latest plan per model and prompting mode, with their ``grades``
    (``grading.stage.grade_stored``)."""
    manifest = manifest_from_record(stored.manifest)
    wanted_models = list(manifest.config.models) if manifest else []
    wanted_suites = list(manifest.suites) if manifest else []
    modes: tuple[str, ...] = manifest.modes if manifest else ("fewshot",)
    items: dict[tuple[str, str], StoredItem] = {}
    for stored_item in stored.items:
        if not wanted_suites or stored_item.suite in wanted_suites:
            items[(stored_item.suite, stored_item.item_key)] = stored_item
    infos = stored.model_infos
    runs = stored.model_runs
    latest: dict[str, ModelRun] = {}
    for run in runs:  # the latest run that got as far as loading the model, else the latest failure
        if run.settings_key or run.model not in latest or not latest[run.model].settings_key:
            latest[run.model] = run
    results_by_key: dict[tuple[str, str], list[StoredResult]] = defaultdict(list)
    samples: dict[tuple[str, str], list[LatencySample]] = defaultdict(list)
    for sample in stored.latency_samples:
        samples[(sample.model_fingerprint, sample.settings_key)].append(sample)
    for result in stored.results:  # by content fingerprint and settings, whatever name the model had then
        results_by_key[(result.model_fingerprint, result.settings_key)].append(result)

    findings = []
    for name in wanted_models or list(latest):
        chosen = latest.get(name)
        fingerprint = chosen.fingerprint if chosen else None
        info = infos.get(name) if fingerprint else None
        settings = chosen.settings_key if chosen else None
        own = manifest.modes_of(name) if manifest else modes  # candidates may run in modes of their own
        for mode in own:
            # an item is stored under its raw and its chat key: count each once
            expected = len({(s.suite, s.item.id) for s in items.values() if s.mode == mode})
            model = ModelFindings(
                name=name, info=info, error=chosen.error if chosen else None, expected_items=expected, mode=mode,
                multimode=len(modes) > 1,
            )  # fmt: skip
            for result in results_by_key.get((str(fingerprint), str(settings)), []):
                found = items.get((result.suite, result.item_key))
                if found is None or found.mode != mode:
                    continue
                grade = grades.get((result.model_fingerprint, result.item_key, result.settings_key))
                model.rows.append(GradedRow(name, found.suite, found.item, result, grade, mode))
            _summarise(model, [r for r in runs if r.model == name], wanted_suites)
            model.alone = alone_timing(model.rows, samples.get((str(fingerprint), str(settings)), []))
            if fingerprint and settings and mode == own[-1]:
                _attach_attention(model, stored.attention.get((fingerprint, settings), ()), items)
            findings.append(model)
    categories = sorted({s.item.category for s in items.values()})
    return Findings(
        findings,
        categories,
        sorted({s.suite for s in items.values()}),
        len({(s.suite, s.item.id) for s in items.values()}),  # each item once, however many modes ran it
        stored.runs,
        agreements(findings),
    )


def _attach_attention(
    model: ModelFindings, stored: Sequence[AttentionRecord], items: dict[tuple[str, str], StoredItem]
) -> None:
    by_key = {key: s.item for (_, key), s in items.items()}
    scores: dict[bool, list[CopyScore]] = {True: [], False: []}
    for entry in stored:
        item = by_key.get(entry.item_key)
        if item is None:
            continue
        if entry.kind == "view" and entry.view is not None:
            model.views.append(ItemView(item, entry.answer or "", entry.correct, AttentionView(**_tuples(entry.view))))
        elif entry.kind == "copy" and entry.score:
            scores[entry.correct].append(CopyScore(**entry.score))
    model.views.sort(key=lambda v: v.correct)
    overall = mean_scores(scores[True] + scores[False])
    if overall is not None:
        model.copy = CopySummary(overall, mean_scores(scores[True]), mean_scores(scores[False]))


def _tuples(view: dict[str, Any]) -> dict[str, Any]:
    """JSON gives lists; AttentionView holds tuples."""
    fixed = dict(view)
    fixed["tokens"] = tuple(view["tokens"])
    fixed["prompt_weights"] = tuple(view["prompt_weights"])
    fixed["grid"] = tuple(tuple(row) for row in view["grid"])
    return fixed


def agreements(models: list[ModelFindings]) -> list[Agreement]:
    """For every pair of candidates with the same weights in two backends, the multiple-choice agreement."""
    found = []
    for i, first in enumerate(models):
        for second in models[i + 1 :]:
            if not (first.info and second.info) or first.info.fingerprint != second.info.fingerprint:
                continue
            if first.info.backend == second.info.backend or first.mode != second.mode:
                continue
            picks = {r.key: r.grade.prediction for r in first.rows if r.grade and r.item.is_multiple_choice}
            same = total = 0
            for row in second.rows:
                key = row.key
                if row.grade and row.item.is_multiple_choice and key in picks:
                    total += 1
                    same += picks[key] == row.grade.prediction
            found.append(Agreement(first.label, second.label, same, total))
    return found


def _summarise(model: ModelFindings, runs: list[ModelRun], suites: list[str] | None = None) -> None:
    rows = model.rows
    graded = [r for r in rows if r.grade is not None]
    model.errors = len(rows) - len(graded)
    model.accuracy = wilson(sum(r.correct for r in rows), len(rows))
    # length normalisation needs each choice's log-likelihood: not for a generated letter (chain of thought, chat API)
    choice_rows = [r for r in graded if r.item.is_multiple_choice and r.grade and r.grade.correct_norm is not None]
    if choice_rows:
        model.accuracy_norm = wilson(sum(bool(r.grade and r.grade.correct_norm) for r in choice_rows), len(choice_rows))
    model.letter_answers = sum(1 for r in graded if r.letter_answer)
    for key, attribute in (("by_category", "category"), ("by_type", "type")):
        groups: dict[str, list[GradedRow]] = defaultdict(list)
        for row in rows:
            groups[getattr(row.item, attribute)].append(row)
        setattr(model, key, {g: wilson(sum(r.correct for r in rs), len(rs)) for g, rs in sorted(groups.items())})
    ok = [r.result for r in graded]
    latencies = [r.latency for r in ok]
    model.latency_p50 = median(latencies)
    model.latency_p95 = percentile(latencies, 95)
    model.ttft_p50 = median([r.ttft for r in ok if r.ttft is not None])
    decode = []
    for r in ok:
        if r.ttft is not None and r.completion_tokens > 1 and r.latency > r.ttft:
            decode.append((r.completion_tokens - 1) / (r.latency - r.ttft))
    model.decode_tokens_per_second = median(decode)
    # throughput: items over the wall time of the runs that answered them (several in flight at once count once);
    # a store without run times falls back to the sum of the items' latencies
    walls = [(run.items_done, run.seconds) for run in runs if run.items_done and run.seconds]
    total_time = sum(s for _, s in walls) if walls else sum(latencies)
    answered = sum(n for n, _ in walls) if walls else len(ok)
    model.items_per_second = answered / total_time if total_time > 0 else None
    model.tokens_in = sum(r.prompt_tokens for r in ok)
    model.tokens_out = sum(r.completion_tokens for r in ok)
    model.capped = sum(1 for r in ok if r.finish_reason == "length")
    model.context_cut = sum(1 for r in ok if r.finish_reason == "context")
    model.looped = sum(1 for r in ok if r.finish_reason == "loop")
    model.generated = sum(1 for r in ok if r.finish_reason is not None)
    model.unparsed = sum(1 for r in graded if r.mode == "cot" and r.grade is not None and not r.grade.answered)
    peaks = [run.peak_rss for run in runs if run.peak_rss]
    model.peak_rss = max(peaks) if peaks else None
    loads = [run.load_seconds for run in runs if run.load_seconds]
    model.load_seconds = loads[-1] if loads else None
    vram = [run.peak_vram for run in runs if run.peak_vram]
    model.peak_vram = max(vram) if vram else None
    settings = [run.settings for run in runs if run.settings]
    model.settings = settings[-1] if settings else {}
    if model.generated:  # only generations are decoded together; runs before batching recorded none: one at a time
        model.in_flight = max((int(s.get("generation_parallel") or 1) for s in settings), default=1)
    model.prompt_formats = prompt_formats(model.settings, suites or sorted({r.suite for r in rows}))


def prompt_formats(settings: dict[str, Any], suites: list[str]) -> dict[str, str]:
    """How each suite was prompted, from a model run's recorded settings. Runs recorded before prompt formats
    existed were raw, except through a chat API, where the server applied its template."""
    recorded = settings.get("prompt_format")
    if isinstance(recorded, dict):
        return {suite: str(recorded[suite]) for suite in suites if suite in recorded}
    if not settings:
        return {}
    fallback = str(recorded) if isinstance(recorded, str) else "chat" if settings.get("api") == "chat" else "raw"
    return {suite: fallback for suite in suites}
