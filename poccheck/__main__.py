"""The ``poccheck`` command and ``python -m poccheck``.

Loading the command takes seconds (numpy, scipy, jinja2, llama.cpp bindings); Ctrl-C during that time exits as
cleanly as Ctrl-C later: status 130 and how to resume, no traceback.
"""

from __future__ import annotations

import os

from poccheck.interrupt import INTERRUPTED_STATUS, caused_by_ctrl_c, prepare_for_ctrl_c, say_interrupted


def entry() -> None:
    prepare_for_ctrl_c()
    try:
        from poccheck.cli import main
    except (KeyboardInterrupt, ImportError) as exc:  # a compiled extension turns Ctrl-C into an ImportError
        if not caused_by_ctrl_c(exc):
            raise
        say_interrupted()
        # Nothing is open yet. A normal exit would run the finalisers of the half-imported libraries (torch,
        # llama.cpp's bindings), and a clean-clone run once died there by SIGINT (status -2) after this message.
        os._exit(INTERRUPTED_STATUS)
    main()


if __name__ == "__main__":
    entry()
