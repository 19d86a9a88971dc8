"""Start llama-cpp-python's real OpenAI-compatible server (``llama_cpp.server``) on 127.0.0.1.

``repack_weights=False`` (the default) starts it through ``tests/serve_llama.py`` so its engine computes exactly
what poccheck's in-process backend computes; ``True`` starts the stock ``python -m llama_cpp.server``.

Used by the HTTP-backend tests and ``benchmarks/http_concurrency.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

MODEL_ALIAS = "gemma"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LlamaServer:
    """One server process; ``stop()`` and ``start()`` again reuse the same port."""

    def __init__(
        self,
        model: Path,
        api_key: str | None = None,
        threads: int = 2,
        log: Path | None = None,
        repack_weights: bool = False,
        logits_all: bool = False,
    ) -> None:
        self.model = model
        self.repack_weights = repack_weights
        self.logits_all = logits_all
        self.api_key = api_key
        self.threads = threads
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> None:
        launcher = (
            ["-m", "llama_cpp.server"] if self.repack_weights else [str(Path(__file__).with_name("serve_llama.py"))]
        )
        command = [
            sys.executable, *launcher, "--model", str(self.model), "--model_alias", MODEL_ALIAS,
            "--host", "127.0.0.1", "--port", str(self.port), "--n_threads", str(self.threads),
            # the in-process backend's context geometry (LlamaSettings), so both run the same kernels
            "--n_ctx", "4096", "--n_batch", "2048", "--n_ubatch", "512", "--flash_attn", "false",
            # logits_all (the server's default) makes every request log-softmax an n_ctx x 262k buffer: far too
            # slow for Gemma's vocabulary; without it the server refuses prompt log-probs and poccheck falls back
            # to letters. Tiny test models (a 300-token vocabulary) turn it on.
            "--logits_all", str(self.logits_all).lower(), "--verbose", "false",
            # by default a new request cuts the stream in flight short: concurrent clients need this off
            "--interrupt_requests", "false",
        ]  # fmt: skip
        if self.api_key:
            command += ["--api_key", self.api_key]
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
        if self.log:
            with self.log.open("ab") as output:  # the child keeps its own copy of the descriptor
                self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        else:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.base_url}/models", headers=headers, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
