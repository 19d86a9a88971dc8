"""The published study's CommonsenseQA chain-of-thought accuracy and PrOntoQA-OOD proof success (Hsiao & Dutta
2025), reproduced on the installed ladder models under the study's protocols and set beside the study's own figures.

The suite is the study's protocol (`poccheck tasks csqa-study`: Wei et al.'s 7 exemplars, 100 new tokens, greedy,
repetition penalty 0.0001, the letter after the first "the answer is (", no chat template). Each model runs with
`poccheck.assess`, one after another into one results store under --out (rerunning resumes; finished items are not
run again); a last assess over every model, on the items all of them ran, writes the report (--out/report.html,
and .ja.html), whose threshold chart sets the study's own CommonsenseQA points beside the ladder's:

    python benchmarks/paper_reproduction.py                      # 300 items, 100 for the 1.5B model and for
                                                                 # SmolLM2 through @transformers
    python benchmarks/paper_reproduction.py --models smollm2-135m-q4 --n 50
    python benchmarks/paper_reproduction.py --full               # all 1,221 for every model (hours on 2 cores)
    python benchmarks/paper_reproduction.py --tasks prontoqa --proofs 20   # 20 proofs per rule

PrOntoQA-OOD (`poccheck tasks prontoqa-study`): the study's own 3-shot 1-hop prompts, 100 per rule, 256 new tokens,
cut at the next "Q:", the same penalty, graded by the study's proof checker. Defaults: 100 per rule, 30 for the
1.5B model. For each model and rule it prints strict and lenient proof success with 95% Wilson intervals beside the
study's figures (its v1 3-shot 1-hop table; for the Qwen siblings its revision's 3-shot hop-1 table, which has four
of the six rules), how many of SmolLM2's proofs the two engines write and grade differently, and writes one report
over every model (--out/prontoqa/report.html, and .ja.html) whose rule charts set the ladder's points beside the
study's.

For each model it prints the items run, the share right with a 95% Wilson interval, the share with no readable
answer, and the study's figures for the model it ran (all 1,221 validation items; its v1 table where the model
is in it, else its revision's), with the study's accuracy as its own Wilson interval over 1,221: whether the
study's figure lies in poccheck's interval, and whether the two intervals overlap. Item work is the store's
seconds for the model over all its runs in the store.

Differences it cannot remove: the ladder's files are Q4 quantisations of the study's 16/32-bit weights, and the
Qwen models are the Coder siblings of the study's general Qwen2.5-Instruct, so their rows compare a neighbour,
not the same weights. One it measures: SmolLM2 through `@transformers` runs the same weights dequantised to
float32, on the same first items, and the last line counts the items where the two engines' answers differ.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from poccheck import models
from poccheck.analysis.stats import wilson
from poccheck.analysis.summary import GradedRow, ModelFindings, analyse
from poccheck.config.run import RunConfig
from poccheck.grading.stage import grade_stored
from poccheck.pipeline import assess
from poccheck.store import DB_NAME, Store
from poccheck.tasks.study import PRONTOQA_RULES, write_csqa_study, write_prontoqa_study

STUDY_ITEMS = 1221
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PAPER = SHARED / "reference" / "paper_results.csv"
CSQA = SHARED / "data" / "csqa_validation" / "normalized.jsonl"
PRONTOQA = SHARED / "data" / "prontoqa_ood" / "normalized.jsonl"
LADDER = ("smollm2-135m-q4", "gemma3-270m-q4", "qwen2.5-coder-0.5b-q4", "qwen2.5-coder-1.5b-q4")
T = TypeVar("T")
DEQUANTISED = "smollm2-135m-q4@transformers"
DEFAULT_N = 300
SMALLER_N = {"qwen2.5-coder-1.5b-q4": 100, DEQUANTISED: 100}  # sized for 2 cores
DEFAULT_PROOFS = 100
SMALLER_PROOFS = {"qwen2.5-coder-1.5b-q4": 30, DEQUANTISED: 30}
PROOF_TRIALS = 100  # the study's items per rule

# ladder model -> (the study's model, how they relate)
STUDY_MODEL = {
    "smollm2-135m-q4": ("SmolLM2-135M-Instruct", "the same weights, Q4_1"),
    DEQUANTISED: ("SmolLM2-135M-Instruct", "the same weights, Q4_1 dequantised"),
    "qwen2.5-coder-0.5b-q4": ("Qwen2.5-0.5B-Instruct", "Coder sibling, Q4_K_M"),
    "qwen2.5-coder-1.5b-q4": ("Qwen2.5-1.5B-Instruct", "Coder sibling, Q4_K_M"),
}


@dataclass(frozen=True)
class StudyFigure:
    model: str
    setting: str
    accuracy: float
    no_answer: int | None  # of 1,221; the v1 table has it, the revision does not


def study_figures(path: Path) -> dict[str, StudyFigure]:
    """The study's CSQA chain-of-thought accuracy per model: v1 where it has the model, else rev1."""
    rows: dict[tuple[str, str], dict[str, float]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["task"] == "csqa" and row["setting"].startswith("cot_7shot"):
                rows.setdefault((row["model"], row["setting"]), {})[row["metric"]] = float(row["value"])
    figures: dict[str, StudyFigure] = {}
    for (model, setting), metrics in sorted(rows.items(), key=lambda kv: kv[0][1] != "cot_7shot_v1"):
        if model in figures or "accuracy" not in metrics:
            continue
        no_answer = metrics.get(f"no_answer_count(of {STUDY_ITEMS})")
        figures[model] = StudyFigure(model, setting, metrics["accuracy"], int(no_answer) if no_answer else None)
    return figures


def proof_figures(path: Path) -> dict[tuple[str, str], tuple[str, dict[str, float]]]:
    """The study's 3-shot 1-hop PrOntoQA-OOD figures per (model, rule): its v1 table, else its revision's hop-1
    figure (the revision gives each model and rule one hop-1 setting, ``_2steps_rev1`` or ``_3steps_rev1``; the
    same rule as poccheck/data/published_thresholds.csv)."""
    found: dict[tuple[str, str, str], dict[str, float]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for r in csv.DictReader(handle):
            setting = r["setting"]
            if r["task"].startswith("prontoqa_ood:") and (
                setting == "cot_3shot_1hop_v1" or (setting.startswith("cot_3shot_hop1_") and setting.endswith("_rev1"))
            ):
                found.setdefault((r["model"], r["task"].split(":", 1)[1], setting), {})[r["metric"]] = float(r["value"])
    figures: dict[tuple[str, str], tuple[str, dict[str, float]]] = {}
    revisions: dict[tuple[str, str], set[str]] = {}
    for (model, rule, setting), metrics in sorted(found.items(), key=lambda kv: kv[0][2] != "cot_3shot_1hop_v1"):
        figures.setdefault((model, rule), (setting, metrics))
        if setting != "cot_3shot_1hop_v1":
            revisions.setdefault((model, rule), set()).add(setting)
    several = {key: sorted(s) for key, s in revisions.items() if len(s) > 1}
    if several:  # not so in the study's table: say so rather than pick one silently
        raise SystemExit(f"{path}: several revision hop-1 settings for {several}")
    return figures


def proof_rows(
    model: ModelFindings, figures: dict[tuple[str, str], tuple[str, dict[str, float]]], seconds: float | None
) -> list[str]:
    """One line per PrOntoQA-OOD rule: strict and lenient proof success with Wilson intervals, and the study's."""
    study_name, relation = STUDY_MODEL.get(model.name, ("", ""))
    lines = []
    for rule in PRONTOQA_RULES.values():
        rows = [r for r in model.rows if r.item.category == f"prontoqa_{rule}"]
        if not rows:
            continue
        n = len(rows)
        setting, metrics = figures.get((study_name, rule), ("–", {}))
        cells = []
        for metric, ok in (
            ("strict", [r.correct for r in rows]),
            ("lenient", [bool(r.grade and r.grade.lenient) for r in rows]),
        ):
            k = sum(ok)
            ours = wilson(k, n)
            cells.append(f"{k}/{n} = {k / n:.0%} ({ours.low:.0%}–{ours.high:.0%})")
            value = metrics.get(f"proof_success_rate({metric})")
            if value is None:
                cells.append("–")
            else:
                inside = ours.low <= value <= ours.high
                cells.append(f"{value:.0%}{'' if inside else ' (outside)'}")
        took = f"{seconds:.0f} s" if seconds is not None else "–"
        lines.append(
            f"| {model.name} | {study_name or '–'}{f' ({relation})' if relation else ''} | {rule} | "
            + " | ".join(cells)
            + f" | {setting} | {took} |"
        )
    return lines


def findings_of(folder: Path) -> tuple[list[ModelFindings], dict[str, float]]:
    """The chain-of-thought findings of the store's latest assess, and each model's seconds of item work over all
    its runs there (a resumed run adds to the first)."""
    store = Store(folder / DB_NAME, create=False)
    try:
        stored = store.snapshot()
        seconds: dict[str, float] = {}
        for run in store.model_runs():
            seconds[run.model] = seconds.get(run.model, 0.0) + (run.seconds or 0.0)
    finally:
        store.close()
    return [m for m in analyse(stored, grade_stored(stored)).models if m.mode == "cot" and m.rows], seconds


def csqa_rows(model: ModelFindings) -> list[GradedRow]:
    return [r for r in model.rows if r.item.category == "commonsenseqa"]


def row(model: ModelFindings, figures: dict[str, StudyFigure], seconds: float | None) -> str:
    rows = csqa_rows(model)
    n = len(rows)
    right = sum(r.correct for r in rows)
    silent = sum(1 for r in rows if r.grade is None or not r.grade.answered)
    ours = wilson(right, n)
    study_name, relation = STUDY_MODEL.get(model.name, ("", ""))
    figure = figures.get(study_name)
    if figure is None:
        study, study_silent, within = "not in the study", "–", "–"
    else:
        theirs = wilson(round(figure.accuracy * STUDY_ITEMS), STUDY_ITEMS)
        study = f"{figure.accuracy:.1%} ({theirs.low:.1%}–{theirs.high:.1%}; {figure.setting})"
        study_silent = f"{figure.no_answer / STUDY_ITEMS:.1%}" if figure.no_answer is not None else "–"
        inside = ours.low <= figure.accuracy <= ours.high
        overlap = ours.low <= theirs.high and theirs.low <= ours.high
        within = f"{'yes' if inside else 'no'}; overlap {'yes' if overlap else 'no'}"
    took = f"{seconds:.0f} s" if seconds is not None else "–"
    return (
        f"| {model.name} | {study_name or '–'}{f' ({relation})' if relation else ''} | {n} | "
        f"{right}/{n} = {right / n:.1%} ({ours.low:.1%}–{ours.high:.1%}) | {silent}/{n} = {silent / n:.1%} | "
        f"{study} | {study_silent} | {within} | {took} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", help=f"default: the installed ladder models and {DEQUANTISED}")
    parser.add_argument("--tasks", nargs="+", choices=("csqa", "prontoqa"), default=["csqa", "prontoqa"])
    parser.add_argument("--n", type=int, help=f"CommonsenseQA items per model (default {DEFAULT_N}, fewer for some)")
    parser.add_argument(
        "--proofs", type=int, help=f"PrOntoQA items per rule (default {DEFAULT_PROOFS}, fewer for some)"
    )
    parser.add_argument("--full", action="store_true", help="all 1,221 CommonsenseQA items and 100 proofs per rule")
    parser.add_argument("--out", type=Path, default=Path("paper-reproduction"), help="the store and the report")
    parser.add_argument("--data", type=Path, default=CSQA, help="CommonsenseQA validation items (JSON Lines)")
    parser.add_argument("--prontoqa", type=Path, default=PRONTOQA, help="PrOntoQA-OOD items (JSON Lines)")
    parser.add_argument("--paper", type=Path, default=PAPER, help="the study's results table (paper_results.csv)")
    args = parser.parse_args()
    needed = [
        args.paper,
        *([args.data] if "csqa" in args.tasks else []),
        *([args.prontoqa] if "prontoqa" in args.tasks else []),
    ]
    for path in needed:
        if not path.exists():
            print(
                f"{path} not found (../shared beside the project, or pass --data / --prontoqa / --paper)",
                file=sys.stderr,
            )
            return 1
    chosen = args.models or [m for m in (*LADDER, DEQUANTISED) if models.installed(m.split("@")[0])]
    if not chosen:
        print("no ladder model installed: poccheck models install", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    if "csqa" in args.tasks:
        csqa(args, chosen)
    if "prontoqa" in args.tasks:
        prontoqa(args, chosen)
    return 0


def engine_pair(by_model: dict[str, dict[str, T]]) -> list[tuple[T, T]] | None:
    """SmolLM2's results by item through llama.cpp and through transformers, paired on the items both have; None
    unless both engines ran."""
    quantised, dequantised = by_model.get(DEQUANTISED.split("@")[0]), by_model.get(DEQUANTISED)
    if quantised is None or dequantised is None:
        return None
    return [(quantised[i], dequantised[i]) for i in sorted(set(quantised) & set(dequantised))]


def csqa(args: argparse.Namespace, chosen: list[str]) -> None:
    sizes = {m: None if args.full else args.n or SMALLER_N.get(m, DEFAULT_N) for m in chosen}
    suite = args.out / "csqa_study.yaml"
    write_csqa_study(args.data, suite, None if None in sizes.values() else max(n for n in sizes.values() if n))
    figures = study_figures(args.paper)
    header = "| model | study's model | items | right (95% Wilson) | no answer | study: right (95% Wilson, 1,221) |"
    print(header + " study: no answer | study's figure in ours | item work |")
    print("|---|---|---|---|---|---|---|---|---|")
    answers: dict[str, dict[str, str]] = {}
    for spec in chosen:
        assess(RunConfig((suite,), (spec,), out=args.out, modes=("cot",), limit=sizes[spec], prompt_format="raw"))
        found, seconds = findings_of(args.out)
        for model in found:
            if model.name == spec and csqa_rows(model):
                print(row(model, figures, seconds.get(model.name)), flush=True)
                answers[model.name] = {r.item.id: r.grade.prediction if r.grade else "" for r in csqa_rows(model)}
    if (pairs := engine_pair(answers)) is not None:
        differ = sum(q != d for q, d in pairs)
        print(f"\nllama.cpp (Q4_1) against transformers (dequantised): {differ} of {len(pairs)} answers differ")
    common = min((n for n in sizes.values() if n is not None), default=None)
    report = assess(RunConfig((suite,), tuple(chosen), out=args.out, modes=("cot",), limit=common, prompt_format="raw"))
    print(f"report over the first {common or 'all'} items of every model: {report.report}\n")


def prontoqa(args: argparse.Namespace, chosen: list[str]) -> None:
    """Each model on the first N proofs of every rule: one suite file per N, the same items (and result keys)."""
    sizes = {m: PROOF_TRIALS if args.full else args.proofs or SMALLER_PROOFS.get(m, DEFAULT_PROOFS) for m in chosen}
    figures = proof_figures(args.paper)
    print("| model | study's model | rule | strict (95% Wilson) | study strict | lenient (95% Wilson) | study lenient |"
          " study's setting | item work |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    out = args.out / "prontoqa"  # its own store, so that item work counts proofs only
    out.mkdir(parents=True, exist_ok=True)
    proofs: dict[str, dict[str, tuple[str, bool]]] = {}
    for spec in chosen:
        suite = out / f"prontoqa_study_{sizes[spec]}.yaml"
        write_prontoqa_study(args.prontoqa, suite, sizes[spec])
        assess(RunConfig((suite,), (spec,), out=out, modes=("cot",), prompt_format="raw"))
        found, seconds = findings_of(out)
        for model in found:
            if model.name == spec:
                print("\n".join(proof_rows(model, figures, seconds.get(model.name))), flush=True)
                proofs[model.name] = {r.item.id: (r.result.output or "", r.correct) for r in model.rows}
    if (pairs := engine_pair(proofs)) is not None:
        text = sum(q[0] != d[0] for q, d in pairs)
        strict = sum(q[1] != d[1] for q, d in pairs)
        print(f"\nllama.cpp (Q4_1) against transformers (dequantised): of {len(pairs)} proofs, {text} differ in"
              f" text and {strict} in the strict grade")  # fmt: skip
    # the first N proofs of every rule are the same items in every suite file: the smallest N's file, with every
    # model, runs nothing again and writes one report with the ladder's points on each rule's threshold chart
    common = min(sizes.values())
    suite = out / f"prontoqa_study_{common}.yaml"
    report = assess(RunConfig((suite,), tuple(chosen), out=out, modes=("cot",), prompt_format="raw"))
    print(f"report over the first {common} proofs per rule of every model: {report.report}\n")


if __name__ == "__main__":
    raise SystemExit(main())
