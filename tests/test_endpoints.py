"""Endpoint configuration (plan section and --endpoint), retry timing, and reading servers' replies (no server)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from poccheck import models
from poccheck.backends.base import ChoiceRequest
from poccheck.backends.openai_http import (
    BACKOFF_CAP,
    _echo_logprobs,
    _echoed_tokens,
    backoff_delay,
    letter_request,
    read_letter,
)
from poccheck.config.plan import parse_plan
from poccheck.endpoints import Endpoint, describe, parse_option
from poccheck.errors import ModelError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

PLAN = f"""\
tasks: ["{EXAMPLES / "factory_suite.yaml"}"]
candidates: [vllm@openai, cloud@openai]
targets: {{accuracy: 0.8}}
workload: {{tasks_per_day: 100, peak_concurrency: 2}}
endpoints:
  vllm:
    base_url: http://gpu-1:8000/v1
    model: Qwen/Qwen2.5-7B-Instruct
    concurrency: 16
    parameters: 7600000000
  cloud:
    base_url: https://api.openai.com/v1
    model: gpt-4o-mini
    api: chat
    api_key_env: OPENAI_API_KEY
    price: gpt-4o-mini
"""


def test_plan_endpoints_are_read() -> None:
    plan, problems = parse_plan(PLAN, EXAMPLES.parent / "poccheck.yaml")
    assert problems == [] and plan is not None
    vllm, cloud = plan.endpoints
    assert (vllm.name, vllm.concurrency, vllm.parameters, vllm.api) == ("vllm", 16, 7_600_000_000, "completions")
    assert (cloud.api, cloud.api_key_env, cloud.price) == ("chat", "OPENAI_API_KEY", "gpt-4o-mini")
    info = models.resolve("cloud@openai", plan.endpoints)
    assert info.backend == "openai" and info.price == "gpt-4o-mini" and info.parameters is None


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "message"),
    [
        ("http://gpu-1:8000/v1", "gpu-1:8000/v1", 7, "endpoints.vllm.base_url", "URL starting with http"),
        ("    concurrency: 16", "    concurrency: 0", 9, "endpoints.vllm.concurrency", "between 1 and 512"),
        ("    api: chat", "    api: grpc", 14, "endpoints.cloud.api", "unknown api 'grpc'"),
        ("api_key_env: OPENAI_API_KEY", "api_key_env: sk-123", 15, "endpoints.cloud.api_key_env", "variable name"),
        ("api_key_env: OPENAI_API_KEY", "api_key: sk-123", 15, "endpoints.cloud.api_key", "never write an API key"),
        ("price: gpt-4o-mini", "price: gpt-5-ultra", 16, "endpoints.cloud.price", "unknown price profile"),
        ("    model: gpt-4o-mini\n", "", 11, "endpoints.cloud.model", "missing"),
        ("candidates: [vllm@openai,", "candidates: [vlm@openai,", 2, "candidates[0]", "no endpoint named 'vlm'"),
    ],
)
def test_plan_endpoint_errors_name_line_and_field(old: str, new: str, line: int, field: str, message: str) -> None:
    assert old in PLAN
    plan, problems = parse_plan(PLAN.replace(old, new), EXAMPLES.parent / "poccheck.yaml")
    assert plan is None
    found = [p for p in problems if p.field == field]
    assert any(message in p.message and p.line == line for p in found), found
    assert "sk-123" not in "\n".join(str(p) for p in problems)  # a key pasted into the plan is never echoed


def test_endpoint_option() -> None:
    endpoint = parse_option("vllm=http://gpu:8000/v1#Qwen/Qwen2.5-7B-Instruct", "MY_KEY", 8)
    assert (endpoint.name, endpoint.base_url, endpoint.model) == (
        "vllm",
        "http://gpu:8000/v1",
        "Qwen/Qwen2.5-7B-Instruct",
    )
    assert (endpoint.api_key_env, endpoint.concurrency, endpoint.spec) == ("MY_KEY", 8, "vllm@openai")
    for bad in ("vllm", "vllm=http://gpu:8000/v1", "vllm=gpu:8000#m", "=http://x#m"):
        with pytest.raises(ModelError):
            parse_option(bad)
    with pytest.raises(ModelError, match="no endpoint named 'other'"):
        models.resolve("other@openai", (endpoint,))


def test_fingerprint_is_url_and_model_not_key(monkeypatch: pytest.MonkeyPatch) -> None:
    one = Endpoint("a", "http://gpu:8000/v1/", "m", api_key_env="K1", concurrency=1)
    two = Endpoint("b", "http://gpu:8000/v1", "m", api_key_env="K2", concurrency=64, max_retries=0)
    assert describe("a@openai", one).fingerprint == describe("b@openai", two).fingerprint
    assert (
        describe("a@openai", one).fingerprint
        != describe("a@openai", Endpoint("a", "http://gpu:8000/v1", "n")).fingerprint
    )
    monkeypatch.delenv("K1", raising=False)
    with pytest.raises(ModelError, match="K1"):
        one.api_key()


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    rng = random.Random(0)
    for attempt in range(8):
        bound = min(BACKOFF_CAP, 0.5 * 2**attempt)
        waits = [backoff_delay(attempt, rng=rng) for _ in range(200)]
        assert all(0 <= w <= bound for w in waits)
        assert max(waits) > bound * 0.8 and min(waits) < bound * 0.2  # spread over the whole range
    assert backoff_delay(0, "3") == 3.0 and backoff_delay(0, "999") == BACKOFF_CAP


# A reply of llama-cpp-python's server (0.3.36, --logits_all true) to {"prompt": "Question: What is 2+2?\nAnswer: 4",
# "echo": true, "logprobs": 0, "max_tokens": 1}, recorded from the real server with the bundled model.
ECHO_REPLY = {
    "choices": [
        {
            "text": "Question: What is 2+2?\nAnswer: 4\n",
            "logprobs": {
                "text_offset": [0, 8, 9, 14, 17, 18, 19, 20, 21, 22, 23, 29, 30, 31, 32],
                "token_logprobs": [
                    None,
                    -0.5741904377937317,
                    -3.1753387451171875,
                    -0.8277320861816406,
                    -5.598873138427734,
                    -2.1017305850982666,
                    -4.662483215332031,
                    -1.1397303342819214,
                    -2.4101052284240723,
                    -2.843475341796875,
                    -1.1773881912231445,
                    -0.023231353610754013,
                    -0.46788275241851807,
                    -1.7023574113845825,
                    -1.4627400636672974,
                ],  # fmt: skip
                "tokens": [
                    "Question",
                    ":",
                    " What",
                    " is",
                    " ",
                    "2",
                    "+",
                    "2",
                    "?",
                    "\n",
                    "Answer",
                    ":",
                    " ",
                    "4",
                    "\n",
                ],
            },
        }
    ],
    "usage": {"prompt_tokens": 15, "completion_tokens": 1},
}


def test_echo_logprobs_sum_the_continuation_only() -> None:
    prompt = "Question: What is 2+2?\nAnswer:"
    total, count = _echo_logprobs(ECHO_REPLY, len(prompt), len(prompt) + len(" 4")) or (0.0, 0)
    assert count == 2 and total == pytest.approx(-0.46788275241851807 - 1.7023574113845825)  # " " and "4", not "\n"
    assert _echo_logprobs({"choices": [{"text": "x", "logprobs": None}]}, 0, 1) is None
    assert _echoed_tokens(ECHO_REPLY, len(prompt) + len(" 4")) == 14  # prompt and choice as echoed, not the reply
    assert _echoed_tokens({"choices": []}, 10) == 0


def test_letters_are_read_from_replies() -> None:
    choices = (" accept as is", " re-heat-treat", " temper again")
    assert read_letter(" B", choices) == 1
    assert read_letter("(C) temper again", choices) == 2
    assert read_letter("I would re-heat-treat it", choices) == 1
    assert read_letter("Answer:", choices) is None
    request = letter_request(ChoiceRequest("Question: Which?\nAnswer:", choices), "completions")
    assert request.prompt == "Question: Which?\nA. accept as is\nB. re-heat-treat\nC. temper again\nAnswer:"
    chat = letter_request(ChoiceRequest("Question: Which?\nAnswer:", choices), "chat").prompt
    assert chat.endswith("Reply with the letter of the best option only.")
