"""Run llama-cpp-python's OpenAI-compatible server (``llama_cpp.server``) with llama.cpp's weight repacking off.

The server's command line exposes every engine setting poccheck's in-process backend uses except this one
(``use_extra_bufts``). With repacking on, the server's prompt-prefix reuse (a request evaluates only what follows
the prefix it shares with the previous one) changes the numbers llama.cpp computes, and greedy answers flip at
near-ties; see ``LlamaSettings.repack_weights``. Arguments are the server's own.
"""

from __future__ import annotations

import runpy

import llama_cpp

from poccheck.backends.llama_cpp import weight_repacking

if __name__ == "__main__":
    with weight_repacking(llama_cpp, enabled=False):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
