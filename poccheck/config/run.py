"""One assessment, whole: :class:`RunConfig`, built by one pure function from the plan file, the command line's
flags and the defaults, and taken whole by ``pipeline.assess``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from poccheck.backends.registry import BackendOptions
from poccheck.config.plan import Plan
from poccheck.endpoints import Endpoint
from poccheck.models import DEFAULT_MODEL
from poccheck.records import Mode, PromptFormat

DEFAULT_TARGET = 0.8  # accuracy a task group must reach when neither the plan nor --target says
DEFAULT_OUT = Path("poc")
DEFAULT_LATENCY_SAMPLE = 3  # generations per mode timed alone after a run that decoded several at once


@dataclass(frozen=True)
class RunConfig:
    """What to run, how, and where its results go. Sequences are kept as tuples; ``model_modes`` gives a model
    prompting modes of its own (a plan's ``- {model:, modes:}``), every other model runs in ``modes``."""

    tasks: tuple[Path, ...]
    models: tuple[str, ...]
    out: Path = DEFAULT_OUT
    modes: tuple[Mode, ...] = ("fewshot",)
    model_modes: Mapping[str, tuple[Mode, ...]] = field(default_factory=dict)
    options: BackendOptions = field(default_factory=BackendOptions)
    plan: Plan | None = None  # the assessment plan the run came from, for targets, workload and costs
    fresh: bool = False  # discard stored results first
    limit: int | None = None  # the first N items of each suite
    encoding: str | None = None  # of the task files; None: detected
    redact: bool = False  # item ids in place of task text in the report
    target: float = DEFAULT_TARGET
    language: str | None = None  # of the report; None: the plan's, else English
    prompt_format: PromptFormat | None = None  # for every suite; None: the plan's, else each suite's own
    latency_sample: int = DEFAULT_LATENCY_SAMPLE  # generations per mode timed alone after several ran at once

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(Path(p) for p in self.tasks))
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "modes", tuple(self.modes))
        object.__setattr__(self, "model_modes", {k: tuple(v) for k, v in self.model_modes.items()})


@dataclass(frozen=True)
class Flags:
    """What ``poccheck assess`` was given on the command line; None (or empty) where a flag was not given."""

    tasks: Sequence[Path] = ()
    models: Sequence[str] = ()
    endpoints: Sequence[Endpoint] = ()  # --endpoint, parsed
    modes: Sequence[Mode] = ()
    out: Path | None = None
    fresh: bool = False
    limit: int | None = None
    encoding: str | None = None
    redact: bool = False
    target: float | None = None
    language: str | None = None
    prompt_format: PromptFormat | None = None
    device: str = "auto"
    dtype: str = "auto"
    parallel: int | None = None
    repacked_decode: bool = False
    reprobe: bool = False
    latency_sample: int | None = None


def run_config(plan: Plan | None, flags: Flags, default_tasks: Sequence[Path] = ()) -> RunConfig:
    """The run the plan and the flags ask for: a flag wins over the plan, the plan over the defaults.

    Tasks: ``--tasks``, else the plan's, else ``default_tasks``. Models: ``--model``, else the plan's candidates,
    else the bundled model unless ``--endpoint`` names served ones; a served model given with ``--endpoint`` is
    always added. Modes: ``--mode`` runs every model in those modes; without it a plan's candidate keeps modes of
    its own. Endpoints: the plan's, then ``--endpoint``'s."""
    served = (*(plan.endpoints if plan else ()), *flags.endpoints)
    models = list(flags.models or (plan.candidates if plan else () if flags.endpoints else (DEFAULT_MODEL,)))
    models += [e.spec for e in flags.endpoints if e.spec not in models]
    modes: Sequence[Mode] = flags.modes or (plan.modes if plan else ("fewshot",))
    model_modes = {spec: plan.modes_of(spec) for spec in models} if plan and not flags.modes else {}
    return RunConfig(
        tasks=tuple(flags.tasks or (plan.tasks if plan else default_tasks)),
        models=tuple(models),
        out=flags.out or (plan.out if plan else DEFAULT_OUT),
        modes=tuple(modes),
        model_modes=model_modes,
        options=BackendOptions(
            device=flags.device,
            dtype=flags.dtype,
            endpoints=served,
            parallel=flags.parallel,
            repacked_decode=flags.repacked_decode,
            reprobe=flags.reprobe,
        ),
        plan=plan,
        fresh=flags.fresh,
        limit=flags.limit,
        encoding=flags.encoding,
        redact=flags.redact,
        target=flags.target if flags.target is not None else DEFAULT_TARGET,
        language=flags.language,
        prompt_format=flags.prompt_format,
        latency_sample=flags.latency_sample if flags.latency_sample is not None else DEFAULT_LATENCY_SAMPLE,
    )
