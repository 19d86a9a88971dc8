"""Multiple-choice scoring throughput: poccheck's shared-prefix scorer vs a naive reference, same run.

The set is CommonsenseQA validation (5 choices) from ../shared/data/csqa_validation, first N items, prompt
``Question: {q}\\nAnswer:`` with each choice prefixed by a space. The naive reference evaluates each choice
as its own full sequence with llama-cpp-python (logits at every position). Both use the bundled model.
Target: the same accuracy (within one item) and at least 5x the reference's items/s.

    python benchmarks/mc_throughput.py [--items 100] [--data PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from poccheck.backends import ChoiceRequest
from poccheck.backends.llama_cpp import LlamaCppBackend, default_threads
from poccheck.backends.llama_reference import NaiveChoiceScorer
from poccheck.models import resolve
from poccheck.runner import MC_CHUNK

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "csqa_validation" / "normalized.jsonl"
LETTERS = "ABCDEFGHIJ"


def load(path: Path, count: int) -> list[tuple[ChoiceRequest, int]]:
    items = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            request = ChoiceRequest(
                f"Question: {record['question']}\nAnswer:", tuple(f" {c}" for c in record["choices"])
            )
            items.append((request, LETTERS.index(record["answer"])))
            if len(items) == count:
                break
    return items


def argmax(values: list[float] | tuple[float, ...]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="gemma3-270m-q4")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"skipped: {args.data} not found (it lives in ../shared, which user clones do not have)")
        return 0
    items = load(args.data, args.items)
    info = resolve(args.model)
    print(
        f"model {info.name} ({info.parameters:,} parameters, {info.quantization}), {len(items)} items, "
        f"{default_threads()} threads"
    )

    with LlamaCppBackend(info) as backend:
        backend.score_choices([items[0][0]])  # warm-up
        start = time.perf_counter()
        fast = []
        for begin in range(0, len(items), MC_CHUNK):
            fast += backend.score_choices([r for r, _ in items[begin : begin + MC_CHUNK]])
        fast_seconds = time.perf_counter() - start

    naive = NaiveChoiceScorer(info.path)
    naive.score(items[0][0].prompt, items[0][0].continuations)  # warm-up
    start = time.perf_counter()
    slow = [naive.score(r.prompt, r.continuations) for r, _ in items]
    naive_seconds = time.perf_counter() - start
    naive.close()

    fast_correct = sum(argmax(s.logprobs) == gold for s, (_, gold) in zip(fast, items, strict=True))
    slow_correct = sum(argmax(s) == gold for s, (_, gold) in zip(slow, items, strict=True))
    agree = sum(argmax(a.logprobs) == argmax(b) for a, b in zip(fast, slow, strict=True))
    fast_rate = len(items) / fast_seconds
    slow_rate = len(items) / naive_seconds
    print(
        f"poccheck shared-prefix: accuracy {fast_correct}/{len(items)}, {fast_rate:.2f} items/s ({fast_seconds:.1f} s)"
    )
    print(
        f"naive per-choice      : accuracy {slow_correct}/{len(items)}, {slow_rate:.2f} items/s ({naive_seconds:.1f} s)"
    )
    print(f"prediction agreement  : {agree}/{len(items)}")
    print(f"speed-up              : {fast_rate / slow_rate:.1f}x (target >= 5x)")
    print(f"accuracy difference   : {abs(fast_correct - slow_correct)} item(s) (target <= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
