"""The bundled model in two modes: llama.cpp (Q4_K_M) vs transformers (the same weights dequantised, float32).

Prints, for the example suite's multiple-choice items and for the first N items of CommonsenseQA
(../shared/data/csqa_validation, skipped when absent): how often the two modes pick the same answer, each
one's accuracy and items/s, and the transformers load time from the GGUF file (first: dequantise and cache;
second: from the cache). Pass --cold to delete the conversion cache first so the first load is measured.

    python benchmarks/backend_agreement.py [--items 100] [--cold]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from poccheck.backends import ChoiceRequest
from poccheck.backends.hf import converted_dir
from poccheck.backends.registry import load_backend
from poccheck.models import resolve
from poccheck.runner import work_items
from poccheck.tasks import load_suites
from poccheck.tasks.examples import default_tasks

ROOT = Path(__file__).resolve().parents[1]
CSQA = ROOT.parent / "shared" / "data" / "csqa_validation" / "normalized.jsonl"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from mc_throughput import load as load_csqa  # noqa: E402


def argmax(values: tuple[float, ...]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def timed(backend: object, requests: list[ChoiceRequest]) -> tuple[list[int], float]:
    started = time.perf_counter()
    scores = backend.score_choices(requests)  # type: ignore[attr-defined]
    return [argmax(s.logprobs) for s in scores], len(requests) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--cold", action="store_true", help="delete the conversion cache first")
    args = parser.parse_args()

    example = [
        (w.choice_request, w.item.answer)
        for s in load_suites(default_tasks())
        for w in work_items(s)
        if w.item.is_multiple_choice
    ]
    sets = {"example suite": example}
    if CSQA.exists():
        sets[f"CommonsenseQA first {args.items}"] = load_csqa(CSQA, args.items)
    else:
        print(f"(CommonsenseQA skipped: {CSQA} not found)")

    gguf = resolve("gemma3-270m-q4")
    hf_info = resolve("gemma3-270m-q4@transformers")
    if args.cold:
        shutil.rmtree(converted_dir(hf_info, "float32"), ignore_errors=True)
    loads = []
    for _ in range(2):
        started = time.perf_counter()
        hf = load_backend(hf_info)
        loads.append(time.perf_counter() - started)
        if len(loads) == 1:
            hf.close()
    llama = load_backend(gguf)
    cache = converted_dir(hf_info, "float32")
    print(f"transformers load from GGUF: first {loads[0]:.1f} s, second {loads[1]:.1f} s (cache {cache})")
    for name, items in sets.items():
        requests = [r for r, _ in items]
        gold = [g for _, g in items]
        llama.score_choices(requests[:1])
        hf.score_choices(requests[:1])
        a, rate_a = timed(llama, requests)
        b, rate_b = timed(hf, requests)
        same = sum(x == y for x, y in zip(a, b, strict=True))
        acc_a = sum(x == g for x, g in zip(a, gold, strict=True))
        acc_b = sum(x == g for x, g in zip(b, gold, strict=True))
        print(f"{name} ({len(items)} items): agreement {same}/{len(items)} = {same / len(items):.1%}")
        print(f"  llama.cpp Q4_K_M   : accuracy {acc_a}/{len(items)}, {rate_a:.2f} items/s")
        print(f"  transformers fp32  : accuracy {acc_b}/{len(items)}, {rate_b:.2f} items/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
