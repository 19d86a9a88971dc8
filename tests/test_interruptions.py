"""Interruptions at random points: ``poccheck assess`` on the bundled model is stopped with SIGINT (Ctrl-C) and
SIGKILL again and again, at points drawn by a seeded RNG (some at a random time, including start-up, model load
and report writing; some just after a random number of items are stored), then rerun to the end. The stored results
must equal an uninterrupted run's: the same rows, none duplicated, none missing, nothing committed ever lost.
SIGINT must exit 130 with how to resume and no traceback. Run time: about 60-90 s on 2 cores.
"""

from __future__ import annotations

import json
import math
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import saved_results

pytestmark = pytest.mark.model

SEED = 8
ITEMS = 40  # enough that the item rounds land mid-run on a fast, quiet machine too
# Where each round is stopped: while starting (imports, validation, model load), after 1-2 more items are
# stored (mid-item or between items), and once every item is stored (analysis and report writing).
KINDS = ["start-up"] * 3 + ["items"] * 4
RESUME_HINT = "run the same command again to resume"


def suite_text() -> str:
    items = [
        f"  - {{id: n{i:02d}, type: numeric, category: math, input: 'What is {i} plus {i}?', answer: {2 * i}}}"
        for i in range(ITEMS - 2)
    ]
    items += [
        "  - {id: mc1, type: multiple_choice, category: triage, input: 'A press leaks oil at a seal. What failed?',"
        " choices: [the seal, the paint, the lunch], answer: A}",
        "  - {id: mc2, type: multiple_choice, category: triage, input: 'Which is a metal?',"
        " choices: [wood, steel], answer: B}",
    ]
    return "name: interrupt\nmax_tokens: 4\nstop: ['\\n']\nitems:\n" + "\n".join(items) + "\n"


def command(tasks: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "poccheck", "assess", "--tasks", str(tasks), "--out", str(out)]


def stored(db: Path) -> dict[str, tuple]:
    """The results by item key, and a check that the database is intact."""
    if not db.exists():
        return {}
    with sqlite3.connect(db, timeout=30) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = con.execute(
            "SELECT item_key, item_id, output, choice_logprobs, error, prediction, correct, finish_reason,"
            " completion_tokens FROM results"
        ).fetchall()
    by_key = {r[0]: r[1:] for r in rows}
    assert len(by_key) == len(rows), "duplicate results"
    return by_key


def count(db: Path) -> int:
    return len(saved_results(db))


def same_result(row: tuple, expected: tuple, graded: bool = True) -> bool:
    """Equal, except that multiple-choice log-probabilities may differ in the last digits with the batch. Unless
    ``graded``, a row may not have its grade yet: the runner stores raw outputs and the grading stage writes
    prediction and correct once the run ends (an interrupted run's rows are graded by the next run or report)."""
    item_id, output, logprobs, error, prediction, correct, *rest = row
    exp_id, exp_output, exp_logprobs, exp_error, exp_prediction, exp_correct, *exp_rest = expected
    if not graded and (prediction, correct) == (None, None):
        prediction, correct = exp_prediction, exp_correct
    if (item_id, output, error, prediction, correct, rest) != (
        exp_id,
        exp_output,
        exp_error,
        exp_prediction,
        exp_correct,
        exp_rest,
    ):
        return False
    if (logprobs is None) != (exp_logprobs is None):
        return False
    if logprobs is None:
        return True
    got, want = json.loads(logprobs), json.loads(exp_logprobs)
    return len(got) == len(want) and all(math.isclose(a, b, abs_tol=1e-3) for a, b in zip(got, want, strict=True))


def test_random_interruptions_resume_to_the_uninterrupted_result(tmp_path: Path) -> None:
    tasks = tmp_path / "suite.yaml"
    tasks.write_text(suite_text(), encoding="utf-8")
    started = time.monotonic()
    reference = subprocess.Popen(command(tasks, tmp_path / "reference"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while count(tmp_path / "reference" / "poccheck.db") == 0 and reference.poll() is None:
        time.sleep(0.02)
    start_up = time.monotonic() - started  # until the first item is stored
    _, stderr = reference.communicate(timeout=600)
    assert reference.returncode == 0, stderr
    expected = stored(tmp_path / "reference" / "poccheck.db")
    assert len(expected) == ITEMS

    out = tmp_path / "interrupted"
    db = out / "poccheck.db"
    rng = random.Random(SEED)
    kinds = rng.sample(KINDS, len(KINDS)) + ["report"]
    signals = [signal.SIGINT, signal.SIGKILL] if rng.random() < 0.5 else [signal.SIGKILL, signal.SIGINT]
    survived = {"SIGINT": 0, "SIGKILL": 0}
    rounds = [(kind, signals[number % 2]) for number, kind in enumerate(kinds)]

    def top_up() -> bool:
        """A round that finished before its signal came (a fast machine) is made up by one stopped as it starts."""
        short = [s for s in signals if survived[s.name] < 3]
        if short and len(kinds) < 24:
            kinds.append("start-up")
            rounds.append(("start-up", short[0]))
        return bool(rounds)

    while rounds or top_up():
        kind, sig = rounds.pop(0)
        before = stored(db)
        process = subprocess.Popen(command(tasks, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if kind == "start-up":
            deadline = time.monotonic() + rng.uniform(0.1, start_up)
            while time.monotonic() < deadline and process.poll() is None and count(db) == len(before):
                time.sleep(0.01)
        else:
            target = ITEMS if kind == "report" else len(before) + rng.randint(1, 2)
            deadline = time.monotonic() + 300
            while count(db) < target and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.01)
            if kind == "items":
                time.sleep(rng.uniform(0, 0.3))
        running = process.poll() is None
        if running:
            process.send_signal(sig)
        _, stderr = process.communicate(timeout=120)
        after = stored(db)
        assert set(before) <= set(after), "committed results were lost"
        assert all(same_result(after[key], expected[key], graded=False) for key in after), "a stored result differs"
        assert "Traceback" not in stderr, stderr
        if not running:
            assert process.returncode == 0, stderr
            continue
        if sig == signal.SIGINT:
            assert process.returncode in (130, 0), stderr  # 0: it finished as the signal arrived
            if process.returncode == 130:
                assert RESUME_HINT in stderr
        else:
            assert process.returncode in (-signal.SIGKILL, 0)
        survived[sig.name] += 1

    resumed = subprocess.run(command(tasks, out), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    final = stored(db)
    assert set(final) == set(expected), "gaps or extra rows after resuming"
    assert all(same_result(final[key], expected[key]) for key in final)
    assert (out / "report.html").exists()
    print(f"interruptions survived: {survived} in {len(kinds)} rounds ({kinds})")  # shown with pytest -s
    assert survived["SIGINT"] >= 3 and survived["SIGKILL"] >= 3, survived


def test_ctrl_c_inside_a_llama_cpp_log_callback_is_raised_again_outside_it() -> None:
    """ctypes drops an exception raised in a callback from C, so a SIGINT handled there is re-sent shortly."""
    import threading

    from poccheck.backends import llama_cpp as backend

    def callback() -> None:
        return None

    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    resent = threading.Event()
    original = signal.raise_signal
    try:
        backend._defer_interrupts_in(callback.__code__)
        handler = signal.getsignal(signal.SIGINT)
        assert callable(handler) and handler is not signal.default_int_handler
        signal.raise_signal = lambda sig: resent.set()  # type: ignore[assignment]
        inside = type("Frame", (), {"f_code": callback.__code__})()
        handler(signal.SIGINT, inside)  # deferred: no exception inside the callback ...
        assert resent.wait(2)  # ... and the signal is sent again a moment later
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)  # anywhere else: the usual KeyboardInterrupt
    finally:
        signal.raise_signal = original
        signal.signal(signal.SIGINT, previous)
