from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from poccheck.errors import StoreError
from poccheck.records import LatencySample, ResultRow
from poccheck.store import OutputLock, Store


def row(key: str, error: str | None = None) -> ResultRow:
    return ResultRow(
        model="m",
        model_fingerprint="fp",
        suite="s",
        item_id=key,
        item_key=key,
        settings_key="set",
        mode="fewshot",
        category="c",
        type="exact",
        prompt="p",
        output="o",
        choice_logprobs=None,
        prompt_tokens=3,
        completion_tokens=1,
        latency=0.1,
        ttft=0.05,
        finish_reason="stop",
        error=error,
    )


def test_results_are_keyed_and_replaced_not_duplicated(tmp_path: Path) -> None:
    store = Store(tmp_path / "poccheck.db")
    run = store.start_run({"models": ["m"]})
    store.add_result(run, row("a"))
    store.add_result(run, row("b", error="boom"))
    assert store.done_keys("fp", "set") == {"a"}  # errored items are retried
    store.add_result(run, row("b"))
    store.add_result(run, row("a"))
    assert len(store.results()) == 2
    assert store.done_keys("fp", "set") == {"a", "b"}
    assert store.done_keys("fp", "other") == set()
    store.close()
    assert (tmp_path / "poccheck.db").stat().st_mode & 0o777 == 0o600


def test_reopen_keeps_results_and_plan(tmp_path: Path) -> None:
    store = Store(tmp_path / "poccheck.db")
    store.add_result(store.start_run({"models": ["m"], "suites": ["s"]}), row("a"))
    store.close()
    again = Store(tmp_path / "poccheck.db", create=False)
    assert again.plan() == {"models": ["m"], "suites": ["s"]}
    assert [r.item_id for r in again.results()] == ["a"]
    again.clear_results()
    assert again.results() == []


def test_foreign_and_corrupt_databases_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('app', 'other')")
    with pytest.raises(StoreError, match="another program"):
        Store(foreign)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not a poccheck results database"):
        Store(other)
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a"):
        Store(corrupt)
    with pytest.raises(StoreError, match="no results database"):
        Store(tmp_path / "missing.db", create=False)


def test_output_lock_refuses_a_second_writer(tmp_path: Path) -> None:
    with OutputLock(tmp_path), pytest.raises(StoreError, match="another poccheck assessment"), OutputLock(tmp_path):
        pass
    with OutputLock(tmp_path):  # released after the first
        pass


def test_older_results_format_is_refused_clearly(tmp_path: Path) -> None:
    Store(tmp_path / "poccheck.db").close()
    with sqlite3.connect(tmp_path / "poccheck.db") as db:
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    with pytest.raises(StoreError, match="older poccheck"):
        Store(tmp_path / "poccheck.db")


def test_items_with_dates_in_metadata_are_stored(tmp_path: Path) -> None:
    import datetime

    store = Store(tmp_path / "poccheck.db")
    store.save_items(
        "s",
        [
            (
                "k",
                "fewshot",
                None,
                {
                    "id": "a",
                    "input": "q",
                    "type": "exact",
                    "answer": "x",
                    "metadata": {"due": datetime.date(2024, 5, 1)},
                },
            )
        ],
    )
    assert store.items()[0].item.metadata["due"] == "2024-05-01"


def test_a_reply_with_lone_surrogates_is_stored_not_refused(tmp_path: Path) -> None:
    """A served model's JSON reply cut inside a UTF-16 pair decodes to a lone surrogate, which UTF-8 cannot hold."""
    store = Store(tmp_path / "poccheck.db")
    store.add_result(store.start_run({}), replace(row("a"), output="x\ud800y\ud83d\ude00\x00", prediction="\udfff"))
    (stored,) = store.results()
    assert (stored.output, stored.prediction) == ("x\ufffdy😀\x00", "\ufffd")


def test_latency_samples_are_kept_per_model_and_settings_and_cleared_with_the_results(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    try:
        assert store.latency_samples() == [] and store.sampled_keys("fp", "s") == set()  # no table yet: none
        run = store.start_run({})
        first = LatencySample("fp", "s", "k1", 1.5, 0.2, 40, True)
        store.add_latency_sample(run, first)
        store.add_latency_sample(run, LatencySample("fp", "other", "k2", 2.0, None, 10, False))
        store.add_latency_sample(run, replace(first, latency=1.25))  # timed again: replaced, not duplicated
        assert store.sampled_keys("fp", "s") == {"k1"} and store.sampled_keys("fp", "other") == {"k2"}
        assert store.snapshot().latency_samples == (
            LatencySample("fp", "other", "k2", 2.0, None, 10, False),
            replace(first, latency=1.25),
        )
        store.clear_results()  # --fresh: the samples go with the results they were paired with
        assert store.latency_samples() == []
    finally:
        store.close()
