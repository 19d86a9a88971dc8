"""Model files: GGUF metadata, and clear errors for files that are missing, foreign, damaged or truncated."""

from __future__ import annotations

from pathlib import Path

import pytest

from poccheck.errors import ModelError
from poccheck.models import parse_spec, read_gguf, resolve


def test_bundled_model_metadata(bundled_model: Path) -> None:
    meta = read_gguf(bundled_model)
    assert meta["architecture"] == "gemma3"
    assert meta["quantization"] == "Q4_K_M"
    assert 250_000_000 < meta["parameters"] < 300_000_000  # Gemma 3 "270M"
    assert meta["context_length"] == 32768
    info = resolve("gemma3-270m-q4")
    assert info.family == "gemma3" and info.backend == "llama.cpp" and len(info.fingerprint) == 16


def test_same_file_elsewhere_has_the_same_fingerprint(bundled_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(bundled_model.read_bytes())
    assert resolve(str(copy)).fingerprint == resolve("gemma3-270m-q4").fingerprint


def test_truncated_model(bundled_model: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with bundled_model.open("rb") as handle:
        cut.write_bytes(handle.read(bundled_model.stat().st_size // 2))
    with pytest.raises(ModelError, match="truncated"):
        resolve(str(cut))
    header_only = tmp_path / "header.gguf"
    with bundled_model.open("rb") as handle:
        header_only.write_bytes(handle.read(100_000))
    with pytest.raises(ModelError, match="damaged"):
        resolve(str(header_only))


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"PK\x03\x04 a zip file", "not a GGUF model file"), (b"GGUF\x63\x00\x00\x00", "damaged"), (b"", "not a GGUF")],
)
def test_foreign_and_damaged_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        resolve(str(path))


def test_missing_model_and_bad_specs(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found") as caught:
        resolve(str(tmp_path / "nope.gguf"))
    assert caught.value.hint and "gemma3-270m-q4" in caught.value.hint
    with pytest.raises(ModelError, match="directory"):
        resolve(str(tmp_path))
    with pytest.raises(ModelError, match="unknown backend"):
        parse_spec("gemma3-270m-q4@vllm")
    assert parse_spec("gemma3-270m-q4@llama.cpp").target == "gemma3-270m-q4"
