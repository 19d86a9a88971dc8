"""Generation throughput: raw llama-cpp-python against poccheck's llama.cpp backend, same run, same items.

The items are the example suite's generation items in suite order (the first ``--items``), in the given mode and
the model's own prompt format (chat template for instruct models), greedy, with the suite's token budget (capped
by ``--max-tokens``). Each configuration runs them all, once:

- raw: llama-cpp-python's ``Llama.create_completion(temperature=0, top_k=1, repeat_penalty=1.0)`` on the same
  prompt tokens (it keeps the previous prompt's KV cache and evaluates only what differs);
- poccheck sequential, each item from an empty context;
- poccheck sequential, keeping the KV cells of the prefix an item shares with the one before (few-shot exemplars);
- poccheck with N = 2 and 4 items decoded together (continuous batching; other N with ``--parallel``: from 8,
  every step is padded to 8 rows for llama.cpp's tiled kernels unless ``GGML_CPU_TILED_MM=0``, so outputs are
  the same at any such N but can differ from sequential; with ``--repacked``, from 4 on repacked weights, every
  step padded to a multiple of 4 rows, and from 5 to at least 8).

Printed: items/s, generated tokens/s, each against raw, how many outputs differ from poccheck's sequential ones
and, for each that differs, the gap between the two best next tokens (from the item alone) where it parts, the
engine's CPU features and the memory bandwidth numpy measures on this machine (a bound for one sequence: each
generated token reads every weight once).

With ``--backend transformers`` the same items run through the transformers backend (the GGUF's weights
dequantised, float32 on CPU): sequential against N = 2 and 4 in one left-padded batch, and for each output that
differs from the item's alone, the gap between the two best next tokens where it parts.

    python benchmarks/generation_throughput.py [--model gemma3-270m-q4] [--mode cot] [--items 12] [--parallel 2,4]
    python benchmarks/generation_throughput.py --backend transformers [--model gemma3-270m-q4]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

import numpy as np
from decode_step import add  # benchmarks/ is on the path when a benchmark runs

from poccheck import models, runner
from poccheck.backends import GenerationRequest
from poccheck.backends.hf import HFSettings, TransformersBackend
from poccheck.backends.llama_cpp import LlamaCppBackend, LlamaSettings, default_threads, system_info, weight_repacking
from poccheck.records import Completion, Mode, ModelInfo
from poccheck.tasks import load_suite
from poccheck.tasks.examples import examples_dir


def bandwidth() -> float:
    """Memory read+write bandwidth in GB/s: the best of five copies of a 512 MiB array."""
    source = np.ones(64 * 1024 * 1024, dtype=np.float64)
    target = np.empty_like(source)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.nbytes / best / 1e9


def items(
    backend: LlamaCppBackend | TransformersBackend, name: str, mode: Mode, count: int, cap: int
) -> list[GenerationRequest]:
    chosen = runner.generation_requests(backend, load_suite(examples_dir() / "factory_suite.yaml"), name, mode)[:count]
    return [dataclasses.replace(r, max_tokens=min(r.max_tokens, cap)) for r in chosen]


def raw_run(backend: LlamaCppBackend, requests: list[GenerationRequest]) -> tuple[float, list[str], int]:
    import llama_cpp

    with weight_repacking(llama_cpp, False):
        llm = llama_cpp.Llama(model_path=backend.info.path, n_ctx=4096, n_batch=2048, n_threads=default_threads(),
                              n_threads_batch=default_threads(), verbose=False)  # fmt: skip
    prompts = [backend.prompt_tokens(r.prompt, r.turns) for r in requests]
    llm.create_completion(prompts[0], max_tokens=1, temperature=0, top_k=1, repeat_penalty=1.0)  # warm-up
    llm.reset()
    start = time.perf_counter()
    texts, tokens = [], 0
    for prompt, request in zip(prompts, requests, strict=True):
        reply = llm.create_completion(prompt, max_tokens=request.max_tokens, stop=list(request.stop) or None,
                                      temperature=0, top_k=1, repeat_penalty=1.0)  # fmt: skip
        texts.append(reply["choices"][0]["text"])  # type: ignore[index]
        tokens += reply["usage"]["completion_tokens"]  # type: ignore[index]
    seconds = time.perf_counter() - start
    llm.close()
    return seconds, texts, tokens


def shared_tokens(tokens: list[int], decode: Callable[[list[int]], str], batched: str) -> int:
    """How many of ``tokens`` (an output alone) ``batched`` starts with, read back as text."""
    return max(k for k in range(len(tokens) + 1) if batched.startswith(decode(tokens[:k])))


def llama_gap(backend: LlamaCppBackend, request: GenerationRequest, alone: str, batched: str) -> float:
    """The gap between the two best next-token logits where ``batched`` leaves ``alone`` (its tokens as the
    tokenizer reads the text back), the prompt and the shared tokens evaluated alone in the generation context."""
    tokens = backend.tokenize(alone, add_bos=False)
    same = shared_tokens(tokens, lambda ids: backend._llm.detokenize(ids).decode("utf-8", "ignore"), batched)
    ids = backend.prompt_tokens(request.prompt, request.turns) + tokens[:same]
    ctx, batch = backend._llm.ctx, backend._gen_batch
    backend._forget(ctx, [backend._held])
    unit = int(backend._lib.llama_n_ubatch(ctx))
    for begin in range(0, len(ids), unit):
        chunk = ids[begin : begin + unit]
        batch.n_tokens = 0
        for k, token in enumerate(chunk):
            add(batch, token, begin + k, [0], begin + k == len(ids) - 1)
        backend._decode(ctx, batch)
    best = np.sort(backend._logits_row(ctx, len(chunk) - 1))[-2:]
    backend._forget(ctx, [backend._held])
    return float(best[1] - best[0])


def first_gap(backend: TransformersBackend, request: GenerationRequest, alone: str, batched: str) -> float:
    """The gap between the two best next-token log-probabilities where ``batched`` leaves ``alone`` (its tokens
    as the tokenizer reads the text back), from one unpadded forward pass."""
    import torch

    tokens = backend.tokenizer(alone, add_special_tokens=False)["input_ids"]
    same = shared_tokens(tokens, backend.tokenizer.decode, batched)
    ids = backend.prompt_tokens(request.prompt, request.turns) + tokens[:same]
    with torch.inference_mode():
        logits = backend.model(input_ids=torch.tensor([ids], device=backend.device)).logits[0, -1].float()
    best = torch.topk(torch.log_softmax(logits, -1), 2).values
    return float(best[0] - best[1])


def transformers_rows(info: ModelInfo, mode: Mode, count: int, cap: int) -> int:
    """Sequential against N = 2 and 4 in one left-padded batch; each differing output with the gap of the two best
    next tokens where it parts (a near-tie: well under 0.01)."""
    backend = TransformersBackend(models.resolve(f"{info.name}@transformers"), HFSettings(device="cpu"))
    requests = items(backend, info.name, mode, count, cap)
    print(f"transformers {backend.settings()['dtype']} on {backend.device}, {len(requests)} {mode} items, "
          f"token budget {requests[0].max_tokens}")  # fmt: skip
    backend.generate(requests[0])  # warm-up
    start = time.perf_counter()
    alone = [backend.generate(r) for r in requests]
    sequential = time.perf_counter() - start
    print(f"{'configuration':46} {'seconds':>8} {'items/s':>8} {'tokens/s':>9} {'vs seq':>7} {'differ':>7}")
    rows = [("transformers sequential", sequential, alone)]
    for n in (2, 4):
        start = time.perf_counter()
        done = dict(backend.generate_many(requests, n))
        rows.append((f"transformers N = {n} together", time.perf_counter() - start,
                     [c for _, c in sorted(done.items()) if isinstance(c, Completion)]))  # fmt: skip
    for label, seconds, completions in rows:
        differ = [i for i, (a, b) in enumerate(zip(alone, completions, strict=True)) if a.text != b.text]
        tokens = sum(c.completion_tokens for c in completions)
        print(f"{label:46} {seconds:8.2f} {len(completions) / seconds:8.3f} {tokens / seconds:9.1f} "
              f"{sequential / seconds:6.2f}x {len(differ):4d}/{len(completions)}")  # fmt: skip
        for i in differ:
            gap = first_gap(backend, requests[i], alone[i].text, completions[i].text)
            print(f"    item {i}: parts from the item alone where its two best tokens are {gap:.4f} apart")
    backend.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3-270m-q4")
    parser.add_argument("--mode", default="cot", choices=["direct", "fewshot", "cot"])
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--backend", default="llama.cpp", choices=["llama.cpp", "transformers"])
    parser.add_argument("--parallel", type=lambda text: [int(n) for n in text.split(",")], default=[2, 4],
                        help="llama.cpp: the N of each continuous-batching row, comma-separated")  # fmt: skip
    parser.add_argument("--repacked", action="store_true",
                        help="llama.cpp: from 4 together, decode on repacked weights (--repacked-decode)")  # fmt: skip
    args = parser.parse_args()
    info = models.resolve(args.model)
    print(f"engine: {system_info()}")
    print(f"memory bandwidth (numpy copy): {bandwidth():.1f} GB/s; {default_threads()} threads")
    if args.backend == "transformers":
        return transformers_rows(info, args.mode, args.items, args.max_tokens)
    backend = LlamaCppBackend(info, LlamaSettings(repacked_decode=args.repacked))
    requests = items(backend, info.name, args.mode, args.items, args.max_tokens)
    print(f"model {info.name} ({info.parameters:,} parameters, {info.quantization}), {len(requests)} {args.mode} "
          f"items, token budget {requests[0].max_tokens}")  # fmt: skip
    backend.generate(requests[0])  # warm-up

    def fresh() -> list[Completion]:
        out = []
        for r in requests:
            backend._forget(backend._llm.ctx, [backend._held])
            out.append(backend.generate(r))
        return out

    rows: list[tuple[str, float, list[str], int]] = []
    raw_seconds, raw_texts, raw_tokens = raw_run(backend, requests)
    rows.append(("raw llama-cpp-python, sequential", raw_seconds, raw_texts, raw_tokens))
    runs: list[tuple[str, Callable[[], list[Completion]]]] = [("poccheck sequential, empty context per item", fresh)]
    runs.append(("poccheck sequential, shared prefix kept", lambda: [backend.generate(r) for r in requests]))

    def together(n: int) -> list[Completion]:
        done = dict(backend.generate_many(requests, n))
        return [c for _, c in sorted(done.items()) if isinstance(c, Completion)]

    for n in args.parallel:
        shape = ", ".join(f"{k} {v}" for k, v in backend.batch_key(n).items())
        name = f"poccheck N = {n}" + (f" ({shape})" if shape else "")
        runs.append((name, lambda n=n: together(n)))  # type: ignore[misc]
    reference: list[str] | None = None
    for label, run in runs:
        start = time.perf_counter()
        done = run()
        seconds = time.perf_counter() - start
        completions = [c for c in done if isinstance(c, Completion)]
        texts = [c.text for c in completions]
        reference = reference or texts
        rows.append((label, seconds, texts, sum(c.completion_tokens for c in completions)))
    assert reference is not None
    print(f"{'configuration':52} {'seconds':>8} {'items/s':>8} {'tokens/s':>9} {'vs raw':>7} {'differ':>7}")
    for number, (label, seconds, texts, tokens) in enumerate(rows):
        differ = [i for i, (a, b) in enumerate(zip(texts, reference, strict=True)) if a != b]
        print(f"{label:52} {seconds:8.2f} {len(texts) / seconds:8.3f} {tokens / seconds:9.1f} "
              f"{raw_seconds / seconds:6.2f}x {len(differ):4d}/{len(texts)}")  # fmt: skip
        for i in differ if number > 0 else ():  # raw llama-cpp-python's are not poccheck's to explain
            gap = llama_gap(backend, requests[i], reference[i], texts[i])
            print(f"    item {i}: parts from the item alone where its two best tokens are {gap:.4f} apart")
    backend.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
