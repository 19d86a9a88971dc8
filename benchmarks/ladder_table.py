"""The ladder's accuracy table: model x task group x prompting mode, with 95% Wilson intervals, from the results
databases of `make ladder` (chat templates where a model has one) and `make ladder LADDER_FORMAT=raw` (plain
text, the published study's protocol). Prints a Markdown table, one row per model and mode, and each run's wall
time per model (seconds of item work, from the store).

    python benchmarks/ladder_table.py ladder ladder-raw
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from poccheck.analysis.stats import wilson
from poccheck.analysis.summary import analyse
from poccheck.grading.stage import grade_stored
from poccheck.records import ModelRun
from poccheck.store import DB_NAME, Store


def cell(correct: int, n: int) -> str:
    if not n:
        return "–"
    p = wilson(correct, n)
    return f"{correct}/{n} ({p.low:.0%}–{p.high:.0%})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+", help="assess output folders (each with poccheck.db)")
    args = parser.parse_args()
    tables = []
    for folder in args.folders:
        if not (folder / DB_NAME).exists():
            print(f"skipped: {folder / DB_NAME} not found", file=sys.stderr)
            continue
        store = Store(folder / DB_NAME, create=False)
        try:
            stored = store.snapshot()
            findings = analyse(stored, grade_stored(stored))
            runs = store.model_runs()
        finally:
            store.close()
        tables.append((folder, findings, runs))
    if not tables:
        return 1
    groups = sorted({g for _, f, _ in tables for g in f.categories})
    print("| run | model | mode | " + " | ".join(groups) + " | all |")
    print("|---|---|---|" + "---|" * (len(groups) + 1))
    for folder, findings, _ in tables:
        for model in findings.models:
            per = []
            for group in groups:
                rows = [r for r in model.rows if r.item.category == group]
                per.append(cell(sum(r.correct for r in rows), len(rows)))
            every = cell(sum(r.correct for r in model.rows), len(model.rows))
            print(f"| {folder.name} | {model.name} | {model.mode} | " + " | ".join(per) + f" | {every} |")
    print()
    for folder, _, runs in tables:
        latest: dict[str, ModelRun] = {}
        for run in runs:
            if run.seconds is not None:
                latest[run.model] = run
        total = sum((r.seconds or 0) + (r.load_seconds or 0) for r in latest.values())
        parts = ", ".join(f"{name} {r.seconds or 0:.0f} s" for name, r in latest.items())
        print(f"{folder.name}: {parts}; {total / 60:.1f} min in all (item work and loading)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
