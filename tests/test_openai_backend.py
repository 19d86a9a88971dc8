"""The OpenAI-compatible HTTP backend against the real ``llama_cpp.server`` running the bundled model.

One server (module scope, API key required) is shared by the tests: served results agree with the in-process
llama.cpp backend; a server stopped mid-run gives a clear error, keeps the saved rows and resumes; the API key
never reaches the output directory or the console.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from poccheck import models, pipeline
from poccheck.backends.llama_cpp import LlamaCppBackend
from poccheck.backends.openai_http import letter_request, read_letter
from poccheck.backends.registry import BackendOptions
from poccheck.config.run import RunConfig
from poccheck.endpoints import Endpoint
from poccheck.grading import grade_output
from poccheck.runner import work_items
from poccheck.store import DB_NAME, Store
from poccheck.tasks import load_suites
from poccheck.tasks.examples import default_tasks
from poccheck.tasks.prompts import LETTERS
from tests.conftest import saved_results
from tests.llama_server import MODEL_ALIAS, LlamaServer
from tests.tiny_models import build_gguf

pytestmark = pytest.mark.model

KEY_ENV = "POCCHECK_TEST_API_KEY"
FAKE_KEY = f"sk-poccheck-fake-{secrets.token_hex(16)}"
REPO = Path(__file__).resolve().parent.parent
AGREEMENT_ITEMS = 14  # per suite: 28 of the example suite's 52 items, multiple choice and generation alike
GREEDY = {"repeat_penalty": 1.0}  # llama-cpp-python's server defaults to 1.1; poccheck's own greedy loop has none


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> LlamaServer:
    log = tmp_path_factory.mktemp("server") / "server.log"
    running = LlamaServer(models.bundled_path(), api_key=FAKE_KEY, log=log)
    running.start()
    yield running  # type: ignore[misc]
    running.stop()


def endpoint(server: LlamaServer, name: str = "local") -> Endpoint:
    return Endpoint(
        name, server.base_url, MODEL_ALIAS, api_key_env=KEY_ENV, concurrency=4, max_retries=2, extra_body=GREEDY
    )


def test_served_predictions_agree_with_in_process_llama_cpp(
    server: LlamaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    served = endpoint(server)
    started = time.perf_counter()
    result = pipeline.assess(
        RunConfig(
            default_tasks(),
            [served.spec],
            tmp_path / "served",
            options=BackendOptions(endpoints=(served,)),
            limit=AGREEMENT_ITEMS,
        )
    )
    served_seconds = time.perf_counter() - started
    outcome = result.outcome.models[0]
    assert outcome.error is None
    store = Store(tmp_path / "served" / DB_NAME, create=False)
    try:
        rows = {(r.suite, r.item_id): r for r in store.results()}
        settings = (store.model_runs()[-1].settings or {})["multiple_choice"]
    finally:
        store.close()
    assert "generation + letter" in settings  # this server gives no prompt log-probs (see tests/llama_server.py)

    backend = LlamaCppBackend(models.resolve(models.DEFAULT_MODEL))
    agree = same_text = likelihood_agree = letters_agree = mc = answered = 0
    differ = []
    try:
        work = [w for suite in load_suites(default_tasks()) for w in work_items(suite)[:AGREEMENT_ITEMS]]
        assert len(rows) == len(work)
        for w in work:
            row = rows[(w.suite.name, w.item.id)]
            if w.scored:
                mc += 1
                request = w.choice_request
                local = read_letter(
                    backend.generate(letter_request(request, "completions")).text, request.continuations
                )
                remote = None if row.error else LETTERS.index(row.prediction[0])  # error: no letter in reply
                assert row.error or row.completion_tokens > 0  # the letter reply's tokens are counted
                both = letters_match(local, remote)  # a letter missing on both sides is no agreement
                answered += local is not None and remote is not None
                agree += both
                same_text += both
                letters_agree += both
                differ += [] if both else [w.item.id]
                scores = backend.score_choices([request])[0].logprobs
                likelihood_agree += max(range(len(scores)), key=lambda i: scores[i]) == remote
            else:
                assert row.error is None
                completion = backend.generate(w.generation_request)
                local_prediction = grade_output(
                    w.item, completion.text, None, w.mode, w.suite.answer_pattern
                ).prediction
                agree += local_prediction == row.prediction
                differ += [] if local_prediction == row.prediction else [w.item.id]
                same_text += completion.text == row.output
                assert row.prompt_tokens > 0 and row.ttft is not None and row.ttft <= row.latency
    finally:
        backend.close()
    share = agree / len(work)
    print(
        f"\nserved run: {len(work)} items in {served_seconds:.1f} s at concurrency 4; predictions agree on "
        f"{agree}/{len(work)} = {share:.1%} (identical text {same_text}); multiple choice by letter vs "
        f"in-process log-likelihood: {likelihood_agree}/{mc}; differ: {differ}"
    )
    # The issue asks for 95% of items. The server runs with weight repacking off, as the in-process backend does
    # (tests/serve_llama.py): with it on, the server's prompt-prefix reuse changes llama.cpp's numbers and greedy
    # answers flip at near-ties (measured with the stock server: 46/52, 6 generations differing). Measured with it
    # off: 52/52 on the whole example suite, every output text identical.
    assert 0 < mc < len(work)  # both kinds of item were compared
    assert answered == mc  # every multiple-choice item got a letter, in process and over HTTP
    assert letters_agree == mc
    assert share >= 0.95
    assert same_text >= 0.95 * len(work)


def letters_match(local: int | None, remote: int | None) -> bool:
    """Two letter answers agree when both name the same choice; a letter missing on either side (or both) does not
    agree with anything."""
    return local is not None and remote is not None and local == remote


def test_two_missing_letters_do_not_agree() -> None:
    assert letters_match(1, 1) and not letters_match(1, 2)
    assert not letters_match(None, None) and not letters_match(None, 0) and not letters_match(0, None)


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "poccheck", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _rows(db: Path) -> list[tuple[Any, ...]]:
    return saved_results(db, "item_key, error", timeout=30)


def test_server_stopped_mid_run_gives_a_clear_error_keeps_rows_and_resumes(server: LlamaServer, tmp_path: Path) -> None:
    out = tmp_path / "poc"
    env = {**os.environ, KEY_ENV: FAKE_KEY}
    args = (
        "assess", "--tasks", "examples/factory_tasks.csv", "--endpoint", f"local={server.base_url}#{MODEL_ALIAS}",
        "--api-key-env", KEY_ENV, "--concurrency", "4", "--out", str(out),
    )  # fmt: skip
    total = len(load_suites([REPO / "examples" / "factory_tasks.csv"])[0].items)
    first = _cli(*args, env=env)
    deadline = time.monotonic() + 300
    while len(_rows(out / DB_NAME)) < 4 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    server.stop()
    try:
        output, _ = first.communicate(timeout=180)
    finally:
        server.start()
    saved = _rows(out / DB_NAME)
    assert first.returncode == 1, output
    assert "stopped answering" in output and f"127.0.0.1:{server.port}" in output, output
    assert "run the same command again" in output
    answered = {key for key, error in saved if error is None}
    assert 4 <= len(answered) < total

    second = _cli(*args, env=env)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
    rows = _rows(out / DB_NAME)
    assert len(rows) == total and len({key for key, _ in rows}) == total
    assert all(error is None for _, error in rows)
    with sqlite3.connect(out / DB_NAME) as connection:
        done, settings = connection.execute(
            "SELECT items_done, settings FROM model_runs ORDER BY run_id DESC LIMIT 1"
        ).fetchone()
    assert done == total - len(answered)  # only what was missing was sent again
    assert json.loads(settings)["generation_parallel"] == 4  # the latencies were measured with 4 requests in flight
    print(f"\nstopped after {len(answered)}/{total} items; the rerun sent {done}")


def test_api_key_never_reaches_outputs_or_console(server: LlamaServer, tmp_path: Path) -> None:
    wrong = f"sk-poccheck-wrong-{secrets.token_hex(16)}"
    out = tmp_path / "poc"
    plan = tmp_path / "poccheck.yaml"
    plan.write_text(
        f"""tasks: ["{REPO / "examples" / "factory_suite.yaml"}", "{REPO / "examples" / "factory_tasks.csv"}"]
candidates: [local@openai, wrongkey@openai]
targets: {{accuracy: 0.5}}
workload: {{tasks_per_day: 1000, peak_concurrency: 4}}
currency: USD
endpoints:
  local:
    base_url: {server.base_url}
    model: {MODEL_ALIAS}
    api_key_env: {KEY_ENV}
    price: gpt-4o-mini
    parameters: 270000000
    extra_body: {{repeat_penalty: 1.0}}
  wrongkey: {{base_url: "{server.base_url}", model: {MODEL_ALIAS}, api_key_env: POCCHECK_TEST_WRONG_KEY}}
out: {out}
""",
        encoding="utf-8",
    )
    env = {**os.environ, KEY_ENV: FAKE_KEY, "POCCHECK_TEST_WRONG_KEY": wrong}
    run = _cli("assess", "--plan", str(plan), "--limit", "2", env=env)
    output, _ = run.communicate(timeout=300)
    assert run.returncode == 0, output
    assert "refused the API key" in output  # the wrong key was sent and refused, and is not shown
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "generation + letter" in report and "local@openai" in report
    files = [path for path in out.rglob("*") if path.is_file()]
    assert any(path.name == DB_NAME for path in files) and any(path.name == "report.html" for path in files)
    for key in (FAKE_KEY, wrong):
        assert key not in output
        for path in files:
            assert key.encode() not in path.read_bytes(), f"{key[:12]}... found in {path}"


def test_log_likelihood_over_http_matches_in_process_llama_cpp(tmp_path: Path) -> None:
    """Multiple choice by prompt log-probs (``echo`` + ``logprobs``) against the real server, on a tiny random
    float32 Llama built here: the bundled model's 262k vocabulary makes this server take seconds per request."""
    model = build_gguf(tmp_path / "tiny.gguf")
    tiny = LlamaServer(model, logits_all=True, log=tmp_path / "server.log")
    tiny.start()
    try:
        served = Endpoint("tiny", tiny.base_url, MODEL_ALIAS, concurrency=4, max_retries=1, extra_body=GREEDY)
        result = pipeline.assess(
            RunConfig(default_tasks(), [served.spec], tmp_path / "served", options=BackendOptions(endpoints=(served,)))
        )
    finally:
        tiny.stop()
    assert result.outcome.models[0].error is None
    store = Store(tmp_path / "served" / DB_NAME, create=False)
    try:
        rows = {(r.suite, r.item_id): r for r in store.results()}
        assert "log-likelihood (echo + logprobs)" in (store.model_runs()[-1].settings or {})["multiple_choice"]
    finally:
        store.close()
    work = [w for suite in load_suites(default_tasks()) for w in work_items(suite) if w.scored]
    requests = [w.choice_request for w in work]
    with LlamaCppBackend(models.resolve(str(model))) as local:
        expected = local.score_choices(requests)
    assert len(work) >= 15
    worst = max(
        abs(a - b)
        for w, scores in zip(work, expected, strict=True)
        for a, b in zip(rows[(w.suite.name, w.item.id)].choice_logprobs or [], scores.logprobs, strict=False)
    )
    print(f"\nlog-likelihood over HTTP: {len(work)} items, largest difference from in-process {worst:.1e} nats")
    for w, scores in zip(work, expected, strict=True):
        row = rows[(w.suite.name, w.item.id)]
        assert row.error is None
        assert row.prediction[0] == LETTERS[max(range(len(scores.logprobs)), key=scores.logprobs.__getitem__)]
        # counted as in-process (the prompt once, every choice); what the echo requests generated is the server's
        # own usage count (this server reports a few tokens per item for its max_tokens=1 requests)
        assert row.prompt_tokens == scores.prompt_tokens + sum(scores.token_counts)
        assert row.completion_tokens > 0
        # float32 weights: no 8-bit activations, so the two KV layouts differ only in rounding
        assert list(row.choice_logprobs or ()) == pytest.approx(list(scores.logprobs), abs=1e-3), w.item.id
