"""Stored results for analysis tests that build findings by hand (what ``Store.results()`` would give back)."""

from __future__ import annotations

from typing import Any

from poccheck.records import StoredResult, TaskItem


def stored_result(item: TaskItem, **fields: Any) -> StoredResult:
    """A result for ``item`` as the store returns it: an answered item with no tokens or timings unless given."""
    scores = fields.pop("choice_logprobs", None)
    values: dict[str, Any] = {
        "model": "m", "model_fingerprint": "fp-m", "suite": "s", "item_id": item.id, "item_key": item.id,
        "settings_key": "settings", "mode": "fewshot", "category": item.category, "type": item.type, "prompt": "",
        "output": "", "prompt_tokens": 0, "completion_tokens": 0, "latency": 0.0, "ttft": None,
        "finish_reason": None, "run_id": 1, "created": 0.0,
    }  # fmt: skip
    values.update(fields)
    return StoredResult(choice_logprobs=None if scores is None else tuple(scores), **values)
