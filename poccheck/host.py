"""Facts about the machine and the engines a run measured on, stored with its results and shown in the report."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

ENGINES = ("llama-cpp-python", "gguf", "torch", "transformers")


def host_info() -> dict[str, Any]:
    """The CPU's model name, the cores this process may use, the memory, the platform and Python."""
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


def engine_info(packages: Sequence[str] = ENGINES) -> dict[str, str]:
    """The installed version of each package (those not installed are left out)."""
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
