"""The straightforward way to score choices on llama.cpp: each choice as its own full sequence (prompt and choice
decoded again for every choice), with logits asked for only at the positions that predict a choice token. It is
the oracle the tests compare the shared-prefix scorer against and the reference ``benchmarks/mc_throughput.py``
measures it against, so that the speed-up counts what sharing the prompt and packing items buy, not logits nobody
reads; poccheck never uses it to assess models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import logsumexp

from poccheck.backends.llama_cpp import weight_repacking


class NaiveChoiceScorer:
    def __init__(
        self, model_path: str, n_ctx: int = 512, n_threads: int | None = None, repack_weights: bool = False
    ) -> None:
        import llama_cpp

        with weight_repacking(llama_cpp, repack_weights):  # as the backend it checks (LlamaSettings)
            self.llm = llama_cpp.Llama(
                model_path=model_path,
                n_ctx=n_ctx,
                n_batch=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                verbose=False,
            )
        self._lib: Any = llama_cpp
        self._n_ctx = n_ctx
        self._n_vocab = self.llm.n_vocab()
        self._batch = llama_cpp.llama_batch_init(n_ctx, 0, 1)

    def score(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        prompt_tokens = self.llm.tokenize(prompt.encode(), add_bos=True, special=False)
        return [self._score_one(prompt_tokens, self._tokens(c)) for c in continuations]

    def _tokens(self, continuation: str) -> list[int]:
        return self.llm.tokenize(continuation.encode(), add_bos=False, special=False)

    def _score_one(self, prompt: list[int], continuation: list[int]) -> float:
        sequence = prompt + continuation
        if len(sequence) > self._n_ctx:
            raise ValueError(f"prompt and choice need {len(sequence)} tokens; the reference holds {self._n_ctx}")
        lib, ctx, batch = self._lib, self.llm.ctx, self._batch
        lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
        predictors = range(len(prompt) - 1, len(sequence) - 1)  # row i predicts token i + 1
        for i, token in enumerate(sequence):
            batch.token[i] = token
            batch.pos[i] = i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1 if i in predictors else 0
        batch.n_tokens = len(sequence)
        if lib.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        rows = np.stack(
            [np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, i), shape=(self._n_vocab,)) for i in predictors]
        ).astype(np.float64)
        log_probs = rows - logsumexp(rows, axis=1, keepdims=True)
        return float(sum(log_probs[k, token] for k, token in enumerate(continuation)))

    def close(self) -> None:
        self._lib.llama_batch_free(self._batch)
        self.llm.close()
