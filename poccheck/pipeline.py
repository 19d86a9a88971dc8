"""The Python API: each public function is one stage or a composition of stages. The CLI only calls these."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from poccheck import models, report, runner
from poccheck.analysis import Findings, analyse
from poccheck.analysis.summary import regraded
from poccheck.backends.registry import BackendOptions
from poccheck.errors import ModelError, Problem, StoreError
from poccheck.records import ModelInfo, Suite
from poccheck.store import DB_NAME, OutputLock, Store, secure_dir
from poccheck.tasks import check_suite, load_suites


def validate(paths: Sequence[str | Path], encoding: str | None = None) -> tuple[list[Suite], list[Problem]]:
    """Check task files without running anything: the valid suites and every problem found."""
    suites: list[Suite] = []
    problems: list[Problem] = []
    for path in paths:
        suite, found = check_suite(Path(path), encoding)
        problems += found
        if suite is not None:
            suites.append(suite)
    return suites, problems


@dataclass(frozen=True)
class ModelEntry:
    """A row of ``poccheck models list``: a model and its description, or why it cannot be used."""

    spec: str
    info: ModelInfo | None
    error: str | None


def list_models(extra: Sequence[str] = ()) -> list[ModelEntry]:
    """The bundled models, GGUF files in ``$POCCHECK_CACHE/models``, and any extra specs given."""
    specs = list(models.BUNDLED)
    local = models.cache_dir() / "models"
    bundled_files = {models.bundled_path(name).resolve() for name in models.BUNDLED if _installed(name)}
    if local.is_dir():
        specs += [str(p) for p in sorted(local.glob("*.gguf")) if p.resolve() not in bundled_files]
    specs += [s for s in extra if s not in specs]
    entries = []
    for spec in specs:
        try:
            entries.append(ModelEntry(spec, models.resolve(spec), None))
        except ModelError as exc:
            entries.append(ModelEntry(spec, None, str(exc)))
    return entries


def _installed(name: str) -> bool:
    try:
        __import__(models.BUNDLED[name].package)
    except ImportError:
        return False
    return True


def host_info() -> dict[str, Any]:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": cores,
        "memory": f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM",
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
    }


def engine_info() -> dict[str, str]:
    versions = {}
    for package in ("llama-cpp-python", "gguf", "torch", "transformers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass(frozen=True)
class AssessResult:
    report: Path
    outcome: runner.RunOutcome
    findings: Findings


def assess(
    task_paths: Sequence[str | Path],
    model_specs: Sequence[str],
    out: Path,
    *,
    fresh: bool = False,
    limit: int | None = None,
    encoding: str | None = None,
    progress: runner.Progress | None = None,
    redact: bool = False,
    options: BackendOptions | None = None,
) -> AssessResult:
    """Validate tasks, run them through each model (resuming), grade, analyse and write the report."""
    suites = load_suites(task_paths, encoding)
    if not model_specs:
        raise ModelError("no model given", f"pass --model, e.g. --model {models.DEFAULT_MODEL}")
    for spec in model_specs:
        models.parse_spec(spec)
    secure_dir(out)
    with OutputLock(out):
        store = Store(out / DB_NAME)
        try:
            if fresh:
                store.clear_results()
            unique_models = list(dict.fromkeys(model_specs))
            plan = {
                "models": unique_models,
                "suites": [s.name for s in suites],
                "task_files": [str(Path(p)) for p in task_paths],
                "limit": limit,
                "host": host_info(),
                "engine": engine_info(),
            }
            outcome = runner.run(suites, unique_models, store, progress, limit=limit, plan=plan, options=options)
            findings = analyse(store)
            store.update_grades(regraded(findings))  # results kept from earlier runs meet today's answer key
            path = report.render(findings, out, redact=redact, context=plan)
        finally:
            store.close()
    return AssessResult(path, outcome, findings)


def render_report(out: Path, redact: bool = False) -> tuple[Path, Findings]:
    """Re-grade stored results and re-render the report of an output directory, without running models."""
    if not out.is_dir():
        raise StoreError(f"{out} is not a directory", "pass the --out directory of an earlier assess")
    store = Store(out / DB_NAME, create=False)
    try:
        findings = analyse(store)
        store.update_grades(regraded(findings))
        path = report.render(findings, out, redact=redact, context=store.plan() or {})
    finally:
        store.close()
    return path, findings
