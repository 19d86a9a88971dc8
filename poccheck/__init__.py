"""poccheck: which model size, run where, is good enough for our work, at what cost?"""

__version__ = "0.1.0"

from poccheck.errors import (  # noqa: E402
    BackendError,
    ModelError,
    PocCheckError,
    Problem,
    StoreError,
    TaskFileError,
)
from poccheck.pipeline import assess, list_models, render_report, validate  # noqa: E402

__all__ = [
    "BackendError",
    "ModelError",
    "PocCheckError",
    "Problem",
    "StoreError",
    "TaskFileError",
    "__version__",
    "assess",
    "list_models",
    "render_report",
    "validate",
]
