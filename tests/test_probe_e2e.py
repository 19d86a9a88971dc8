"""`poccheck probe` then `poccheck assess` in direct and chain-of-thought modes on the bundled model."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from .test_e2e import cli

pytestmark = pytest.mark.model
WIDE = {**os.environ, "COLUMNS": "200"}


def test_probe_then_assess_in_two_modes(tmp_path: Path) -> None:
    probe = tmp_path / "probe.yaml"
    made = cli("probe", "--rules", "implication_elimination,proof_by_contradiction", "--hops", "1-2", "--n", "2",
               "--lang", "en", "--seed", "3", "--out", str(probe))  # fmt: skip
    assert made.returncode == 0, made.stderr
    out = tmp_path / "poc"
    done = cli("assess", "--tasks", str(probe), "--mode", "direct", "--mode", "cot", "--out", str(out))
    assert done.returncode == 0, done.stderr
    report = (out / "report.html").read_text(encoding="utf-8")
    for heading in ("Reasoning-depth probe", "Does chain-of-thought help?", "Depth profile", "exact McNemar"):
        assert heading in report
    assert "PrOntoQA-OOD proof by contradiction" in report  # the published points for the matching rule
    assert "insufficient evidence: 1 model size;" in report  # one model cannot place a threshold
    with sqlite3.connect(out / "poccheck.db") as db:
        modes = dict(db.execute("SELECT mode, count(*) FROM results GROUP BY mode").fetchall())
    assert modes == {"direct": 8, "cot": 8}
    bad = cli("probe", "--rules", "modus_ponens", "--out", str(tmp_path / "x.yaml"))
    assert bad.returncode == 1 and "unknown rule" in bad.stderr


def test_compare_two_modes_of_a_stored_run(tmp_path: Path) -> None:
    probe = tmp_path / "probe.yaml"
    assert (
        cli("probe", "--rules", "implication_elimination", "--hops", "1", "--n", "3", "--out", str(probe)).returncode
        == 0
    )
    out = tmp_path / "poc"
    assert cli("assess", "--tasks", str(probe), "--mode", "direct", "--mode", "cot", "--out", str(out)).returncode == 0
    shown = cli("compare", "gemma3-270m-q4 · direct", "gemma3-270m-q4 · cot", "--out", str(out), env=WIDE)
    assert shown.returncode == 0, shown.stderr
    assert "implication_elimination" in shown.stdout and "Only first right" in shown.stdout
    missing = cli("compare", "nope", "gemma3-270m-q4 · cot", "--out", str(out))
    assert missing.returncode == 1 and "no results for 'nope'" in missing.stderr
