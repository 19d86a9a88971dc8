"""Which rows of a decode step give a sequence the numbers it gets alone, with llama.cpp's weights repacked and not.

poccheck loads weights without llama.cpp's CPU repacking (``LlamaSettings.repack_weights``) because repacked
kernels give a token other numbers by its place in the batch; repacked steps are faster (benchmarks/decode_step.py),
so this maps where the numbers move. Each setting runs in its own process: eight short prompts are evaluated, each
in its own decode and its own sequence, as poccheck's backend does (KV cache not unified); then single decode steps
feed one token to each of N sequences, with one sequence (``--probe``) at every row in turn, and compare its
next-token logits with those it gets decoded alone. Printed per setting and N: the rows where they are the same
bit for bit, and the largest difference elsewhere.

    python benchmarks/repack_rows.py [--models qwen2.5-coder-1.5b-q4 ...] [--rows 2,4,5,7] [--probe 0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEQUENCES = 8


def child(model: str, repack: bool, sizes: list[int], probe: int) -> None:
    import llama_cpp as lib
    import numpy as np

    from poccheck import models
    from poccheck.backends.base import default_threads
    from poccheck.backends.llama_cpp import weight_repacking

    with weight_repacking(lib, repack):
        llm = lib.Llama(models.resolve(model).path, n_ctx=512, n_threads=default_threads(), verbose=False)
    params = lib.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_seq_max, params.kv_unified = 512 * SEQUENCES, 512, SEQUENCES, False
    params.n_threads = params.n_threads_batch = default_threads()
    ctx = lib.llama_init_from_model(llm.model, params)
    memory = lib.llama_get_memory(ctx)
    vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(llm.model))
    prompts = [
        llm.tokenize(f"Q: Line L{i} made {100 * i + 7} parts and scrapped {i + 3}. How many are good?\nA:".encode())
        for i in range(SEQUENCES)
    ]
    batch = lib.llama_batch_init(512, 0, SEQUENCES)
    for seq, prompt in enumerate(prompts):
        batch.n_tokens = 0
        for pos, token in enumerate(prompt):
            add(batch, token, pos, seq, pos == len(prompt) - 1)
        if lib.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed on a prompt")

    def step(order: list[int]) -> Any:
        """The probe's next-token logits from one step over the sequences in this row order; the step's cells
        are removed again, so every step starts from the same cache."""
        batch.n_tokens = 0
        for seq in order:
            add(batch, prompts[seq][-1], len(prompts[seq]), seq, True)
        if lib.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed on a step")
        logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, order.index(probe)), shape=(vocab,)).copy()
        for seq in order:
            lib.llama_memory_seq_rm(memory, seq, len(prompts[seq]), -1)
        return logits

    alone = step([probe])
    found: dict[int, list[float]] = {}
    for n in sizes:
        others = [seq for seq in range(SEQUENCES) if seq != probe][: n - 1]
        found[n] = [float(np.abs(step(others[:row] + [probe] + others[row:]) - alone).max()) for row in range(n)]
    lib.llama_batch_free(batch)
    lib.llama_free(ctx)
    print(json.dumps(found))


def add(batch: Any, token: int, pos: int, seq: int, logits: bool) -> None:
    """Append one token of one sequence to a llama_batch, asking for its logits or not."""
    i = batch.n_tokens
    batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, pos, 1, logits
    batch.seq_id[i][0] = seq
    batch.n_tokens += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["qwen2.5-coder-1.5b-q4"])
    parser.add_argument("--rows", type=lambda text: [int(n) for n in text.split(",")], default=[2, 4, 5, 7])
    parser.add_argument("--probe", type=int, default=0, help=f"the sequence moved between rows (0 to {SEQUENCES - 1})")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if any(n > SEQUENCES for n in args.rows):
        parser.error(f"--rows: at most {SEQUENCES}")
    if not 0 <= args.probe < SEQUENCES:
        parser.error(f"--probe: 0 to {SEQUENCES - 1}")
    if args.child is not None:
        child(args.child[0], args.child[1] == "1", args.rows, args.probe)
        return
    from poccheck.backends.llama_cpp import system_info

    print(f"engine: {system_info()}")
    for model in args.models:
        for repack in ("0", "1"):
            command = [sys.executable, __file__, "--child", model, repack, "--rows", ",".join(map(str, args.rows)),
                       "--probe", str(args.probe)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            found = {int(n): rows for n, rows in json.loads(done.stdout.strip().splitlines()[-1]).items()}
            for n, rows in sorted(found.items()):
                same = [row for row, diff in enumerate(rows) if diff == 0.0]
                print(f"{model} repack={'on ' if repack == '1' else 'off'} N={n}: same as alone at rows "
                      f"{same or 'none'} of {n}; elsewhere up to {max(rows):.6f} in a logit")  # fmt: skip


if __name__ == "__main__":
    main()
