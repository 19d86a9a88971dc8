"""Generation in the llama.cpp backend: the KV cells of a shared prompt prefix are kept between items, and several
items are decoded together (continuous batching), and neither changes an output. Checked on the bundled Gemma 3
(raw prompts) and on SmolLM2 in its chat template, over the example suite's generation items, against each item
decoded alone from an empty context. From eight together (the tiled kernels) and, with repacked decoding, from
four, every step is padded: an output is then the same whatever is decoded beside it, checked on Gemma 3 and on
Qwen2.5-Coder 0.5B, whose repacked block rows differ from its rows alone. The engine's CPU features are printed:
the claim is made per machine."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from poccheck import models, pipeline, runner
from poccheck.analysis.summary import analyse
from poccheck.backends import GenerationRequest
from poccheck.backends.llama_cpp import (
    REPACK_ROWS,
    TILED_ROWS,
    LlamaCppBackend,
    LlamaSettings,
    padded_rows,
    system_info,
    tiled_kernels,
    tiled_setting,
)
from poccheck.backends.registry import BackendOptions
from poccheck.config.run import RunConfig
from poccheck.grading.stage import grade_stored
from poccheck.records import Completion, Mode
from poccheck.store import DB_NAME, Store
from poccheck.tasks import load_suite

from .conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.model


def requests(backend: LlamaCppBackend, name: str, mode: Mode, cap: int, count: int) -> list[GenerationRequest]:
    chosen = runner.generation_requests(backend, load_suite(EXAMPLES / "factory_suite.yaml"), name, mode)[:count]
    return [dataclasses.replace(r, max_tokens=cap) for r in chosen]


def alone(backend: LlamaCppBackend, request: GenerationRequest) -> Completion:
    """The item decoded from an empty context: nothing kept from the item before."""
    backend._forget(backend._llm.ctx, [backend._held])
    return backend.generate(request)


def same(a: Completion, b: Completion) -> bool:
    return (a.text, a.completion_tokens, a.finish_reason, a.prompt_tokens) == (
        b.text, b.completion_tokens, b.finish_reason, b.prompt_tokens
    )  # fmt: skip


@pytest.fixture(scope="module", params=["gemma3-270m-q4", "smollm2-135m-q4"])
def model(request: pytest.FixtureRequest) -> Iterator[tuple[str, LlamaCppBackend]]:
    name = request.param
    if not models.installed(name):
        pytest.skip(f"{name} is not installed (poccheck models install {name})")
    backend = LlamaCppBackend(models.resolve(name))
    print("engine:", system_info())
    yield name, backend
    backend.close()


@pytest.mark.parametrize(("mode", "cap", "count"), [("fewshot", 48, 12), ("cot", 64, 4)])
def test_kept_prefixes_and_batched_decoding_give_each_item_its_own_output(
    model: tuple[str, LlamaCppBackend], mode: Mode, cap: int, count: int
) -> None:
    name, backend = model
    asked = requests(backend, name, mode, cap, count)
    fresh = [alone(backend, r) for r in asked]
    kept = []
    for r in asked:
        kept.append(backend.generate(r))
    assert [same(a, b) for a, b in zip(fresh, kept, strict=True)] == [True] * len(asked)
    for parallel in (2, 4):
        together = dict(backend.generate_many(asked, parallel))
        assert sorted(together) == list(range(len(asked)))
        assert all(isinstance(c, Completion) for c in together.values())
        differ = [i for i, c in enumerate(fresh) if not same(c, together[i])]  # type: ignore[arg-type]
        assert differ == [], (parallel, [(fresh[i].text, together[i]) for i in differ])
    assert sum(c.completion_tokens for c in fresh) > len(asked)  # real generations, not empty replies


def test_an_item_that_cannot_run_fails_alone_and_the_others_finish(bundled_model: Path) -> None:
    backend = LlamaCppBackend(models.resolve("gemma3-270m-q4"), LlamaSettings(n_ctx=128))
    try:
        short = GenerationRequest("Q: Line L1 made 400 and scrapped 12. How many are good?\nA:", ("\n",), 8)
        long = GenerationRequest("word " * 400, ("\n",), 8)
        results = dict(backend.generate_many([short, long, short, short], 2))
        assert "but the context holds" in str(results.pop(1))
        texts = {r.text for r in results.values() if isinstance(r, Completion)}
        assert len(results) == 3 and len(texts) == 1  # the same prompt gives the same answer in every slot
        assert texts == {backend.generate(short).text}
    finally:
        backend.close()


def test_assess_records_how_many_were_decoded_together_and_the_results_do_not_depend_on_it(
    tmp_path: Path, bundled_model: Path
) -> None:
    stored = {}
    for parallel in (1, 3):
        out = tmp_path / f"p{parallel}"
        pipeline.assess(RunConfig([EXAMPLES / "factory_tasks.csv"], ["gemma3-270m-q4"], out, limit=8,
                        options=BackendOptions(parallel=parallel)))  # fmt: skip
        with closing(sqlite3.connect(out / DB_NAME)) as db:
            (settings,) = db.execute("SELECT settings FROM model_runs WHERE settings IS NOT NULL").fetchone()
            stored[parallel] = sorted(db.execute("SELECT item_key, settings_key, output FROM results").fetchall())
        assert json.loads(settings)["generation_parallel"] == parallel
        # throughput is items over the run's wall time, not over the sum of latencies of items in flight together
        with closing(sqlite3.connect(out / DB_NAME)) as db:
            done, seconds = db.execute("SELECT items_done, seconds FROM model_runs WHERE seconds > 0").fetchone()
        store = Store(out / DB_NAME, create=False)
        try:
            (found,) = analyse(snapshot := store.snapshot(), grade_stored(snapshot)).models
        finally:
            store.close()
        assert done == 8 and found.items_per_second == pytest.approx(done / seconds)
        assert found.generated > 0 and found.in_flight == parallel  # the report's "generations in flight"
        # several in flight: the first 3 generations are timed again alone, and (exact batching) say the same
        samples = snapshot.latency_samples
        if parallel == 1:
            assert samples == () and found.alone is None
            continue
        assert len(samples) == min(3, found.generated) and all(s.same_output for s in samples)
        assert found.alone is not None and found.alone.n == len(samples) and found.alone.same_output == len(samples)
        generated = {r.result.item_key: r.result.latency for r in found.rows if r.result.finish_reason}
        assert {s.item_key for s in samples} <= set(generated)
        assert list(found.alone.loaded) == [generated[s.item_key] for s in samples]  # paired with the stored ones
        assert "timed again one at a time" in (out / "report.html").read_text(encoding="utf-8")
        pipeline.assess(RunConfig([EXAMPLES / "factory_tasks.csv"], ["gemma3-270m-q4"], out, limit=8,
                        options=BackendOptions(parallel=parallel)))  # fmt: skip
        store = Store(out / DB_NAME, create=False)
        try:
            assert store.latency_samples() == list(samples)  # a resumed run does not time them again
        finally:
            store.close()
    assert stored[1] == stored[3] and len(stored[1]) == 8


def test_tiled_decode_steps_and_repacked_ones_are_keyed(bundled_model: Path) -> None:
    assert tiled_kernels(), "this test run has GGML_CPU_TILED_MM off"
    repacked = {"repacked_decode": REPACK_ROWS}
    with LlamaCppBackend(models.resolve("gemma3-270m-q4"), LlamaSettings(repacked_decode=True)) as backend:
        assert [backend.batch_key(n) for n in range(1, REPACK_ROWS)] == [{}] * (REPACK_ROWS - 1)
        assert backend.batch_key(REPACK_ROWS) == repacked
        tiled = {**repacked, "tiled_decode": TILED_ROWS}
        assert [backend.batch_key(n) for n in (REPACK_ROWS + 1, TILED_ROWS, 16)] == [tiled] * 3
        assert backend.step_shape(REPACK_ROWS + 1).slots(REPACK_ROWS + 1) == TILED_ROWS  # room for the padding
        assert backend.step_shape(9).slots(9) == 12
        assert "tiled_kernels" not in backend.settings()  # the default: results keep their key
    with LlamaCppBackend(models.resolve("gemma3-270m-q4")) as backend:  # the default: not repacked
        assert [backend.batch_key(n) for n in (1, 4, TILED_ROWS - 1)] == [{}, {}, {}]
        assert backend.batch_key(TILED_ROWS) == {"tiled_decode": TILED_ROWS} == backend.batch_key(16)
    # read as llama.cpp reads it (C's atoi); turned off, see the next test
    values = [None, "1", "2", " 3x", "0", " 0x1", "", "yes", "-0"]
    assert [tiled_setting(v) for v in values] == [True, True, True, True, False, False, False, False, False]


def test_a_kept_prefix_leaves_the_rows_to_evaluate_the_tiled_and_repacked_kernels_need(bundled_model: Path) -> None:
    backend = LlamaCppBackend(models.resolve("gemma3-270m-q4"), LlamaSettings(repacked_decode=True))
    question = "A machine makes 40 parts an hour. How many parts does it make in 3 hours? Answer with a number, "
    first, second = (GenerationRequest(question + end, (), 12) for end in ("7", "8"))
    started: list[Any] = []
    start_sequence = backend._start_sequence

    def recorded(*args: Any) -> Any:
        started.append(start_sequence(*args))
        return started[-1]

    try:
        fresh = alone(backend, second)
        backend.generate(first)
        backend._start_sequence = recorded  # type: ignore[method-assign]
        kept = backend.generate(second)
        # the prompts part at their last token: evaluating only that one would take other kernels than fresh
        prompt = backend.prompt_tokens(second.prompt, second.turns)
        assert 0 < started[0].reused == len(prompt) - TILED_ROWS
        assert same(kept, fresh) and kept.mean_logprob == fresh.mean_logprob
        # on the repacked copy (4 in flight) the rows kept are a multiple of 4, so each fresh row falls in a block
        # of the block kernel, or among the rows left over, as in a fresh evaluation of the prompt
        (_, fresh_four), = backend.generate_many([second], REPACK_ROWS)  # fmt: skip
        dict(backend.generate_many([first], REPACK_ROWS))  # sequence 0 now holds the first prompt
        started.clear()
        (_, kept_four), = backend.generate_many([second], REPACK_ROWS)  # fmt: skip
        reused = started[0].reused
        assert 0 < reused <= len(prompt) - TILED_ROWS and reused % REPACK_ROWS == 0
        assert isinstance(kept_four, Completion) and isinstance(fresh_four, Completion)
        assert same(kept_four, fresh_four) and kept_four.mean_logprob == fresh_four.mean_logprob
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("live", "slots", "minimum", "multiple", "rows"),
    [({0}, 8, 8, 1, range(8)), ({0, 2, 5}, 11, 8, 1, range(8)), ({9, 10}, 11, 8, 1, range(3, 11)),
     ({0, 15}, 16, 8, 1, range(16)), (set(range(3, 12)), 16, 8, 1, range(3, 12)),
     ({1}, 4, 4, 4, range(4)), ({2, 5}, 8, 4, 4, range(2, 6)), ({5, 6, 7}, 8, 4, 4, range(4, 8)),
     ({0, 2, 5}, 8, 4, 4, range(8)), ({3, 9}, 12, 8, 4, range(3, 11)), (set(range(1, 10)), 12, 8, 4, range(12))],
)  # fmt: skip
def test_a_padded_step_has_enough_consecutive_sequence_ids_with_every_live_one(
    live: set[int], slots: int, minimum: int, multiple: int, rows: range
) -> None:
    assert padded_rows(live, slots, minimum, multiple) == list(rows)


def test_from_eight_sequences_an_output_is_the_same_whatever_is_decoded_beside_it(bundled_model: Path) -> None:
    # Every step is padded to TILED_ROWS rows, so the tiled kernels compute each token, at the run's end too
    # (fewer live sequences than rows); without the padding 5 of these 12 chains differ between the two runs
    # (AMD EPYC AVX-512). Printed: how many differ from the item alone (the other kernels).
    assert tiled_kernels(), "this test run has GGML_CPU_TILED_MM off"
    backend = LlamaCppBackend(models.resolve("gemma3-270m-q4"))
    try:
        asked = requests(backend, "gemma3-270m-q4", "cot", 64, 12)
        eight = dict(backend.generate_many(asked, TILED_ROWS))
        eleven = dict(backend.generate_many(asked[::-1], 11))  # other neighbours, another end of the run
        solo = [backend.generate(r) for r in asked]
    finally:
        backend.close()
    first = [eight[i] for i in range(len(asked))]
    second = [eleven[len(asked) - 1 - i] for i in range(len(asked))]
    assert all(isinstance(c, Completion) for c in first + second) and any(c.text for c in first)
    assert [(c.text, c.completion_tokens, c.finish_reason) for c in first] == [
        (c.text, c.completion_tokens, c.finish_reason) for c in second
    ]
    print(f"{sum(not same(a, b) for a, b in zip(first, solo, strict=True))}/12 differ from alone; {system_info()}")


def test_repacked_decoding_is_asked_for_on_the_command_line_and_keys_the_results(
    tmp_path: Path, bundled_model: Path
) -> None:
    from typer.testing import CliRunner

    from poccheck.cli import app

    base = ["assess", "--tasks", str(EXAMPLES / "factory_tasks.csv"), "--model", "gemma3-270m-q4", "--mode", "cot",
            "--limit", "5", "--parallel", "4", "--latency-sample", "0"]  # fmt: skip
    keys = []
    for flag in ([], ["--repacked-decode"]):
        out = tmp_path / ("repacked" if flag else "plain")
        done = CliRunner().invoke(app, [*base, *flag, "--out", str(out)])
        assert done.exit_code == 0, done.output + repr(done.exception)
        with closing(sqlite3.connect(out / DB_NAME)) as db:
            (settings,) = db.execute("SELECT settings FROM model_runs WHERE settings IS NOT NULL").fetchone()
            keys.append({key for (key,) in db.execute("SELECT DISTINCT settings_key FROM results")})
        assert json.loads(settings).get("repacked_decode") == (REPACK_ROWS if flag else None)
    assert keys[0].isdisjoint(keys[1])  # results decoded otherwise are not mixed


def decoded(
    backend: LlamaCppBackend, asked: list[GenerationRequest], parallel: int, reverse: bool = False
) -> list[Any]:
    """What each request gives at ``parallel`` in flight, in the given order or the reverse, in request order."""
    order = list(range(len(asked)))[::-1] if reverse else list(range(len(asked)))
    done = dict(backend.generate_many([asked[i] for i in order], parallel))
    found = [done[order.index(i)] for i in range(len(asked))]
    assert all(isinstance(c, Completion) for c in found)
    return [(c.text, c.completion_tokens, c.finish_reason) for c in found]


def test_with_repacked_decoding_from_four_an_output_is_the_same_whatever_is_decoded_beside_it() -> None:
    # Qwen2.5-Coder 0.5B's repacked block rows differ from its rows alone (benchmarks/repack_rows.py), so with
    # unpadded steps an item's numbers would depend on how many are live beside it. Padded, every step has 4 rows
    # at N = 4 and 8 from N = 5 (the tiled kernels too): suite order against reverse order (other neighbours,
    # other prefixes kept, another end of the run) at 4, and 5 against 8. How many differ from alone, and where:
    # benchmarks/generation_throughput.py --repacked.
    name = "qwen2.5-coder-0.5b-q4"
    if not models.installed(name):
        pytest.skip(f"{name} is not installed (poccheck models install {name})")
    assert tiled_kernels(), "this test run has GGML_CPU_TILED_MM off"
    with LlamaCppBackend(models.resolve(name), LlamaSettings(repacked_decode=True)) as backend:
        asked = requests(backend, name, "cot", 40, 8)
        four = decoded(backend, asked, 4)
        assert decoded(backend, asked, 4, reverse=True) == four
        assert decoded(backend, asked, 5, reverse=True) == decoded(backend, asked, 8)
    assert sum(tokens for _, tokens, _ in four) > len(asked)


TILED_OFF = """
import json
from poccheck import models
from poccheck.backends.llama_cpp import LlamaCppBackend
from tests.test_generation_batching import requests
backend = LlamaCppBackend(models.resolve("gemma3-270m-q4"))
asked = requests(backend, "gemma3-270m-q4", "cot", 64, 12)
alone = [backend.generate(r).text for r in asked]
together = dict(backend.generate_many(asked, 8))
print(json.dumps([alone, [together[i].text for i in range(len(asked))], backend.batch_key(8), backend.settings()]))
"""


def test_with_the_tiled_kernels_off_eight_sequences_decoded_together_give_each_item_its_own_output(
    bundled_model: Path,
) -> None:
    # llama.cpp reads the switch once per process: a process of its own. With the tiled kernels on, 5 of these 12
    # chains came out otherwise at 8 together (AMD EPYC AVX-512), which is why the batch size is keyed then.
    env = {**os.environ, "GGML_CPU_TILED_MM": "0"}
    done = subprocess.run([sys.executable, "-c", TILED_OFF], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=True)  # fmt: skip
    alone, together, key, settings = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(alone) == 12 and any(alone) and together == alone and key == {}
    assert settings["tiled_kernels"] is False  # other numbers than with them on: other results' key
