"""The OpenAI-compatible HTTP backend against a fake server written here (a few lines of ``http.server``), so these
run in seconds: stored errors never quote the model's reply or the server's error body; the probed multiple-choice
method is recorded in the output folder and reused (``--reprobe`` probes again); the API key travels only in the
``Authorization`` header and is written nowhere; letter answers carry no invented scores, and the report and the
cascades say so. The real server is exercised in tests/test_openai_backend.py."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from poccheck import cli, models, pipeline, runner
from poccheck.analysis.cascade import simulate
from poccheck.analysis.recommend import options
from poccheck.analysis.summary import Findings, GradedRow, ModelFindings
from poccheck.backends import openai_http
from poccheck.backends.openai_http import OpenAIBackend
from poccheck.backends.registry import BackendOptions
from poccheck.config.run import RunConfig
from poccheck.endpoints import Endpoint
from poccheck.errors import ModelError
from poccheck.grading import grade_output
from poccheck.records import Grade, TaskItem
from poccheck.report import ReportContent, render
from poccheck.store import DB_NAME, SCHEMA_VERSION, Store
from poccheck.tasks import load_suites
from tests.test_cascade import _cost, _costs, cloud

from .rows import stored_result

SECRET = "SECRET-7f3a"  # in every reply and error body the fake server writes that must not be stored
MC_ITEMS = 4
TASKS = """id,input,type,choices,answer,category
m1,Which colour is the sky on a clear day?,multiple_choice,blue|green,A,colours
m2,Which colour is fresh grass?,multiple_choice,blue|green,B,colours
m3,Which colour is the sea far out?,multiple_choice,blue|green,A,colours
m4,Which colour is a lime?,multiple_choice,blue|green,B,colours
g1,Say OK.,exact,,OK,words
"""
FAILING = """id,input,type,choices,answer,category
m-noletter,Pick one (noletter).,multiple_choice,blue|green,A,colours
g-400,Say OK (fail-400).,exact,,OK,words
g-503,Say OK (fail-503).,exact,,OK,words
"""


class FakeServer:
    """An OpenAI-compatible server in a thread: ``/v1/models``, ``/v1/completions`` (streamed replies, and prompt
    log-probs for ``echo`` requests while ``echo`` is on). A lettered prompt is answered ``A`` (``B`` when it
    mentions grass or a lime), other prompts ``OK``; prompts with a marker fail as the marker says."""

    def __init__(self) -> None:
        self.echo = True
        self.probe_status = 200
        self.requests: list[dict[str, Any]] = []  # item requests (not the load-time probes)
        self.key: str | None = None  # when set, a request without "Bearer <key>" is refused, its header echoed
        self.received: list[tuple[str, str | None, bytes]] = []  # every request: path, Authorization, body
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self._authorised(b""):
                    self._send(200, json.dumps({"data": [{"id": "m"}]}), "application/json")

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                if self._authorised(raw):
                    fake.answer(self, json.loads(raw))

            def _authorised(self, raw: bytes) -> bool:
                header = self.headers.get("Authorization")
                fake.received.append((self.path, header, raw))
                if fake.key is None or header == f"Bearer {fake.key}":
                    return True
                self._send(401, json.dumps({"error": f"invalid key in {header!r}"}), "application/json")
                return False

            def _send(self, status: int, text: str, kind: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.handler = Handler
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, handler: Any, body: dict[str, Any]) -> None:
        prompt = str(body.get("prompt", ""))
        probe = prompt in ("Yes.", "Hi")
        if not probe:
            self.requests.append(body)
        if body.get("echo"):
            if not self.echo:  # a server that ignores echo: a reply without prompt log-probs
                handler._send(200, json.dumps({"choices": [{"text": "x"}]}), "application/json")
                return
            tokens = [*prompt, "x"]
            values = [None, *(-0.1 * (1 + ord(c) % 5) for c in prompt[1:]), -0.5]
            logprobs = {"tokens": tokens, "text_offset": list(range(len(tokens))), "token_logprobs": values}
            reply = {"choices": [{"text": prompt + "x", "logprobs": logprobs}], "usage": {"prompt_tokens": len(prompt)}}
            handler._send(200, json.dumps(reply), "application/json")
            return
        if probe and self.probe_status != 200:
            handler._send(self.probe_status, f'{{"error": "{SECRET}: no model m"}}', "application/json")
            return
        for marker, status in (("fail-400", 400), ("fail-503", 503)):
            if marker in prompt:
                handler._send(status, f'{{"error": "{SECRET} could not read: {prompt}"}}', "application/json")
                return
        if "noletter" in prompt:
            text = f"unsure, sorry {SECRET.lower()}"
        elif "Options" in prompt or "\nA. " in prompt:
            text = " B" if "grass" in prompt or "lime" in prompt else " A"
        else:
            text = " OK"
        events = [
            {"choices": [{"text": text, "finish_reason": None}]},
            {"choices": [{"text": "", "finish_reason": "stop"}]},
            {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 1}},
        ]
        stream = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        handler._send(200, stream, "text/event-stream")


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def endpoint(server: FakeServer) -> Endpoint:
    return Endpoint("fake", server.base_url, "m", concurrency=2, max_retries=0, timeout_seconds=10)


def suites(tmp_path: Path, text: str = TASKS) -> list[Any]:
    path = tmp_path / "tasks.csv"
    path.write_text(text, encoding="utf-8")
    return load_suites([path])


def assess(server: FakeServer, tmp_path: Path, store: Store, text: str = TASKS, reprobe: bool = False) -> Any:
    served = endpoint(server)
    options = BackendOptions(endpoints=(served,), reprobe=reprobe)
    return runner.run(suites(tmp_path, text), runner.Schedule((served.spec,)), store, options=options).models[0]


# ---------------------------------------------------------------- 1. stored errors quote nothing


def test_stored_errors_from_a_fake_server_quote_neither_the_reply_nor_the_error_body(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake_server.echo = False  # multiple choice by letter
    store = Store(tmp_path / "out" / DB_NAME)
    try:
        outcome = assess(fake_server, tmp_path, store, FAILING)
        errors = {row.item_id: row.error for row in store.results()}
    finally:
        store.close()
    assert outcome.error is None and outcome.failed_items == 3
    reply = f"unsure, sorry {SECRET.lower()}"
    assert errors["m-noletter"] == f"no option letter in the reply ({len(reply)} characters)"
    assert errors["g-400"] == f"{fake_server.base_url} answered HTTP 400 Bad Request"
    assert errors["g-503"] == f"{fake_server.base_url}: HTTP 503 Service Unavailable after 1 attempts"
    for path in (tmp_path / "out").iterdir():  # the database and its WAL: the secret is nowhere
        assert SECRET.encode() not in path.read_bytes().upper(), path


def test_a_fake_server_refusing_the_test_request_is_reported_without_its_error_body(fake_server: FakeServer) -> None:
    fake_server.probe_status = 404
    served = endpoint(fake_server)
    with pytest.raises(ModelError) as raised:
        OpenAIBackend(models.resolve(served.spec, (served,)), served)
    assert raised.value.message == f"{fake_server.base_url} answered HTTP 404 Not Found to a test request"
    assert SECRET not in str(raised.value)


# ---------------------------------------------------------------- 2. the probed method is recorded and reused


def test_the_probed_method_is_recorded_and_reused_when_a_faked_slow_probe_would_flip_it(
    fake_server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "out" / DB_NAME
    items = MC_ITEMS + 1
    store = Store(db)
    try:
        first = assess(fake_server, tmp_path, store)
        assert (first.error, first.done) == (None, items)
        assert store.probed_method(fake_server.base_url, "m") == "logprobs"
        assert all(r.choice_logprobs for r in store.results() if r.item_id.startswith("m"))
        sent = len(fake_server.requests)

        # faked: every echo probe now takes "too long", as on a busy server, so a fresh probe picks letters
        monkeypatch.setattr(openai_http, "ECHO_PROBE_SECONDS", 0.0)
        served = endpoint(fake_server)
        assert OpenAIBackend(models.resolve(served.spec, (served,)), served).mc_method == "generation"

        second = assess(fake_server, tmp_path, store)  # reuses the recorded method: resumes, sends nothing
        assert (second.error, second.done, second.skipped) == (None, 0, items)
        assert len(store.results()) == items and len(fake_server.requests) == sent
        assert "log-likelihood" in (store.model_runs()[-1].settings or {})["multiple_choice"]

        third = assess(fake_server, tmp_path, store, reprobe=True)  # --reprobe: probed again, letters now
        assert (third.error, third.done) == (None, items)
        assert store.probed_method(fake_server.base_url, "m") == "generation"
        assert "generation + letter" in (store.model_runs()[-1].settings or {})["multiple_choice"]
    finally:
        store.close()
    reopened = Store(db, create=False)  # a database of this version opens, with what it recorded
    try:
        assert reopened.probed_method(fake_server.base_url, "m") == "generation"
    finally:
        reopened.close()


def test_a_database_without_the_probed_methods_table_opens_and_gains_it(tmp_path: Path) -> None:
    db = tmp_path / DB_NAME
    Store(db).close()  # as an earlier version wrote it: the same schema version, no probed_methods table
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "probed_methods" not in tables and "results" in tables
    store = Store(db, create=False)
    try:
        assert store.probed_method("http://h/v1", "m") is None
        store.record_probed_method("http://h/v1", "m", "logprobs")
        store.record_probed_method("http://h/v1", "m", "generation")  # a re-probe replaces it
        assert store.probed_method("http://h/v1", "m") == "generation"
        assert store.probed_method("http://h/v1", "other") is None
    finally:
        store.close()
    with sqlite3.connect(db) as connection:  # no new schema version: older poccheck versions still open it
        assert connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == str(SCHEMA_VERSION)


def test_the_reprobe_flag_reaches_the_backend_options_with_assess_faked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[BackendOptions] = []

    def fake_assess(config: RunConfig, progress: Any = None) -> None:
        seen.append(config.options)
        raise SystemExit(0)

    monkeypatch.setattr(pipeline, "assess", fake_assess)
    args = ["assess", "--endpoint", "x=http://h/v1#m", "--out", str(tmp_path / "poc")]
    for extra, expected in (([], False), (["--reprobe"], True)):
        result = CliRunner().invoke(cli.app, [*args, *extra])
        assert result.exit_code == 0, result.output
        assert seen[-1].reprobe is expected


# ---------------------------------------------------------------- 3. the API key goes in one header, nowhere else


def test_the_api_key_is_sent_only_in_its_header_and_never_written_with_a_fake_server(
    fake_server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, wrong = "sk-poccheck-right-5d1e9c", "sk-poccheck-wrong-0b77aa"
    fake_server.key = key
    tasks = tmp_path / "tasks.csv"
    tasks.write_text(TASKS, encoding="utf-8")

    def assess_with(value: str | None, out: Path) -> str:
        if value is None:
            monkeypatch.delenv("POCCHECK_TEST_KEY", raising=False)
        else:
            monkeypatch.setenv("POCCHECK_TEST_KEY", value)
        args = ["assess", "--tasks", str(tasks), "--endpoint", f"fake={fake_server.base_url}#m"]
        args += ["--api-key-env", "POCCHECK_TEST_KEY", "--out", str(out)]
        done = CliRunner().invoke(cli.app, args)
        return done.output + str(done.exception or "")

    said = assess_with(key, tmp_path / "right")
    with sqlite3.connect(tmp_path / "right" / DB_NAME) as db:
        assert db.execute("SELECT count(*) FROM results WHERE error IS NULL").fetchone() == (MC_ITEMS + 1,), said
    assert {header for _, header, _ in fake_server.received} == {f"Bearer {key}"}
    assert not [path for path, _, body in fake_server.received if key in path or key.encode() in body]
    fake_server.received.clear()

    said += assess_with(wrong, tmp_path / "wrong")  # refused; the server's reply quotes the key it was sent
    assert "refused the API key (HTTP 401)" in said
    assert {header for _, header, _ in fake_server.received} == {f"Bearer {wrong}"}

    missing = assess_with(None, tmp_path / "unset")
    assert "POCCHECK_TEST_KEY" in missing and "is not set" in missing
    written = [path for path in tmp_path.rglob("*") if path.is_file() and path != tasks]
    assert any(path.name == DB_NAME for path in written) and any(path.name == "report.html" for path in written)
    for secret in (key, wrong):
        assert secret not in said + missing
        for path in written:
            assert secret.encode() not in path.read_bytes(), f"{secret} found in {path}"


# ---------------------------------------------------------------- 4. letter answers carry no invented scores


def test_letter_answers_from_a_fake_server_store_no_scores_and_the_report_says_so(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake_server.echo = False
    served = endpoint(fake_server)
    tasks = tmp_path / "tasks.csv"
    tasks.write_text(TASKS.replace(",B,colours", ",A,colours", 1), encoding="utf-8")  # m2 graded wrong: a failure
    result = pipeline.assess(
        RunConfig([tasks], [served.spec], tmp_path / "out", options=BackendOptions(endpoints=(served,)))
    )
    store = Store(tmp_path / "out" / DB_NAME, create=False)
    try:
        rows = {r.item_id: r for r in store.results()}
    finally:
        store.close()
    for item in ("m1", "m2", "m3", "m4"):
        assert rows[item].error is None and rows[item].choice_logprobs is None and rows[item].margin is None
    assert rows["m1"].prediction == "A. blue" and rows["m2"].correct == 0
    (found,) = result.findings.models
    assert found.letter_answers == MC_ITEMS and found.accuracy_norm is None
    assert found.accuracy.successes == MC_ITEMS  # three letters right, and g1
    report = result.report.read_text(encoding="utf-8")
    assert "no scores (letter answers)" in report and "(no scores: letter answer)" in report
    assert "margin 100.00" not in report


def test_letter_answers_stored_with_placeholder_scores_by_older_versions_have_no_margin() -> None:
    item = TaskItem(id="q", input="?", type="multiple_choice", answer=1, choices=("blue", "green"))
    old = grade_output(item, " A", [0.0, -100.0])  # as letter mode stored it before: 0 and -100
    assert (old.correct, old.prediction, old.margin, old.correct_norm) == (False, "A. blue", None, None)
    none = grade_output(item, " B", None)
    assert (none.correct, none.margin, none.correct_norm) == (True, None, None)
    scored = grade_output(item, "", [-1.0, -0.25])  # log-likelihoods of an in-process backend: unchanged
    assert scored.correct and scored.margin == pytest.approx(0.75) and scored.correct_norm is not None


def served_model(name: str, count: int, letters: bool) -> ModelFindings:
    """A model that answered every item: with a letter read from its reply (graded, but with no scores), or by
    scoring the choices (a margin to rank its answers by)."""
    rows = []
    for index in range(count):
        item = TaskItem(id=f"q{index:03d}", input="?", type="multiple_choice", answer=0, choices=("a", "b"))
        output, scores = (" A" if index % 3 else " B", None) if letters else ("", [-0.1, -2.0 + index / count])
        result = stored_result(
            item,
            output=output,
            choice_logprobs=scores,
            latency=0.5,
            ttft=None,
            prompt_tokens=20,
            completion_tokens=1,
            finish_reason=None,
            mean_logprob=None,
            error=None,
        )
        rows.append(GradedRow(name, "s", item, result, grade_output(item, output, scores)))
    return ModelFindings(name=name, info=None, error=None, rows=rows, expected_items=count)


def test_a_small_model_answering_by_letter_is_no_cascade_small_tier_and_the_report_says_so(tmp_path: Path) -> None:
    small, large = served_model("small", 30, letters=True), served_model("large", 30, letters=False)
    assert all(r.letter_answer and r.grade and r.grade.margin is None for r in small.rows)
    cascade = simulate(
        cloud(small, 300.0), cloud(large, 3000.0), targets={"general": 0.9}, latency_slo=None,
        use_lower_bound=False, tasks_per_day=1000, hours_per_day=10,
    )  # fmt: skip
    assert cascade is not None
    assert (cascade.unscored, cascade.rule, cascade.validated, cascade.points) == (30, None, None, [])
    costs = _costs(cascade, [_cost("small", "cloud:x", 300.0), _cost("large", "cloud:x", 3000.0)])
    findings = Findings([small, large], ["general"], ["s"], 30, [])
    assert not [o for o in options(findings, costs) if o.deployment == "cascade"]  # not offered as a decision
    page = render(ReportContent(findings, costs=costs), tmp_path).read_text(encoding="utf-8")
    assert "small cannot be the small model of a cascade: 30 items it answered carry no confidence signal" in page
    reverse = simulate(  # answering by letter is no obstacle for the large tier: it is never asked how sure it is
        cloud(large, 300.0), cloud(small, 3000.0), targets={"general": 0.9}, latency_slo=None,
        use_lower_bound=False, tasks_per_day=1000, hours_per_day=10,
    )  # fmt: skip
    assert reverse is not None and reverse.unscored == 0 and reverse.points


def test_graded_rows_say_which_answers_are_letters() -> None:
    item = TaskItem(id="q", input="?", type="multiple_choice", answer=0, choices=("a", "b"))
    scored = GradedRow(
        "m", "s", item, stored_result(item, choice_logprobs=[-1.0, -2.0]), Grade(True, "A. a", True, 1.0)
    )
    chain = GradedRow("m", "s", item, stored_result(item, output="... the answer is A"), Grade(True, "A. a"), "cot")
    letter = GradedRow("m", "s", item, stored_result(item, output=" A"), Grade(True, "A. a"))
    assert (scored.letter_answer, chain.letter_answer, letter.letter_answer) == (False, False, True)
