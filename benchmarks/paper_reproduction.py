"""The published study's CommonsenseQA chain-of-thought accuracy (Hsiao & Dutta 2025), reproduced on the installed
ladder models under the study's protocol and set beside the study's own figures.

The suite is the study's protocol (`poccheck tasks csqa-study`: Wei et al.'s 7 exemplars, 100 new tokens, greedy,
repetition penalty 0.0001, the letter after the first "the answer is (", no chat template). Each model runs with
`poccheck.assess`, one after another into one results store under --out (rerunning resumes; finished items are not
run again); a last assess over every model, on the items all of them ran, writes the report (--out/report.html,
and .ja.html), whose threshold chart sets the study's own CommonsenseQA points beside the ladder's:

    python benchmarks/paper_reproduction.py                      # 300 items, 100 for the 1.5B model and for
                                                                 # SmolLM2 through @transformers
    python benchmarks/paper_reproduction.py --models smollm2-135m-q4 --n 50
    python benchmarks/paper_reproduction.py --full               # all 1,221 for every model (hours on 2 cores)

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

from poccheck import models
from poccheck.analysis.stats import wilson
from poccheck.analysis.summary import ModelFindings, analyse
from poccheck.config.run import RunConfig
from poccheck.grading.stage import grade_stored
from poccheck.pipeline import assess
from poccheck.store import DB_NAME, Store
from poccheck.tasks.study import write_csqa_study

STUDY_ITEMS = 1221
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PAPER = SHARED / "reference" / "paper_results.csv"
CSQA = SHARED / "data" / "csqa_validation" / "normalized.jsonl"
LADDER = ("smollm2-135m-q4", "gemma3-270m-q4", "qwen2.5-coder-0.5b-q4", "qwen2.5-coder-1.5b-q4")
DEQUANTISED = "smollm2-135m-q4@transformers"
DEFAULT_N = 300
SMALLER_N = {"qwen2.5-coder-1.5b-q4": 100, DEQUANTISED: 100}  # sized for 2 cores

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


def row(model: ModelFindings, figures: dict[str, StudyFigure], seconds: float | None) -> str:
    n = len(model.rows)
    right = sum(r.correct for r in model.rows)
    silent = sum(1 for r in model.rows if r.grade is None or not r.grade.answered)
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
    parser.add_argument("--n", type=int, help=f"CommonsenseQA items per model (default {DEFAULT_N}, fewer for some)")
    parser.add_argument("--full", action="store_true", help="all 1,221 items for every model")
    parser.add_argument("--out", type=Path, default=Path("paper-reproduction"), help="the store and the report")
    parser.add_argument("--data", type=Path, default=CSQA, help="CommonsenseQA validation items (JSON Lines)")
    parser.add_argument("--paper", type=Path, default=PAPER, help="the study's results table (paper_results.csv)")
    args = parser.parse_args()
    for path in (args.data, args.paper):
        if not path.exists():
            print(f"{path} not found (../shared beside the project, or pass --data / --paper)", file=sys.stderr)
            return 1
    chosen = args.models or [m for m in (*LADDER, DEQUANTISED) if models.installed(m.split("@")[0])]
    if not chosen:
        print("no ladder model installed: poccheck models install", file=sys.stderr)
        return 1
    sizes = {m: None if args.full else args.n or SMALLER_N.get(m, DEFAULT_N) for m in chosen}
    args.out.mkdir(parents=True, exist_ok=True)
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
            print(row(model, figures, seconds.get(model.name)), flush=True)
            answers[model.name] = {r.item.id: r.grade.prediction if r.grade else "" for r in model.rows}
    if DEQUANTISED in answers and DEQUANTISED.split("@")[0] in answers:
        quantised, dequantised = answers[DEQUANTISED.split("@")[0]], answers[DEQUANTISED]
        shared = sorted(set(quantised) & set(dequantised))
        differ = sum(quantised[i] != dequantised[i] for i in shared)
        print(f"\nllama.cpp (Q4_1) against transformers (dequantised): {differ} of {len(shared)} answers differ")
    common = min((n for n in sizes.values() if n is not None), default=None)
    report = assess(RunConfig((suite,), tuple(chosen), out=args.out, modes=("cot",), limit=common, prompt_format="raw"))
    print(f"report over the first {common or 'all'} items of every model: {report.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
