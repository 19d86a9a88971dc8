"""The study's fine-tuning claim on a real model (Hsiao & Dutta 2025, section (c) of shared/reference/paper.md):
SmolLM2-135M-Instruct trained on PrOntoQA-OOD 1-hop worked examples, tested 0-shot on the test questions.

1. ``poccheck tasks prontoqa-finetune``: the worked examples of the study's 600 3-shot prompts (1,800 pairs, less
   those that read as a test question) marked train (1 in 10 validation), each prompt's test question 0-shot
   marked test (the first ``--n`` of each rule); the study's decoding (greedy, 256 new tokens, repetition penalty
   0.0001, cut at the next "Q:");
2. ``poccheck finetune`` with LoRA (not the study's full fine-tuning: see the README), direct mode, and a control
   suite (the first 100 CommonsenseQA validation questions, scored by likelihood) for forgetting; the base and the
   fine-tuned model assessed in transformers on the dequantised weights;
3. the same held-out and control items in llama.cpp: the Q4 base alone and with the adapter exported to GGUF;
4. the study's own "before": the base 3-shot on the same test questions (``poccheck tasks prontoqa-study``), in
   llama.cpp.

Printed: per rule and engine, strict and lenient proof success 0-shot before, 3-shot before and 0-shot after, each
with its 95% Wilson interval, exact McNemar tests of after against each before (paired by test question), the
study's figures, the control's change, and training time and memory.

    nice -n 10 .venv/bin/python benchmarks/paper_finetune.py --n 20 --work /tmp/paper-ft   # --fresh retrains
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from finetune_probe import Printer, write_control

from poccheck import pipeline
from poccheck.adapters import HELDOUT, MANIFEST, adapter_path, read_manifest
from poccheck.analysis.stats import mcnemar_exact, wilson
from poccheck.analysis.summary import GradedRow, ModelFindings
from poccheck.config.run import RunConfig
from poccheck.finetune.train import LoraSettings
from poccheck.models import LORA
from poccheck.tasks.study import PRONTOQA_RULES, write_prontoqa_finetune, write_prontoqa_study

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PRONTOQA = SHARED / "data" / "prontoqa_ood" / "normalized.jsonl"
PAPER = SHARED / "reference" / "paper_results.csv"
STUDY_MODEL = "SmolLM2-135M-Instruct"
BEFORE, AFTER = "cot_3shot_1hop_v1", "finetuned_full_all_layers_best_ckpt_0shot_v1"
Outcomes = dict[str, tuple[bool, bool]]  # test question id -> (strict, lenient)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-q4")
    parser.add_argument("--n", type=int, default=20, help="test questions per rule (the study: 100)")
    parser.add_argument("--work", type=Path, default=Path("paper-ft"))
    parser.add_argument("--examples", type=int, default=None, help="worked examples per rule to train on (all: ~300)")
    parser.add_argument("--name", default="prontoqa-study-ft", help="the adapter's name")
    parser.add_argument("--control-items", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fresh", action="store_true", help="discard an adapter or checkpoint of an earlier run")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--data", type=Path, default=PRONTOQA)
    parser.add_argument("--paper", type=Path, default=PAPER)
    args = parser.parse_args()
    if not args.data.exists():
        print(f"{args.data} not found: the study's PrOntoQA-OOD prompts are needed", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    suite = args.work / "prontoqa-finetune.yaml"
    write_prontoqa_finetune(args.data, suite, args.n, args.examples)
    control = write_control(args.work, args.control_items)
    started = time.perf_counter()
    folder = adapter_path(args.name)
    tuned = f"{args.model}{LORA}{args.name}"
    if (folder / MANIFEST).exists() and not args.fresh:  # trained before: assess again (stored results resume)
        print(f"reusing the adapter trained earlier in {folder} (--fresh retrains it)")
        manifest = read_manifest(folder)
    else:
        settings = LoraSettings(learning_rate=args.lr, epochs=args.epochs, batch_size=args.batch_size)
        manifest = pipeline.finetune(
            suite, args.model, control=control, name=args.name, mode="direct", settings=settings,
            fresh=args.fresh, progress=Printer(),
        ).manifest  # fmt: skip
    trained_s = time.perf_counter() - started
    heldout, tasks = folder / HELDOUT, (folder / HELDOUT, *([control] if control else []))
    engines = {
        "transformers (float32, dequantised)": (f"{args.model}@transformers", tuned),
        "llama.cpp (Q4 GGUF, GGUF adapter)": (f"{args.model}@llama.cpp", f"{tuned}@llama.cpp"),
    }
    measured: dict[str, tuple[ModelFindings, ModelFindings, float]] = {}
    for index, (engine, pair) in enumerate(engines.items()):
        clock = time.perf_counter()
        config = RunConfig(tasks, pair, args.work / f"out-{index}", modes=("direct",), prompt_format="raw")
        found = {m.name: m for m in pipeline.assess(config).findings.models}
        measured[engine] = (found[pair[0]], found[pair[1]], time.perf_counter() - clock)
    clock = time.perf_counter()
    study_suite = args.work / "prontoqa-3shot.yaml"
    write_prontoqa_study(args.data, study_suite, args.n)
    base_cpp = f"{args.model}@llama.cpp"
    config = RunConfig((study_suite,), (base_cpp,), args.work / "out-3shot", modes=("cot",), prompt_format="raw")
    three_shot = next(m for m in pipeline.assess(config).findings.models if m.name == base_cpp)
    three_shot_s = time.perf_counter() - clock

    record = manifest.training
    split = {k: len(v) for k, v in manifest.tasks.items.items()}
    print(f"\nadapter {folder}; held-out file {heldout}")
    print(f"split: train {split['train']}, validation {split['validation']}, test {split['test']} (0-shot)")
    print(
        f"training: {record.seconds:.0f} s, {record.steps} steps, {record.epochs_run} epoch(s) ({record.stopped}), "
        f"best epoch {record.best_epoch}, validation loss {record.validation_loss}; peak RSS "
        f"{(record.peak_rss or 0) / 2**20:.0f} MiB; this run's training step {trained_s:.0f} s"
    )
    figures = study_figures(args.paper)
    print("\n| engine | rule | n | strict 0-shot before | strict 3-shot before | strict after | p (0-shot, 3-shot) "
          "| lenient 0-shot before | lenient 3-shot before | lenient after | p (0-shot, 3-shot) "
          "| study strict after | study lenient before → after |")  # fmt: skip
    print("|" + " --- |" * 13)
    suite_name = manifest.heldout_suite
    three = outcomes(three_shot.rows)
    for engine, (base, fine, seconds) in measured.items():
        before, after = outcomes(_held(base, suite_name)), outcomes(_held(fine, suite_name))
        for rule in PRONTOQA_RULES.values():
            ids = sorted(i for i in after if i in before and _rule_of(fine, i) == rule)
            if ids:
                print(table_row(engine, rule, ids, before, three, after, figures.get(rule, {})))
        print(f"({engine}: {seconds:.0f} s for base and fine-tuned, held-out and control)")
    print(f"(3-shot base in llama.cpp: {three_shot_s:.0f} s)")
    print("\ncontrol (CommonsenseQA, scored by likelihood): before -> after, lost/gained, exact McNemar p")
    for engine, (base, fine, _) in measured.items():
        b, a = _control(base, suite_name), _control(fine, suite_name)
        ids = sorted(set(b) & set(a))
        lost = sum(b[i][0] and not a[i][0] for i in ids)
        gained = sum(a[i][0] and not b[i][0] for i in ids)
        test = mcnemar_exact(lost, gained)
        print(
            f"  {engine}: {sum(b[i][0] for i in ids)}/{len(ids)} -> {sum(a[i][0] for i in ids)}/{len(ids)}, "
            f"{lost} lost / {gained} gained, p = {test.p_value:.3g}"
        )
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


def outcomes(rows: Sequence[GradedRow]) -> Outcomes:
    return {r.item.id: (r.correct, bool(r.grade and r.grade.lenient)) for r in rows}


def _held(model: ModelFindings, suite: str) -> list[GradedRow]:
    return [r for r in model.rows if r.suite == suite]


def _control(model: ModelFindings, suite: str) -> Outcomes:
    return outcomes([r for r in model.rows if r.suite != suite])


def _rule_of(model: ModelFindings, item_id: str) -> str:
    return next(r.item.category.removeprefix("prontoqa_") for r in model.rows if r.item.id == item_id)


def table_row(
    engine: str, rule: str, ids: list[str], before: Outcomes, three: Outcomes, after: Outcomes, study: dict[str, float]
) -> str:
    cells = [engine, rule, str(len(ids))]
    for metric in (0, 1):
        cells += [rate(before, ids, metric), rate(three, ids, metric), rate(after, ids, metric)]
        tests = []
        for prior in (before, three):
            paired = [i for i in ids if i in prior]
            lost = sum(prior[i][metric] and not after[i][metric] for i in paired)
            gained = sum(after[i][metric] and not prior[i][metric] for i in paired)
            tests.append(f"{mcnemar_exact(lost, gained).p_value:.2g}" if paired else "–")
        cells.append(", ".join(tests))
    cells.append(_percent(study.get(f"{AFTER}:strict")))
    cells.append(f"{_percent(study.get(f'{BEFORE}:lenient'))} → {_percent(study.get(f'{AFTER}:lenient'))}")
    return "| " + " | ".join(cells) + " |"


def rate(found: Outcomes, ids: list[str], metric: int) -> str:
    paired = [i for i in ids if i in found]
    if not paired:
        return "–"
    k, n = sum(found[i][metric] for i in paired), len(paired)
    interval = wilson(k, n)
    return f"{k}/{n} ({interval.low:.0%}–{interval.high:.0%})"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def study_figures(path: Path) -> dict[str, dict[str, float]]:
    """The study's SmolLM2-135M-Instruct figures per rule: ``setting:strict`` and ``setting:lenient``."""
    figures: dict[str, dict[str, float]] = {}
    if not path.exists():
        return figures
    with path.open(encoding="utf-8", newline="") as handle:
        for r in csv.DictReader(handle):
            metric = r["metric"].removeprefix("proof_success_rate(").removesuffix(")")
            if r["model"] == STUDY_MODEL and r["setting"] in (BEFORE, AFTER) and metric in ("strict", "lenient"):
                rule = r["task"].removeprefix("prontoqa_ood:")
                figures.setdefault(rule, {})[f"{r['setting']}:{metric}"] = float(r["value"])
    return figures


if __name__ == "__main__":
    sys.exit(main())
