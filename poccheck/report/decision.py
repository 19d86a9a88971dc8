"""``decision.json``: the Decision page as data, for tools that gate on it (a dashboard, a CI job) and for tests.

Every option the Decision page weighed, cheapest first, with the numbers the page compares: monthly and
per-1,000-task cost, accuracy per task group (point, 95% interval, how it was obtained), p95 latency on that
deployment (measured or projected) and its verdict, eligibility and the reasons an option cannot be chosen; then
the recommendation, or "not yet" with the closest option. The layout is fixed by ``decision.schema.json`` (its
``schema_version`` changes when a field's meaning does) and every file is checked against it before it is
written. Text is the English catalog's; numbers are plain JSON numbers (money in ``currency``), and a value that
is not a finite number (a p95 over failed items) is ``null``.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from poccheck.analysis.deployment import CostFindings
from poccheck.analysis.recommend import Option, Recommendation
from poccheck.analysis.stats import Proportion
from poccheck.i18n import Message
from poccheck.version import __version__

SCHEMA_VERSION = 1
FILE_NAME = "decision.json"


def schema() -> dict[str, Any]:
    text = resources.files("poccheck.data").joinpath("decision.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _reasons(messages: list[Message]) -> list[dict[str, str]]:
    return [{"key": m.key, "text": str(m)} for m in messages]


def option_id(option: Option) -> str:
    """An option's identity: candidate and deployment (a cascade's candidate names both tiers)."""
    return f"{option.candidate} @ {option.deployment}"


def _accuracy(proportion: Proportion, target: float | None, judged_lower: bool, method: str) -> dict[str, Any]:
    judged = proportion.low if judged_lower else proportion.value
    return {
        "value": _number(proportion.value), "low": _number(proportion.low), "high": _number(proportion.high),
        "successes": proportion.successes, "n": proportion.n, "target": target,
        "met": None if target is None else bool(proportion.n and judged >= target), "method": method,
    }  # fmt: skip


def _option(option: Option, costs: CostFindings) -> dict[str, Any]:
    targets = {c.group: c.target for c in costs.checks if c.candidate == option.candidate}
    if option.cross_validated:
        cascade = next((c for c in costs.cascades if c.label == option.candidate), None)
        targets = dict(cascade.targets) if cascade else targets
        method = f"cross-validated ({option.folds} folds)"
    else:
        method = "measured on every item"
    return {
        "id": option_id(option),
        "candidate": option.candidate,
        "deployment": option.deployment,
        "per_month": _number(option.per_month),
        "per_1000_tasks": _number(option.per_1000_tasks),
        "escalated_share": _number(option.escalated_share),
        "accuracy": {
            group: _accuracy(p, targets.get(group), costs.use_lower_bound, method)
            for group, p in sorted(option.groups.items())
        },
        "meets_accuracy": option.meets_accuracy,
        "latency": {
            "p95_seconds": _number(option.latency_p95),
            "how": "projected" if option.latency_projected else "measured",
            "meets_target": option.meets_latency,
        },
        "fits_in_memory": option.fits,
        "eligible": not option.ineligible,
        "qualifies": option.qualifies,
        "reasons": _reasons(option.why_not()),
    }


def decision_record(costs: CostFindings | None, advice: Recommendation | None, problem: str | None) -> dict[str, Any]:
    """The decision as a JSON-ready mapping; ``status`` says whether there is one and why not."""
    record: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "generated_by": f"poccheck {__version__}"}
    if costs is None or advice is None:
        record |= {"status": "no_decision" if problem else "no_plan", "problem": problem, "options": []}
        record |= {"recommendation": None, "closest": None, "runners_up": []}
        return record
    targets: dict[str, float] = {}
    for check in costs.checks:
        targets.setdefault(check.group, check.target)
    record |= {
        "status": "recommended" if advice.chosen else "not_yet",
        "problem": None,
        "currency": costs.currency,
        "workload": {
            "tasks_per_day": costs.workload.tasks_per_day,
            "hours_per_day": costs.workload.hours_per_day,
            "peak_concurrency": costs.workload.peak_concurrency,
        },  # fmt: skip
        "targets": {
            "accuracy": dict(sorted(targets.items())),
            "p95_latency_seconds": costs.latency_slo,
            "judged_by": "lower_bound" if costs.use_lower_bound else "point_estimate",
        },  # fmt: skip
        "options": [_option(o, costs) for o in advice.options],
        "recommendation": option_id(advice.chosen) if advice.chosen else None,
        "closest": option_id(advice.closest) if advice.closest else None,
        "runners_up": [option_id(o) for o in advice.runners_up],
        "what_would_change": _reasons(advice.changes),
        "this_machine": _this_machine(advice),
    }
    return record


def _this_machine(advice: Recommendation) -> dict[str, Any] | None:
    here = advice.this_machine
    if here is None:
        return None
    return {
        "candidate": here.candidate, "in_flight": here.in_flight, "peak_concurrency": here.peak_concurrency,
        "p95_seconds": _number(here.p95), "n": here.n, "meets_target": here.meets_target,
    }  # fmt: skip


def write_decision(out: Path, costs: CostFindings | None, advice: Recommendation | None, problem: str | None) -> Path:
    """Write ``decision.json`` into ``out``, checked against its schema first."""
    record = decision_record(costs, advice, problem)
    jsonschema.validate(record, schema())
    path = out / FILE_NAME
    path.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path
