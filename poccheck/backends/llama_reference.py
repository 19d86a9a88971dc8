"""The straightforward way to score choices on llama.cpp: each choice as its own full sequence, logits at
every position. It is the oracle the tests compare the shared-prefix scorer against and the baseline that
``benchmarks/mc_throughput.py`` measures it against; poccheck never uses it to assess models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import logsumexp


class NaiveChoiceScorer:
    def __init__(
        self, model_path: str, n_ctx: int = 512, n_threads: int | None = None, repack_weights: bool = False
    ) -> None:
        import llama_cpp

        from poccheck.backends.llama_cpp import weight_repacking

        with weight_repacking(llama_cpp, repack_weights):  # as the backend it checks (LlamaSettings)
            self.llm = llama_cpp.Llama(
                model_path=model_path,
                n_ctx=n_ctx,
                n_batch=n_ctx,
                logits_all=True,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                verbose=False,
            )

    def score(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        prompt_tokens = self.llm.tokenize(prompt.encode(), add_bos=True, special=False)
        totals = []
        for continuation in continuations:
            tokens = self.llm.tokenize(continuation.encode(), add_bos=False, special=False)
            self.llm.reset()  # type: ignore[no-untyped-call]
            self.llm.eval(prompt_tokens + tokens)
            rows = np.asarray(self.llm.scores[len(prompt_tokens) - 1 : len(prompt_tokens) + len(tokens) - 1])
            log_probs = rows - logsumexp(rows, axis=1, keepdims=True)
            totals.append(float(sum(log_probs[i, t] for i, t in enumerate(tokens))))
        return totals

    def close(self) -> None:
        self.llm.close()
