"""llama.cpp backend (llama-cpp-python): greedy generation and shared-prefix multiple-choice scoring.

Multiple-choice scoring follows llama.cpp's own ``perplexity --multiple-choice`` tool: the prompt's tokens
are placed in the batch once, tagged with every choice's sequence id, each choice's tokens follow under its
own sequence id, and logits are requested only at the positions that predict a choice token. Several items
are packed into one decode when they fit. Generation runs its own loop over ``llama_decode`` so it can
time the first token and stop on strings without the high-level API's overhead.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import signal
import threading
import time
import types
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poccheck.adapters import GGUF_ADAPTER
from poccheck.backends.base import (
    LOOP_RULE,
    ChoiceRequest,
    GenerationRequest,
    default_threads,
    looping,
    penalise_repeats,
)
from poccheck.backends.chat import ChatPrompting, ChatTemplate, chat_tokens
from poccheck.errors import BackendError, ModelError
from poccheck.records import ChoiceScores, Completion, FinishReason, ModelInfo, Turn


@dataclass(frozen=True)
class LlamaSettings:
    """Engine settings; those that can change outputs are part of each result's key."""

    n_ctx: int = 4096
    n_batch: int = 2048
    n_ubatch: int = 512
    n_seq_max: int = 64
    n_threads: int | None = None
    flash_attn: bool = False
    # llama.cpp repacks some quantised weights (Q4_K among them) into interleaved blocks for its CPU matrix
    # kernels. Those kernels give a token different numbers depending on where it falls in its batch (measured on
    # the bundled model: up to 1.1 in a logit), so an item's answer would depend on the items packed with it, on
    # where a resumed run restarts and on a server's prompt-prefix reuse. Off (and with the cell alignment in
    # score_choices), an item's numbers are its own. Measured on the bundled model: scoring 0.96x and generation
    # 1.03x the repacked time, within noise (benchmarks/batch_invariance.py).
    repack_weights: bool = False
    # Opt-in (--repacked-decode): generations decoded REPACK_ROWS or more at a time use a second copy of the
    # weights, repacked, with every decode step padded to a multiple of REPACK_ROWS rows: each row then takes the
    # repacked block kernel whatever is decoded beside it, so an output is the same at any such N, but not always
    # the item's alone. The 1.5B ladder model's decode step of 4 sequences (benchmarks/decode_step.py): 1.26x as
    # fast on one AMD EPYC session's machine, 1.0x on another's; it adds the repacked weights to memory.
    repacked_decode: bool = False
    stop_loops: bool = True  # end a generation that repeats itself (base.LOOP_RULE)


@dataclass
class _Packed:
    """One item's share of a multi-item decode."""

    request_index: int
    prompt: list[int]
    continuations: list[list[int]]
    first_seq: int
    prompt_row: int = -1
    continuation_rows: list[list[int]] | None = None


_LOG_CALLBACK: Any = None


def system_info() -> str:
    """llama.cpp's own account of the instruction sets and kernels it was built with (``AVX512 = 1 | ...``)."""
    import llama_cpp

    return bytes(llama_cpp.llama_print_system_info()).decode("ascii", "replace")


def check_engine_build(info: str | None = None) -> str:
    """Refuse a llama.cpp built with llamafile's sgemm, which the README's set-up builds without; returns the
    system info. With it compiled in, on AVX-512 a row's numbers depend on how many rows share its matrix product
    (measured on the bundled model: a choice moved by up to 0.0049 nats with the items packed beside it), so an
    item's numbers would not be its own. The set-up calls this, so a cached wheel built otherwise cannot slip in."""
    info = system_info() if info is None else info
    if "LLAMAFILE = 1" in info:
        raise ModelError(
            f"this llama-cpp-python was built with llamafile's sgemm ({info.strip()})",
            "rebuild it as the README's set-up does: CMAKE_ARGS='-DGGML_LLAMAFILE=OFF' pip install --no-cache-dir "
            "--force-reinstall --no-deps llama-cpp-python (or run make setup)",
        )
    return info


def cell_alignment(system_info: str) -> int:
    """Items packed into one decode start at a KV-cache cell that is a multiple of this.

    llama.cpp sums attention over every cell in SIMD lanes and quantises activations to 8 bits after, so an item
    whose cells sit at another offset from the lanes gets other numbers (measured on the bundled model: up to
    0.74 nats on a choice). Aligned to the lane width, the other items' masked cells add exact zeros in the same
    lanes, and an item scores bit for bit as it does alone. The lanes are 16 floats wide with AVX-512, 8 with AVX2
    (and NEON's widest); each filler cell costs a token's compute, so no wider than needed."""
    return 16 if "AVX512 = 1" in system_info else 8


_MODEL_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def weight_repacking(llama_cpp: Any, enabled: bool) -> Iterator[None]:
    """Models loaded inside this block use (or skip) llama.cpp's weight repacking.

    llama-cpp-python's ``Llama`` does not expose ``use_extra_bufts``: it starts from
    ``llama_model_default_params()``, so that function is wrapped for the duration."""
    module = llama_cpp.llama_cpp
    if "use_extra_bufts" not in {name for name, *_ in module.llama_model_params._fields_}:
        raise ModelError(
            "this llama-cpp-python cannot choose whether llama.cpp repacks weights (no use_extra_bufts)",
            "pip install --upgrade llama-cpp-python (the README's set-up installs a version that can)",
        )
    default = module.llama_model_default_params

    def params() -> Any:
        chosen = default()
        chosen.use_extra_bufts = enabled
        return chosen

    with _MODEL_PARAMS_LOCK:
        module.llama_model_default_params = params
        try:
            yield
        finally:
            module.llama_model_default_params = default


def _silence_llama_logs(llama_cpp: Any) -> None:
    """Route llama.cpp's log lines to nowhere (poccheck owns the terminal); POCCHECK_DEBUG=1 keeps them."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is not None or os.environ.get("POCCHECK_DEBUG"):
        return

    def discard(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        return None

    _LOG_CALLBACK = llama_cpp.llama_log_callback(discard)  # keep a reference: llama.cpp holds only the C pointer
    llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
    _defer_interrupts_in(discard.__code__)


def _defer_interrupts_in(code: Any) -> None:
    """Ctrl-C must not land inside a callback that C code (llama.cpp) makes into Python: ctypes prints the
    KeyboardInterrupt as "Exception ignored" and drops it, so the run would carry on. A SIGINT handled while
    that callback runs is raised again a moment later, back in ordinary Python code."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return  # someone else handles Ctrl-C

    def on_sigint(signum: int, frame: types.FrameType | None) -> None:
        if frame is not None and frame.f_code is code:
            threading.Timer(0.05, signal.raise_signal, (signal.SIGINT,)).start()
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)


@dataclass
class _Sequence:
    """One request being decoded by :meth:`LlamaCppBackend.generate_many`."""

    index: int
    request: GenerationRequest
    prompt: list[int]
    max_tokens: int
    start: float
    held: list[int]  # the tokens in this sequence's KV cells
    reused: int = 0  # prompt tokens whose cells were kept from the previous prompt
    generated: list[int] = field(default_factory=list)
    pieces: bytearray = field(default_factory=bytearray)
    text: str = ""
    logprob_sum: float = 0.0
    logprob_count: int = 0
    ttft: float = 0.0
    finish: FinishReason = "length"
    finished: bool = False
    next_token: int = -1
    seen: np.ndarray[Any, np.dtype[np.bool_]] | None = None  # tokens in the context, for a repetition penalty

    @property
    def longest_stop(self) -> int:
        return max((len(s) for s in self.request.stop), default=0)

    def completion(self) -> Completion:
        return Completion(
            text=self.text,
            prompt_tokens=len(self.prompt),
            completion_tokens=len(self.generated),
            seconds=time.perf_counter() - self.start,
            ttft=self.ttft,
            # the context, not the token budget, ended it: the budget was cut to what the context had left
            finish_reason="context"
            if self.finish == "length" and self.max_tokens < self.request.max_tokens
            else self.finish,
            mean_logprob=self.logprob_sum / self.logprob_count if self.logprob_count else None,
        )


# llama.cpp's CPU backend multiplies K-quant weights (Q4_K, Q6_K, ...) by 8 or more activation rows with a tiled
# kernel (ggml-cpu/tiled, "profitable at rows >= 8") that rounds differently from the dot products it uses for
# fewer rows. Measured on the bundled model (20 chains of thought, 96 tokens, AMD EPYC AVX-512): 9 outputs of 20
# differ from the item alone at 8 sequences decoded together, 0 at 4 to 7, and 0 at 8 and 16 with the tiled
# kernels off. The tiled kernel gives each row its own numbers whatever the rows beside it (with
# GGML_CPU_TILED_MM_FORCE=1, which takes it for every row count: 0 of 20 differ at 1, 4, 8 and 16), so from 8
# sequences on every decode step is padded to at least TILED_ROWS rows: an output is then the same at any N >= 8
# (benchmarks/generation_throughput.py --parallel; README: generation speed).
TILED_ROWS = 8

# llama.cpp (repack.cpp, forward_mul_mat) multiplies repacked weights by a product's activation rows in blocks of
# four (gemm) and by the rows left over one at a time (gemv), which round otherwise; every block row gets the same
# numbers whatever its neighbours (benchmarks/repack_rows.py). So decode steps with repacked weights are padded to a
# multiple of REPACK_ROWS rows, and a kept prompt prefix leaves a multiple of it to evaluate in its micro-batch.
REPACK_ROWS = 4


@functools.cache
def tiled_kernels() -> bool:
    """Whether llama.cpp's tiled K-quant kernels are on in this process: read once, as llama.cpp reads
    ``GGML_CPU_TILED_MM``."""
    return tiled_setting(os.environ.get("GGML_CPU_TILED_MM"))


def tiled_setting(value: str | None) -> bool:
    """llama.cpp's reading of ``GGML_CPU_TILED_MM``: on when unset or a number other than 0 (C's ``atoi``)."""
    if value is None:
        return True
    digits = re.match(r"\s*[+-]?\d+", value)  # atoi: leading digits, else 0
    return digits is not None and int(digits.group()) != 0


def padded_rows(live: Iterable[int], slots: int, minimum: int = TILED_ROWS, multiple: int = 1) -> list[int]:
    """The sequence ids of a padded decode step: every live one, at least ``minimum`` and a multiple of
    ``multiple`` (``slots`` is one), and consecutive, since llama.cpp splits a batch over separate KV streams
    wherever the ids in it stop counting up by one (``split_equal``), and a part of fewer rows would take other
    kernels."""
    ids = sorted(live)
    low, high = ids[0], ids[-1] + 1
    width = max(minimum, -(-(high - low) // multiple) * multiple)
    if width > high - low:
        low = max(0, min(low, slots - width))
        high = low + width
    return list(range(low, high))


@dataclass(frozen=True)
class StepShape:
    """How :meth:`LlamaCppBackend.generate_many` pads its decode steps at a given number in flight."""

    minimum: int = 1  # rows in every step
    multiple: int = 1  # every step's rows are a multiple of this: REPACK_ROWS on repacked weights

    @property
    def pads(self) -> bool:
        return self.minimum > 1 or self.multiple > 1

    @property
    def repacked(self) -> bool:
        return self.multiple == REPACK_ROWS

    def slots(self, in_flight: int) -> int:
        """Sequences in the context: room for every live one and the padding."""
        return max(self.minimum, -(-in_flight // self.multiple) * self.multiple)


@dataclass
class _Parallel:
    """generate_many's context: its batch, sequences, and the step shape it was made for."""

    ctx: Any
    batch: Any
    slots: int
    shape: StepShape


class LlamaCppBackend(ChatPrompting):
    """A GGUF model loaded in-process through llama-cpp-python."""

    # One item per call from the runner: packing several into a decode bought nothing on CPU (CommonsenseQA,
    # bundled model: 7.21 items/s one at a time, 6.71 sixteen at a time, benchmarks/mc_throughput.py), and each
    # item is then saved as soon as it is scored. score_choices still packs what it is given.
    choice_batch = 1

    def batch_key(self, parallel: int) -> dict[str, object]:
        """Generations decoded together each keep a KV stream of their own, and below ``REPACK_ROWS`` sequences
        (or with ``repacked_decode`` off, below ``TILED_ROWS``) every row goes through the same kernels as alone:
        an output is what the item gives alone (tests/test_generation_batching.py), so the batch size is not part
        of the results' key. From ``REPACK_ROWS`` on, the weights are repacked and every step has a multiple of
        ``REPACK_ROWS`` rows; from ``TILED_ROWS`` on (or above ``REPACK_ROWS`` with repacked weights), unless the
        tiled kernels are off, every step has at least ``TILED_ROWS`` rows and goes through llama.cpp's tiled
        kernels. Outputs are then the same at any N of the same shape but can differ from the item alone, so the
        shape is keyed."""
        shape = self.step_shape(parallel)
        key: dict[str, object] = {}
        if shape.repacked:
            key["repacked_decode"] = REPACK_ROWS
        if shape.minimum >= TILED_ROWS:
            key["tiled_decode"] = TILED_ROWS
        return key

    def step_shape(self, parallel: int) -> StepShape:
        """How :meth:`generate_many` pads each decode step with ``parallel`` generations in flight."""
        repacked = parallel >= REPACK_ROWS and (self._settings.repacked_decode or self._settings.repack_weights)
        tiled = tiled_kernels() and (parallel >= TILED_ROWS or (repacked and parallel > REPACK_ROWS))
        if repacked:
            return StepShape(TILED_ROWS if tiled else REPACK_ROWS, REPACK_ROWS)
        return StepShape(TILED_ROWS, 1) if tiled else StepShape()

    def __init__(self, info: ModelInfo, settings: LlamaSettings | None = None) -> None:
        import llama_cpp

        _silence_llama_logs(llama_cpp)
        self._lib = llama_cpp
        self.info = info
        self._settings = settings or LlamaSettings()
        threads = self._settings.n_threads or default_threads()
        try:
            with weight_repacking(llama_cpp, self._settings.repack_weights):
                self._llm = llama_cpp.Llama(
                    model_path=info.path,
                    n_ctx=self._settings.n_ctx,
                    n_batch=min(self._settings.n_batch, self._settings.n_ctx),
                    n_ubatch=self._settings.n_ubatch,
                    n_threads=threads,
                    n_threads_batch=threads,
                    logits_all=False,
                    flash_attn=self._settings.flash_attn,
                    verbose=False,
                    lora_path=str(Path(info.adapter) / GGUF_ADAPTER) if info.adapter else None,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(
                f"llama.cpp could not load {info.path}: {exc}",
                "check that the file is a complete GGUF model (re-download or re-assemble it)",
            ) from exc
        self._n_vocab = self._llm.n_vocab()
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self._n_ctx = self._llm.n_ctx()
        # A second context for scoring: many sequences sharing one unified KV buffer.
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self._settings.n_ctx
        params.n_batch = self._settings.n_batch
        params.n_ubatch = self._settings.n_ubatch
        params.n_seq_max = min(
            self._settings.n_seq_max, self._settings.n_batch, llama_cpp.llama_max_parallel_sequences()
        )
        params.kv_unified = True
        # The same attention kernel as the generation context, so scores and generations agree.
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if self._settings.flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        self._score_ctx = llama_cpp.llama_init_from_model(self._llm.model, params)
        if not self._score_ctx:
            self._llm.close()
            raise ModelError(f"llama.cpp could not create a scoring context for {info.path}")
        adapter = getattr(self._llm, "_lora_adapter", None)
        if adapter is not None:  # the fine-tuned adapter applies to the scoring context too
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
            if llama_cpp.llama_set_adapters_lora(self._score_ctx, adapters, 1, (ctypes.c_float * 1)(1.0)):
                self._llm.close()
                raise ModelError(f"llama.cpp could not apply the adapter in {info.adapter}")
        self._score_seq_max = int(params.n_seq_max)
        if self._score_seq_max < 3:  # two choices and the alignment filler's own sequence
            self._llm.close()
            raise ModelError(f"llama.cpp offers {self._score_seq_max} sequences per context; scoring needs 3")
        self._alignment = cell_alignment(system_info())
        self._score_n_batch = int(llama_cpp.llama_n_batch(self._score_ctx))
        self._score_n_ctx = int(llama_cpp.llama_n_ctx(self._score_ctx))
        self._batch = llama_cpp.llama_batch_init(self._score_n_batch, 0, self._score_seq_max)
        self._gen_batch = llama_cpp.llama_batch_init(self._llm.n_batch, 0, 1)
        self._chat = self._chat_template()
        self._parallel: _Parallel | None = None  # generate_many's context
        self._decode_model: tuple[Any, Any] | None = None  # the repacked weights and their adapter, once loaded
        self._held: list[int] = []  # the tokens in the generation context's KV cells (sequence 0)
        self._held_parallel: dict[int, list[int]] = {}  # the same for each of generate_many's sequences
        self._closed = False

    # ------------------------------------------------------------------ helpers

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        """Tokens of ``text`` as plain text: a special token's string in it stays characters."""
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False))

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return bytes(self._lib.llama_vocab_get_text(self._vocab, token) or b"").decode("utf-8", "replace")

    def _chat_template(self) -> ChatTemplate | None:
        """The model's chat template from its GGUF metadata (``tokenizer.chat_template``), if it has one."""
        source = self._llm.metadata.get("tokenizer.chat_template")
        if not source:
            return None
        bos = self._token_text(self._lib.llama_vocab_bos(self._vocab))
        eos = self._token_text(self._lib.llama_vocab_eos(self._vocab))
        return ChatTemplate(source, self.info.name, bos, eos)

    def prompt_tokens(self, prompt: str, turns: tuple[Turn, ...] = ()) -> list[int]:
        """The prompt's tokens, beginning-of-sequence token included once where the model uses one.

        Chat turns go through the model's template: its own text is tokenized with special tokens parsed, the
        turns' contents (task text) as plain text."""
        if not turns:
            return self.tokenize(prompt, add_bos=True)
        if self._chat is None:
            raise BackendError(f"{self.info.name} has no chat template")
        bos = self._lib.llama_vocab_bos(self._vocab)
        uses_bos = bool(self._lib.llama_vocab_get_add_bos(self._vocab)) and bos >= 0
        return chat_tokens(self._chat.render(turns), self._tokenize_piece, bos if uses_bos else None)

    def _tokenize_piece(self, text: str, special: bool) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def settings(self) -> dict[str, object]:
        return {
            "backend": "llama.cpp",
            "n_ctx": self._settings.n_ctx,
            "flash_attn": self._settings.flash_attn,
            "repack_weights": self._settings.repack_weights,
            "decoding": "greedy",
            "stop_loops": LOOP_RULE if self._settings.stop_loops else None,
            **({} if tiled_kernels() else {"tiled_kernels": False}),  # other numbers: other results
        }

    def peak_vram(self) -> int | None:
        return None  # this build runs on the CPU

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._free_parallel()
        if self._decode_model is not None:
            model, adapter = self._decode_model
            if adapter is not None:
                self._lib.llama_adapter_lora_free(adapter)
            self._lib.llama_model_free(model)
            self._decode_model = None
        self._lib.llama_batch_free(self._batch)
        self._lib.llama_batch_free(self._gen_batch)
        self._lib.llama_free(self._score_ctx)
        self._llm.close()

    def __enter__(self) -> LlamaCppBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _logits_row(self, ctx: Any, index: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        pointer = self._lib.llama_get_logits_ith(ctx, index)
        if not pointer:
            raise BackendError(f"llama.cpp returned no logits for batch row {index}")
        return np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))

    def _log_softmax_at(self, ctx: Any, row: int, token: int) -> float:
        logits = self._logits_row(ctx, row)
        top = float(logits.max())
        return float(logits[token]) - top - float(np.log(np.exp(logits - top).sum()))

    # ------------------------------------------------------------------ multiple choice

    def score_choices(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceScores]:
        """Score every request, packing as many items into each decode as fit."""
        packed: list[_Packed] = []
        for index, request in enumerate(requests):
            prompt = self.prompt_tokens(request.prompt, request.turns)
            continuations = [self.tokenize(c, add_bos=False) for c in request.continuations]
            if any(not c for c in continuations):
                raise BackendError("a choice tokenizes to nothing; choices must contain text")
            longest = len(prompt) + max(len(c) for c in continuations)
            if longest > self._score_n_ctx:
                raise BackendError(f"prompt and choice need {longest} tokens but the context holds {self._score_n_ctx}")
            packed.append(_Packed(index, prompt, continuations, 0))
        results: list[ChoiceScores | None] = [None] * len(requests)
        group: list[_Packed] = []
        used_tokens = 0
        used_seqs = 0
        item_seqs = self._score_seq_max - 1  # the last sequence id holds the alignment filler
        for item in packed:
            size = len(item.prompt) + sum(len(c) for c in item.continuations)
            seqs = len(item.continuations)
            start = used_tokens + -used_tokens % self._alignment
            if group and (start + size > self._score_n_batch or used_seqs + seqs > item_seqs):
                self._score_group(group, results)
                group, used_tokens, used_seqs, start = [], 0, 0, 0
            if size > self._score_n_batch or seqs > item_seqs:
                self._score_large(item, results)
                continue
            item.first_seq = used_seqs
            group.append(item)
            used_tokens = start + size
            used_seqs += seqs
        if group:
            self._score_group(group, results)
        return [r for r in results if r is not None]

    def _add(self, position: int, token: int, pos: int, seqs: Sequence[int], logits: bool) -> None:
        batch = self._batch
        batch.token[position] = token
        batch.pos[position] = pos
        batch.n_seq_id[position] = len(seqs)
        for k, seq in enumerate(seqs):
            batch.seq_id[position][k] = seq
        batch.logits[position] = 1 if logits else 0

    def _decode(self, ctx: Any, batch: Any) -> None:
        code = self._lib.llama_decode(ctx, batch)
        if code != 0:
            raise BackendError(f"llama_decode failed with code {code}")

    def _clear(self, ctx: Any) -> None:
        self._lib.llama_memory_clear(self._lib.llama_get_memory(ctx), True)

    def _score_group(self, group: list[_Packed], results: list[ChoiceScores | None]) -> None:
        start = time.perf_counter()
        self._clear(self._score_ctx)
        n = 0
        filler, filled = self._score_seq_max - 1, 0
        for item in group:
            while n % self._alignment:  # cells are filled in batch order from 0 after the clear
                self._add(n, item.prompt[0], filled, [filler], False)  # a sequence's positions run on without gaps
                n += 1
                filled += 1
            seqs = list(range(item.first_seq, item.first_seq + len(item.continuations)))
            for pos, token in enumerate(item.prompt):
                last = pos == len(item.prompt) - 1
                self._add(n, token, pos, seqs, last)
                n += 1
            item.prompt_row = n - 1
            item.continuation_rows = []
            for seq, tokens in zip(seqs, item.continuations, strict=True):
                rows = []
                for offset, token in enumerate(tokens):
                    needs_logits = offset < len(tokens) - 1
                    self._add(n, token, len(item.prompt) + offset, [seq], needs_logits)
                    rows.append(n)
                    n += 1
                item.continuation_rows.append(rows)
        self._batch.n_tokens = n
        self._decode(self._score_ctx, self._batch)
        seconds = (time.perf_counter() - start) / len(group)
        for item in group:
            assert item.continuation_rows is not None
            logprobs = []
            for tokens, rows in zip(item.continuations, item.continuation_rows, strict=True):
                # token t of a choice is predicted by the row before it: the prompt's last row for t = 0
                predictors = [item.prompt_row] + rows[:-1]
                logprobs.append(
                    sum(self._log_softmax_at(self._score_ctx, r, t) for r, t in zip(predictors, tokens, strict=True))
                )
            results[item.request_index] = ChoiceScores(
                tuple(logprobs), tuple(len(c) for c in item.continuations), len(item.prompt), seconds
            )

    def _score_large(self, item: _Packed, results: list[ChoiceScores | None]) -> None:
        """An item too big for one decode: decode its prompt once, copy it to each choice's sequence."""
        start = time.perf_counter()
        ctx = self._score_ctx
        self._clear(ctx)
        memory = self._lib.llama_get_memory(ctx)
        n_batch = self._score_n_batch
        for begin in range(0, len(item.prompt), n_batch):
            chunk = item.prompt[begin : begin + n_batch]
            for k, token in enumerate(chunk):
                self._add(k, token, begin + k, [0], begin + k == len(item.prompt) - 1)
            self._batch.n_tokens = len(chunk)
            self._decode(ctx, self._batch)
        first = self._logits_row(ctx, len(item.prompt) - 1 - (len(item.prompt) - 1) // n_batch * n_batch).copy()
        first_lse = float(first.max()) + float(np.log(np.exp(first - first.max()).sum()))
        logprobs = []
        for choice_index, tokens in enumerate(item.continuations):
            seq = 1 + choice_index % max(1, self._score_seq_max - 1)
            self._lib.llama_memory_seq_rm(memory, seq, -1, -1)
            self._lib.llama_memory_seq_cp(memory, 0, seq, -1, -1)
            total = float(first[tokens[0]]) - first_lse
            for begin in range(0, len(tokens) - 1, n_batch):
                chunk = tokens[begin : begin + n_batch]
                for k, token in enumerate(chunk):
                    self._add(k, token, len(item.prompt) + begin + k, [seq], True)
                self._batch.n_tokens = len(chunk)
                self._decode(ctx, self._batch)
                for k in range(len(chunk)):
                    if begin + k + 1 < len(tokens):
                        total += self._log_softmax_at(ctx, k, tokens[begin + k + 1])
            self._lib.llama_memory_seq_rm(memory, seq, -1, -1)
            logprobs.append(total)
        results[item.request_index] = ChoiceScores(
            tuple(logprobs),
            tuple(len(c) for c in item.continuations),
            len(item.prompt),
            time.perf_counter() - start,
        )

    # ------------------------------------------------------------------ generation

    def generate(self, request: GenerationRequest) -> Completion:
        """Greedy decoding with stop strings and a token cap; times the first token."""
        ctx = self._llm.ctx
        batch = self._gen_batch
        try:
            state = self._start_sequence(ctx, batch, 0, 0, request, self._held)
            while not state.finished:
                self._feed(batch, [(0, state)])
                self._decode(ctx, batch)
                self._step(state, self._logits_row(ctx, 0))
        except BackendError:
            self._forget(ctx, [self._held])
            raise
        return state.completion()

    def generate_many(
        self, requests: Sequence[GenerationRequest], parallel: int
    ) -> Iterator[tuple[int, Completion | BackendError]]:
        """Greedy decoding of up to ``parallel`` requests at once (continuous batching): one sequence per request,
        one ``llama_decode`` per step for every live sequence, and a finished sequence's slot refilled with the
        next request. Yields ``(index, result)`` as each request finishes; a request that cannot run (its prompt
        does not fit) yields its BackendError.

        Each sequence keeps its own KV stream (``kv_unified`` off), so it attends over its own cells exactly as it
        would alone, and llama.cpp's CPU kernels (llamafile's off, weights not repacked) give each batch row its
        own numbers: below ``REPACK_ROWS`` sequences (and below ``TILED_ROWS`` with ``repacked_decode`` or the
        tiled kernels off) the outputs are those of :meth:`generate` (tests/test_generation_batching.py). Beyond,
        every step is padded with rows of idle sequences (see :meth:`step_shape`), the last steps of a run
        included, so each row takes the same kernels whatever is decoded beside it and an output does not depend
        on N within a shape (see :meth:`batch_key`). A request's latency is its wall time from its prompt's first
        token to its last token, with ``parallel`` requests in flight."""
        if parallel <= 1:
            for index, request in enumerate(requests):
                try:
                    yield index, self.generate(request)
                except BackendError as exc:
                    yield index, exc
            return
        in_flight = min(parallel, int(self._lib.llama_max_parallel_sequences()))
        context = self._parallel_context(in_flight)
        try:
            yield from self._continuous_batching(context, in_flight, requests)
        except BackendError:
            self._forget(context.ctx, list(self._held_parallel.values()))
            raise

    def _forget(self, ctx: Any, held: list[list[int]]) -> None:
        """After a failed decode, what the KV cells hold is unknown: clear them."""
        self._clear(ctx)
        for tokens in held:
            tokens.clear()

    def _continuous_batching(
        self, context: _Parallel, in_flight: int, requests: Sequence[GenerationRequest]
    ) -> Iterator[tuple[int, Completion | BackendError]]:
        ctx, batch, slots, shape = context.ctx, context.batch, context.slots, context.shape
        pending = list(enumerate(requests))[::-1]
        live: dict[int, _Sequence] = {}
        memory = self._lib.llama_get_memory(ctx)
        while pending or live:
            for seq in range(slots):
                while seq not in live and pending and len(live) < in_flight:
                    index, request = pending.pop()
                    try:
                        live[seq] = self._start_sequence(
                            ctx, batch, seq, index, request, self._held_parallel.setdefault(seq, []), shape.multiple
                        )
                    except BackendError as exc:
                        yield index, exc
                        continue
                    if live[seq].finished:
                        yield index, live.pop(seq).completion()
            if not live:
                continue
            rows = padded_rows(live, slots, shape.minimum, shape.multiple) if shape.pads else sorted(live)
            # an idle sequence holds at most n_ctx - 1 tokens (a budget ends before its last token is fed), so a
            # padding row always has a cell after them
            padding = {seq: self._held_parallel.setdefault(seq, []) for seq in rows if seq not in live}
            fed = [(seq, live[seq] if seq in live else padding[seq]) for seq in rows]
            self._feed(batch, fed, live[min(live)].next_token)
            self._decode(ctx, batch)
            for seq, held in padding.items():  # the padding row's cell goes: the sequence holds what it held
                self._lib.llama_memory_seq_rm(memory, seq, len(held), -1)
            for row, seq in enumerate(rows):
                state = live.get(seq)
                if state is None:
                    continue
                self._step(state, self._logits_row(ctx, row))
                if state.finished:
                    yield state.index, live.pop(seq).completion()

    @staticmethod
    def _feed(batch: Any, rows: Sequence[tuple[int, _Sequence | list[int]]], filler: int = 0) -> None:
        """One batch row per sequence, logits wanted for each: a live sequence's last token, or for an idle one
        (a list: the tokens its cells hold) ``filler`` after what it holds, so that the output matrix too has
        as many rows as the others."""
        for row, (seq, state) in enumerate(rows):
            if isinstance(state, list):
                batch.token[row] = filler
                batch.pos[row] = len(state)
            else:
                state.held.append(state.next_token)
                batch.token[row] = state.next_token
                batch.pos[row] = len(state.prompt) + len(state.generated) - 1
            batch.n_seq_id[row] = 1
            batch.seq_id[row][0] = seq
            batch.logits[row] = 1
        batch.n_tokens = len(rows)

    def _parallel_context(self, in_flight: int) -> _Parallel:
        """The context for :meth:`generate_many`: a sequence for each of ``in_flight`` and for the padding of
        its steps, each with its own KV stream of the generation context's size, on the repacked weights where
        the step shape says so; made on first use and kept until another shape is asked for."""
        lib = self._lib
        shape = self.step_shape(in_flight)
        slots = max(2, shape.slots(in_flight))
        if self._parallel is not None and (self._parallel.slots, self._parallel.shape) == (slots, shape):
            return self._parallel
        self._free_parallel()
        params = lib.llama_context_default_params()
        params.n_ctx = self._n_ctx * slots  # split evenly over the streams: each holds what generate's context does
        params.n_batch = self._llm.n_batch
        params.n_ubatch = self._settings.n_ubatch
        params.n_seq_max = slots
        params.kv_unified = False
        params.flash_attn_type = (
            lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if self._settings.flash_attn else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        threads = self._settings.n_threads or default_threads()
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        model, adapter = self._llm.model, getattr(self._llm, "_lora_adapter", None)
        if shape.repacked and not self._settings.repack_weights:
            model, adapter = self._repacked_model()
        with weight_repacking(lib, self._settings.repack_weights):
            ctx = lib.llama_init_from_model(model, params)
        if not ctx:
            raise BackendError(f"llama.cpp could not create a context for {slots} sequences of {self._n_ctx} tokens")
        if adapter is not None:
            adapters = (lib.llama_adapter_lora_p_ctypes * 1)(adapter)
            if lib.llama_set_adapters_lora(ctx, adapters, 1, (ctypes.c_float * 1)(1.0)):
                lib.llama_free(ctx)
                raise BackendError(f"llama.cpp could not apply the adapter in {self.info.adapter}")
        batch = lib.llama_batch_init(max(self._llm.n_batch, slots), 0, 1)
        self._parallel = _Parallel(ctx, batch, slots, shape)
        self._held_parallel = {}
        return self._parallel

    def _repacked_model(self) -> tuple[Any, Any]:
        """The model's weights loaded a second time, repacked for llama.cpp's CPU block kernels (and the
        fine-tuned adapter on them); loaded on first use, kept until the backend closes."""
        if self._decode_model is None:
            lib = self._lib
            params = lib.llama_model_default_params()
            params.use_extra_bufts = True
            model = lib.llama_model_load_from_file(self.info.path.encode("utf-8"), params)
            if not model:
                raise BackendError(f"llama.cpp could not load {self.info.path} a second time with repacked weights")
            adapter = None
            if self.info.adapter:
                adapter = lib.llama_adapter_lora_init(model, str(Path(self.info.adapter) / GGUF_ADAPTER).encode())
                if not adapter:
                    lib.llama_model_free(model)
                    raise BackendError(f"llama.cpp could not load the adapter in {self.info.adapter}")
            self._decode_model = (model, adapter)
        return self._decode_model

    def _free_parallel(self) -> None:
        if self._parallel is not None:
            self._lib.llama_batch_free(self._parallel.batch)
            self._lib.llama_free(self._parallel.ctx)
            self._parallel = None
            self._held_parallel = {}

    def _start_sequence(
        self,
        ctx: Any,
        batch: Any,
        seq: int,
        index: int,
        request: GenerationRequest,
        held: list[int],
        multiple: int = 1,
    ) -> _Sequence:
        """Evaluate a request's prompt in sequence ``seq`` alone and take its first token.

        ``held`` lists the tokens the sequence's KV cells hold (the previous prompt and what it generated): the
        longest common prefix is kept and only the rest evaluated, so consecutive items pay once for the few-shot
        exemplars they share. The kept cells are the numbers a fresh evaluation would give (each row is its own
        and attention is causal), so outputs do not change. For that, the rest is evaluated in the micro-batches
        a fresh evaluation uses (``n_ubatch`` tokens from position 0), a micro-batch that would have
        ``TILED_ROWS`` rows or more fresh keeps at least that many, since llama.cpp multiplies fewer rows with
        other kernels, and with repacked weights (``multiple``: ``REPACK_ROWS``) the rows kept from it are a
        multiple of that, so each fresh row falls in a block of the block kernel, or among the rows left over,
        as it does in a fresh evaluation."""
        start = time.perf_counter()
        prompt = self.prompt_tokens(request.prompt, request.turns)
        budget = self._n_ctx - len(prompt)
        if budget <= 0:
            raise BackendError(f"prompt needs {len(prompt)} tokens but the context holds {self._n_ctx}")
        memory = self._lib.llama_get_memory(ctx)
        unit = int(self._lib.llama_n_ubatch(ctx))
        common = 0
        for mine, theirs in zip(held, prompt[:-1], strict=False):  # the last prompt token is evaluated for logits
            if mine != theirs:
                break
            common += 1
        first = common // unit * unit  # the fresh evaluation's micro-batch the rest begins in
        rows = min(first + unit, len(prompt)) - first
        if rows >= TILED_ROWS:
            common = min(common, first + rows - TILED_ROWS)
        common = first + (common - first) // multiple * multiple
        if not self._lib.llama_memory_seq_rm(memory, seq, common, -1):  # a memory that cannot drop a tail
            self._lib.llama_memory_seq_rm(memory, seq, -1, -1)
            common = 0
        del held[common:]
        begin = common
        while begin < len(prompt):
            chunk = prompt[begin : (begin // unit + 1) * unit]
            for k, token in enumerate(chunk):
                batch.token[k] = token
                batch.pos[k] = begin + k
                batch.n_seq_id[k] = 1
                batch.seq_id[k][0] = seq
                batch.logits[k] = 1 if begin + k == len(prompt) - 1 else 0
            batch.n_tokens = len(chunk)
            self._decode(ctx, batch)
            held.extend(chunk)
            begin += len(chunk)
        state = _Sequence(index, request, prompt, min(request.max_tokens, budget), start, held, reused=common)
        last = len(prompt) - 1
        self._step(state, self._logits_row(ctx, last - max(common, last // unit * unit)))
        return state

    def _step(self, state: _Sequence, logits: np.ndarray[Any, np.dtype[np.float32]]) -> None:
        """Take the greedy next token of one sequence from its logits row, and see whether it has finished."""
        penalty = state.request.repetition_penalty
        if penalty != 1.0:
            if state.seen is None:
                state.seen = np.zeros(len(logits), dtype=np.bool_)
                state.seen[state.prompt] = True
            token = int(penalise_repeats(logits, state.seen, penalty).argmax())
            state.seen[token] = True
        else:
            token = int(logits.argmax())
        state.logprob_sum -= float(np.log(np.exp(logits - float(logits[token])).sum()))
        state.logprob_count += 1
        if not state.generated:
            state.ttft = time.perf_counter() - state.start
        if self._lib.llama_vocab_is_eog(self._vocab, token):
            state.finish = "stop"
            state.finished = True
            return
        state.generated.append(token)
        state.pieces += self._piece(token)
        previous = len(state.text)
        state.text = state.pieces.decode("utf-8", errors="ignore")
        cut = _find_stop(state.text, state.request.stop, max(0, previous - state.longest_stop))
        if cut is not None:
            state.text = state.text[:cut]
            state.finish = "stop"
            state.finished = True
        elif len(state.generated) >= state.max_tokens:
            state.finished = True
        elif self._settings.stop_loops and looping(state.generated):
            state.finish = "loop"
            state.finished = True
        state.next_token = token

    def _piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        size = self._lib.llama_token_to_piece(self._vocab, token, buffer, 64, 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = self._lib.llama_token_to_piece(self._vocab, token, buffer, -size, 0, False)
        return buffer.raw[:size]


def _find_stop(text: str, stops: Sequence[str], search_from: int) -> int | None:
    """Index of the earliest stop string in ``text`` at or after ``search_from``, or None."""
    found = [i for s in stops if (i := text.find(s, search_from)) >= 0]
    return min(found) if found else None
