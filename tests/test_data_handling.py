"""What SECURITY.md promises about company data, checked where no model is needed (issue #16).

The model is a scripted backend behind the real runner (nothing is loaded): its generations fail with an error that
quotes the item, as a server's error body or a reply quoted in an error would. Run time: a few seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from poccheck import models, pipeline, runner
from poccheck.adapters import ADAPTER_WEIGHTS, CHECKPOINT, HELDOUT, MANIFEST, discard_adapter
from poccheck.backends import ChoiceRequest
from poccheck.backends.registry import BackendOptions
from poccheck.backends.scripted import ScriptedBackend
from poccheck.cli import app
from poccheck.config.run import RunConfig
from poccheck.errors import FinetuneError, PocCheckError
from poccheck.i18n import Translator
from poccheck.private import make_private, private_umask
from poccheck.records import ChoiceScores, ModelInfo
from poccheck.store import DB_NAME, Store
from poccheck.tasks import load_suite

from .rows import stored_result

SECRET = "KONFIDENTIELL-4711"
SUITE = f"""name: private
items:
  - id: q1
    type: exact
    input: "What is the part number of {SECRET}?"
    answer: "42"
  - id: q2
    type: multiple_choice
    input: "Which line makes {SECRET}?"
    choices: ["line A", "line B"]
    answer: B
"""


FAILING = f"""\
# every generation fails with an error that quotes the item, as a server might
replies: [{{error: "server said: 500 could not process 'What is the part number of {SECRET}?'"}}]
choices: [[-1.0, -2.0]]
"""
ANSWERING = "replies: ['42']\nchoices: [[-1.0, -2.0]]\n"


@contextlib.contextmanager
def scripted_model(
    script: Path, fingerprint: str | None = None, legacy: str | None = None, backend: type | None = None
) -> Iterator[str]:
    """The shipped scripted model ``script`` (``FILE@scripted``), run by the real runner; with ``fingerprint`` and
    ``legacy`` it is keyed as given (as if its weights had been fingerprinted so), with ``backend`` loaded as that
    subclass of the scripted backend."""
    spec = f"{script}@scripted"
    info = models.resolve(spec)
    keyed = replace(info, fingerprint=fingerprint or info.fingerprint, legacy_fingerprint=legacy)
    with pytest.MonkeyPatch.context() as patch:
        if fingerprint or legacy:
            patch.setattr(runner.models, "resolve", lambda spec, endpoints=(), check=None: keyed)
        if backend is not None:
            patch.setattr(runner, "load_backend", lambda info, options: backend(info))
        yield spec


def write_script(tmp_path: Path, text: str, name: str = "model.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_redacted_report_withholds_item_errors_that_quote_the_item_scripted_backend(tmp_path: Path) -> None:
    suite = tmp_path / "private.yaml"
    suite.write_text(SUITE, encoding="utf-8")
    out = tmp_path / "poc"
    with scripted_model(write_script(tmp_path, FAILING)) as model:
        done = CliRunner().invoke(
            app, ["assess", "--tasks", str(suite), "--model", model, "--out", str(out), "--redact"]
        )
    assert done.exit_code == 0, done.output + repr(done.exception)
    for language in ("en", "ja"):
        assert CliRunner().invoke(app, ["report", str(out), "--redact", "--lang", language]).exit_code == 0
        page = (out / "report.html").read_text(encoding="utf-8")
        assert SECRET not in page, f"{language}: an error quoting the item reached the redacted page"
        withheld = str(Translator(language)("failures.error_redacted"))
        assert withheld in page
    # without --redact the error is shown as the backend gave it (it is what the user needs to fix the run)
    assert CliRunner().invoke(app, ["report", str(out), "--lang", "en"]).exit_code == 0
    assert SECRET in (out / "report.html").read_text(encoding="utf-8")


def said(done: Result) -> str:
    """What the command told the user: its output, and the error ``main`` prints without a traceback."""
    error = done.exception
    return done.output + (f"{error.message} {error.hint}" if isinstance(error, PocCheckError) else repr(error))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_finetune_fresh_with_a_path_never_empties_the_users_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--name ./ --fresh`` used to ``shutil.rmtree`` the current folder. Now it stops before any model loads."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text("precious")
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE, encoding="utf-8")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "plan.xlsx").write_text("mine too")
    for name in ("./", str(tmp_path), f"../{tmp_path.name}", "./docs", str(tmp_path.parent)):
        done = CliRunner().invoke(app, ["finetune", "--tasks", str(suite), "--name", name, "--fresh"])
        assert done.exit_code == 1, done.output + repr(done.exception)
        assert "refusing to empty" in said(done) or "did not write" in said(done), said(done)
    assert (tmp_path / "mine.txt").read_text() == "precious" and suite.exists()
    assert (tmp_path / "docs" / "plan.xlsx").read_text() == "mine too"


def test_discarding_an_adapter_folder_deletes_only_what_poccheck_wrote(tmp_path: Path) -> None:
    folder = tmp_path / "adapters" / "mine"
    (folder / CHECKPOINT).mkdir(parents=True)
    for name in (MANIFEST, ADAPTER_WEIGHTS, "adapter_config.json", "README.md", HELDOUT):
        (folder / name).write_text("x")
    (folder / CHECKPOINT / "state.json").write_text("{}")
    discard_adapter(folder)
    assert folder.is_dir() and not any(folder.iterdir())
    (folder / HELDOUT).write_text("x")
    (folder / "notes.docx").write_text("the user's")
    with pytest.raises(FinetuneError, match=r"holds files poccheck did not write \(notes\.docx\)"):
        discard_adapter(folder)
    assert sorted(p.name for p in folder.iterdir()) == [HELDOUT, "notes.docx"]  # nothing deleted
    (tmp_path / "file").write_text("x")
    with pytest.raises(FinetuneError, match="is not an adapter folder"):
        discard_adapter(tmp_path / "file")
    discard_adapter(tmp_path / "absent")  # nothing to discard


def test_an_adapter_folder_is_written_private_whatever_the_umask(tmp_path: Path) -> None:
    """What ``finetune`` runs its writing under: peft's and torch's files come out 0600, folders 0700."""
    old = os.umask(0)
    try:
        with private_umask():
            (tmp_path / "adapter").mkdir()
            (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
        assert os.umask(0) == 0  # restored
    finally:
        os.umask(old)
    assert mode(tmp_path / "adapter") == 0o700 and mode(tmp_path / "adapter" / "adapter_config.json") == 0o600
    (tmp_path / "adapter" / "old.yaml").write_text("x")
    os.chmod(tmp_path / "adapter" / "old.yaml", 0o644)
    make_private(tmp_path / "adapter")
    assert mode(tmp_path / "adapter" / "old.yaml") == 0o600


def test_out_that_is_a_file_is_a_clear_error_and_probe_needs_force_to_overwrite(tmp_path: Path) -> None:
    notes = tmp_path / "notes.yaml"
    notes.write_text("mine")
    done = CliRunner().invoke(app, ["assess", "--limit", "1", "--out", str(notes)])
    assert done.exit_code == 1 and "is a file, not a folder" in said(done), said(done)
    probe = ["probe", "--rules", "implication_elimination", "--hops", "1", "--n", "1", "--out"]
    done = CliRunner().invoke(app, [*probe, str(notes)])
    assert done.exit_code == 1 and "already exists" in said(done) and "--force" in said(done), said(done)
    assert notes.read_text() == "mine"
    assert CliRunner().invoke(app, [*probe, str(notes), "--force"]).exit_code == 0
    assert notes.read_text() != "mine"
    assert "a probe is written as YAML" in said(CliRunner().invoke(app, [*probe, str(tmp_path / "p.txt")]))
    assert not (tmp_path / "p.txt").exists()
    done = CliRunner().invoke(app, [*probe, str(tmp_path)])
    assert done.exit_code == 1 and "is a folder" in said(done), said(done)


# ---------------------------------------------------------------- model identity


def test_the_fingerprint_covers_the_whole_file_and_is_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two files alike but for their middle (a re-quantised or fine-tuned copy) had one key; now each has its own."""
    monkeypatch.setenv("POCCHECK_CACHE", str(tmp_path / "cache"))
    size = 12 * 1024 * 1024
    first, second = tmp_path / "a.gguf", tmp_path / "b.gguf"
    first.write_bytes(bytes(size))
    second.write_bytes(bytes(size // 2) + b"\x01" + bytes(size - size // 2 - 1))
    assert models.legacy_fingerprint(first) == models.legacy_fingerprint(second)  # the old, sampled key
    assert models.fingerprint(first) != models.fingerprint(second)
    assert models.fingerprint(first) == hashlib.sha256(first.read_bytes()).hexdigest()[:16]
    assert models._fingerprint_cached(first) == models.fingerprint(first)
    monkeypatch.setattr(models, "fingerprint", lambda path: pytest.fail("hashed twice"))
    assert models._fingerprint_cached(first) == hashlib.sha256(first.read_bytes()).hexdigest()[:16]
    os.utime(first, ns=(1, 1))  # a changed file (modification time) is hashed again
    with pytest.raises(pytest.fail.Exception, match="hashed twice"):
        models._fingerprint_cached(first)


def test_results_stored_under_the_old_sampled_key_keep_resuming_scripted_backend(tmp_path: Path) -> None:
    suite = tmp_path / "private.yaml"
    suite.write_text(SUITE, encoding="utf-8")
    out = tmp_path / "poc"
    script = write_script(tmp_path, ANSWERING)
    with scripted_model(script, "sampled-old") as model:  # as an earlier version keyed them
        first = pipeline.assess(RunConfig([suite], [model], out))
    assert first.outcome.models[0].done == 2
    with scripted_model(script, "whole-file-new", "sampled-old") as model:
        again = pipeline.assess(RunConfig([suite], [model], out))
    (outcome,) = again.outcome.models
    assert (outcome.done, outcome.skipped) == (0, 2), "the rerun started over instead of resuming"
    with contextlib.closing(sqlite3.connect(out / DB_NAME)) as db:
        keys = db.execute("SELECT model_fingerprint, COUNT(*) FROM results GROUP BY 1").fetchall()
        runs = {row[0] for row in db.execute("SELECT fingerprint FROM model_runs")}
    assert keys == [("whole-file-new", 2)] and runs == {"whole-file-new"}
    assert [m.accuracy for m in again.findings.models] == [m.accuracy for m in first.findings.models]


def test_rekeying_keeps_a_result_already_stored_under_the_new_key(tmp_path: Path) -> None:
    from .test_store import row

    store = Store(tmp_path / DB_NAME)
    run = store.start_run({})
    store.add_result(run, replace(row("a"), model_fingerprint="old", output="old a"))
    store.add_result(run, replace(row("b"), model_fingerprint="old", output="old b"))
    store.add_result(run, replace(row("a"), model_fingerprint="new", output="new a"))
    assert store.rekey_model("old", "new") == 1
    assert sorted((r.item_key, r.output) for r in store.results()) == [("a", "new a"), ("b", "old b")]
    assert {r.model_fingerprint for r in store.results()} == {"new"}
    store.close()


def test_the_memory_check_counts_every_context_llama_cpp_makes(tmp_path: Path) -> None:
    """A generation and a scoring context, plus one stream per sequence when generations are decoded together."""
    suite = tmp_path / "private.yaml"
    suite.write_text(SUITE, encoding="utf-8")
    loaded = load_suite(suite)
    work = runner.work_items(loaded)
    choices_only = [w for w in work if w.scored]
    gguf = ModelInfo(name="m", backend="llama.cpp", path="/m.gguf", fingerprint="f")
    assert runner.cache_tokens(gguf, BackendOptions(parallel=4), work) == 6 * 4096
    assert runner.cache_tokens(gguf, BackendOptions(parallel=1), work) == 2 * 4096
    assert runner.cache_tokens(gguf, BackendOptions(parallel=4), choices_only) == 2 * 4096
    assert runner.cache_tokens(replace(gguf, backend="transformers"), BackendOptions(parallel=4), work) == 4096


def test_dequantised_weights_are_cached_per_dtype(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights converted in bfloat16 (a GPU run) are not read back for a float32 run, nor the reverse."""
    import torch

    from poccheck.backends.hf import converted_dir

    monkeypatch.setenv("POCCHECK_CACHE", str(tmp_path))
    info = ModelInfo(name="m@transformers", backend="transformers", path="/m.gguf", fingerprint="f")
    assert converted_dir(info, torch.float32) != converted_dir(info, torch.bfloat16)
    assert converted_dir(info, torch.float32).name == "f-float32"


def test_a_category_named_all_is_compared_on_its_own_items_not_merged_with_the_whole() -> None:
    from poccheck.analysis.reasoning import paired
    from poccheck.analysis.summary import GradedRow, ModelFindings
    from poccheck.records import Grade, TaskItem

    def findings(right: set[str]) -> ModelFindings:
        categories = ["all", "all", "spec", "spec", "spec"]
        items = [TaskItem(f"i{k}", "q", "exact", "a", category=c) for k, c in enumerate(categories)]
        rows = [GradedRow("m", "s", item, stored_result(item), Grade(item.id in right, "a")) for item in items]
        return ModelFindings("m", None, None, rows=rows)

    diffs = paired(findings({"i0"}), findings({"i0", "i1", "i2"}))
    assert [(d.group, d.first.n, d.first.successes, d.second.successes) for d in diffs] == [
        (None, 5, 1, 3),  # the whole: every item once
        ("all", 2, 1, 2),  # the category called "all": its two items only
        ("spec", 3, 0, 1),
    ]
    assert diffs[0].overall and not diffs[1].overall


def test_a_run_stopped_while_scoring_keeps_every_item_scored_before_it_scripted_backend(tmp_path: Path) -> None:
    """The runner hands a backend ``choice_batch`` items at a time and saves them when the call returns; llama.cpp's
    is 1, so a stop loses at most the item in flight (README: resume; SECURITY.md)."""
    from poccheck.backends.llama_cpp import LlamaCppBackend

    assert LlamaCppBackend.choice_batch == 1
    calls: list[int] = []

    class StoppedOnTheThirdCall(ScriptedBackend):
        choice_batch = LlamaCppBackend.choice_batch

        def score_choices(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceScores]:
            calls.append(len(requests))
            if len(calls) == 3:
                raise KeyboardInterrupt
            return super().score_choices(requests)

    suite = tmp_path / "mc.csv"
    rows = [f"m{k},Which line makes part {k}?,multiple_choice,line A|line B,A" for k in range(6)]
    suite.write_text("id,input,type,choices,answer\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "poc"
    script = write_script(tmp_path, ANSWERING)
    with scripted_model(script, backend=StoppedOnTheThirdCall) as model, pytest.raises(KeyboardInterrupt):
        pipeline.assess(RunConfig([suite], [model], out))
    assert calls == [1, 1, 1]
    with contextlib.closing(sqlite3.connect(out / DB_NAME)) as db:
        assert db.execute("SELECT item_id FROM results ORDER BY item_id").fetchall() == [("m0",), ("m1",)]
