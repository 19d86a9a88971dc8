"""What an item's numbers being its own costs on the bundled model: llama.cpp's weight repacking and KV-cell
alignment (see ``LlamaSettings.repack_weights`` and ``cell_alignment``).

Three engine set-ups run the example suite (examples/, 15 multiple-choice items, the first 16 generations)
through poccheck's llama.cpp backend: stock llama.cpp (weights repacked, packed items not aligned), weights not
repacked, and poccheck's default (not repacked, aligned). Each multiple-choice item is scored packed with the
others, packed in reverse order and alone. Printed per set-up: the best time to score and to generate, the ratio
against stock llama.cpp measured in the same run, and how far a choice's log-probability moves with the item's
neighbours in the decode (0 means an item's numbers are its own).

    python benchmarks/batch_invariance.py [--rounds 2] [--generations 16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from poccheck.backends import ChoiceRequest, GenerationRequest  # noqa: E402
from poccheck.backends.llama_cpp import LlamaCppBackend, LlamaSettings, system_info  # noqa: E402
from poccheck.models import DEFAULT_MODEL, resolve  # noqa: E402
from poccheck.runner import work_items  # noqa: E402
from poccheck.tasks import load_suites  # noqa: E402
from poccheck.tasks.examples import default_tasks  # noqa: E402

SETUPS = {  # name: (repack weights, align packed items)
    "stock llama.cpp": (True, False),
    "not repacked": (False, False),
    "poccheck": (False, True),
}


def measure(
    repack: bool, align: bool, choices: list[ChoiceRequest], generations: list[GenerationRequest]
) -> dict[str, float]:
    with LlamaCppBackend(resolve(DEFAULT_MODEL), LlamaSettings(repack_weights=repack)) as backend:
        if not align:
            backend._alignment = 1  # the cell alignment has no setting: it is never worth turning off
        backend.score_choices(choices[:1])  # warm-up
        start = time.perf_counter()
        packed = backend.score_choices(choices)
        score_s = time.perf_counter() - start
        reversed_ = backend.score_choices(choices[::-1])[::-1]
        alone = [backend.score_choices([c])[0] for c in choices]
        start = time.perf_counter()
        for request in generations:
            backend.generate(request)
        generate_s = time.perf_counter() - start
    moved = max(
        abs(a - b)
        for scores in (packed, reversed_)
        for mine, own in zip(scores, alone, strict=True)
        for a, b in zip(mine.logprobs, own.logprobs, strict=True)
    )
    return {"score_s": score_s, "generate_s": generate_s, "moved": moved}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per set-up (best time is kept)")
    parser.add_argument("--generations", type=int, default=16, help="generation items to time")
    args = parser.parse_args()
    engine = system_info()
    print(f"llama.cpp: {engine.strip()}")
    setups = dict(SETUPS)
    if "AMX_INT8 = 1" in engine:
        # Repacking moves Q4_K/Q8_0 weights into llama.cpp's AMX buffer, whose kernels trap (invalid opcode) where
        # the kernel does not grant AMX state, as on this workplace's virtual machines.
        del setups["stock llama.cpp"]
        print("stock llama.cpp (weights repacked) skipped: AMX repacking traps here; reference: not repacked")
    work = [w for suite in load_suites(default_tasks()) for w in work_items(suite)]
    choices = [w.choice_request for w in work if w.scored]
    generations = [w.generation_request for w in work if not w.scored][: args.generations]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in setups}
    for _ in range(args.rounds):
        for name, (repack, align) in setups.items():
            runs[name].append(measure(repack, align, choices, generations))
    best = {name: {k: min(r[k] for r in rs) for k in ("score_s", "generate_s")} for name, rs in runs.items()}
    reference = best[next(iter(setups))]
    print(f"{len(choices)} multiple-choice items, {len(generations)} generations, best of {args.rounds} rounds")
    print(f"{'set-up':<17}{'score (s)':>10}{'ratio':>7}{'generate (s)':>14}{'ratio':>7}{'moved (nats)':>14}")
    for name, times in best.items():
        moved = max(r["moved"] for r in runs[name])
        print(
            f"{name:<17}{times['score_s']:>10.2f}{times['score_s'] / reference['score_s']:>7.2f}"
            f"{times['generate_s']:>14.2f}{times['generate_s'] / reference['generate_s']:>7.2f}{moved:>14.4f}"
        )
    print("moved: largest change in a choice's log-probability between an item scored packed and alone")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
