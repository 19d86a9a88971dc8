"""The llama.cpp backend on the bundled model: the fast scorer must equal the naive one, generation must be
exactly greedy and honour stop strings and the token cap."""

from __future__ import annotations

from pathlib import Path

import pytest

from poccheck.backends import ChoiceRequest, GenerationRequest
from poccheck.backends.base import LOOP_RULE, LOOP_WINDOW
from poccheck.backends.llama_cpp import (
    LlamaCppBackend,
    LlamaSettings,
    cell_alignment,
    check_engine_build,
    system_info,
)
from poccheck.backends.llama_reference import NaiveChoiceScorer
from poccheck.errors import ModelError
from poccheck.models import resolve
from poccheck.runner import work_items
from poccheck.tasks import load_suites
from poccheck.tasks.examples import default_tasks

pytestmark = pytest.mark.model

# llama.cpp's quantised kernels quantise activations to 8 bits, so a different summation order upstream (another
# batch size or KV layout) moves a choice's log-probability a little. Measured on the bundled model, weights not
# repacked in either scorer: naive full sequences vs the packed scorer 0.0095 nats at most. A masking or position
# bug moves scores by whole nats.
TOLERANCE = 0.05
# The prefix-copy path decodes in 16-token batches on purpose (items larger than a batch), so its numbers differ
# from the 512-token path by more. Largest difference over the four REQUESTS, measured on one Xeon with AMX:
# AVX2-only build 0.384, AVX-512 build 0.251 (both without llamafile, as the set-up builds), 0.274 with llamafile;
# an earlier AVX2 machine 0.2. A masking or position bug moves scores by whole nats.
OTHER_BATCH_SIZE_TOLERANCE = 0.6
# Packed items start at lane-aligned KV cells, weights are not repacked and llama.cpp is built without llamafile's
# sgemm (check_engine_build), so an item scores as it does alone, packed, reversed or shifted: 0.0 measured on AVX2
# and on AVX-512 (example suite). Without the alignment, items moved by up to 0.74 nats with their neighbours; with
# llamafile on AVX-512, by 0.0049 (its kernels give a row other numbers by how many rows need logits).
NEIGHBOUR_TOLERANCE = 1e-4
ENGINE = system_info()


def test_llama_cpp_is_built_as_the_set_up_builds_it() -> None:
    check_engine_build(ENGINE)  # raises, naming the build and the fix, when llamafile's sgemm is compiled in
    with pytest.raises(ModelError, match="GGML_LLAMAFILE=OFF"):
        check_engine_build("CPU : AVX2 = 1 | AVX512 = 1 | LLAMAFILE = 1 | REPACK = 1 |")


REQUESTS = [
    ChoiceRequest("Question: What colour is the sky on a clear day?\nAnswer:", (" blue", " green", " red")),
    ChoiceRequest(
        "Question: A lathe spindle makes a grinding noise. What is worn?\nAnswer:",
        (" the spindle bearing", " the coolant pump", " the paint", " the operator's shoes"),
    ),
    ChoiceRequest("質問: 日本の首都はどこですか？\n答え:", (" 東京", " 大阪", " 札幌")),
    ChoiceRequest("Question: 2 + 2 =\nAnswer:", (" 4", " 5", " twenty-two")),
]


@pytest.fixture(scope="module")
def backend(bundled_model: Path):
    with LlamaCppBackend(resolve("gemma3-270m-q4")) as engine:
        yield engine


@pytest.fixture(scope="module")
def naive(bundled_model: Path):
    scorer = NaiveChoiceScorer(str(bundled_model))
    yield scorer
    scorer.close()


def test_shared_prefix_scores_equal_naive_full_sequences(backend: LlamaCppBackend, naive: NaiveChoiceScorer) -> None:
    packed = backend.score_choices(REQUESTS)  # all four items in one decode
    for request, scores in zip(REQUESTS, packed, strict=True):
        reference = naive.score(request.prompt, request.continuations)
        assert scores.logprobs == pytest.approx(reference, abs=TOLERANCE), request.prompt
        assert scores.token_counts == tuple(len(backend.tokenize(c, add_bos=False)) for c in request.continuations)
        assert max(range(len(reference)), key=reference.__getitem__) == max(
            range(len(scores.logprobs)), key=scores.logprobs.__getitem__
        )


def test_one_item_per_decode_and_oversized_items_agree(bundled_model: Path, backend: LlamaCppBackend) -> None:
    together = backend.score_choices(REQUESTS)
    alone = [backend.score_choices([r])[0] for r in REQUESTS]
    with LlamaCppBackend(resolve("gemma3-270m-q4"), LlamaSettings(n_ctx=256, n_batch=16, n_ubatch=16)) as small:
        split = small.score_choices(REQUESTS)  # every item exceeds the 16-token batch: prefix-copy path
    for a, b, c in zip(together, alone, split, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=NEIGHBOUR_TOLERANCE), ENGINE
        assert a.logprobs == pytest.approx(c.logprobs, abs=OTHER_BATCH_SIZE_TOLERANCE), ENGINE


def test_an_items_scores_do_not_depend_on_what_shares_its_decode(backend: LlamaCppBackend) -> None:
    work = [w for suite in load_suites(default_tasks()) for w in work_items(suite) if w.scored]
    requests = [w.choice_request for w in work]
    alone = [backend.score_choices([r])[0].logprobs for r in requests]
    together = [s.logprobs for s in backend.score_choices(requests)]
    reversed_ = [s.logprobs for s in backend.score_choices(requests[::-1])][::-1]
    shifted = [s.logprobs for s in backend.score_choices([requests[-1], *requests])][1:]  # every item moves
    for scores in (together, reversed_, shifted):
        for mine, own in zip(scores, alone, strict=True):
            assert mine == pytest.approx(own, abs=NEIGHBOUR_TOLERANCE), ENGINE


@pytest.mark.parametrize(
    ("system_info", "lanes"),
    [
        ("CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | LLAMAFILE = 1 | REPACK = 1 | ", 8),
        ("CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | LLAMAFILE = 1 | ", 16),
        ("CPU : NEON = 1 | ARM_FMA = 1 | FP16_VA = 1 | DOTPROD = 1 | LLAMAFILE = 1 | ", 8),
    ],
)
def test_cell_alignment_follows_the_widest_simd_lanes(system_info: str, lanes: int) -> None:
    assert cell_alignment(system_info) == lanes


def test_weight_repacking_is_off_unless_asked_for_and_is_part_of_the_result_key(bundled_model: Path) -> None:
    with LlamaCppBackend(resolve("gemma3-270m-q4"), LlamaSettings(n_ctx=256, repack_weights=True)) as repacked:
        assert repacked._llm.model_params.use_extra_bufts
        assert repacked.settings()["repack_weights"] is True
    with LlamaCppBackend(resolve("gemma3-270m-q4"), LlamaSettings(n_ctx=256)) as plain:
        assert not plain._llm.model_params.use_extra_bufts
        assert plain.settings()["repack_weights"] is False
    import llama_cpp

    assert llama_cpp.llama_model_default_params().use_extra_bufts  # the library's own default is left alone


def test_generation_is_greedy_like_the_engine(backend: LlamaCppBackend) -> None:
    prompt = "Q: Name three metals used in machining.\nA:"
    ours = backend.generate(GenerationRequest(prompt, (), 24))
    reference = backend._llm.create_completion(prompt, max_tokens=24, temperature=0.0, top_k=1)
    assert ours.text == reference["choices"][0]["text"]
    assert ours.completion_tokens == reference["usage"]["completion_tokens"]
    assert 0 < ours.ttft <= ours.seconds
    assert ours.finish_reason == "length" or ours.completion_tokens < 24
    assert ours.mean_logprob is not None and ours.mean_logprob <= 0


def test_stop_strings_and_token_cap(backend: LlamaCppBackend) -> None:
    prompt = "1, 2, 3, 4, 5, 6,"
    capped = backend.generate(GenerationRequest(prompt, (), 5))
    assert capped.completion_tokens == 5 and capped.finish_reason == "length"
    stopped = backend.generate(GenerationRequest(prompt, (" 9",), 40))
    assert stopped.finish_reason == "stop" and "9" not in stopped.text and stopped.text.strip().startswith("7")


def test_prompt_longer_than_context_is_a_clear_error(bundled_model: Path) -> None:
    from poccheck.errors import BackendError

    with LlamaCppBackend(resolve("gemma3-270m-q4"), LlamaSettings(n_ctx=64, n_batch=64)) as small:
        with pytest.raises(BackendError, match="context holds"):
            small.generate(GenerationRequest("word " * 1000, (), 4))
        with pytest.raises(BackendError, match="context holds"):
            small.score_choices([ChoiceRequest("word " * 1000, (" a", " b"))])


def test_a_llama_cpp_python_that_cannot_turn_repacking_off_is_a_clear_error() -> None:
    import ctypes
    import types

    from poccheck.backends.llama_cpp import weight_repacking
    from poccheck.errors import ModelError

    class OldParams(ctypes.Structure):
        _fields_ = [("n_gpu_layers", ctypes.c_int32), ("vocab_only", ctypes.c_bool)]

    old = types.SimpleNamespace(llama_cpp=types.SimpleNamespace(llama_model_params=OldParams))
    with pytest.raises(ModelError, match="use_extra_bufts"), weight_repacking(old, enabled=False):
        pass


def test_a_generation_that_repeats_itself_is_stopped_where_the_loop_is_plain(backend: LlamaCppBackend) -> None:
    prompt = "Serial: " + "1." * 40
    stopped = backend.generate(GenerationRequest(prompt, (), 512))
    assert stopped.finish_reason == "loop" and LOOP_WINDOW <= stopped.completion_tokens < 512
    assert backend.settings()["stop_loops"] == LOOP_RULE  # part of the results' key
    # without the loop stop the same greedy tokens go on: the stopped text is where that output was cut
    unstopped = LlamaCppBackend(backend.info, LlamaSettings(stop_loops=False))
    try:
        longer = unstopped.generate(GenerationRequest(prompt, (), stopped.completion_tokens + 16))
    finally:
        unstopped.close()
    assert longer.finish_reason == "length" and longer.text.startswith(stopped.text)
    assert unstopped.settings()["stop_loops"] is None
