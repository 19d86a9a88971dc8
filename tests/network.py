"""A Python start-up hook that refuses every network connection and DNS lookup and logs each attempt: a process
started with ``blocked(folder)``'s environment can reach nothing outside the machine."""

from __future__ import annotations

import os
from pathlib import Path

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

def _no_dns(host, *args, **kwargs):
    with open(__import__("os").environ["POCCHECK_NET_LOG"], "a") as log:
        log.write("dns " + repr(host) + "\\\\n")
    raise socket.gaierror("DNS blocked by test")

socket.getaddrinfo = _no_dns
"""


def blocked(folder: Path) -> tuple[dict[str, str], Path]:
    """The environment for a subprocess with the network refused, and the file its attempts are logged to."""
    hooks = folder / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    log = folder / "net.log"
    log.write_text("")
    return {**os.environ, "PYTHONPATH": str(hooks), "POCCHECK_NET_LOG": str(log), "HF_HUB_OFFLINE": "0"}, log
