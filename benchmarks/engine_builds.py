"""Two llama-cpp-python builds side by side: what a build option costs and what it changes.

Runs poccheck's llama.cpp set-up (weights not repacked, packed items aligned) on the bundled model with the
installed llama-cpp-python and with one installed elsewhere (``pip install --target DIR`` with other CMAKE_ARGS),
each in its own process: the time to score the example suite's multiple-choice items packed, the time to generate
the first 16 generations, and how far a choice's log-probability moves between an item scored packed and alone.
Printed per build: llama.cpp's system info (instruction sets and kernels), the best of the rounds, and the ratio
against the installed build measured in the same run.

    python benchmarks/engine_builds.py --other /tmp/lcp-llamafile [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def child(rounds: int, generations: int) -> None:
    from batch_invariance import measure

    from poccheck.backends.llama_cpp import system_info
    from poccheck.runner import work_items
    from poccheck.tasks import load_suites
    from poccheck.tasks.examples import default_tasks

    work = [w for suite in load_suites(default_tasks()) for w in work_items(suite)]
    choices = [w.choice_request for w in work if w.scored]
    requests = [w.generation_request for w in work if not w.scored][:generations]
    runs = [measure(False, True, choices, requests) for _ in range(rounds)]
    best = {key: min(r[key] for r in runs) for key in ("score_s", "generate_s")}
    print(json.dumps({"engine": system_info().strip(), "moved": max(r["moved"] for r in runs), **best}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, help="a folder holding another llama-cpp-python build (pip --target)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--generations", type=int, default=16)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.rounds, args.generations)
        return 0
    builds = {"installed": None, f"other ({args.other})": args.other} if args.other else {"installed": None}
    results = {}
    for name, folder in builds.items():
        env = dict(os.environ)
        if folder is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(folder), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        command = [sys.executable, __file__, "--child", "--rounds", str(args.rounds)]
        command += ["--generations", str(args.generations)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    reference = results["installed"]
    print(f"bundled model, best of {args.rounds} rounds; ratios against the installed build")
    for name, r in results.items():
        print(f"{name}: {r['engine']}")
        print(
            f"  score {r['score_s']:.2f} s ({r['score_s'] / reference['score_s']:.2f}x)   "
            f"generate {r['generate_s']:.2f} s ({r['generate_s'] / reference['generate_s']:.2f}x)   "
            f"moved {r['moved']:.4f} nats"
        )
    print("moved: largest change in a choice's log-probability between an item scored packed and alone")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
