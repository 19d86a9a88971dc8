"""The run manifest: what one ``poccheck assess`` was asked to do, stored as JSON with its results.

It is the run's :class:`~poccheck.config.run.RunConfig`, serialised whole (plan included), plus what only the run
knew: the suites it loaded and how each was to be prompted, and the host and engine versions. ``poccheck report``
reads it back to re-render an output folder with the same targets, workload and costs. Manifests written before
this format (a flat dict with ``assessment_plan``) are read too, so older folders keep rendering.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from poccheck.backends.registry import BackendOptions
from poccheck.config.plan import plan_from_record, plan_record
from poccheck.config.run import DEFAULT_LATENCY_SAMPLE, DEFAULT_TARGET, RunConfig
from poccheck.endpoints import Endpoint, endpoint_record
from poccheck.records import Mode, PromptFormat, Suite
from poccheck.runner import Schedule

FORMAT = 2  # 1: the flat dict of earlier versions (no "format" key)


@dataclass(frozen=True)
class RunManifest:
    """One run as stored. ``config`` has each model once and, in ``model_modes``, each model's own modes once."""

    config: RunConfig
    suites: tuple[str, ...] = ()
    prompt_formats: Mapping[str, str] = field(default_factory=dict)  # suite -> as asked for (model runs: as used)
    host: Mapping[str, Any] = field(default_factory=dict)
    engine: Mapping[str, Any] = field(default_factory=dict)

    @property
    def modes(self) -> tuple[Mode, ...]:
        """Every prompting mode of the run: the run's, then the ones candidates have of their own."""
        own = (mode for modes in self.config.model_modes.values() for mode in modes)
        return tuple(dict.fromkeys((*self.config.modes, *own)))

    def modes_of(self, model: str) -> tuple[Mode, ...]:
        """The modes ``model`` ran in: its own, else every mode of the run."""
        return self.config.model_modes.get(model) or self.modes

    def schedule(self) -> Schedule:
        """What the runner runs: each model in its modes, on the first ``limit`` items of each suite."""
        return Schedule(
            self.config.models, self.modes, self.config.model_modes, self.config.limit, self.config.latency_sample
        )


def run_manifest(
    config: RunConfig, suites: Sequence[Suite], host: Mapping[str, Any], engine: Mapping[str, Any]
) -> RunManifest:
    """The manifest of a run of ``config`` over the loaded ``suites``: each model once, each model's own modes
    once (only for models of the run)."""
    models = tuple(dict.fromkeys(config.models))
    own = {spec: tuple(dict.fromkeys(m)) for spec, m in config.model_modes.items() if spec in models}
    return RunManifest(
        replace(config, models=models, model_modes=own),
        tuple(s.name for s in suites),
        {s.name: s.prompt_format for s in suites},  # as asked for; the model runs record what each model used
        dict(host),
        dict(engine),
    )


def manifest_record(manifest: RunManifest) -> dict[str, Any]:
    """``manifest`` as JSON-ready data."""
    return {
        "format": FORMAT,
        "config": _config_record(manifest.config),
        "suites": list(manifest.suites),
        "prompt_formats": dict(manifest.prompt_formats),
        "host": dict(manifest.host),
        "engine": dict(manifest.engine),
    }


def manifest_from_record(record: Mapping[str, Any]) -> RunManifest | None:
    """The manifest :func:`manifest_record` wrote (or an earlier version's flat dict); None for an empty record
    (a folder with no run). A record that no longer fits raises KeyError, TypeError or ValueError."""
    if not record:
        return None
    config = _config_from_record(record["config"]) if record.get("format") == FORMAT else _legacy_config(record)
    return RunManifest(
        config,
        tuple(record.get("suites") or ()),
        dict(record.get("prompt_formats") or {}),
        dict(record.get("host") or {}),
        dict(record.get("engine") or {}),
    )


def _config_record(config: RunConfig) -> dict[str, Any]:
    options = config.options
    return {
        "tasks": [str(path) for path in config.tasks],
        "models": list(config.models),
        "out": str(config.out),
        "modes": list(config.modes),
        "model_modes": {spec: list(modes) for spec, modes in config.model_modes.items()},
        "options": {
            "device": options.device,
            "dtype": options.dtype,
            "endpoints": [endpoint_record(e) for e in options.endpoints],
            "parallel": options.parallel,
            "repacked_decode": options.repacked_decode,
            "reprobe": options.reprobe,
        },
        "plan": plan_record(config.plan) if config.plan else None,
        "fresh": config.fresh,
        "limit": config.limit,
        "encoding": config.encoding,
        "redact": config.redact,
        "target": config.target,
        "language": config.language,
        "prompt_format": config.prompt_format,
        "latency_sample": config.latency_sample,
    }


def _config_from_record(record: Mapping[str, Any]) -> RunConfig:
    options = record["options"]
    return RunConfig(
        tasks=tuple(Path(p) for p in record["tasks"]),
        models=tuple(record["models"]),
        out=Path(record["out"]),
        modes=tuple(cast(list[Mode], record["modes"])),
        model_modes={spec: tuple(modes) for spec, modes in record["model_modes"].items()},
        options=BackendOptions(
            device=options["device"],
            dtype=options["dtype"],
            endpoints=tuple(Endpoint(**e) for e in options["endpoints"]),
            parallel=options["parallel"],
            repacked_decode=options.get("repacked_decode", False),  # recorded from 2026-12-08 on
            reprobe=options["reprobe"],
        ),
        plan=plan_from_record(record["plan"]) if record["plan"] else None,
        fresh=record["fresh"],
        limit=record["limit"],
        encoding=record["encoding"],
        redact=record["redact"],
        target=record["target"],
        language=record["language"],
        prompt_format=cast(PromptFormat | None, record["prompt_format"]),
        latency_sample=record.get("latency_sample", DEFAULT_LATENCY_SAMPLE),  # not kept before it was a setting
    )


def _legacy_config(record: Mapping[str, Any]) -> RunConfig:
    """A run config from the flat manifest of earlier versions: what it kept (models, modes, each model's own
    modes, the target, the plan's report-relevant parts, task files, limit); the rest at its defaults."""
    plan = record.get("assessment_plan")
    return RunConfig(
        tasks=tuple(Path(p) for p in record.get("task_files") or ()),
        models=tuple(record.get("models") or ()),
        modes=tuple(record.get("modes") or ("fewshot",)),
        model_modes={spec: tuple(modes) for spec, modes in (record.get("model_modes") or {}).items()},
        plan=plan_from_record(plan) if plan else None,
        limit=record.get("limit"),
        target=record.get("target") or DEFAULT_TARGET,
    )
