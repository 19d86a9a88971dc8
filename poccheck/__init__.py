"""poccheck: which model size, run where, is good enough for our work, at what cost?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from poccheck.errors import (
    BackendError,
    ModelError,
    PocCheckError,
    Problem,
    StoreError,
    TaskFileError,
)
from poccheck.version import __version__

if TYPE_CHECKING:
    from poccheck.config.run import RunConfig
    from poccheck.pipeline import assess, list_models, render_report, validate

__all__ = [
    "BackendError",
    "ModelError",
    "PocCheckError",
    "Problem",
    "RunConfig",
    "StoreError",
    "TaskFileError",
    "__version__",
    "assess",
    "list_models",
    "render_report",
    "validate",
]
_PIPELINE = ("assess", "list_models", "render_report", "validate")


def __getattr__(name: str) -> Any:
    """The pipeline functions, imported on first use: ``import poccheck`` stays light, so the ``poccheck``
    command can catch Ctrl-C while its heavy modules load (see ``poccheck.__main__``)."""
    if name in _PIPELINE:
        from poccheck import pipeline

        return getattr(pipeline, name)
    if name == "RunConfig":
        from poccheck.config.run import RunConfig

        return RunConfig
    raise AttributeError(f"module 'poccheck' has no attribute {name!r}")
