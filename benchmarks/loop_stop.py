"""The loop stop checked against chains of thought that ran without it.

Each given model answers the example suite's first ``--items`` items of each task file in ``cot`` mode, greedy,
with the loop stop off (``LlamaSettings(stop_loops=False)``) and the suite's chain-of-thought budget, four at a
time. Then the rule (poccheck.backends.base.looping) is replayed over each chain's tokens for several window
sizes. Printed per model and window: how many chains ended by themselves and how many ran to the budget, on how
many of each the rule fired (on a chain that ended by itself it would have cut a real answer), and the generated
tokens it would have saved.

    python benchmarks/loop_stop.py [--models smollm2-135m-q4 gemma3-270m-q4 ...] [--items 8]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from poccheck import models, runner
from poccheck.backends import base
from poccheck.backends.llama_cpp import LlamaCppBackend, LlamaSettings
from poccheck.tasks import load_suites
from poccheck.tasks.examples import examples_dir

WINDOWS = (96, 128, base.LOOP_WINDOW)


def first_loop(tokens: Sequence[int], window: int) -> int | None:
    """The number of tokens after which the rule with this window would have stopped the chain."""
    return next((end for end in range(window, len(tokens) + 1) if base.looping(tokens[:end], window)), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=[n for n in models.PACKAGED if models.installed(n)])
    parser.add_argument("--items", type=int, default=8)
    args = parser.parse_args()
    suites = load_suites([examples_dir() / "factory_suite.yaml", examples_dir() / "factory_tasks.csv"])
    print(f"rule: {base.LOOP_RULE} (windows tried: {', '.join(map(str, WINDOWS))}; period up to a third of each)")
    print(f"{'model':24} {'window':>6} {'ended':>6} {'fired':>6} {'budget':>6} {'fired':>6} {'saved':>12}")
    for name in args.models:
        info = models.resolve(name)
        backend = LlamaCppBackend(info, LlamaSettings(stop_loops=False))
        try:
            requests = [  # every chain-of-thought item is generated
                r
                for suite in suites
                for r in runner.generation_requests(backend, suite, info.name, "cot")[: args.items]
            ]
            started = time.perf_counter()
            done = dict(backend.generate_many(requests, 4))
            seconds = time.perf_counter() - started
            chains = []
            for index in range(len(requests)):
                completion = done[index]
                if isinstance(completion, Exception):
                    continue
                tokens = backend.tokenize(completion.text, add_bos=False)
                chains.append((completion.finish_reason, completion.completion_tokens, tokens))
        finally:
            backend.close()
        total = sum(count for _, count, _ in chains)
        for window in WINDOWS:
            ended = [c for c in chains if c[0] != "length"]
            budget = [c for c in chains if c[0] == "length"]
            hits = {id(c): first_loop(c[2], window) for c in chains}
            saved = sum(c[1] - hit for c in chains if (hit := hits[id(c)]) is not None)
            print(
                f"{name:24} {window:>6} {len(ended):>6} {sum(hits[id(c)] is not None for c in ended):>6} "
                f"{len(budget):>6} {sum(hits[id(c)] is not None for c in budget):>6} "
                f"{saved:>5} of {total:<5}"
            )
        print(f"{'':24} ({len(chains)} chains in {seconds:.0f} s)")


if __name__ == "__main__":
    main()
