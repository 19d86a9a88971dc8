"""Ctrl-C: what poccheck says when it stops a command, and why it cannot kill a command that has finished.

A SIGINT can land anywhere, including inside rich's console between the moment a print opens its output buffer
and the moment it closes it; the console then buffers everything printed after it and writes none of it (a CI run
exited 130 with an empty stderr that way). The message therefore goes straight to standard error in one write,
never through rich or Python's buffered ``sys.stderr``, with further Ctrl-C ignored while it is written. It goes
to a copy of file descriptor 2 made when the command starts (:func:`prepare_for_ctrl_c`): llama.cpp's bindings
point fd 2 at /dev/null while a model loads, and an interrupt inside their redirection can leave it there. typer
turns a Ctrl-C anywhere in a command into a silent exit 130; the CLI's entry point says then how to resume, once
(finetune says it itself, with its own hint). And a Ctrl-C while a compiled extension initialises (scipy's,
torch's) comes out as ``ImportError: initialization failed`` raised from the KeyboardInterrupt:
:func:`caused_by_ctrl_c` recognises it.

Once a command has returned, Python tears itself down (freeing the model, unloading llama.cpp and torch: 0.3-0.5 s
on 2 cores) with SIGINT set back to its default action, so a Ctrl-C in that time killed a run whose results and
report were all written (status -SIGINT, 9 of 40 in a stress run that sent it as the run ended).
:func:`prepare_for_ctrl_c` ignores Ctrl-C from the last exit hook on, and the exit status stays the
command's own.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading

_STDERR = 2  # where the message goes: a copy of standard error once the command's entry point has made one

INTERRUPTED_STATUS = 130  # 128 + SIGINT, as shells report a process that Ctrl-C stopped
RESUME = "Finished items are saved; run the same command again to resume."
RESUME_FINETUNE = "Run the same command again to resume from the last checkpoint."


_said = False


def caused_by_ctrl_c(exc: BaseException) -> bool:
    """Whether ``exc`` is a KeyboardInterrupt or was raised while handling one (its cause or context chain)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def say_interrupted(hint: str = RESUME, once: bool = False) -> None:
    """Write "Interrupted." and ``hint`` to standard error, unless ``once`` and it was written already. The process
    is expected to exit (status 130) next."""
    global _said
    if once and _said:
        return
    _said = True
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the message short
    for stream in (sys.stdout, sys.stderr):  # what was already printed comes first
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    data = f"\nInterrupted. {hint}\n".encode()
    while data:
        try:
            data = data[os.write(_STDERR, data) :]
        except InterruptedError:
            continue
        except OSError:
            return  # standard error is closed: the exit status still says it


def prepare_for_ctrl_c() -> None:
    """The command's entry point calls this first thing. It keeps a copy of standard error as the command started,
    apart from fd 2, which libraries point elsewhere at times (llama.cpp's bindings send it to /dev/null while a
    model loads); and it ignores Ctrl-C once the command has finished: registered before any library's exit hook,
    the handler runs after all of them. The library API does neither: it leaves the process's signals and file
    descriptors to its caller."""
    global _STDERR
    with contextlib.suppress(OSError):
        _STDERR = os.dup(2)
    atexit.register(signal.signal, signal.SIGINT, signal.SIG_IGN)
