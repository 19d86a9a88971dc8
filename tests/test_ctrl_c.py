"""Ctrl-C must exit 130 with how to resume whatever state it leaves the terminal output in.

A SIGINT can land inside rich's console between opening a print's buffer and closing it; from then on the console
buffers and never writes (a CI run of tests/test_interruptions.py exited 130 with an empty stderr). These tests put
the console in that state on purpose and raise the KeyboardInterrupt from a scripted stand-in for the pipeline
(the real runs and real SIGINTs are in tests/test_interruptions.py), in a fresh interpreter each.

Once a command has finished, Python's teardown (freeing the model and the engines) runs with SIGINT at its default
action; a Ctrl-C then must not kill the process and replace the command's exit status with -SIGINT.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

RESUME_HINT = "run the same command again to resume"

SCRIPT = """
import os
import sys
from poccheck import cli, pipeline
from poccheck.__main__ import entry
from poccheck.console import console

def interrupted(*args, **kwargs):
    if {stuck}:
        console._enter_buffer()  # what a Ctrl-C inside rich's print leaves: every later print stays buffered
    if {muted}:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # what a Ctrl-C inside llama.cpp's redirection can leave
    raise KeyboardInterrupt

pipeline.assess = pipeline.finetune = interrupted
if {early}:
    cli.run_config = interrupted  # Ctrl-C while the plan and task files are read, before any model is loaded
if {late}:  # Ctrl-C as the findings are printed, after the run: typer's own handler exits 130 in silence
    class Done:
        findings = report = outcome = None
    pipeline.assess = lambda *args, **kwargs: Done()
    cli.findings_table = interrupted
sys.argv = ["poccheck", *{argv!r}]
entry()  # the command's own entry point, which keeps a copy of standard error first
"""


def run(
    argv: list[str], stuck: bool = True, early: bool = False, muted: bool = False, late: bool = False
) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(SCRIPT).format(stuck=stuck, early=early, muted=muted, late=late, argv=argv)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.fixture
def tasks(tmp_path: Path) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text("name: s\nitems:\n  - {id: a, type: numeric, input: 'What is 1 plus 1?', answer: 2}\n")
    return path


@pytest.mark.parametrize(
    ("stuck", "muted"),
    [(True, False), (False, True), (False, False)],
    ids=["console-buffer-left-open", "fd-2-left-on-dev-null", "console-intact"],
)
def test_scripted_ctrl_c_in_assess_exits_130_with_how_to_resume(
    tasks: Path, tmp_path: Path, stuck: bool, muted: bool
) -> None:
    result = run(["assess", "--tasks", str(tasks), "--out", str(tmp_path / "out")], stuck=stuck, muted=muted)
    assert result.returncode == 130, result.stderr
    assert "Interrupted." in result.stderr and RESUME_HINT in result.stderr.lower()
    assert "Traceback" not in result.stderr and "Aborted" not in result.stderr


@pytest.mark.parametrize("when", ["early", "late"], ids=["reading-the-tasks", "printing-the-findings"])
def test_scripted_ctrl_c_outside_the_run_itself_says_how_to_resume(tasks: Path, tmp_path: Path, when: str) -> None:
    argv = ["assess", "--tasks", str(tasks), "--out", str(tmp_path / "out")]
    result = run(argv, stuck=False, early=when == "early", late=when == "late")
    assert result.returncode == 130, result.stderr
    assert result.stderr.count("Interrupted.") == 1 and RESUME_HINT in result.stderr.lower()
    assert "Aborted" not in result.stderr and "Traceback" not in result.stderr


def test_scripted_ctrl_c_in_finetune_exits_130_with_the_checkpoint_hint(tasks: Path) -> None:
    result = run(["finetune", "--tasks", str(tasks), "--model", "smollm2-135m-q4"])
    assert result.returncode == 130, result.stderr
    assert "resume from the last checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


TEARDOWN = """
import os, signal, sys, time
import poccheck.cli
from poccheck.__main__ import entry

class Late:
    def __del__(self):  # runs in Python's teardown, after the exit hooks, as freeing the model and engines does
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)

late = Late()

def finished():
    sys.exit({status})

poccheck.cli.main = finished
entry()
"""


@pytest.mark.parametrize("status", [0, 1])
def test_ctrl_c_after_a_scripted_command_finished_keeps_its_exit_status(status: int) -> None:
    code = textwrap.dedent(TEARDOWN).format(status=status)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == status, (result.returncode, result.stderr)  # not -SIGINT: the work was done


def test_an_import_error_raised_from_a_ctrl_c_counts_as_one() -> None:
    from poccheck.interrupt import caused_by_ctrl_c

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:  # what pybind11 does when Ctrl-C lands in an extension's init
            raise ImportError("initialization failed") from interrupt
    except ImportError as exc:
        assert caused_by_ctrl_c(exc)
    assert not caused_by_ctrl_c(ImportError("No module named 'llama_cpp'"))


IMPORT = """
import sys
import poccheck.__main__

class Interrupted:  # the cli's import chain meets Ctrl-C inside a compiled extension (scipy's, as seen)
    def find_spec(self, name, path=None, target=None):
        if name == "poccheck.cli":
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as exc:
                raise ImportError("initialization failed") from exc

sys.meta_path.insert(0, Interrupted())
sys.argv = ["poccheck", "--version"]
poccheck.__main__.entry()
"""


def test_scripted_ctrl_c_inside_an_extension_import_exits_130_with_how_to_resume() -> None:
    result = subprocess.run([sys.executable, "-c", IMPORT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 130, result.stderr
    assert RESUME_HINT in result.stderr.lower() and "Traceback" not in result.stderr
