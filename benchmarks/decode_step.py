"""What one llama.cpp decode step costs with 1, 2 and 4 sequences in flight: whether generation on this machine is
bound by memory bandwidth (a step's cost barely grows with the sequences decoded together) or by compute (it
grows with them), and what repacking the weights changes.

Each setting runs in its own process: the model is loaded as poccheck loads it (weights repacked or not), a short
prompt is decoded once for every sequence, then 40 steps decode one token per sequence in one ``llama_decode``.
Printed: milliseconds per step, tokens/s, and the step's cost against one sequence measured in the same run,
beside the file size and the time a step would take if reading the weights once were all it cost (numpy copy
bandwidth, measured here too).

    python benchmarks/decode_step.py [--model qwen2.5-coder-1.5b-q4] [--steps 40] [--sequences 1,2,4]

From 8 sequences llama.cpp multiplies K-quant weights with its tiled kernels (cheaper per row, other numbers);
``GGML_CPU_TILED_MM=0`` turns them off, as poccheck's ``--parallel`` help says.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROMPT = b"Q: A line made 400 parts and scrapped 12. How many are good? Think step by step.\nA:"


def child(model: str, repack: bool, steps: int, sequences: list[int]) -> None:
    import llama_cpp

    from poccheck import models
    from poccheck.backends.base import default_threads
    from poccheck.backends.llama_cpp import weight_repacking

    lib = llama_cpp
    with weight_repacking(lib, repack):
        llm = llama_cpp.Llama(models.resolve(model).path, n_ctx=512, n_threads=default_threads(), verbose=False)
    params = lib.llama_context_default_params()
    most = max(sequences)
    params.n_ctx, params.n_batch, params.n_seq_max, params.kv_unified = 512 * most, 512, most, True
    params.n_threads = params.n_threads_batch = default_threads()
    params.no_perf = True
    ctx = lib.llama_init_from_model(llm.model, params)
    prompt = llm.tokenize(PROMPT)
    found = {}
    for n in sequences:
        lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
        batch = lib.llama_batch_init(512, 0, most)
        batch.n_tokens = 0
        for pos, token in enumerate(prompt):
            add(batch, token, pos, list(range(n)), pos == len(prompt) - 1)
        if lib.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed on the prompt")
        started = time.perf_counter()
        for step in range(steps):
            batch.n_tokens = 0
            for seq in range(n):
                add(batch, prompt[-1], len(prompt) + step, [seq], True)
            if lib.llama_decode(ctx, batch) != 0:
                raise SystemExit("llama_decode failed")
        found[n] = (time.perf_counter() - started) / steps
        lib.llama_batch_free(batch)
    lib.llama_free(ctx)
    print(json.dumps({"step_s": found, "engine": lib.llama_print_system_info().decode().strip()}))


def add(batch: Any, token: int, pos: int, seqs: list[int], logits: bool) -> None:
    """Append one token to a llama_batch, in the sequences given, asking for its logits or not."""
    i = batch.n_tokens
    batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, pos, len(seqs), logits
    for j, seq in enumerate(seqs):
        batch.seq_id[i][j] = seq
    batch.n_tokens += 1


def bandwidth() -> float:
    import numpy as np

    data = np.ones(256 * 2**20 // 8)
    out = np.empty_like(data)
    best = min(_timed(lambda: np.copyto(out, data)) for _ in range(5))
    return 2 * data.nbytes / best  # read and write


def _timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-q4")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--sequences", type=lambda text: [int(n) for n in text.split(",")], default=[1, 2, 4],
                        help="the N of each row, comma-separated; the first is what costs compare to")  # fmt: skip
    parser.add_argument("--child", choices=["0", "1"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.model, args.child == "1", args.steps, args.sequences)
        return
    from poccheck import models

    size = os.path.getsize(models.resolve(args.model).path)
    rate = bandwidth()
    print(f"{args.model}: {size / 2**20:.0f} MiB; copy bandwidth {rate / 1e9:.1f} GB/s; "
          f"reading the weights once takes {size / rate * 1000:.1f} ms")  # fmt: skip
    for repack in ("0", "1"):
        command = [sys.executable, __file__, "--model", args.model, "--steps", str(args.steps), "--child", repack,
                   "--sequences", ",".join(map(str, args.sequences))]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        steps = {int(n): s for n, s in result["step_s"].items()}
        first = args.sequences[0]
        if repack == "0":
            print(f"engine: {result['engine']}")
        for n, seconds in sorted(steps.items()):
            print(f"repack={'on ' if repack == '1' else 'off'} N={n}: {seconds * 1000:6.1f} ms/step, "
                  f"{n / seconds:6.1f} tokens/s, step cost {seconds / steps[first]:.2f}x N={first}")  # fmt: skip


if __name__ == "__main__":
    main()
