"""Projected against measured throughput: the cost model's decode and prefill projections on the published
measurements in ../shared/reference/throughput_measurements.csv (skipped when absent).

Prints, for every row, projected/measured (above 1 = the projection is optimistic) with the old fixed
efficiencies (0.6 of datasheet bandwidth, 0.5 of datasheet TFLOPS), with the per-class efficiencies fitted on
the CSV, and leave-one-out (the row's class fitted on its other rows); then, for each shipped profile, the
ratios over its class's rows before (the profile as shipped before the calibration: 300 GB/s "sustained" for
the CPU server, 180 TFLOPS for the GPU, at 0.6 / 0.5) and after (the calibrated profile, leave-one-out).
Goal: each profile's leave-one-out median within 0.75-1.33 where its class has rows.

    python benchmarks/calibration.py [--csv PATH]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from poccheck.analysis.calibration import (
    PROFILE_CLASSES,
    Efficiencies,
    Measurement,
    class_ratios,
    fit,
    load_measurements,
    ratios,
)
from poccheck.config.costs import DEFAULT_DECODE_EFFICIENCY, DEFAULT_PREFILL_EFFICIENCY, load_profiles

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT.parent / "shared" / "reference" / "throughput_measurements.csv"
# The shipped profiles before the calibration: (bandwidth GB/s, TFLOPS), both at the default efficiencies.
BEFORE = {"onprem_cpu": (300.0, 3.0), "onprem_gpu": (864.0, 180.0)}
GOAL = (0.75, 1.33)


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def spread(values: list[float]) -> str:
    if not values:
        return "no rows"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f}, n={len(values)})"


def skipped(row: Measurement) -> str:
    reasons = [f"decode: {row.decode_skip}"] if row.decode_skip else []
    reasons += [f"prefill: {row.prefill_skip}"] if row.prefill_skip else []
    return "; ".join(reasons)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=CSV)
    args = parser.parse_args()
    if not args.csv.exists():
        print(f"skipped: {args.csv} not found (it lives in ../shared, which user clones do not have)")
        return 0
    rows = load_measurements(args.csv)
    fitted = fit(rows)
    old = Efficiencies(
        decode=dict.fromkeys(fitted.decode, DEFAULT_DECODE_EFFICIENCY),
        prefill=dict.fromkeys(fitted.prefill, DEFAULT_PREFILL_EFFICIENCY),
    )
    before, after = ratios(rows, old), ratios(rows, fitted)
    print(f"{args.csv.name}: {len(rows)} rows; projected / measured tokens/s (above 1 = optimistic)\n")

    print("| stage | class | rows | fitted efficiency | old |")
    print("|---|---|---|---|---|")
    for stage, efficiencies, default in (
        ("decode", fitted.decode, DEFAULT_DECODE_EFFICIENCY),
        ("prefill", fitted.prefill, DEFAULT_PREFILL_EFFICIENCY),
    ):
        for cls, value in sorted(efficiencies.items()):
            count = len(class_ratios(after, stage, cls))
            print(f"| {stage} | {cls} | {count} | {value:.3f} | {default} |")
    print()

    stages = "class | old | fitted | LOO"
    print(f"| line | hardware | model | decode {stages} | prefill {stages} | left out |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for b, a in zip(before, after, strict=True):
        row = a.row
        print(
            f"| {row.line} | {row.hardware} | {row.model} {row.quant} | {row.decode_class} | {cell(b.decode)} "
            f"| {cell(a.decode)} | {cell(a.decode_loo)} | {row.prefill_class} | {cell(b.prefill)} "
            f"| {cell(a.prefill)} | {cell(a.prefill_loo)} | {skipped(row)} |"
        )
    print()

    profiles = load_profiles()
    print("| profile | stage | class | before: median (range) | after, leave-one-out: median (range) | goal |")
    print("|---|---|---|---|---|---|")
    for name, (decode_class, prefill_class) in PROFILE_CLASSES.items():
        profile = getattr(profiles, name)
        bandwidth, tflops = BEFORE[name]
        # the old profile's throughput as a share of the datasheet figures the rows are projected from
        was = Efficiencies(
            decode={decode_class: DEFAULT_DECODE_EFFICIENCY * bandwidth / profile.memory_bandwidth_gbs},
            prefill={prefill_class: DEFAULT_PREFILL_EFFICIENCY * tflops / profile.compute_tflops},
        )
        was_ratios = ratios(rows, was)
        for stage, cls in (("decode", decode_class), ("prefill", prefill_class)):
            loo = class_ratios(after, stage, cls, loo=True)
            met = "-" if not loo else ("met" if GOAL[0] <= statistics.median(loo) <= GOAL[1] else "MISSED")
            old_values = class_ratios(was_ratios, stage, cls)
            print(f"| {name} | {stage} | {cls} | {spread(old_values)} | {spread(loo)} | {met} |")
    print()

    pooled = [r.prefill_at_1 for r in rows if r.kind == "gpu" and r.prefill_skip is None and r.prefill_at_1]
    if pooled:
        one = statistics.geometric_mean(pooled)
        on_gpu = [one / r.prefill_at_1 for r in rows if r.prefill_class == "gpu" and r.prefill_at_1]
        print(
            f"(prefill with GeForce rows pooled into gpu: efficiency {one:.3f}, projected/measured on the "
            f"data-centre rows {spread(on_gpu)}; hence the separate gpu_geforce class)"
        )
    print(
        "(CPU prefill: no CPU row has a datasheet TFLOPS, so onprem_cpu keeps the default prefill efficiency "
        f"{DEFAULT_PREFILL_EFFICIENCY} of its rough {profiles.onprem_cpu.compute_tflops:g} TFLOPS)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
