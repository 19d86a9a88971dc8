"""Model faults: files that are truncated, of the wrong type, or too large for memory (weights or cache, checked
from the header before loading), an item longer than the context and generations that hit their token cap. Each
is a clear per-model or per-item error; the other models still run; the report shows every failure.

One assess over five models on the bundled model's real llama.cpp: about 20 s on 2 cores (the file too large
for memory is refused from its header: fingerprinting its tens of GB of zeros first took 85 s).
"""

from __future__ import annotations

import sqlite3
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import psutil
import pytest

from poccheck import models
from poccheck.backends.registry import BackendOptions
from poccheck.errors import ModelError
from poccheck.models import check_memory, kv_bytes_per_token, resolve


def gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def write_gguf(path: Path, elements: int, layers: int = 2, kv_heads: int = 1, head_dim: int = 8) -> Path:
    """A well-formed GGUF header with one float32 tensor of ``elements``; the data is a sparse hole."""
    metadata = [
        ("general.architecture", 8, gguf_string("llama")),
        ("general.name", 8, gguf_string("synthetic")),
        ("llama.context_length", 4, struct.pack("<I", 4096)),
        ("llama.block_count", 4, struct.pack("<I", layers)),
        ("llama.attention.head_count_kv", 4, struct.pack("<I", kv_heads)),
        ("llama.attention.key_length", 4, struct.pack("<I", head_dim)),
    ]
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, len(metadata))
    for key, kind, value in metadata:
        header += gguf_string(key) + struct.pack("<I", kind) + value
    header += gguf_string("weights") + struct.pack("<IQIQ", 1, elements, 0, 0)
    header += b"\x00" * (-len(header) % 32)
    with path.open("wb") as handle:
        handle.write(header)
        handle.truncate(len(header) + 4 * elements)
    return path


def test_memory_check_counts_weights_and_the_cache_from_the_header_fingerprint_faked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fingerprint is a SHA-256 of the whole file: for this sparse file of twice the free memory that is a read of
    # tens of GB of zeros (85 s here), and the memory check never looks at it.
    monkeypatch.setattr(models, "_fingerprint_cached", lambda path: f"sparse-{path.name}")
    available = psutil.virtual_memory().available
    heavy = resolve(str(write_gguf(tmp_path / "heavy.gguf", elements=available // 2)))  # 2x free memory
    assert heavy.file_size and heavy.file_size > available
    with pytest.raises(ModelError, match="GiB of weights") as caught:
        check_memory(heavy, 4096)
    assert caught.value.hint and "smaller quantisation" in caught.value.hint
    deep = resolve(str(write_gguf(tmp_path / "deep.gguf", elements=16, layers=4000, kv_heads=64, head_dim=1024)))
    assert kv_bytes_per_token(deep) == 2 * 4000 * 64 * 1024 * 2
    with pytest.raises(ModelError, match="cache for 4,096 tokens"):
        check_memory(deep, 4096)
    check_memory(resolve(str(write_gguf(tmp_path / "small.gguf", elements=16))), 4096)  # fits


def test_a_file_too_large_for_memory_is_refused_from_its_header_before_it_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_whole(path: Path) -> str:
        raise AssertionError(f"{path} was read whole for its fingerprint before the memory check")

    monkeypatch.setattr(models, "_fingerprint_cached", read_whole)
    heavy = write_gguf(tmp_path / "heavy.gguf", elements=psutil.virtual_memory().available // 2)
    with pytest.raises(ModelError, match="GiB of weights"):
        resolve(str(heavy), check=lambda info: check_memory(info, 4096))
    with pytest.raises(AssertionError, match="read whole"):  # without a check it is fingerprinted as before
        resolve(str(heavy))


class Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


SUITE = """\
name: faults
max_tokens: 2
stop: ["STOP"]
items:
  - {id: g1, type: exact, category: rules, input: "Is 5 more than 7? Answer YES or NO.", answer: "NO"}
  - {id: g2, type: numeric, category: math, input: "What is 10 plus 5?", answer: 15}
  - {id: mc1, type: multiple_choice, category: triage, input: "Which is a metal?", choices: [wood, steel], answer: B}
"""


@pytest.mark.model
def test_failing_models_are_reported_and_the_others_still_run(bundled_model: Path, tmp_path: Path) -> None:
    long_input = "word " * 6000  # longer than the 4,096-token context
    tasks = tmp_path / "suite.yaml"
    tasks.write_text(SUITE + f"  - {{id: long, type: exact, category: rules, input: '{long_input}', answer: x}}\n")
    truncated = tmp_path / "truncated.gguf"
    with bundled_model.open("rb") as handle:
        truncated.write_bytes(handle.read(bundled_model.stat().st_size // 3))
    zipped = tmp_path / "zipped.gguf"
    zipped.write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    heavy = write_gguf(tmp_path / "heavy.gguf", elements=psutil.virtual_memory().available // 2)
    deep = write_gguf(tmp_path / "deep.gguf", elements=16, layers=4000, kv_heads=64, head_dim=1024)
    models = [str(truncated), str(zipped), str(heavy), str(deep), "gemma3-270m-q4"]
    out = tmp_path / "poc"
    args = ["assess", "--tasks", str(tasks), "--out", str(out)] + [x for m in models for x in ("--model", m)]
    done = subprocess.run([sys.executable, "-m", "poccheck", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr  # one model worked
    assert "Traceback" not in done.stderr + done.stdout
    expected = {
        str(truncated): "is truncated",
        str(zipped): "not a GGUF model file",
        str(heavy): "GiB of weights",
        # a generation and a scoring context, and one stream per sequence of batched generation (runner.cache_tokens)
        str(
            deep
        ): f"cache for {4096 * (2 + (slots if (slots := BackendOptions().generation_slots()) > 1 else 0)):,} tokens",
    }
    with sqlite3.connect(out / "poccheck.db") as con:
        errors = dict(con.execute("SELECT model, error FROM model_runs"))
        rows = {
            r[0]: r[1:] for r in con.execute("SELECT item_id, finish_reason, completion_tokens, error FROM results")
        }
    for model, needle in expected.items():
        assert needle in (errors[model] or ""), (model, errors[model])
    assert errors["gemma3-270m-q4"] is None
    assert set(rows) == {"g1", "g2", "mc1", "long"}
    assert rows["g1"][:2] == ("length", 2) and rows["g2"][:2] == ("length", 2)  # both hit the 2-token cap
    assert rows["mc1"][2] is None and "context holds 4096" in rows["long"][2]  # one item failed, alone
    parser = Text()
    parser.feed((out / "report.html").read_text(encoding="utf-8"))
    text = " ".join(" ".join(parser.parts).split())
    for needle in (*expected.values(), "context holds 4096", "hit token cap"):
        assert needle.lower() in text.lower(), f"the report does not show {needle!r}"
