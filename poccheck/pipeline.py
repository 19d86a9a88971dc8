"""The Python API: each public function is one stage or a composition of stages. The CLI only calls these."""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import yaml

from poccheck import models, paths, report, runner
from poccheck.adapters import Manifest, read_manifest
from poccheck.analysis import Findings, analyse
from poccheck.analysis.deployment import CostFindings, cost_findings
from poccheck.analysis.finetune import FinetuneFindings, analyse_finetunes
from poccheck.analysis.reasoning import Paired, analyse_reasoning, paired
from poccheck.analysis.recommend import Recommendation, recommend
from poccheck.backends.registry import BackendOptions
from poccheck.config.manifest import RunManifest, manifest_from_record, manifest_record, run_manifest
from poccheck.config.plan import Plan, default_plan_text
from poccheck.config.run import DEFAULT_TARGET, RunConfig
from poccheck.errors import ModelError, PocCheckError, StoreError, did_you_mean
from poccheck.finetune.run import TrainedAdapter, refuse_trained_items, train_adapter
from poccheck.finetune.train import LoraSettings, TrainProgress
from poccheck.grading.stage import grade_stored, grade_updates
from poccheck.host import engine_info, host_info
from poccheck.i18n import DEFAULT_LANGUAGE, LANGUAGES
from poccheck.private import secure_dir
from poccheck.probe.generate import RULES, probe_suite
from poccheck.probe.logic import Language
from poccheck.records import Mode, ModelInfo, Suite
from poccheck.report.decision import write_decision
from poccheck.store import DB_NAME, OutputLock, Store
from poccheck.tasks import load_suites
from poccheck.tasks.suite import TaskCheck, check_tasks


def validate(paths: Sequence[str | Path], encoding: str | None = None) -> TaskCheck:
    """Check task files without running anything: the valid suites, every problem found, where each header was."""
    return check_tasks(paths, encoding)


@dataclass(frozen=True)
class ModelEntry:
    """A row of ``poccheck models list``: a model and its description, or why it cannot be used.

    ``packaged`` is the registry entry of a packaged model (published size, file size, licence), shown also
    when it is not installed; ``install`` is then the command that installs it."""

    spec: str
    info: ModelInfo | None
    error: str | None
    packaged: models.PackagedModel | None = None
    install: str | None = None


def list_models(extra: Sequence[str] = ()) -> list[ModelEntry]:
    """The packaged models (bundled and ladder, installed or not), GGUF files in ``$POCCHECK_CACHE/models``,
    and any extra specs given."""
    entries = []
    for name, packaged in models.PACKAGED.items():
        try:
            entries.append(ModelEntry(name, models.resolve(name), None, packaged))
        except models.ModelNotInstalledError as exc:
            entries.append(ModelEntry(name, None, exc.message, packaged, exc.command))
        except ModelError as exc:
            entries.append(ModelEntry(name, None, str(exc), packaged))
    specs: list[str] = []
    local = paths.models_dir()
    if local.is_dir():
        packaged_files = {models.cached_file(name).resolve() for name in models.PACKAGED}
        specs += [str(p) for p in sorted(local.glob("*.gguf")) if p.resolve() not in packaged_files]
    specs += [s for s in extra if s not in specs and s not in models.PACKAGED]
    for spec in specs:
        try:
            entries.append(ModelEntry(spec, models.resolve(spec), None))
        except ModelError as exc:
            entries.append(ModelEntry(spec, None, str(exc)))
    return entries


def install_models(names: Sequence[str]) -> list[Path]:
    """Install packaged models with this Python's pip (:func:`poccheck.models.install_commands`: the ladder's
    pinned packages with ``--no-deps``), then assemble and verify each file; returns the files."""
    import subprocess

    for command in models.install_commands(names):
        done = subprocess.run(command, check=False)
        if done.returncode != 0:
            raise ModelError(f"pip failed (exit {done.returncode}): {' '.join(command)}", "see pip's output above")
    importlib.invalidate_caches()
    return [models.bundled_path(name) for name in names]


@dataclass(frozen=True)
class AssessResult:
    report: Path
    outcome: runner.RunOutcome
    findings: Findings


def assess(config: RunConfig, progress: runner.Progress | None = None) -> AssessResult:
    """Validate tasks, run them through each model (resuming), grade, analyse and write the report.

    ``config.prompt_format`` (else the plan's) overrides every suite's own ``prompt_format`` (default ``auto``)."""
    plan_file, out, model_specs = config.plan, config.out, config.models
    languages = report_languages(config.language or (plan_file.language if plan_file else None))  # before any run
    suites = load_suites(config.tasks, config.encoding)
    chosen_format = config.prompt_format or (plan_file.prompt_format if plan_file else None)
    if chosen_format is not None:
        suites = [replace(suite, prompt_format=chosen_format) for suite in suites]
    if not model_specs:
        raise ModelError("no model given", f"pass --model, e.g. --model {models.DEFAULT_MODEL}")
    for spec in model_specs:
        refuse_trained_items(spec, suites)
    secure_dir(out)
    with OutputLock(out):
        store = Store(out / DB_NAME)
        try:
            if config.fresh:
                store.clear_results()
            manifest = run_manifest(config, suites, host_info(), engine_info())
            outcome = runner.run(
                suites, manifest.schedule(), store, manifest=manifest_record(manifest), options=config.options,
                progress=progress,
            )  # fmt: skip
            path, findings = _write_report(store, out, manifest, config.redact, languages)
        finally:
            store.close()
    return AssessResult(path, outcome, findings)


def report_languages(primary: str | None) -> tuple[str, ...]:
    """Every report language, ``primary`` first (it becomes ``report.html``); English unless told otherwise."""
    first = primary or DEFAULT_LANGUAGE
    if first not in LANGUAGES:
        raise PocCheckError(f"unknown report language {first!r}", f"use one of: {', '.join(LANGUAGES)}")
    return (first, *(other for other in LANGUAGES if other != first))


def render_report(out: Path, redact: bool = False, language: str | None = None) -> tuple[Path, Findings]:
    """Re-grade stored results and re-render the report of an output directory, without running models."""
    if not out.is_dir():
        raise StoreError(f"{out} is not a directory", "pass the --out directory of an earlier assess")
    store = Store(out / DB_NAME, create=False)
    try:
        manifest = manifest_from_record(store.plan() or {})
        plan = manifest.config.plan if manifest else None
        languages = report_languages(language or (plan.language if plan else None))
        return _write_report(store, out, manifest, redact, languages)
    except (TypeError, KeyError, ValueError, UnicodeDecodeError, sqlite3.DatabaseError) as exc:
        # stored records that no longer fit their types: damaged pages or flipped bytes in the database file
        raise StoreError(
            f"{out / DB_NAME} holds damaged results ({type(exc).__name__}: {exc})",
            "restore the folder from a copy, or run the assessment again into a new --out directory",
        ) from exc
    finally:
        store.close()


def _write_report(
    store: Store, out: Path, manifest: RunManifest | None, redact: bool, languages: Sequence[str]
) -> tuple[Path, Findings]:
    """Grade what the store holds against today's answer keys, analyse it and write the report files."""
    stored = store.snapshot()
    grades = grade_stored(stored)  # results kept from earlier runs meet today's answer key
    store.update_grades(grade_updates(grades))
    findings = analyse(stored, grades)
    reasoning = analyse_reasoning(findings, manifest.config.target if manifest else DEFAULT_TARGET)
    costs, advice, problem = _decision(findings, manifest.config.plan if manifest else None)
    content = report.ReportContent(
        findings, reasoning, costs, advice, tuple(finetune_analysis(findings)), problem,
        host=dict(manifest.host) if manifest else {}, engine=dict(manifest.engine) if manifest else {}, redact=redact,
    )  # fmt: skip
    path = report.render(content, out, languages)
    write_decision(out, costs, advice, problem)
    return path, findings


def write_probe(
    out_file: Path,
    rules: Sequence[str],
    hops: Sequence[int],
    n: int,
    lang: Language,
    *,
    seed: int = 0,
    distractors: int = 0,
    shots: int = 3,
    force: bool = False,
) -> Suite:
    """Generate a reasoning-depth probe and write it as an ordinary YAML task file; return it as loaded back."""

    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise ModelError(
            f"unknown rule {unknown[0]!r}{did_you_mean(unknown[0], list(RULES))}", f"rules: {', '.join(RULES)}"
        )
    _check_writable(out_file, force)
    if out_file.suffix.lower() not in (".yaml", ".yml"):
        raise PocCheckError(f"{out_file}: a probe is written as YAML", "give --out a name ending in .yaml")
    suite = probe_suite(rules, hops, n, lang, seed=seed, distractors=distractors, shots=shots)
    text = yaml.safe_dump(suite, allow_unicode=True, sort_keys=False, width=1000)
    _write_text(out_file, f"# poccheck probe: {suite['description']}\n{text}")
    return load_suites([out_file])[0]


def _check_writable(out_file: Path, force: bool) -> None:
    if out_file.is_dir():
        raise PocCheckError(f"{out_file} is a folder", "give --out a file name, e.g. --out tasks.yaml")
    if out_file.exists() and not force:
        raise PocCheckError(f"{out_file} already exists", "pass --force to overwrite it, or choose another --out")


def _write_text(out_file: Path, text: str) -> None:
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise PocCheckError(f"cannot write {out_file}: {exc.strerror or exc}", "choose another --out") from None


def init_plan(out_file: Path, examples: Path | None, force: bool = False) -> Path:
    """Write a commented starting plan; its task paths point at the bundled example suite."""
    _check_writable(out_file, force)
    text = default_plan_text()
    if examples is not None and not (out_file.parent / "examples" / "factory_suite.yaml").exists():
        text = text.replace("examples/", f"{examples.resolve()}/")
    _write_text(out_file, text)
    return out_file


@dataclass(frozen=True)
class Comparison:
    first: str
    second: str
    diffs: list[Paired]


def compare(first: str, second: str, out: Path = Path("poc")) -> Comparison:
    """Paired differences per task group between two stored results.

    ``first`` and ``second`` are model labels within the output directory ``out`` (a model spec, or
    "spec · mode" when the assessment ran several modes), or two output directories (their first model each).
    """
    sides = []
    for side in (first, second):
        directory = Path(side)
        if directory.is_dir() and (directory / DB_NAME).exists():
            findings = _stored_findings(directory)
            chosen = next((m for m in findings.models if m.rows), None)
        else:
            findings = _stored_findings(out)
            chosen = next((m for m in findings.models if side in (m.label, m.name) and m.rows), None)
            if chosen is None:
                labels = [m.label for m in findings.models]
                raise StoreError(
                    f"no results for {side!r} in {out}{did_you_mean(side, labels)}", f"stored: {', '.join(labels)}"
                )
        if chosen is None:
            raise StoreError(f"no results in {directory}")
        sides.append(chosen)
    return Comparison(sides[0].label, sides[1].label, paired(sides[0], sides[1]))


def _stored_findings(out: Path) -> Findings:
    store = Store(out / DB_NAME, create=False)
    try:
        stored = store.snapshot()
        return analyse(stored, grade_stored(stored))
    finally:
        store.close()


def _decision(findings: Findings, plan: Plan | None) -> tuple[CostFindings | None, Recommendation | None, str | None]:
    """Costs and the recommendation for the plan (none without one), or why they could not be worked out (e.g.
    no token counts: every model failed and the plan's workload gives none): the report shows that reason where
    its Decision page would be, instead of leaving the page out without a word."""
    if plan is None:
        return None, None, None
    try:
        costs = cost_findings(findings, plan)
        return costs, recommend(findings, plan, costs), None
    except ValueError as exc:
        return None, None, str(exc)


def finetune_analysis(findings: Findings) -> list[FinetuneFindings]:
    """Before/after per fine-tuned candidate in ``findings`` (held-out split and control suite); the report's
    fine-tuning section (templates/finetune.html.j2, variable ``finetune``) renders this list."""
    manifests: dict[str, Manifest] = {}
    for model in findings.models:
        if model.info is not None and model.info.adapter and model.info.adapter not in manifests:
            try:
                manifests[model.info.adapter] = read_manifest(Path(model.info.adapter))
            except ModelError:
                continue  # the adapter was deleted since: its results stay, without the before/after section
    return analyse_finetunes(findings, manifests)


@dataclass(frozen=True)
class FinetuneResult(TrainedAdapter):
    assessed: AssessResult | None = None
    analysis: FinetuneFindings | None = None


def finetune(
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
    evaluate: Path | None = None,
    encoding: str | None = None,
) -> FinetuneResult:
    """Train a LoRA adapter on a suite's training split (:func:`poccheck.finetune.run.train_adapter`); with
    ``evaluate``, assess the base and the fine-tuned model on the held-out items (and the control suite) into that
    output directory and compare them."""
    trained = train_adapter(
        task_path, model_spec, control=control, name=name, mode=mode, settings=settings, fresh=fresh,
        options=options, progress=progress, encoding=encoding,
    )  # fmt: skip
    result = FinetuneResult(**{f.name: getattr(trained, f.name) for f in fields(trained)})
    if evaluate is None:
        return result
    tasks = [trained.heldout] + ([Path(control)] if control else [])
    assessed = assess(
        RunConfig(
            tuple(tasks), (trained.base_spec, trained.tuned_spec), evaluate, modes=(mode,),
            options=options or BackendOptions(), encoding=encoding,
            prompt_format="raw",  # the adapter learned raw prompts: base and tuned compared on those
        )
    )  # fmt: skip
    analysis = next((f for f in finetune_analysis(assessed.findings) if f.adapter == trained.manifest.name), None)
    return replace(result, assessed=assessed, analysis=analysis)
