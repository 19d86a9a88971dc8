"""Two real ``poccheck assess`` processes on one output directory, a report rendered while an assessment runs,
and damaged, truncated or foreign results databases: the second writer refuses clearly, the database is never
corrupted, and a damaged database is a clear error, never a traceback. Run time: about 60-90 s on 2 cores.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from poccheck.cli import app
from poccheck.errors import PocCheckError
from tests.conftest import saved_results

pytestmark = pytest.mark.model

ITEMS = 8
REFUSED = "another poccheck assessment is writing"


def suite(path: Path) -> Path:
    items = "\n".join(
        f"  - {{id: n{i}, type: numeric, category: math, input: 'What is {i} plus {i}?', answer: {2 * i}}}"
        for i in range(ITEMS)
    )
    path.write_text(f"name: shared\nmax_tokens: 6\nstop: ['\\n']\nitems:\n{items}\n", encoding="utf-8")
    return path


def poccheck(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "poccheck", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def results(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db, timeout=30) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = con.execute("SELECT item_key, item_id FROM results WHERE error IS NULL ORDER BY item_id").fetchall()
    return [(r[0], r[1]) for r in rows]


def count(db: Path) -> int:
    return len(saved_results(db))


@dataclass(frozen=True)
class Finished:
    code: int
    stderr: str
    while_first_ran: bool


@dataclass(frozen=True)
class Contest:
    out: Path
    first: Finished
    second: Finished
    report: Finished


@pytest.fixture(scope="module")
def contest(tmp_path_factory: pytest.TempPathFactory) -> Contest:
    """A first assessment; once it has stored an item, a second on the same --out, and a report of that --out."""
    base = tmp_path_factory.mktemp("contest")
    tasks = suite(base / "suite.yaml")
    out = base / "poc"
    first = poccheck("assess", "--tasks", str(tasks), "--out", str(out))
    deadline = time.monotonic() + 300
    while count(out / "poccheck.db") < 1 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    finished = []
    for args in (("assess", "--tasks", str(tasks), "--out", str(out)), ("report", str(out))):
        process = poccheck(*args)
        _, stderr = process.communicate(timeout=300)
        finished.append(Finished(process.returncode, stderr, first.poll() is None))
    _, stderr = first.communicate(timeout=600)
    return Contest(out, Finished(first.returncode, stderr, True), *finished)


def test_a_second_assessment_on_the_same_directory_refuses_clearly(contest: Contest) -> None:
    assert contest.first.code == 0, contest.first.stderr
    second = contest.second
    if second.while_first_ran:  # the usual case; on a very slow machine the first may finish first
        assert second.code == 1 and REFUSED in second.stderr, second.stderr
        assert "Hint:" in second.stderr and "different --out" in second.stderr
    else:
        assert second.code == 0, second.stderr
    assert "Traceback" not in second.stderr


def test_a_report_during_an_assessment_reads_a_consistent_database(contest: Contest) -> None:
    assert contest.report.code == 0, contest.report.stderr
    assert "Traceback" not in contest.report.stderr


def test_the_shared_database_is_intact_and_complete(contest: Contest) -> None:
    stored = results(contest.out / "poccheck.db")
    assert [item_id for _, item_id in stored] == [f"n{i}" for i in range(ITEMS)]
    assert len({key for key, _ in stored}) == ITEMS
    assert (contest.out / ".poccheck.lock").stat().st_mode & 0o777 == 0o600
    again = poccheck("assess", "--tasks", str(contest.out.parent / "suite.yaml"), "--out", str(contest.out))
    _, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr  # the lock was released when the first finished
    assert results(contest.out / "poccheck.db") == stored


def test_two_assessments_started_together_never_both_write(tmp_path: Path) -> None:
    tasks = suite(tmp_path / "suite.yaml")
    out = tmp_path / "poc"
    processes = [poccheck("assess", "--tasks", str(tasks), "--out", str(out), "--limit", "2") for _ in range(2)]
    outcomes = [(p.wait(timeout=600), p.communicate()[1]) for p in processes]
    codes = sorted(code for code, _ in outcomes)
    assert codes in ([0, 0], [0, 1]), outcomes  # [0, 0] only when one finished before the other reached the lock
    for code, stderr in outcomes:
        assert "Traceback" not in stderr
        if code == 1:
            assert REFUSED in stderr
    assert [item_id for _, item_id in results(out / "poccheck.db")] == ["n0", "n1"]


# ---------------------------------------------------------------- damaged and foreign databases


def report_of(directory: Path) -> tuple[int, str]:
    """``poccheck report DIR`` in-process: the exit code and output; a PocCheckError is what main() prints."""
    result = CliRunner().invoke(app, ["report", str(directory)])
    if isinstance(result.exception, PocCheckError):
        return 1, str(result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """A copy cut short, with pages overwritten, or with bytes flipped (a failing disk, an interrupted copy)."""
    kind = draw(st.sampled_from(["truncate", "flip", "page"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "page":
        page = draw(st.integers(0, len(data) // 4096 - 1))
        return data[: page * 4096] + draw(st.binary(min_size=4096, max_size=4096)) + data[(page + 1) * 4096 :]
    copy = bytearray(data)
    for at in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=20)):
        copy[at] ^= draw(st.integers(1, 255))
    return bytes(copy)


def test_damaged_copies_of_a_results_database_fail_clearly(contest: Contest, tmp_path_factory) -> None:
    original = (contest.out / "poccheck.db").read_bytes()
    tried = {"clear error": 0, "still readable": 0}

    @settings(derandomize=True, database=None, deadline=None, max_examples=60,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
    @given(damaged(original))
    def check(data: bytes) -> None:
        directory = tmp_path_factory.mktemp("damaged")
        (directory / "poccheck.db").write_bytes(data)
        code, output = report_of(directory)
        assert code in (0, 1), output
        assert "Traceback" not in output
        tried["clear error" if code else "still readable"] += 1

    check()
    assert tried["clear error"] > 0, tried
    print(f"damaged databases: {tried}")


def test_foreign_and_empty_files_in_place_of_the_database_fail_clearly(tmp_path: Path) -> None:
    def foreign(db: Path) -> None:
        with sqlite3.connect(db) as con:
            con.executescript("CREATE TABLE meta (key, value); INSERT INTO meta VALUES ('app', 'x');")
        con.close()

    cases = {
        "foreign": foreign,
        "text": lambda db: db.write_text("name,score\nalice,3\n"),
        "directory": lambda db: db.mkdir(),
    }
    for name, make in cases.items():
        directory = tmp_path / name
        directory.mkdir()
        make(directory / "poccheck.db")
        code, output = report_of(directory)
        assert code == 1 and "poccheck.db" in output, (name, output)
        if name != "foreign":
            continue
        done = subprocess.run(
            [sys.executable, "-m", "poccheck", "assess", "--tasks", str(suite(tmp_path / "s.yaml")),
             "--out", str(directory)], capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 1 and "Traceback" not in done.stderr and "poccheck.db" in done.stderr, done.stderr
