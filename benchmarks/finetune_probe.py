"""Fine-tune the bundled Gemma 3 270M on a 1-hop deductive probe and measure the lift and the forgetting.

1. ``poccheck probe --rules all --hops 1 --n N`` (6 rules x N problems, with gold proofs);
2. ``poccheck finetune`` on its seeded train split (40% held out, 10% validation), direct mode: the prompt is
   the problem alone, the target the gold proof;
3. assess the base (same weights, transformers, 0-shot direct) and the fine-tuned model on the held-out items
   and on a control suite (the first 100 CommonsenseQA validation questions, scored by likelihood), and print
   strict accuracy before/after per rule with an exact McNemar test, the control change, training time and
   peak memory;
4. the same on llama.cpp: the Q4_K_M base alone and with the adapter exported to GGUF (``+lora:NAME@llama.cpp``);
   each engine's strict and lenient held-out accuracy and its control accuracy are printed.

    nice -n 10 .venv/bin/python benchmarks/finetune_probe.py --n 25 --work /tmp/ft-probe
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import cast

from poccheck import pipeline
from poccheck.adapters import HELDOUT, MANIFEST, adapter_path, read_manifest
from poccheck.analysis.summary import Findings
from poccheck.config.run import RunConfig
from poccheck.finetune.train import LoraSettings, TrainProgress
from poccheck.models import LORA
from poccheck.records import Mode

NAME = "probe-1hop"

CSQA = Path(__file__).resolve().parents[2] / "shared" / "data" / "csqa_validation" / "normalized.jsonl"


class Printer(TrainProgress):
    def __init__(self) -> None:
        self.started_at = time.perf_counter()
        self.count = 0

    def started(self, total_steps: int, done_steps: int) -> None:
        print(f"training: {total_steps} steps at most, {done_steps} done", flush=True)

    def step(self, epoch: int, loss: float) -> None:
        self.count += 1
        print(f"  epoch {epoch} step {self.count} loss {loss:.3f} ({time.perf_counter() - self.started_at:.0f} s)")

    def evaluated(self, epoch: int, train_loss: float, validation_loss: float | None) -> None:
        print(f"epoch {epoch}: train loss {train_loss:.4f}, validation loss {validation_loss}", flush=True)

    def message(self, text: str) -> None:
        print(text, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=25, help="problems per rule")
    parser.add_argument("--work", type=Path, default=Path("ft-probe"))
    parser.add_argument("--control-items", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--fresh", action="store_true", help="discard an adapter or checkpoint of an earlier run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    probe = args.work / "probe-1hop.yaml"
    pipeline.write_probe(probe, _rules(), [1], args.n, "en", seed=0, shots=0, force=True)
    control = write_control(args.work, args.control_items)
    settings = LoraSettings(learning_rate=args.lr, epochs=args.epochs, batch_size=args.batch_size)
    started = time.perf_counter()
    folder = adapter_path(NAME)
    if (folder / MANIFEST).exists() and not args.fresh:  # trained before: assess it again (stored results resume)
        print(f"reusing the adapter trained earlier in {folder} (--fresh retrains it)")
        manifest, heldout, tuned = read_manifest(folder), folder / HELDOUT, f"gemma3-270m-q4{LORA}{NAME}"
        config = RunConfig(
            (heldout, *([control] if control else [])), (manifest.base_model, tuned), args.work / "out",
            modes=(cast(Mode, manifest.mode),), prompt_format="raw",
        )  # fmt: skip
        assessed = pipeline.assess(config)
        analysis = next((f for f in pipeline.finetune_analysis(assessed.findings) if f.adapter == NAME), None)
    else:
        result = pipeline.finetune(
            probe, "gemma3-270m-q4", control=control, name=NAME, mode="direct", settings=settings,
            fresh=args.fresh, progress=Printer(), evaluate=args.work / "out",
        )  # fmt: skip
        assert result.assessed is not None
        manifest, heldout, tuned = result.manifest, result.heldout, result.tuned_spec
        assessed, analysis = result.assessed, result.analysis
    total = time.perf_counter() - started
    record = manifest.training
    print(f"\nadapter {folder}; held-out file {heldout}")
    print(f"split: {', '.join(f'{k} {len(v)}' for k, v in manifest.tasks.items.items())}")
    print(
        f"training: {record.seconds:.0f} s, {record.steps} steps, {record.epochs_run} epochs ({record.stopped}), "
        f"best epoch {record.best_epoch}, train loss {record.train_loss}, validation loss {record.validation_loss}"
    )
    process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS while training {(record.peak_rss or 0) / 2**20:.0f} MiB; this process {process_peak:.0f} MiB")
    print(f"total {total:.0f} s")
    if analysis is None:
        print("no before/after analysis (base or fine-tuned results missing)")
        return 1
    for title, rows in (("held-out (strict)", analysis.heldout), ("control", analysis.control)):
        print(f"\n{title}: group, before, after, only-before/only-after, McNemar p")
        for p in rows:
            print(
                f"  {p.group or 'all items':28s} {p.first.successes:3d}/{p.first.n} -> "
                f"{p.second.successes:3d}/{p.second.n}  "
                f"b={p.test.b} c={p.test.c}  p={p.test.p_value:.3g}"
            )
    heldout_suite = manifest.heldout_suite
    _accuracy("transformers (float32)", assessed.findings, heldout_suite)
    on_llama = pipeline.assess(
        RunConfig(
            (heldout, *([control] if control else [])), ("gemma3-270m-q4@llama.cpp", f"{tuned}@llama.cpp"),
            args.work / "out-llama", modes=("direct",), prompt_format="raw",
        )
    )  # fmt: skip
    _accuracy("llama.cpp (Q4_K_M base, GGUF adapter)", on_llama.findings, heldout_suite)
    print(f"\nreports: {assessed.report}, {on_llama.report}")
    return 0


def write_control(work: Path, n: int) -> Path | None:
    """The control suite: the first ``n`` CommonsenseQA validation questions without repeated choices (poccheck
    refuses repeats), or None (said) when ../shared is absent."""
    if not CSQA.exists():
        print(f"(no control suite: {CSQA} not found)")
        return None
    control = work / "csqa-control.jsonl"
    records = [json.loads(line) for line in CSQA.read_text(encoding="utf-8").splitlines()]
    unique = [r for r in records if len(set(r["choices"])) == len(r["choices"])]
    picked = [{**r, "type": "multiple_choice", "category": "commonsenseqa"} for r in unique[:n]]
    control.write_text("".join(json.dumps(r) + "\n" for r in picked), encoding="utf-8")
    return control


def _accuracy(engine: str, findings: Findings, heldout_suite: str) -> None:
    print(f"\n{engine}: held-out strict, held-out lenient (the goal reached, proof format aside), control")
    for model in findings.models:
        held = [r for r in model.rows if r.suite == heldout_suite]
        control = [r for r in model.rows if r.suite != heldout_suite]
        lenient = sum(bool(r.grade and r.grade.lenient) for r in held)
        print(
            f"  {model.name:44s} {sum(r.correct for r in held):3d}/{len(held)}  {lenient:3d}/{len(held)}  "
            f"{sum(r.correct for r in control):3d}/{len(control)}"
        )


def _rules() -> list[str]:
    from poccheck.probe.generate import RULES

    return list(RULES)


if __name__ == "__main__":
    sys.exit(main())
