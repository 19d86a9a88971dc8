"""Folders and files that hold company data (results, reports, adapters, held-out items): their owner's only.

A folder poccheck creates is ``0700`` and every file it writes is ``0600``, whatever the umask; a folder the user
already had (``--out .``, ``--name ./adapter``) keeps its own mode.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from poccheck.errors import StoreError


def secure_dir(path: Path) -> None:
    """Make sure the folder ``path`` exists; one created here is readable by its owner only (``0700``).

    An existing folder keeps its mode: ``--out .`` or ``--out ~`` must not change the user's own folder (the files
    poccheck writes into it are ``0600`` whatever the folder's mode). A path that is a file, or a folder that cannot
    be made or written, is a ``StoreError`` naming it."""
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise StoreError(f"cannot write to the folder {path}", "choose an --out folder you can write to")
        return
    if path.exists() or path.is_symlink():
        raise StoreError(f"{path} is a file, not a folder", "give --out a folder (new or existing)")
    try:
        path.mkdir(parents=True, mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode is masked by the umask
    except OSError as exc:
        raise StoreError(f"cannot create the folder {path}: {exc.strerror or exc}", "choose another --out") from None


@contextmanager
def private_umask() -> Iterator[None]:
    """Files and folders made inside (also by libraries: peft, torch, gguf) are the owner's only."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def make_private(folder: Path) -> None:
    """Everything inside ``folder`` (not the folder itself) to ``0700`` folders and ``0600`` files."""
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(Path(root) / name, 0o700)
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                os.chmod(path, 0o600)
