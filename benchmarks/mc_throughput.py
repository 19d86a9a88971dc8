"""Multiple-choice scoring throughput: poccheck's shared-prefix scorer vs a naive reference, same run.

The set is CommonsenseQA validation (5 choices) from ../shared/data/csqa_validation, first N items, prompt
``Question: {q}\\nAnswer:`` with each choice prefixed by a space; the bundled model unless --model.

- The reference (``poccheck.backends.llama_reference``) decodes each choice as its own full sequence, prompt
  included, with logits only at the positions that predict a choice token: what sharing the prompt and packing
  items buy, not logits nobody reads.
- poccheck's scorer is timed in chunks of ``--chunks`` items per call, as many as one decode packs (the runner
  hands llama.cpp one item per call and saves it when the call returns, so a chunk is what an interrupted run
  could lose), and at the largest chunk with its KV-cache cell alignment off (``unaligned``: faster on short
  prompts, but an item's scores then move with its neighbours; see benchmarks/batch_invariance.py).

Printed: accuracy, items/s and the ratio to the reference for each, prediction agreement with the reference.
Also printed: the tokens each decodes, whose ratio bounds the speed-up on a CPU. Target: the same accuracy (within
one item); 5x the items/s of the reference as it was (logits at every position).

    python benchmarks/mc_throughput.py [--items 100] [--chunks 1,4,16] [--data PATH]
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
from poccheck.records import LETTERS

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "csqa_validation" / "normalized.jsonl"


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
    parser.add_argument("--chunks", default="1,4,16", help="chunk sizes to time, comma-separated")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="gemma3-270m-q4")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"skipped: {args.data} not found (it lives in ../shared, which user clones do not have)")
        return 0
    items = load(args.data, args.items)
    requests = [r for r, _ in items]
    chunks = sorted({int(c) for c in args.chunks.split(",")})
    info = resolve(args.model)
    print(
        f"model {info.name} ({info.parameters:,} parameters, {info.quantization}), {len(items)} items, "
        f"{default_threads()} threads; the runner hands llama.cpp {LlamaCppBackend.choice_batch} item(s) at a time"
    )

    naive = NaiveChoiceScorer(info.path)
    naive.score(requests[0].prompt, requests[0].continuations)  # warm-up
    start = time.perf_counter()
    reference = [naive.score(r.prompt, r.continuations) for r in requests]
    reference_rate = len(items) / (time.perf_counter() - start)
    naive.close()

    measured: list[tuple[str, list[int], float]] = []
    with LlamaCppBackend(info) as backend:
        backend.score_choices(requests[:1])  # warm-up
        alignment = backend._alignment
        for chunk in chunks:
            measured.append((f"poccheck, chunk {chunk}", *timed(backend, requests, chunk)))
        backend._alignment = 1  # no setting: the alignment is what keeps an item's scores its own
        measured.append((f"unaligned, chunk {chunks[-1]}", *timed(backend, requests, chunks[-1])))
        backend._alignment = alignment
        prompts = [len(backend.prompt_tokens(r.prompt)) for r in requests]
        choices = [[len(backend.tokenize(c, add_bos=False)) for c in r.continuations] for r in requests]
    shared = sum(p + sum(c) for p, c in zip(prompts, choices, strict=True))
    separate = sum(p * len(c) + sum(c) for p, c in zip(prompts, choices, strict=True))

    golds = [gold for _, gold in items]
    reference_picks = [argmax(s) for s in reference]
    print(f"{'scorer':<22}{'accuracy':>10}{'items/s':>9}{'x reference':>13}{'agree':>8}")
    print(f"{'reference (naive)':<22}{score(reference_picks, golds):>10}{reference_rate:>9.2f}{1.0:>13.2f}{'-':>8}")
    for name, picks, rate in measured:
        agree = sum(a == b for a, b in zip(picks, reference_picks, strict=True))
        print(f"{name:<22}{score(picks, golds):>10}{rate:>9.2f}{rate / reference_rate:>13.2f}{agree:>5}/{len(items)}")
    print(
        f"tokens decoded: reference {separate:,}, poccheck {shared:,} ({separate / shared:.2f}x fewer: on a CPU, "
        "where each token costs about the same, the bound on the speed-up)"
    )
    print("target: accuracy within one item of the reference; at least 5x its items/s (set against a reference")
    print("that computed logits at every position; against this one the token ratio above bounds it)")
    return 0


def timed(backend: LlamaCppBackend, requests: list[ChoiceRequest], chunk: int) -> tuple[list[int], float]:
    """Each request's pick and the items/s, scoring ``chunk`` requests per call as the runner does."""
    start = time.perf_counter()
    scores = []
    for begin in range(0, len(requests), chunk):
        scores += backend.score_choices(requests[begin : begin + chunk])
    return [argmax(s.logprobs) for s in scores], len(requests) / (time.perf_counter() - start)


def score(picks: list[int], golds: list[int]) -> str:
    return f"{sum(p == g for p, g in zip(picks, golds, strict=True))}/{len(golds)}"


if __name__ == "__main__":
    sys.exit(main())
