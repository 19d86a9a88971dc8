"""Results stay private: an output directory poccheck creates is 0700 and every file poccheck writes in it is 0600,
including SQLite's -wal and -shm files (they hold results while a run is open), whatever the umask; an existing folder
given as ``--out`` keeps its own mode. No model; under 1 s.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from poccheck.errors import StoreError
from poccheck.private import secure_dir
from poccheck.store import DB_NAME, OutputLock, Store

from .test_store import row


def modes(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()}


def test_every_output_file_is_private_while_a_run_is_open(tmp_path: Path) -> None:
    out = tmp_path / "poc"
    out.mkdir(mode=0o755)
    old = os.umask(0)  # the most permissive umask: nothing may rely on it
    try:
        with OutputLock(out):
            store = Store(out / DB_NAME)
            store.add_result(store.start_run({"models": ["m"]}), row("a"))
            seen = modes(out)
            store.close()
    finally:
        os.umask(old)
    assert set(seen) == {".poccheck.lock", DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"}
    assert all(mode == 0o600 for mode in seen.values()), {name: oct(mode) for name, mode in seen.items()}
    assert stat.S_IMODE(out.stat().st_mode) == 0o755  # the user's own folder (--out .) is not changed


def test_an_output_folder_poccheck_creates_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        secure_dir(tmp_path / "a" / "poc")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "poc").stat().st_mode) == 0o700


def test_an_out_that_is_a_file_or_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match=r"notes\.txt is a file, not a folder"):
        secure_dir(tmp_path / "notes.txt")
    with pytest.raises(StoreError, match=r"cannot create the folder .*notes\.txt/poc"):
        secure_dir(tmp_path / "notes.txt" / "poc")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_an_existing_database_made_readable_is_made_private_again(tmp_path: Path) -> None:
    Store(tmp_path / DB_NAME).close()
    os.chmod(tmp_path / DB_NAME, 0o644)
    store = Store(tmp_path / DB_NAME, create=False)
    store.add_result(store.start_run({}), row("a"))
    try:
        assert all(mode == 0o600 for mode in modes(tmp_path).values()), modes(tmp_path)
    finally:
        store.close()
