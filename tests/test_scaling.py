"""Threshold fits: synthetic data with a known midpoint, honest refusals, family confounds, and the published
study's own data (tests/data/published_thresholds.csv, copied from shared/reference/paper_results.csv)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from poccheck.analysis.reasoning import points_from_csv, published_points
from poccheck.analysis.scaling import Logistic, Point, family_of_name, threshold

FIXTURE = Path(__file__).parent / "data" / "published_thresholds.csv"


def fixture_points(task: str, metric: str) -> list[Point]:
    return points_from_csv(FIXTURE.read_text(encoding="utf-8"), task, metric)


def synthetic(midpoint_b: float, sizes_b: list[float], n: int, seed: int, chance: float = 0.25) -> list[Point]:
    rng = np.random.default_rng(seed)
    curve = Logistic(chance, 0.9, math.log10(midpoint_b * 1e9), 6.0)
    points = []
    for i, size in enumerate(sizes_b):
        p = float(curve(np.array([math.log10(size * 1e9)]))[0])
        points.append(Point(f"m{i}", "one", size * 1e9, int(rng.binomial(n, p)), n))
    return points


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_known_midpoint_is_recovered_within_its_interval(seed: int) -> None:
    sizes = [0.1, 0.2, 0.35, 0.5, 0.8, 1.0, 1.3, 1.6, 2.0, 3.0, 5.0, 8.0]
    fit = threshold(synthetic(1.2, sizes, 200, seed), chance=0.25, boot=200, seed=seed)
    assert fit.sufficient, fit.verdict
    low, high = fit.interval_parameters or (0, 0)
    assert low <= 1.2e9 <= high
    assert fit.threshold_parameters == pytest.approx(1.2e9, rel=0.35)
    assert fit.confounds == []


def test_too_few_sizes_or_too_wide_an_interval_is_insufficient() -> None:
    two = threshold(synthetic(1.0, [0.5, 2.0], 100, 0), chance=0.25)
    assert not two.sufficient and "2 model sizes" in str(two.verdict) and two.threshold_parameters is None
    noisy = threshold(synthetic(1.0, [0.1, 1.0, 10.0], 5, 0), chance=0.25, boot=100)
    assert not noisy.sufficient and "insufficient evidence" in str(noisy.verdict)


def test_a_curve_still_rising_at_the_largest_size_places_the_threshold_above_the_sizes_tested() -> None:
    # the ladder's shape: chance up to 0.5B, a jump at the largest size, where the curve may still be rising
    points = [Point(f"m{i}", "one", size, correct, 50) for i, (size, correct) in
              enumerate([(0.135e9, 12), (0.27e9, 13), (0.494e9, 12), (1.54e9, 40)])]  # fmt: skip
    fit = threshold(points, chance=0.25, boot=100)
    assert not fit.sufficient and fit.threshold_parameters is None
    assert fit.verdict.key == "verdict.above_tested"
    assert "only the largest size tested (1.54B)" in str(fit.verdict) and "above 494M" in str(fit.verdict)


def test_a_large_model_of_another_family_below_a_small_one_is_a_confound() -> None:
    points = synthetic(1.0, [0.2, 0.5, 1.0, 2.0, 4.0], 300, 4)
    points.append(Point("big-other", "other", 6e9, 60, 300))
    fit = threshold(points, chance=0.25, boot=50)
    assert fit.confounds and fit.confounds[0].larger == "big-other"


def test_published_csqa_threshold() -> None:
    points = fixture_points("csqa", "accuracy")
    assert len(points) == 23
    fit = threshold(points, chance=0.2)
    assert fit.sufficient, fit.verdict
    assert 1.0e9 <= (fit.threshold_parameters or 0) <= 2.5e9
    low, high = fit.interval_parameters or (0, 0)
    assert low <= 1.6e9 <= high
    assert any(c.larger.startswith("OpenELM-3B") for c in fit.confounds)
    assert {p.family for p in points} == {"gpt2", "smollm2", "openelm", "tinyllama", "stablelm", "gemma"}


def test_published_proof_by_contradiction_threshold() -> None:
    points = fixture_points("prontoqa_ood:proof_by_contradiction", "proof_success_rate(lenient)")
    assert len(points) == 19 and all(p.n == 100 for p in points)
    fit = threshold(points)
    assert fit.sufficient, fit.verdict
    assert 1.0e9 <= (fit.threshold_parameters or 0) <= 2.5e9
    low, high = fit.interval_parameters or (0, 0)
    assert low <= 1.6e9 <= high
    assert any(c.larger.startswith("OpenELM-3B") for c in fit.confounds)


def test_packaged_published_data_matches_the_fixture() -> None:
    assert published_points("csqa", "accuracy") == fixture_points("csqa", "accuracy")


def test_family_names() -> None:
    assert family_of_name("SmolLM2-1.7B-Instruct") == "smollm2"
    assert family_of_name("OpenELM-3B") == "openelm" and family_of_name("OpenELM-1_1B") == "openelm"
    assert family_of_name("gpt2-xl") == "gpt2" and family_of_name("stablelm-2-zephyr-1_6b") == "stablelm"


def test_the_same_weights_through_two_backends_are_one_point_on_the_size_curve() -> None:
    from dataclasses import replace

    from poccheck.analysis.reasoning import scaling_groups

    from .test_recommend import candidate, findings

    small, large = candidate("small", 135_000_000, 3, 10), candidate("large", 1_500_000_000, 8, 10)
    again = candidate("small@transformers", 135_000_000, 5, 10)
    assert small.info is not None and again.info is not None
    again.info = replace(again.info, backend="transformers", path=small.info.path, fingerprint=small.info.fingerprint)
    (group,) = scaling_groups(findings(small, large, again), with_published=False)
    assert [(p.model, p.correct) for p in group.fit.points] == [("small", 3), ("large", 8)]
    other = candidate("other", 135_000_000, 5, 10)  # other weights of the same size still count
    (group,) = scaling_groups(findings(small, large, other), with_published=False)
    assert len(group.fit.points) == 3
