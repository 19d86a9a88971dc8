"""transformers backend on tiny random Llama- and Gemma-style models: exact against plain forward passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from poccheck.backends import ChoiceRequest, GenerationRequest
from poccheck.backends.hf import HFSettings, TransformersBackend, pick_device, pick_dtype
from poccheck.errors import BackendError, ModelError
from poccheck.models import resolve
from poccheck.records import Completion

from .tiny_models import build_model

REQUESTS = [
    ChoiceRequest("Question: What colour is the sky?\nAnswer:", (" blue", " green", " red machine oil")),
    ChoiceRequest("Inspection rule:", (" reject parts", " accept")),
    ChoiceRequest("1, 2, 3, 4, 5, 6, 7, 8,", (" 9", " 10 plus minus", " equals", " the")),
]


@pytest.fixture(scope="module", params=["llama", "gemma"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture(scope="module")
def backend(tiny: Path) -> TransformersBackend:
    return TransformersBackend(resolve(f"{tiny}@transformers"), HFSettings(device="cpu", batch_items=8))


def plain_logprob(backend: TransformersBackend, prompt: str, continuation: str) -> float:
    """Reference: one unpadded forward pass over prompt + continuation, no cache tricks."""
    prompt_ids = backend.tokenize(prompt, add_bos=True)
    cont_ids = backend.tokenize(continuation, add_bos=False)
    with torch.no_grad():
        logits = backend.model(input_ids=torch.tensor([prompt_ids + cont_ids])).logits[0].float()
    log_probs = torch.log_softmax(logits, dim=-1)
    return float(sum(log_probs[len(prompt_ids) - 1 + i, t] for i, t in enumerate(cont_ids)))


def test_shared_prompt_scoring_equals_plain_forward(backend: TransformersBackend) -> None:
    scores = backend.score_choices(REQUESTS)  # three prompts of different lengths: left padding in one batch
    for request, score in zip(REQUESTS, scores, strict=True):
        expected = [plain_logprob(backend, request.prompt, c) for c in request.continuations]
        assert score.logprobs == pytest.approx(expected, abs=1e-4)
        assert score.token_counts == tuple(len(backend.tokenize(c, False)) for c in request.continuations)


def test_single_token_choices_need_no_second_pass(backend: TransformersBackend) -> None:
    vocab = backend.tokenizer.get_vocab()
    words = sorted(w for w in vocab if w.startswith("\u0120") and len(w) > 2)[:3]  # byte-level BPE: "Ġword"
    choices = tuple(backend.tokenizer.convert_tokens_to_string([w]) for w in words)
    assert len(choices) == 3 and all(len(backend.tokenize(c, False)) == 1 for c in choices)
    score = backend.score_choices([ChoiceRequest("Q: the", choices)])[0]
    assert score.logprobs == pytest.approx([plain_logprob(backend, "Q: the", c) for c in choices], abs=1e-4)


def test_generation_is_greedy_and_honours_cap_and_stop(backend: TransformersBackend) -> None:
    prompt = "The spindle"
    ours = backend.generate(GenerationRequest(prompt, (), 12))
    ids = torch.tensor([backend.tokenize(prompt, add_bos=True)])
    reference = backend.model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False, eos_token_id=None
    )[0, ids.shape[1]:].tolist()  # fmt: skip
    tokens = [t for t in reference if t not in backend._eos][: ours.completion_tokens]
    assert ours.text == backend.tokenizer.decode(tokens, skip_special_tokens=True)
    assert 0 < ours.ttft <= ours.seconds
    if ours.text:
        stop = ours.text[len(ours.text) // 2 :][:3]
        if stop.strip():
            stopped = backend.generate(GenerationRequest(prompt, (stop,), 12))
            assert stop not in stopped.text and stopped.finish_reason == "stop"


@pytest.mark.parametrize("penalty", [0.0001, 1.5])
def test_the_repetition_penalty_decodes_as_hugging_faces_generate(backend: TransformersBackend, penalty: float) -> None:
    prompt = "The spindle bearing of the spindle"
    requests = [GenerationRequest(prompt, (), 16, repetition_penalty=penalty), GenerationRequest("The", (), 16)]
    ids = torch.tensor([backend.tokenize(prompt, add_bos=True)])
    reference = backend.model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False, eos_token_id=None,
        repetition_penalty=penalty,
    )[0, ids.shape[1]:].tolist()  # fmt: skip
    ours = backend.generate(requests[0])
    tokens = [t for t in reference if t not in backend._eos][: ours.completion_tokens]
    assert ours.text == backend.tokenizer.decode(tokens, skip_special_tokens=True)
    together = dict(backend.generate_many(requests, 2))  # in a padded batch beside a plain greedy item too
    assert isinstance(together[0], Completion) and together[0].text == ours.text


def test_folder_description_counts_parameters(tiny: Path, backend: TransformersBackend) -> None:
    info = resolve(f"{tiny}@transformers")
    assert info.parameters == backend.parameters()
    assert info.backend == "transformers" and info.family in {"llama", "gemma3_text"}
    assert info.context_length == 256 and info.quantization == "F32"
    assert resolve(f"{tiny}@transformers").fingerprint == info.fingerprint
    settings = backend.settings()
    assert settings["device"] == "cpu" and settings["dtype"] == "float32"


def test_device_and_dtype_choice() -> None:
    assert pick_device("cpu") == "cpu"
    assert pick_dtype("auto", "cpu") == torch.float32
    assert pick_dtype("auto", "cuda") == torch.bfloat16
    assert pick_dtype("float16", "cpu") == torch.float16
    with pytest.raises(ModelError, match="unknown device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        assert pick_device("auto") in {"cpu", "mps"}
        with pytest.raises(ModelError, match="not available"):
            pick_device("cuda")


def test_folder_without_weights_and_uncached_hub_id(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="no model weights"):
        resolve(f"{tmp_path}@transformers")
    with pytest.raises(ModelError, match="does not download"):
        resolve("nobody-here/not-a-model@transformers")
    with pytest.raises(ModelError, match="@transformers"):
        resolve(str(tmp_path))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_path_matches_cpu(tiny: Path, backend: TransformersBackend) -> None:
    gpu = TransformersBackend(resolve(f"{tiny}@transformers"), HFSettings(device="cuda", dtype="float32"))
    assert gpu.settings()["device"] == "cuda"
    for a, b in zip(gpu.score_choices(REQUESTS), backend.score_choices(REQUESTS), strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-3)
    assert (gpu.peak_vram() or 0) > 0


GENERATIONS = [
    GenerationRequest(prompt, (), budget)
    for prompt, budget in [
        ("The spindle", 12), ("Inspection rule: every part outside tolerance", 20), ("1, 2, 3,", 6),
        ("Q: torque of an M8 bolt?\nA:", 16), ("x", 9), ("Maintenance log, line 7: the press", 14),
    ]
]  # fmt: skip


def greedy_reference(backend: TransformersBackend, request: GenerationRequest) -> tuple[list[int], list[float]]:
    """Greedy tokens from full forward passes (no cache, no padding), with each step's gap between the two best
    log-probabilities; it stops where the backend would (end of sequence, or the budget)."""
    ids = backend.tokenize(request.prompt, add_bos=True)
    tokens: list[int] = []
    gaps: list[float] = []
    with torch.no_grad():
        while len(tokens) < request.max_tokens:
            log_probs = torch.log_softmax(
                backend.model(input_ids=torch.tensor([ids + tokens])).logits[0, -1].float(), -1
            )
            best = torch.topk(log_probs, 2)
            gaps.append(float(best.values[0] - best.values[1]))
            token = int(best.indices[0])
            if token in backend._eos:
                break
            tokens.append(token)
    return tokens, gaps


def test_generations_decoded_together_are_each_items_own_or_part_at_a_near_tie(backend: TransformersBackend) -> None:
    alone = [backend.generate(r) for r in GENERATIONS]
    for request, completion in zip(GENERATIONS, alone, strict=True):  # one at a time: the plain greedy output
        tokens, _ = greedy_reference(backend, request)
        assert completion.text == backend.tokenizer.decode(tokens, skip_special_tokens=True)
    for parallel in (2, 4, len(GENERATIONS)):
        together = dict(backend.generate_many(GENERATIONS, parallel))
        assert sorted(together) == list(range(len(GENERATIONS)))
        for index, request in enumerate(GENERATIONS):
            batched, single = together[index], alone[index]
            assert isinstance(batched, Completion)
            assert 0 < batched.ttft <= batched.seconds and batched.prompt_tokens == single.prompt_tokens
            if batched.text == single.text:
                assert batched.completion_tokens == single.completion_tokens
                assert batched.mean_logprob == pytest.approx(single.mean_logprob, abs=1e-4)
                continue
            # left padding may change an output only where the two best next tokens nearly tie
            tokens, gaps = greedy_reference(backend, request)
            texts = [backend.tokenizer.decode(tokens[:k], skip_special_tokens=True) for k in range(len(tokens) + 1)]
            same = max(k for k, text in enumerate(texts) if batched.text.startswith(text))
            assert gaps[same] < 1e-3, (parallel, index, gaps[same])


def test_a_prompt_too_long_fails_alone_in_a_batch(backend: TransformersBackend) -> None:
    too_long = GenerationRequest("word " * 400, (), 4)  # the tiny models hold 256 positions
    results = dict(backend.generate_many([GENERATIONS[0], too_long, GENERATIONS[2]], 3))
    assert isinstance(results[1], BackendError) and "context holds 256" in str(results[1])
    assert isinstance(results[0], Completion) and isinstance(results[2], Completion)
