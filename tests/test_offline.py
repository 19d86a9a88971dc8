"""Nothing leaves the machine: a full assess with every network connection refused still succeeds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import EXAMPLES

pytestmark = pytest.mark.model

BLOCKER = """
import socket

class _Refused(OSError):
    pass

_real_connect = socket.socket.connect

def _guard(self, address, *args, **kwargs):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        with open(__import__("os").environ["POCCHECK_NET_LOG"], "a") as log:
            log.write(repr(address) + "\\\\n")
        raise _Refused("network blocked by test")
    return _real_connect(self, address, *args, **kwargs)

socket.socket.connect = _guard
socket.socket.connect_ex = lambda self, address: _guard(self, address) or 0
_real_getaddrinfo = socket.getaddrinfo

def _no_dns(host, *args, **kwargs):
    with open(__import__("os").environ["POCCHECK_NET_LOG"], "a") as log:
        log.write("dns " + repr(host) + "\\\\n")
    raise socket.gaierror("DNS blocked by test")

socket.getaddrinfo = _no_dns
"""


def test_assess_and_report_open_no_network_connection(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    log = tmp_path / "net.log"
    log.write_text("")
    env = {**os.environ, "PYTHONPATH": str(hooks), "POCCHECK_NET_LOG": str(log), "HF_HUB_OFFLINE": "0"}
    out = tmp_path / "poc"
    for args in (
        ["assess", "--tasks", str(EXAMPLES / "factory_tasks.csv"), "--limit", "4", "--out", str(out),
         "--model", "gemma3-270m-q4", "--model", "gemma3-270m-q4@transformers"],
        ["report", str(out)],
        ["models", "list"],
    ):  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "poccheck", *args], env=env, capture_output=True, text=True,
                              timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert log.read_text() == "", f"network attempts: {log.read_text()}"
    report = (out / "report.html").read_text(encoding="utf-8")
    for attribute in ('src="http', "src='http", 'href="http', "href='http", "url(http", "@import"):
        assert attribute not in report  # nothing the browser would fetch
