"""transformers/PyTorch backend: Hugging Face folders, cached hub ids and GGUF files (dequantised).

Multiple-choice scoring runs each batch of prompts once (left-padded), copies each prompt's KV cache to its
choices, and runs all continuations in one more forward pass, asking for logits only where a choice token is
predicted. Generation is a greedy loop over the KV cache, timed like the llama.cpp backend.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poccheck import paths
from poccheck.backends.base import LOOP_RULE, ChoiceRequest, GenerationRequest, looping
from poccheck.backends.chat import ChatPrompting, ChatTemplate, chat_tokens
from poccheck.errors import BackendError, ModelError
from poccheck.gguf_header import read_header
from poccheck.records import (
    AttentionCapture,
    ChoiceScores,
    Completion,
    FinishReason,
    ModelInfo,
    Turn,
)

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class HFSettings:
    device: str = "auto"
    dtype: str = "auto"
    batch_items: int = 8
    attention: str = "sdpa"
    stop_loops: bool = True  # end a generation that repeats itself (base.LOOP_RULE)


def pick_device(requested: str = "auto") -> str:
    """``auto``: CUDA, then Apple MPS, then CPU. An explicit device that is absent is an error."""
    import torch

    if requested not in DEVICES:
        raise ModelError(f"unknown device {requested!r}", f"use one of {', '.join(DEVICES)}")
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "cpu": True,
    }
    if requested == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if available[d])
    if not available[requested]:
        raise ModelError(f"device {requested!r} is not available on this machine", "use --device auto or cpu")
    return requested


def pick_dtype(requested: str, device: str) -> Any:
    """``auto``: bfloat16 on a GPU, float32 on CPU."""
    import torch

    if requested not in DTYPES:
        raise ModelError(f"unknown dtype {requested!r}", f"use one of {', '.join(DTYPES)}")
    if requested == "auto":
        return torch.float32 if device == "cpu" else torch.bfloat16
    return getattr(torch, requested)


def converted_dir(info: ModelInfo, dtype: Any) -> Path:
    """Where a GGUF file's dequantised weights are kept, by the weights' fingerprint and the dtype they were loaded
    in (weights saved in bfloat16 and read back as float32 would not be the float32 dequantisation)."""
    weights = info.base_fingerprint or info.fingerprint
    return paths.converted_dir() / f"{weights}-{str(dtype).removeprefix('torch.')}"


def load_pretrained(info: ModelInfo, dtype: Any, attention: str) -> tuple[Any, Any]:
    """Load model and tokenizer. A GGUF file is dequantised once and the result cached on disk."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    path = Path(info.path)
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attention}
    try:
        if path.suffix.lower() == ".gguf":
            cached = converted_dir(info, dtype)
            if (cached / "config.json").exists() and (cached / "tokenizer_config.json").exists():
                return (
                    AutoModelForCausalLM.from_pretrained(cached, **kwargs),
                    AutoTokenizer.from_pretrained(cached),
                )
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, **kwargs)
            partial = cached.with_name(cached.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            # The weights are plain dequantised tensors now; drop the GGUF loader's marker so they can be saved.
            model.hf_quantizer = None  # type: ignore[assignment]
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(partial)
            tokenizer.save_pretrained(partial)
            shutil.rmtree(cached, ignore_errors=True)
            partial.rename(cached)
            return model, tokenizer
        return (
            AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **kwargs),
            AutoTokenizer.from_pretrained(path, local_files_only=True),
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"transformers could not load {info.path}: {exc}") from exc


def apply_adapter(model: Any, folder: Path) -> Any:
    """Merge a LoRA adapter (peft) into the weights: the same outputs as the adapted model, at base speed."""
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise ModelError("fine-tuned adapters need peft", "pip install peft") from exc
    try:
        with warnings.catch_warnings():  # transformers 5 deprecates a property peft still reads
            warnings.simplefilter("ignore", FutureWarning)
            return PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"cannot apply the adapter in {folder}: {exc}") from exc


class TransformersBackend(ChatPrompting):
    """A causal language model run by PyTorch through transformers."""

    def __init__(self, info: ModelInfo, settings: HFSettings | None = None) -> None:
        import torch

        self._torch = torch
        self._settings = settings or HFSettings()
        self.device = pick_device(self._settings.device)
        self.dtype = pick_dtype(self._settings.dtype, self.device)
        model, tokenizer = load_pretrained(info, self.dtype, self._settings.attention)
        if info.adapter:
            model = apply_adapter(model, Path(info.adapter))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.info = info
        eos = self.model.generation_config.eos_token_id if self.model.generation_config else None
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        self._eos = eos_ids
        self._max_positions = int(getattr(self.model.config, "max_position_embeddings", 0) or 1 << 30)
        self._bos = self._uses_bos(info)
        self._chat = self._chat_template()
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()

    # ------------------------------------------------------------------ helpers

    def _uses_bos(self, info: ModelInfo) -> bool:
        """Whether prompts start with BOS: the GGUF file's own flag (as llama.cpp reads it), else what the
        Hugging Face tokenizer does with special tokens on."""
        if self.tokenizer.bos_token_id is None:
            return False
        if info.path.lower().endswith(".gguf"):
            flag = read_header(Path(info.path)).metadata.get("tokenizer.ggml.add_bos_token")
            return True if flag is None else bool(flag)
        ids = self.tokenizer("a")["input_ids"]
        return bool(ids) and ids[0] == self.tokenizer.bos_token_id

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        """Tokens of ``text`` as plain text: a special token's string in it stays characters (as in llama.cpp)."""
        ids = self._encode(text, special=False)
        bos = self.tokenizer.bos_token_id
        return ([bos] if add_bos and self._bos and bos is not None else []) + ids

    def _encode(self, text: str, special: bool) -> list[int]:
        encoded = self.tokenizer(text, add_special_tokens=False, split_special_tokens=not special)
        return list(encoded["input_ids"])

    def _chat_template(self) -> ChatTemplate | None:
        """The tokenizer's chat template (a Hugging Face folder's tokenizer config, or a GGUF file's metadata)."""
        source = getattr(self.tokenizer, "chat_template", None)
        if isinstance(source, dict):  # named templates: the default one
            source = source.get("default")
        if not isinstance(source, str) or not source.strip():
            return None
        return ChatTemplate(
            source, self.info.name, str(self.tokenizer.bos_token or ""), str(self.tokenizer.eos_token or "")
        )

    def prompt_tokens(self, prompt: str, turns: tuple[Turn, ...] = ()) -> list[int]:
        """The prompt's tokens, beginning-of-sequence token included once where the model uses one; chat turns
        through the model's template, their contents (task text) tokenized as plain text."""
        if not turns:
            return self.tokenize(prompt, add_bos=True)
        if self._chat is None:
            raise BackendError(f"{self.info.name} has no chat template")
        bos = self.tokenizer.bos_token_id if self._bos else None
        return chat_tokens(self._chat.render(turns), self._encode, bos)

    def settings(self) -> dict[str, object]:
        return {
            "backend": "transformers",
            "device": self.device,
            "dtype": str(self.dtype).replace("torch.", ""),
            "decoding": "greedy",
            "stop_loops": LOOP_RULE if self._settings.stop_loops else None,
        }

    def parameters(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))

    def peak_vram(self) -> int | None:
        if self.device != "cuda":
            return None
        return int(self._torch.cuda.max_memory_allocated())

    def close(self) -> None:
        del self.model
        if self.device == "cuda":
            self._torch.cuda.empty_cache()

    def __enter__(self) -> TransformersBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_length(self, n: int) -> None:
        if n > self._max_positions:
            raise BackendError(f"prompt needs {n} tokens but the context holds {self._max_positions}")

    # ------------------------------------------------------------------ multiple choice

    @property
    def choice_batch(self) -> int:
        """Items padded into one forward pass (``batch_items``): on a GPU that is where the speed comes from."""
        return max(1, self._settings.batch_items)

    def score_choices(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceScores]:
        results: list[ChoiceScores] = []
        size = self.choice_batch
        for begin in range(0, len(requests), size):
            results += self._score_batch(requests[begin : begin + size])
        return results

    def _score_batch(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceScores]:
        torch = self._torch
        start = time.perf_counter()
        prompts = [self.prompt_tokens(r.prompt, r.turns) for r in requests]
        choices = [[self.tokenize(c, add_bos=False) for c in r.continuations] for r in requests]
        for prompt, conts in zip(prompts, choices, strict=True):
            if any(not c for c in conts):
                raise BackendError("a choice tokenizes to nothing; choices must contain text")
            self._check_length(len(prompt) + max(len(c) for c in conts))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):  # left padding: every prompt ends at the same column
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self.model(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                use_cache=True,
                logits_to_keep=1,
            )
            first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # predicts each choice's first token
            owners = [i for i, conts in enumerate(choices) for _ in conts]
            flat = [c for conts in choices for c in conts]
            longest = max(len(c) for c in flat)
            rest: Any = None
            if longest > 1:  # only multi-token choices need a second pass
                cache = out.cache
                index = torch.tensor(owners, device=self.device)
                cache.batch_select_indices(index)
                cont_ids = torch.full((len(flat), longest), pad, dtype=torch.long)
                cont_mask = torch.zeros((len(flat), longest), dtype=torch.long)
                for row, tokens in enumerate(flat):  # right padding: padded tokens come after real ones
                    cont_ids[row, : len(tokens)] = torch.tensor(tokens)
                    cont_mask[row, : len(tokens)] = 1
                lengths = torch.tensor([len(prompts[o]) for o in owners])
                cont_positions = lengths[:, None] + torch.arange(longest)[None, :]
                full_mask = torch.cat([mask[owners], cont_mask], dim=1)
                second = self.model(
                    input_ids=cont_ids.to(self.device),
                    attention_mask=full_mask.to(self.device),
                    position_ids=cont_positions.to(self.device),
                    cache=cache,
                    use_cache=False,
                    logits_to_keep=torch.arange(longest - 1, device=self.device),
                )
                rest = torch.log_softmax(second.logits.float(), dim=-1)
        seconds = (time.perf_counter() - start) / len(requests)
        totals: list[list[float]] = [[] for _ in requests]
        for row, (owner, tokens) in enumerate(zip(owners, flat, strict=True)):
            total = float(first[owner, tokens[0]])
            for k in range(1, len(tokens)):
                total += float(rest[row, k - 1, tokens[k]])
            totals[owner].append(total)
        return [
            ChoiceScores(tuple(t), tuple(len(c) for c in conts), len(p), seconds)
            for t, conts, p in zip(totals, choices, prompts, strict=True)
        ]

    # ------------------------------------------------------------------ generation

    # Several generations are decoded together in a left-padded batch: padding changes the shapes of the matrix
    # products, so an output may differ from the item's alone where its two best next tokens nearly tie. The
    # batch size is therefore part of the results' key, unlike llama.cpp's exact batching.
    def batch_key(self, parallel: int) -> dict[str, object]:
        return {"padded_batch": parallel} if parallel > 1 else {}

    def generate(self, request: GenerationRequest) -> Completion:
        ((_, result),) = self.generate_many([request], 1)
        if isinstance(result, BackendError):
            raise result
        return result

    def generate_many(
        self, requests: Sequence[GenerationRequest], parallel: int
    ) -> Iterator[tuple[int, Completion | BackendError]]:
        """Decode ``parallel`` generations at a time in one left-padded batch with one KV cache; a finished
        sequence leaves the batch (its rows of the cache are dropped) and is yielded at once. Alone (one at a time,
        or the last of a batch) a sequence runs without padding or mask."""
        pending: list[tuple[int, GenerationRequest, list[int]]] = []
        for index, request in enumerate(requests):
            try:
                prompt = self.prompt_tokens(request.prompt, request.turns)
                self._check_length(len(prompt) + 1)
            except BackendError as exc:
                yield index, exc
                continue
            pending.append((index, request, prompt))
        step = max(1, parallel)
        for first in range(0, len(pending), step):
            yield from self._decode_batch(pending[first : first + step])

    def _decode_batch(
        self, batch: Sequence[tuple[int, GenerationRequest, list[int]]]
    ) -> Iterator[tuple[int, Completion]]:
        from transformers import RepetitionPenaltyLogitsProcessor

        torch = self._torch
        started = time.perf_counter()
        decodings = [
            _Decoding(request, len(prompt), min(request.max_tokens, self._max_positions - len(prompt)), started)
            for _, request, prompt in batch
        ]
        live = [row for row, d in enumerate(decodings) if d.max_tokens > 0]
        for row in (row for row, d in enumerate(decodings) if d.max_tokens <= 0):  # the context is full already
            yield batch[row][0], decodings[row].completion(time.perf_counter())
        if not live:
            return
        prompts = [batch[row][2] for row in live]
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else next(iter(self._eos), 0)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        positions = mask.cumsum(-1) - 1
        with torch.inference_mode():
            padded = {"attention_mask": mask, "position_ids": positions.clamp(min=0)} if len(live) > 1 else {}
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **padded)
            cache = out.cache
            last = positions[:, -1]
            logits = out.logits[:, -1].float()
            while True:
                log_probs = torch.log_softmax(logits, dim=-1)
                tokens = log_probs.argmax(dim=-1).tolist()
                for k, row in enumerate(live):  # Hugging Face's own repetition penalty, over prompt and reply
                    penalty = decodings[row].request.repetition_penalty
                    if penalty != 1.0:
                        context = torch.tensor([batch[row][2] + decodings[row].generated], device=self.device)
                        processor = RepetitionPenaltyLogitsProcessor(penalty)
                        tokens[k] = int(processor(context, logits[k : k + 1].clone()).argmax())
                chosen = log_probs.gather(1, torch.tensor(tokens, device=log_probs.device)[:, None])[:, 0].tolist()
                now = time.perf_counter()
                keep = []
                for k, row in enumerate(live):
                    decoding = decodings[row]
                    if decoding.step(tokens[k], chosen[k], now, self):
                        yield batch[row][0], decoding.completion(now)
                    else:
                        keep.append(k)
                if not keep:
                    return
                if len(keep) < len(live):
                    index = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(index)
                    mask, last = mask[index], last[index]
                    live = [live[k] for k in keep]
                    tokens = [tokens[k] for k in keep]
                step_ids = torch.tensor([[t] for t in tokens], device=self.device)
                mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
                last = last + 1
                if len(live) > 1 or mask.shape[1] != int(mask[0].sum()):  # padded rows still in the batch
                    padded = {"attention_mask": mask, "position_ids": last[:, None]}
                else:
                    padded = {}
                out = self.model(input_ids=step_ids, cache=cache, use_cache=True, **padded)
                cache = out.cache
                logits = out.logits[:, -1].float()

    # ------------------------------------------------------------------ attention

    def capture_attention(self, prompt: str, answer: str, turns: tuple[Turn, ...] = ()) -> AttentionCapture:
        """Run prompt + answer (teacher-forced) with eager attention; keep the answer tokens' attention rows.
        With ``turns`` the prompt is those chat turns in the model's template, the answer the assistant's reply."""
        import numpy as np

        torch = self._torch
        prompt_ids = self.prompt_tokens(prompt, turns)
        answer_ids = self.tokenize(answer, add_bos=False) or [self.tokenizer.eos_token_id or 0]
        ids = prompt_ids + answer_ids
        self._check_length(len(ids))
        previous = self.model.config._attn_implementation
        self.model.set_attn_implementation("eager")
        try:
            with torch.inference_mode():
                out = self.model(input_ids=torch.tensor([ids], device=self.device), output_attentions=True)
        finally:
            self.model.set_attn_implementation(previous)
        rows = slice(len(prompt_ids) - 1, len(ids) - 1)  # the positions whose outputs predict answer tokens
        weights = np.stack([layer[0, :, rows, :].float().cpu().numpy() for layer in out.attentions])
        tokens = tuple(self.tokenizer.decode([t]) for t in ids)
        return AttentionCapture(tokens, tuple(ids), len(prompt_ids), weights)


class _Decoding:
    """One greedy generation in progress: its tokens and text, stop strings, end of turn, loops and the mean
    log-probability of the tokens it chose (the cascade's confidence signal)."""

    def __init__(self, request: GenerationRequest, prompt_tokens: int, max_tokens: int, started: float) -> None:
        self.request = request
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.started = started
        self.generated: list[int] = []
        self.text = ""
        self.ttft = 0.0
        self.finish: FinishReason = "length"
        self.logprob_sum = 0.0
        self.logprob_count = 0
        self.longest_stop = max((len(s) for s in request.stop), default=0)

    def step(self, token: int, logprob: float, now: float, backend: TransformersBackend) -> bool:
        """Take the next token; True when the generation has ended."""
        self.logprob_sum += logprob
        self.logprob_count += 1
        if not self.generated:
            self.ttft = now - self.started
        if token in backend._eos:
            self.finish = "stop"
            return True
        self.generated.append(token)
        previous = len(self.text)
        self.text = backend.tokenizer.decode(self.generated, skip_special_tokens=True)
        start = max(0, previous - self.longest_stop)
        found = [i for s in self.request.stop if (i := self.text.find(s, start)) >= 0]
        if found:
            self.text = self.text[: min(found)]
            self.finish = "stop"
            return True
        if len(self.generated) >= self.max_tokens:
            return True
        if backend._settings.stop_loops and looping(self.generated):
            self.finish = "loop"
            return True
        return False

    def completion(self, now: float) -> Completion:
        cut = self.finish == "length" and self.max_tokens < self.request.max_tokens
        return Completion(
            text=self.text,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=len(self.generated),
            seconds=now - self.started,
            ttft=self.ttft,
            # the context, not the token budget, ended it: the budget was cut to what the context had left
            finish_reason="context" if cut else self.finish,
            mean_logprob=self.logprob_sum / self.logprob_count if self.logprob_count else None,
        )
