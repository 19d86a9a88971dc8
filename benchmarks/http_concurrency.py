"""Items per second through the HTTP backend at concurrency 1, 2 and 4, against the real llama_cpp.server.

The server (llama-cpp-python's OpenAI-compatible server, bundled model, 127.0.0.1, a free port) is started by
this script. The example suite (examples/, 52 items) goes through poccheck's OpenAI backend at each concurrency;
the reference is concurrency 1 measured in the same run, and ratios are printed against it. llama-cpp-python's
server answers one request at a time, so concurrency mostly overlaps the client's and the network's share of
each request; servers that batch (vLLM, TGI) gain far more.

    python benchmarks/http_concurrency.py [--items N] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from poccheck.backends.openai_http import OpenAIBackend  # noqa: E402
from poccheck.endpoints import Endpoint, describe  # noqa: E402
from poccheck.errors import BackendError  # noqa: E402
from poccheck.models import bundled_path  # noqa: E402
from poccheck.runner import work_items  # noqa: E402
from poccheck.tasks import load_suites  # noqa: E402
from poccheck.tasks.examples import default_tasks  # noqa: E402
from tests.llama_server import MODEL_ALIAS, LlamaServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=0, help="use only the first N items (default: all)")
    parser.add_argument("--threads", type=int, default=2, help="server threads")
    args = parser.parse_args()
    work = [w for suite in load_suites(default_tasks()) for w in work_items(suite)]
    requests = [w.request for w in work[: args.items or None]]
    server = LlamaServer(bundled_path(), threads=args.threads)
    server.start()
    try:
        rates: dict[int, float] = {}
        for concurrency in (1, 2, 4):
            endpoint = Endpoint(
                "bench", server.base_url, MODEL_ALIAS, concurrency=concurrency, extra_body={"repeat_penalty": 1.0}
            )
            backend = OpenAIBackend(describe("bench@openai", endpoint), endpoint)
            list(backend.run_many(requests[:1]))  # warm-up
            started = time.perf_counter()
            failed = sum(isinstance(result, BackendError) for _, result in backend.run_many(requests))
            seconds = time.perf_counter() - started
            rates[concurrency] = len(requests) / seconds
            print(
                f"concurrency {concurrency}: {len(requests)} items in {seconds:.1f} s = {rates[concurrency]:.2f} "
                f"items/s ({failed} item errors; multiple choice by {backend.settings()['multiple_choice']})",
                flush=True,
            )
    finally:
        server.stop()
    for concurrency, rate in rates.items():
        print(f"ratio vs concurrency 1 (same run): c={concurrency} {rate / rates[1]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
