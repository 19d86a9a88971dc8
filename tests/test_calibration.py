"""Calibration of the throughput projections: known efficiencies come back exactly from a CSV written here, a bad
row is named by file, line and field, and on the published measurements (../shared, skipped when absent) the
shipped profiles hold the efficiencies fitted there and land within 0.75-1.33 of their class's rows."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from poccheck.analysis.calibration import (
    PROFILE_CLASSES,
    class_ratios,
    fit,
    load_measurements,
    ratios,
)
from poccheck.analysis.cost import (
    projected_decode_tokens_per_second,
    projected_prefill_tokens_per_second,
    projected_seconds_per_task,
)
from poccheck.config.costs import DEFAULT_PREFILL_EFFICIENCY, load_profiles, override_problems
from poccheck.errors import PocCheckError
from tests.conftest import SHARED

MEASUREMENTS = SHARED / "reference" / "throughput_measurements.csv"
HEADER = (
    "hardware,kind,memory_bandwidth_gbs,peak_tflops_16bit,engine,model,params_billions,quant,weight_gb,"
    "decode_tok_s,prefill_tok_s,batch,source,note"
)


def row(
    hardware: str,
    kind: str,
    bandwidth: float,
    tflops: float | None,
    decode_eff: float,
    prefill_eff: float | None,
    batch: int = 1,
    params: float = 7.0,
    weight: float = 4.0,
) -> str:
    # measured = efficiency x projection at efficiency 1 (bandwidth / weight GB; FLOP/s / 2 FLOPs per parameter);
    # without TFLOPS, prefill_eff is written as the measured prefill tokens/s
    decode = decode_eff * bandwidth / weight
    if prefill_eff is None:
        prefill = ""
    else:
        prefill = repr(prefill_eff * tflops * 1e12 / (2 * params * 1e9) if tflops else prefill_eff)
    return (f'"{hardware}",{kind},{bandwidth},{"" if tflops is None else tflops},llama.cpp,m,{params},Q4_0,'
            f"{weight},{decode!r},{prefill},{batch},https://example.org,")  # fmt: skip


def test_known_efficiencies_are_recovered_exactly(tmp_path: Path) -> None:
    lines = [
        row("GPU A", "gpu", 1000, 300, 0.55, 0.2),
        row("GPU B", "gpu", 2000, 900, 0.55, 0.2, weight=13.5),
        row("GPU C, batch 8", "gpu", 2000, 900, 0.1, 0.01, batch=8),  # not one stream: left out of both
        row("NVIDIA RTX 4090", "gpu", 1008, 165, 0.55, 0.9),  # prefill class gpu_geforce
        row("Apple M9", "apple", 400, None, 0.7, 300.0),  # prefill measured, but no TFLOPS to project it from
        row("Apple M9 Ultra", "apple", 800, None, 0.7, None, weight=13.0),
        row("CPU one socket", "cpu", 460.8, None, 0.6, None),
        row("CPU (2 sockets)", "cpu", 921.6, None, 0.15, None),
        row("2x CPU", "cpu", 921.6, None, 0.15, None, weight=16.0),
        row("Uneven (1 socket)", "cpu", 100, 10, 0.4, 0.2),  # cpu_1socket: 0.6, 0.4 and 0.9 -> geometric mean 0.6
        row("Uneven two", "cpu", 100, 10, 0.9, 0.2),
    ]
    path = tmp_path / "m.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    rows = load_measurements(path)
    assert [r.line for r in rows] == list(range(2, 13))
    assert [r.decode_class for r in rows] == [
        "gpu", "gpu", "gpu", "gpu", "apple", "apple", "cpu_1socket", "cpu_multisocket", "cpu_multisocket",
        "cpu_1socket", "cpu_1socket",
    ]  # fmt: skip
    assert rows[3].prefill_class == "gpu_geforce" and rows[0].prefill_class == "gpu"

    fitted = fit(rows)
    assert set(fitted.decode) == {"gpu", "apple", "cpu_1socket", "cpu_multisocket"}
    assert fitted.decode["gpu"] == pytest.approx(0.55, rel=1e-12)
    assert fitted.decode["apple"] == pytest.approx(0.7, rel=1e-12)
    assert fitted.decode["cpu_multisocket"] == pytest.approx(0.15, rel=1e-12)
    # CPU one socket 0.6, uneven 0.4 and 0.9: (0.6 x 0.4 x 0.9) ** (1/3) = 0.216 ** (1/3) = 0.6
    assert fitted.decode["cpu_1socket"] == pytest.approx(0.6, rel=1e-12)
    assert set(fitted.prefill) == {"gpu", "gpu_geforce", "cpu"}
    assert fitted.prefill["gpu"] == pytest.approx(0.2, rel=1e-12)
    assert fitted.prefill["gpu_geforce"] == pytest.approx(0.9, rel=1e-12)

    results = ratios(rows, fitted)
    a, b, batched, geforce, apple = results[:5]
    assert a.decode == pytest.approx(1.0) and a.decode_loo == pytest.approx(1.0) and a.prefill == pytest.approx(1.0)
    assert batched.decode is batched.decode_loo is batched.prefill is None
    assert "batch 8" in (batched.row.decode_skip or "")
    assert geforce.prefill == pytest.approx(1.0) and geforce.prefill_loo is None  # alone in its class
    assert apple.prefill is None and apple.row.prefill_skip == "no datasheet TFLOPS"
    uneven, two = results[-2:]
    # fitted on the others: (0.6 x 0.9) ** 0.5 = 0.7348 against 0.4 reached -> 1.837; (0.6 x 0.4) ** 0.5 / 0.9
    assert uneven.decode_loo == pytest.approx(math.sqrt(0.54) / 0.4)
    assert two.decode_loo == pytest.approx(math.sqrt(0.24) / 0.9)
    assert uneven.decode == pytest.approx(0.6 / 0.4) and uneven.prefill_loo == pytest.approx(1.0)
    assert len(class_ratios(results, "decode", "cpu_1socket", loo=True)) == 3

    # the same numbers as the cost model's own projections at the fitted efficiencies
    r = rows[1]
    decode = projected_decode_tokens_per_second(r.weight_gb * 1e9, r.memory_bandwidth_gbs, fitted.decode["gpu"])
    assert results[1].decode == pytest.approx(decode / r.decode_tok_s)
    prefill = projected_prefill_tokens_per_second(r.params_billions * 1e9, r.peak_tflops_16bit or 0, 0.2)
    assert results[1].prefill == pytest.approx(prefill / (r.prefill_tok_s or 0))


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("weight_gb", "four", "must be a number"),
        ("decode_tok_s", "0", "above 0"),
        ("kind", "tpu", "must be one of apple, gpu, cpu"),
        ("batch", "1.5", "whole number"),
        ("prefill_tok_s", "nan", "above 0"),
    ],
)
def test_a_bad_row_is_named_by_file_line_and_field(tmp_path: Path, field: str, value: str, why: str) -> None:
    columns = HEADER.split(",")
    good = row("GPU A", "gpu", 1000, 300, 0.5, 0.2)
    cells = good.split(",")
    cells[columns.index(field)] = value
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([HEADER, good, ",".join(cells)]) + "\n")
    with pytest.raises(PocCheckError) as caught:
        load_measurements(path)
    assert f"{path}, line 3, field {field}:" in str(caught.value) and why in str(caught.value)


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text(HEADER.replace(",weight_gb", "") + "\n")
    with pytest.raises(PocCheckError, match=r"short\.csv, line 1: missing column\(s\) weight_gb"):
        load_measurements(path)


def test_projections_use_the_profile_efficiencies_and_overrides_are_range_checked() -> None:
    gpu = load_profiles().onprem_gpu
    # 1e9 parameters, 2e9 weight bytes, 1000 prompt + 100 output tokens:
    # prefill 0.183 x 362e12 / 2e9 = 33,123 tok/s -> 0.030191 s; decode 0.607 x 864e9 / 2e9 = 262.22 tok/s -> 0.381353 s
    assert projected_seconds_per_task(1e9, 2e9, 1000, 100, gpu) == pytest.approx(0.030191 + 0.381353, rel=1e-5)
    plain = load_profiles({"onprem_gpu": {"decode_efficiency": 0.6, "prefill_efficiency": 0.5, "compute_tflops": 180}})
    # the old profile: 0.5 x 180e12 / 2e9 = 45,000 tok/s -> 0.022222 s; 0.6 x 864e9 / 2e9 = 259.2 tok/s -> 0.385802 s
    assert projected_seconds_per_task(1e9, 2e9, 1000, 100, plain.onprem_gpu) == pytest.approx(0.408025, rel=1e-5)
    problems = dict(override_problems({"onprem_cpu": {"decode_efficiency": 1.5, "prefill_efficiency": 0}}))
    assert problems == {
        ("onprem_cpu", "decode_efficiency"): "must be above 0 and at most 1, not 1.5",
        ("onprem_cpu", "prefill_efficiency"): "must be above 0 and at most 1, not 0",
    }


@pytest.mark.skipif(not MEASUREMENTS.exists(), reason=f"{MEASUREMENTS} not found (../shared is not in user clones)")
def test_shipped_profiles_hold_the_fitted_efficiencies_and_meet_the_goal() -> None:
    rows = load_measurements(MEASUREMENTS)
    fitted = fit(rows)
    results = ratios(rows, fitted)
    profiles = load_profiles()
    checked = 0
    for name, (decode_class, prefill_class) in PROFILE_CLASSES.items():
        profile = getattr(profiles, name)
        for stage, cls, shipped in (
            ("decode", decode_class, profile.decode_efficiency),
            ("prefill", prefill_class, profile.prefill_efficiency),
        ):
            efficiencies = fitted.decode if stage == "decode" else fitted.prefill
            if cls not in efficiencies:  # no usable row (CPU prefill): the default stays
                assert shipped == DEFAULT_PREFILL_EFFICIENCY, (name, stage)
                continue
            # cost_profiles.yaml holds the fit rounded to 3 decimals, so it cannot drift from the CSV unnoticed
            assert abs(shipped - efficiencies[cls]) <= 0.0005 + 1e-12, (name, stage, efficiencies[cls])
            loo = class_ratios(results, stage, cls, loo=True)
            assert len(loo) >= 2, (name, stage)
            assert 0.75 <= statistics.median(loo) <= 1.33, (name, stage, loo)
            checked += 1
    assert checked == 3  # CPU decode, GPU decode, GPU prefill
