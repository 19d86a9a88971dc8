"""Which rows of a decode step give a sequence the numbers it gets alone, with llama.cpp's weights repacked and not.

poccheck loads weights without llama.cpp's CPU repacking (``LlamaSettings.repack_weights``) because repacked
kernels give a token other numbers by its place in the batch; repacked steps are faster (benchmarks/decode_step.py),
so this maps where the numbers move. Each setting runs in its own process: sixteen short prompts are evaluated,
each in its own decode and its own sequence, as poccheck's backend does (KV cache not unified); then single decode
steps feed one token to each of N sequences with consecutive ids, one of them (``--probe``) at every row in turn,
and compare its next-token logits with those it gets decoded alone. The ids are consecutive because llama.cpp
puts only such sequences in one micro-batch when the cache is not unified (``split_equal``: a step over
sequences 1, 0 is two decodes of one row), and poccheck's steps are laid out so. Printed per setting and N: the
rows where they are the same bit for bit, the largest difference elsewhere, and the rows where they are the same as
at row 0 of the first N (whether the probe's placements agree with each other where they differ from it alone).

    python benchmarks/repack_rows.py [--models qwen2.5-coder-1.5b-q4 ...] [--rows 2,4,5,8] [--probe 8]
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

from decode_step import add  # noqa: E402

SEQUENCES = 16


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
            add(batch, token, pos, [seq], pos == len(prompt) - 1)
        if lib.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed on a prompt")

    def step(order: list[int]) -> Any:
        """The probe's next-token logits from one step over the sequences in this row order; the step's cells
        are removed again, so every step starts from the same cache."""
        batch.n_tokens = 0
        for seq in order:
            add(batch, prompts[seq][-1], len(prompts[seq]), [seq], True)
        if lib.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed on a step")
        logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, order.index(probe)), shape=(vocab,)).copy()
        for seq in order:
            lib.llama_memory_seq_rm(memory, seq, len(prompts[seq]), -1)
        return logits

    alone = step([probe])
    placed = {n: [step(list(range(probe - row, probe - row + n))) for row in range(n)] for n in sizes}
    first = placed[sizes[0]][0]  # are the probe's placements the same as each other, where not as alone?
    found = {n: [float(np.abs(logits - alone).max()) for logits in rows] for n, rows in placed.items()}
    among = {n: [float(np.abs(logits - first).max()) for logits in rows] for n, rows in placed.items()}
    lib.llama_batch_free(batch)
    lib.llama_free(ctx)
    print(json.dumps({"alone": found, "first": among}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["qwen2.5-coder-1.5b-q4"])
    parser.add_argument("--rows", type=lambda text: [int(n) for n in text.split(",")], default=[2, 4, 5, 8])
    parser.add_argument("--probe", type=int, default=SEQUENCES // 2, help="the sequence moved between rows")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    most = max(args.rows)
    if not most - 1 <= args.probe <= SEQUENCES - most:
        parser.error(f"--probe: from {most - 1} to {SEQUENCES - most} for steps of up to {most} rows")
    if args.child is not None:
        child(args.child[0], args.child[1] == "1", args.rows, args.probe)
        return
    from poccheck.backends.llama_cpp import system_info

    print(f"engine: {system_info()}")
    first = f"N={args.rows[0]}, row 0"
    for model in args.models:
        for repack in ("0", "1"):
            command = [sys.executable, __file__, "--child", model, repack, "--rows", ",".join(map(str, args.rows)),
                       "--probe", str(args.probe)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            for n, rows in sorted((int(n), rows) for n, rows in result["alone"].items()):
                same = [row for row, diff in enumerate(rows) if diff == 0.0]
                as_first = [row for row, diff in enumerate(result["first"][str(n)]) if diff == 0.0]
                print(f"{model} repack={'on ' if repack == '1' else 'off'} N={n}: same as alone at rows "
                      f"{same or 'none'} of {n}, elsewhere up to {max(rows):.6f} in a logit; same as at "
                      f"{first} at rows {as_first or 'none'}")  # fmt: skip


if __name__ == "__main__":
    main()
