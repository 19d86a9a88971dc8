"""Run suites through models and store every result as soon as it exists.

Results are keyed by (model fingerprint, item key, settings key); the item key hashes only what the model
sees (the rendered prompt, choices, stop strings and token cap), so a rerun skips finished items and a
changed answer key is re-graded without re-running. The runner stores raw outputs: grading is the next stage
(``grading.stage``), run by the pipeline over what the folder holds.

Each item is rendered as raw text and, unless its suite asks for raw, as chat turns; which of the two a model gets
(its effective prompt format) is known once it is loaded. A chat prompt has its own item key (it hashes the turns),
and a model's settings key records the effective format, so a rerun in another format never reuses rows. Raw
prompts keep the keys they always had.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from poccheck import endpoints, evidence, models
from poccheck.backends import Backend, ChoiceRequest, GenerationRequest, load_backend
from poccheck.backends.base import BatchedGenerationBackend, ChatBackend, ConcurrentBackend, effective_format
from poccheck.backends.registry import BackendOptions
from poccheck.errors import BackendError, ModelError
from poccheck.interrupt import caused_by_ctrl_c
from poccheck.memory import PeakRSS
from poccheck.records import (
    ChoiceScores,
    Completion,
    EffectiveFormat,
    LatencySample,
    Mode,
    ModelInfo,
    ResultRow,
    Suite,
    TaskItem,
    stable_hash,
)
from poccheck.store import Store, storable
from poccheck.tasks.prompts import Prompt, render_prompt


@dataclass(frozen=True)
class WorkItem:
    """One item in one mode, as prompted: before a model is chosen ``prompt`` is the raw text and ``chat`` the chat
    form (None when the suite asks for raw); :func:`for_format` picks one for a model."""

    suite: Suite
    item: TaskItem
    prompt: Prompt
    key: str
    mode: Mode = "fewshot"
    chat: Prompt | None = None
    chat_key: str | None = None
    error: str | None = None  # the prompt could not be built for this model (its chat template failed)

    @property
    def scored(self) -> bool:
        """Scored by choice likelihoods (multiple choice outside chain-of-thought), not generated."""
        return bool(self.prompt.continuations)

    @property
    def choice_request(self) -> ChoiceRequest:
        return ChoiceRequest(self.prompt.text, self.prompt.continuations, self.prompt.turns)

    @property
    def generation_request(self) -> GenerationRequest:
        return GenerationRequest(
            self.prompt.text, self.suite.stop_for(self.mode), self.suite.max_tokens_for(self.mode), self.prompt.turns,
            self.suite.repetition_penalty,
        )  # fmt: skip

    @property
    def request(self) -> ChoiceRequest | GenerationRequest:
        """What a backend is asked for this item: its choices scored, or its answer generated."""
        return self.choice_request if self.scored else self.generation_request


def item_key(suite: Suite, item: TaskItem, mode: Mode, prompt: Prompt) -> str:
    """The hash of what the model is given for an item: its prompt (text, or chat turns), and its choices or its
    stop strings and token budget."""
    identity: dict[str, Any] = {
        "suite": suite.name,
        "id": item.id,
        "mode": mode,
        "type": "mc" if prompt.continuations else "gen",
    }
    if prompt.turns:
        identity.update(format="chat", turns=[[turn.role, turn.content] for turn in prompt.turns])
    else:
        identity["prompt"] = prompt.text
    if prompt.continuations:
        identity["continuations"] = list(prompt.continuations)
    else:
        identity.update(stop=list(suite.stop_for(mode)), max_tokens=suite.max_tokens_for(mode))
        if suite.repetition_penalty != 1.0:  # plain greedy keeps the keys it always had
            identity["repetition_penalty"] = suite.repetition_penalty
    return stable_hash(identity)


def work_items(suite: Suite, mode: Mode = "fewshot") -> list[WorkItem]:
    work = []
    for item in suite.items:
        prompt = render_prompt(suite, item, mode)
        chat = render_prompt(suite, item, mode, "chat") if suite.prompt_format != "raw" else None
        work.append(
            WorkItem(
                suite,
                item,
                prompt,
                item_key(suite, item, mode, prompt),
                mode,
                chat,
                item_key(suite, item, mode, chat) if chat else None,
            )  # fmt: skip
        )
    return work


def suite_formats(backend: object, suites: Sequence[Suite], model: str) -> dict[str, EffectiveFormat]:
    """The effective prompt format of each suite on this model. Raises ModelError (the model fails) when a suite
    asks for ``chat`` and the model cannot give it."""
    return {suite.name: effective_format(backend, suite.prompt_format, model) for suite in suites}


def for_format(work: WorkItem, prompt_format: EffectiveFormat, backend: object) -> WorkItem:
    """The work item as a model with this effective format is prompted: chat turns rendered by the backend (with
    their own key), or the raw text. A server that applies its chat template to a raw prompt (a suite that asks
    for raw, sent to ``/chat/completions``) gets the raw text as its one message."""
    if prompt_format != "chat" or work.chat is None or not isinstance(backend, ChatBackend):
        return work
    assert work.chat_key is not None
    try:
        text = backend.chat_text(work.chat.turns)
    except BackendError as exc:
        return replace(work, prompt=work.chat, key=work.chat_key, error=exc.message)
    return replace(work, prompt=replace(work.chat, text=text), key=work.chat_key)


def generation_requests(backend: object, suite: Suite, model: str, mode: Mode) -> list[GenerationRequest]:
    """The generation requests a run gives this backend for a suite's items in one mode, in suite order and in
    the prompt format the run would use (multiple-choice items scored by log-likelihood are not among them)."""
    prompt_format = suite_formats(backend, [suite], model)[suite.name]
    work = [for_format(w, prompt_format, backend) for w in work_items(suite, mode)]
    return [w.generation_request for w in work if not w.scored]


def keyed_settings(settings: dict[str, object], formats: dict[str, EffectiveFormat]) -> dict[str, object]:
    """The settings a model's results are keyed by: its backend's, and its prompt format where any suite is chat
    (raw is what every result was before prompt formats existed, so raw results keep their keys)."""
    used = set(formats.values())
    if "chat" not in used:
        return settings
    return {**settings, "prompt_format": "chat" if used == {"chat"} else dict(sorted(formats.items()))}


CONTEXT_TOKENS = 4096  # each context's size (LlamaSettings.n_ctx; the transformers backend's check uses the same)


def cache_tokens(info: ModelInfo, options: BackendOptions, work: Sequence[WorkItem]) -> int:
    """Tokens of key/value cache the model will hold, for the memory check before loading: llama.cpp keeps a
    generation context and a scoring context, and when generations are decoded N at a time a third context with
    a stream of the same size per sequence; the other backends one context."""
    if info.backend != "llama.cpp":
        return CONTEXT_TOKENS
    slots = options.generation_slots() if any(not w.scored for w in work) else 1
    return CONTEXT_TOKENS * (2 + (slots if slots > 1 else 0))


PROBED_METHODS = ("logprobs", "generation")


def recorded_method(
    info: ModelInfo, store: Store, options: BackendOptions, progress: Progress
) -> tuple[BackendOptions, endpoints.Endpoint | None]:
    """A served model's multiple-choice method, as probed on its endpoint's first run into this output folder.

    The method (log-likelihood or letters) is part of the results' key, and the probe that picks it times a
    request, so a busy server could flip it and a rerun would start over: once recorded, it is passed to the
    backend as the endpoint's ``multiple_choice`` and not probed again (``options.reprobe`` probes anew). Returns
    the options to load with, and the endpoint whose probed method is to be recorded once loaded (None: nothing
    to record — not a served model, a method chosen in the plan, a chat API, which always answers by letter, or
    a method reused)."""
    if info.backend != "openai":
        return options, None
    endpoint = endpoints.find(info.name.rpartition("@")[0], options.endpoints)
    if endpoint.multiple_choice != "auto" or endpoint.api != "completions":
        return options, None
    recorded = None if options.reprobe else store.probed_method(endpoint.base_url.rstrip("/"), endpoint.model)
    if recorded in PROBED_METHODS:
        method: endpoints.MultipleChoice = "logprobs" if recorded == "logprobs" else "generation"
        progress.message(f"{info.name}: multiple choice by {method}, as probed on the first run (--reprobe: again)")
        fixed = replace(endpoint, multiple_choice=method)
        chosen = tuple(fixed if e is endpoint else e for e in options.endpoints)
        return replace(options, endpoints=chosen), None
    return options, endpoint


def item_record(item: TaskItem) -> dict[str, Any]:
    record = asdict(item)
    record["choices"] = list(item.choices)
    return record


@dataclass
class ModelOutcome:
    model: str
    info: ModelInfo | None = None
    error: str | None = None
    done: int = 0
    skipped: int = 0
    failed_items: int = 0


@dataclass
class RunOutcome:
    run_id: int
    models: list[ModelOutcome] = field(default_factory=list)
    interrupted: bool = False


class Progress:
    """Callbacks the runner calls as it goes; the CLI draws a progress bar from them."""

    def model_started(self, model: str, total: int, skipped: int) -> None: ...

    def advance(self, count: int = 1) -> None: ...

    def model_finished(self, outcome: ModelOutcome) -> None: ...

    def message(self, text: str, style: str = "") -> None:
        """Show a plain-text note (``style`` is a hint such as 'red')."""


@dataclass(frozen=True)
class Schedule:
    """Which models run, in which prompting modes, on how many items: every model in ``modes`` unless
    ``model_modes`` gives it modes of its own (which ``modes`` must include); ``limit``: the first N items of each
    suite; ``latency_sample``: how many generations of each mode are timed again alone after a model's run that had
    several in flight (single-request latency; 0: none)."""

    models: tuple[str, ...]
    modes: tuple[Mode, ...] = ("fewshot",)
    model_modes: Mapping[str, tuple[Mode, ...]] = field(default_factory=dict)
    limit: int | None = None
    latency_sample: int = 0

    def modes_of(self, model: str) -> tuple[Mode, ...]:
        return self.model_modes.get(model, self.modes)


def run(
    suites: Sequence[Suite],
    schedule: Schedule,
    store: Store,
    *,
    manifest: Mapping[str, Any] | None = None,
    options: BackendOptions | None = None,
    progress: Progress | None = None,
) -> RunOutcome:
    """Run every suite through every model of ``schedule``; one failing model does not stop the others. The run
    is recorded with ``manifest`` (the pipeline's ``config.manifest``; by default the models and suites)."""
    progress = progress or Progress()
    work = [w for suite in suites for mode in schedule.modes for w in work_items(suite, mode)[: schedule.limit or None]]
    for suite in suites:  # both forms of each item: a model's results match the one it was prompted with
        store.save_items(
            suite.name,
            [
                (key, w.mode, suite.answer_pattern, item_record(w.item))
                for w in work
                if w.suite is suite
                for key in (w.key, w.chat_key)
                if key is not None
            ],
        )
    run_id = store.start_run(dict(manifest or {"models": list(schedule.models), "suites": [s.name for s in suites]}))
    outcome = RunOutcome(run_id)
    status = "interrupted"
    try:
        for spec in schedule.models:
            try:
                own = schedule.modes_of(spec)
                mine = [w for w in work if w.mode in own]
                result = _run_model(
                    spec, suites, mine, store, run_id, progress, options or BackendOptions(), schedule.latency_sample
                )
            except Exception as exc:  # e.g. GPU out of memory: this model fails, the others still run
                if caused_by_ctrl_c(exc):  # e.g. Ctrl-C while torch's extensions load: an ImportError
                    raise KeyboardInterrupt from exc
                result = ModelOutcome(spec, error=f"unexpected error: {type(exc).__name__}: {exc}")
                store.record_model_run(run_id, spec, error=result.error)
                progress.message(f"{spec}: {result.error}", "red")
            outcome.models.append(result)
            progress.model_finished(result)
        status = "finished"
    except KeyboardInterrupt:
        outcome.interrupted = True
        raise
    finally:
        store.finish_run(run_id, status)
    return outcome


def _run_model(
    spec: str,
    suites: Sequence[Suite],
    work: list[WorkItem],
    store: Store,
    run_id: int,
    progress: Progress,
    options: BackendOptions,
    latency_sample: int = 0,
) -> ModelOutcome:
    outcome = ModelOutcome(spec)
    store.record_model_run(run_id, spec)
    try:
        # refused from the file's header when it cannot fit, before the whole file is read for its fingerprint
        info = models.resolve(spec, options.endpoints, lambda i: models.check_memory(i, cache_tokens(i, options, work)))
    except ModelError as exc:
        outcome.error = str(exc)
        store.record_model_run(run_id, spec, error=outcome.error)
        progress.message(f"{spec}: {exc.message}", "red")
        return outcome
    outcome.info = info
    store.save_model(info)
    started = time.perf_counter()
    with PeakRSS() as memory:
        progress.message(f"loading {spec} ({info.backend}) ...")
        options, probing = recorded_method(info, store, options, progress)
        try:
            backend = load_backend(info, options)
        except ModelError as exc:
            outcome.error = str(exc)
            store.record_model_run(run_id, spec, fingerprint=info.fingerprint, error=outcome.error)
            progress.message(f"{spec}: {exc.message}", "red")
            return outcome
        probed = getattr(backend, "mc_method", None)
        if probing is not None and probed in PROBED_METHODS:
            store.record_probed_method(probing.base_url.rstrip("/"), probing.model, str(probed))
        load_seconds = time.perf_counter() - started
        try:
            formats = suite_formats(backend, suites, info.name)
        except ModelError as exc:  # e.g. prompt format chat for a model without a chat template
            backend.close()
            outcome.error = str(exc)
            store.record_model_run(run_id, spec, fingerprint=info.fingerprint, error=outcome.error)
            progress.message(f"{spec}: {exc.message}", "red")
            return outcome
        work = [for_format(w, formats[w.suite.name], backend) for w in work]
        settings = backend.settings()
        # generations decoded together, or a server's requests in flight: recorded with the run (latencies are
        # with this many in flight); part of the results' key only where batching can change an output
        # (transformers' padded batches, llama.cpp's tiled steps from 8, repacked ones from 4), since elsewhere each
        # output is what the item gives alone
        slots = in_flight(backend, options)
        if slots > 1 and isinstance(backend, BatchedGenerationBackend):
            settings = {**settings, **backend.batch_key(slots)}
        settings_key = stable_hash(keyed_settings(settings, formats))
        if info.legacy_fingerprint:  # results an earlier version stored under its sampled key keep resuming
            moved = store.rekey_model(info.legacy_fingerprint, info.fingerprint)
            if moved:
                progress.message(f"{spec}: {moved} stored results re-keyed to the whole-file fingerprint")
        done = store.done_keys(info.fingerprint, settings_key)
        todo = [w for w in work if w.key not in done]
        outcome.skipped = len(work) - len(todo)
        progress.model_started(spec, len(work), outcome.skipped)
        store.record_model_run(
            run_id,
            spec,
            fingerprint=info.fingerprint,
            settings_key=settings_key,
            settings=json.dumps({**settings, "prompt_format": formats, "generation_parallel": slots}),
            load_seconds=load_seconds,
            baseline_rss=memory.baseline,
        )
        work_started = time.perf_counter()
        items_seconds = None  # the items' wall time, without the attention evidence collected after them
        try:
            try:
                _run_items(backend, info, settings_key, todo, store, run_id, progress, outcome, slots)
                items_seconds = time.perf_counter() - work_started
                if slots > 1 and latency_sample > 0:
                    time_alone(backend, info, settings_key, work, store, run_id, progress, latency_sample)
            except BackendError as exc:  # e.g. a server that stopped answering: what is saved stays saved
                outcome.error = str(exc)
                store.record_model_run(run_id, spec, error=outcome.error)
                progress.message(f"{spec}: {exc}", "red")  # with the hint: how to resume
                return outcome
            if isinstance(backend, evidence.AttentionBackend):
                progress.message(f"{spec}: collecting attention evidence ...")
                evidence.collect(backend, store, info.fingerprint, settings_key, work)
        finally:
            peak_vram = backend.peak_vram()
            backend.close()
            store.record_model_run(
                run_id,
                spec,
                items_done=outcome.done,
                seconds=items_seconds if items_seconds is not None else time.perf_counter() - work_started,
                peak_rss=memory.peak,
                peak_vram=peak_vram,
            )
    return outcome


def time_alone(
    backend: Backend,
    info: ModelInfo,
    settings_key: str,
    work: Sequence[WorkItem],
    store: Store,
    run_id: int,
    progress: Progress,
    per_mode: int,
) -> None:
    """Time the first ``per_mode`` generated items of each mode again, one request alone, after a run that had
    several in flight: single-request latency on a sample, beside the latency stored with each item (measured with
    others in flight), and whether the text came out the same. Items already sampled (a resumed run) are skipped;
    each sample is saved as it is taken."""
    stored = {r.item_key: r for r in store.results_for(info.fingerprint, settings_key) if r.error is None}
    sampled = store.sampled_keys(info.fingerprint, settings_key)
    chosen: list[WorkItem] = []
    for mode in dict.fromkeys(w.mode for w in work):
        generated = [w for w in work if w.mode == mode and not w.scored and not w.error and w.key in stored]
        chosen += [w for w in generated[:per_mode] if w.key not in sampled]
    if not chosen:
        return
    progress.message(f"{info.name}: timing {len(chosen)} generations again, one at a time (single-request latency)")
    for w in chosen:
        try:
            completion = backend.generate(w.generation_request)
        except BackendError as exc:  # the sample is a measurement, not a result: the run goes on without it
            progress.message(f"{info.name}: single-request timing of {w.item.id} failed: {exc.message}", "yellow")
            continue
        same = storable(completion.text) == stored[w.key].output
        sample = LatencySample(
            info.fingerprint, settings_key, w.key, completion.seconds, completion.ttft, completion.completion_tokens,
            same,
        )  # fmt: skip
        store.add_latency_sample(run_id, sample)


def in_flight(backend: Backend, options: BackendOptions) -> int:
    """How many generations a backend runs at once in this run: a local engine's ``--parallel`` where it batches,
    a server's concurrency, else 1."""
    if isinstance(backend, BatchedGenerationBackend):
        return options.generation_slots()
    if isinstance(backend, ConcurrentBackend):
        return backend.concurrency
    return 1


def _run_items(
    backend: Backend,
    info: ModelInfo,
    settings_key: str,
    todo: list[WorkItem],
    store: Store,
    run_id: int,
    progress: Progress,
    outcome: ModelOutcome,
    slots: int = 1,
) -> None:
    def save(work: WorkItem, output: Output) -> None:
        row = ResultRow(
            model=info.name,
            model_fingerprint=info.fingerprint,
            suite=work.suite.name,
            item_id=work.item.id,
            item_key=work.key,
            settings_key=settings_key,
            mode=work.mode,
            category=work.item.category,
            type=work.item.type,
            prompt=work.prompt.text,
            output=output.text,
            choice_logprobs=output.choice_logprobs,
            prompt_tokens=output.prompt_tokens,
            completion_tokens=output.completion_tokens,
            latency=output.latency,
            ttft=output.ttft,
            finish_reason=output.finish_reason,
            mean_logprob=output.mean_logprob,
            error=output.error,
        )
        store.add_result(run_id, row)
        if row.error:
            outcome.failed_items += 1
        else:
            outcome.done += 1
        progress.advance()

    for w in todo:
        if w.error:
            save(w, Output(error=w.error))
    todo = [w for w in todo if not w.error]
    if isinstance(backend, ConcurrentBackend):  # a server: many items in flight, each saved as it arrives
        for index, result in backend.run_many([w.request for w in todo]):
            save(todo[index], _output(result))
        return
    choice_work = [w for w in todo if w.scored]
    size = max(1, backend.choice_batch)  # the items of one call are saved when it returns
    for begin in range(0, len(choice_work), size):
        chunk = choice_work[begin : begin + size]
        scores: list[ChoiceScores | BackendError]
        try:
            scores = list(backend.score_choices([w.choice_request for w in chunk]))
        except BackendError:
            scores = [_score_one(backend, w) for w in chunk]  # find the culprit
        for w, score in zip(chunk, scores, strict=True):
            save(w, _output(score))
    generation = [w for w in todo if not w.scored]
    if slots > 1 and isinstance(backend, BatchedGenerationBackend):  # several decoded together, saved as each ends
        for index, result in backend.generate_many([w.generation_request for w in generation], slots):
            save(generation[index], _output(result))
        return
    for w in generation:
        try:
            completion = backend.generate(w.generation_request)
        except BackendError as exc:
            save(w, Output(error=exc.message))
            continue
        save(w, _output(completion))


@dataclass(frozen=True)
class Output:
    """What a backend returned for one item (or the error it raised)."""

    text: str = ""
    choice_logprobs: tuple[float, ...] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    ttft: float | None = None
    finish_reason: str | None = None
    mean_logprob: float | None = None
    error: str | None = None


def _output(result: ChoiceScores | Completion | BackendError) -> Output:
    if isinstance(result, BackendError):
        return Output(error=result.message)
    if isinstance(result, ChoiceScores):
        return Output(
            text=result.text,
            choice_logprobs=result.logprobs or None,  # a letter read from a reply has no scores
            prompt_tokens=result.input_tokens,
            completion_tokens=result.completion_tokens,
            latency=result.seconds,
        )
    return Output(
        text=result.text,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        latency=result.seconds,
        ttft=result.ttft,
        finish_reason=result.finish_reason,
        mean_logprob=result.mean_logprob,
    )


def _score_one(backend: Backend, work: WorkItem) -> ChoiceScores | BackendError:
    try:
        return backend.score_choices([work.choice_request])[0]
    except BackendError as exc:
        return exc
