"""Threshold fits: synthetic data with a known midpoint, the interval's coverage from three, four and six sizes
(a smaller run of benchmarks/threshold_coverage.py), honest refusals, family confounds, and the published study's
own data (tests/data/published_thresholds.csv, copied from shared/reference/paper_results.csv)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from benchmarks.threshold_coverage import simulate
from poccheck.analysis.reasoning import (
    PUBLISHED_TASKS,
    STUDY_3SHOT_1HOP,
    ScalingGroup,
    points_from_csv,
    published_points,
    scaling_groups,
)
from poccheck.analysis.scaling import Logistic, Point, _nll, family_of_name, profile_nll, threshold

from .test_recommend import candidate, findings

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
    # five items a model bound the threshold on one side only: the interval runs to the end of the range searched
    # (half a decade below 100M), which is not reported as an interval
    assert noisy.verdict.key == "verdict.unbounded" and noisy.interval is None and noisy.interval_parameters is None
    assert "(32M–" in str(noisy.verdict) and "reaches the end of the range searched" in str(noisy.verdict)


def expected(midpoint_b: float, sizes_b: list[float], n: int, slope: float, ceiling: float = 0.85) -> list[Point]:
    """Each model scoring what the curve predicts (rounded): the fit's answer without sampling noise."""
    curve = Logistic(0.25, ceiling, math.log10(midpoint_b * 1e9), slope)
    accuracy = curve(np.log10(np.array(sizes_b) * 1e9))
    return [
        Point(f"m{i}", "one", s * 1e9, round(n * a), n) for i, (s, a) in enumerate(zip(sizes_b, accuracy, strict=True))
    ]


def test_three_sizes_place_a_threshold() -> None:
    # 0.1B, 1B and 10B on the coverage benchmark's curve (midpoint 1.6B, the rise over a decade); the bootstrap over
    # models kept only about 67 of 300 resamples with three models, so three sizes always ended "bootstrap_failed"
    fit = threshold(expected(1.6, [0.1, 1.0, 10.0], 100, 2 * math.log(9)), chance=0.25)
    assert fit.sufficient, fit.verdict
    assert fit.method == "likelihood"  # three points, three free parameters: no test of scatter between models
    low, high = fit.interval_parameters or (0, 0)
    assert 1.0e9 < low < 1.6e9 < high < 10e9
    assert fit.threshold_parameters == pytest.approx(1.6e9, rel=0.3)


def test_a_midpoint_beyond_the_sizes_tested_is_not_extrapolated() -> None:
    # a shallow rise centred at 6B, tested from 0.1B to 3B: above the sizes tested, not "6.2B (95% ...)"
    above = threshold(expected(6.0, [0.1, 0.3, 1.0, 3.0], 1000, 2.0, 0.9), chance=0.25)
    assert above.verdict.key == "verdict.beyond_largest" and above.threshold_parameters is None
    assert above.logistic is not None and above.logistic.midpoint > math.log10(3e9)
    assert str(above.verdict).endswith("(3.00B): the threshold lies above the sizes tested")
    below = threshold(expected(0.03, [0.1, 0.3, 1.0, 3.0], 1000, 2.0, 0.9), chance=0.25)
    assert below.verdict.key == "verdict.beyond_smallest" and below.interval_parameters is None
    assert "the threshold lies below the sizes tested" in str(below.verdict)


def test_the_interval_covers_the_true_threshold_from_three_four_and_six_sizes() -> None:
    # benchmarks/threshold_coverage.py with 40 studies a design (it prints the table for 200): chance 0.25,
    # ceiling 0.85, midpoint 1.6B, sizes log-spaced from 0.1B to 10B, 100 items a model; seeded
    three, four, six = (simulate(count, 40, boot=50, seed=1) for count in (3, 4, 6))
    assert three.fitted >= 0.6 * three.studies and four.fitted >= 0.8 * four.studies and six.fitted >= 0.8 * six.studies
    for design in (three, four, six):
        assert design.coverage >= 0.85, (len(design.sizes), design.covered, design.fitted)
        assert design.edge_true == design.edge  # "above 1B" and the like hold for the true midpoint
    # and the intervals say something: well under the decade that is "insufficient evidence"
    assert np.median(three.widths) < 0.9 and np.median(four.widths) < 0.65 and np.median(six.widths) < 0.5


@pytest.mark.parametrize("floor", [0.25, None])
def test_the_profile_is_the_best_curve_at_each_midpoint(floor: float | None) -> None:
    from scipy.optimize import minimize

    points = synthetic(1.2, [0.1, 0.3, 0.6, 1.0, 2.0, 5.0], 100, 7)
    x = np.array([p.log_size for p in points])
    k = np.array([p.correct for p in points], dtype=float)
    n = np.array([p.n for p in points], dtype=float)
    mids = np.array([8.0, 8.8, 9.1, 9.5, 10.0])
    profile = profile_nll(x, k, n, floor, mids)
    for mid, value in zip(mids, profile, strict=True):
        best = math.inf
        for slope in (0.3, 1.0, 3.0, 10.0, 40.0):  # a direct search from several slopes, the midpoint held
            if floor is None:
                start, bounds = [0.2, 0.8, slope], [(0, 1), (0, 1), (0.01, 60)]
                nll = lambda q, m=mid: _nll(np.array([q[0], q[1], m, q[2]]), x, k, n, None)[0]  # noqa: E731
            else:
                start, bounds = [0.8, slope], [(0, 1), (0.01, 60)]
                nll = lambda q, m=mid: _nll(np.array([q[0], m, q[1]]), x, k, n, floor)[0]  # noqa: E731
            best = min(best, minimize(nll, start, bounds=bounds, method="L-BFGS-B").fun)
        assert value == pytest.approx(best, abs=0.02)


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
    assert fit.method == "likelihood+models"  # six families scatter about one curve: the models are resampled too
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
    assert fit.method == "likelihood+models"
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
    small, large = candidate("small", 135_000_000, 3, 10), candidate("large", 1_500_000_000, 8, 10)
    again = candidate("small@transformers", 135_000_000, 5, 10)
    assert small.info is not None and again.info is not None
    again.info = replace(again.info, backend="transformers", path=small.info.path, fingerprint=small.info.fingerprint)
    (group,) = scaling_groups(findings(small, large, again), with_published=False)
    assert [(p.model, p.correct) for p in group.fit.points] == [("small", 3), ("large", 8)]
    other = candidate("other", 135_000_000, 5, 10)  # other weights of the same size still count
    (group,) = scaling_groups(findings(small, large, other), with_published=False)
    assert len(group.fit.points) == 3


def test_the_study_suites_groups_meet_the_studys_own_points_graded_strictly() -> None:
    task, metric, settings, label = PUBLISHED_TASKS["prontoqa_implication_elimination"]
    assert (metric, settings, label) == (
        "proof_success_rate(strict)",
        STUDY_3SHOT_1HOP,
        "PrOntoQA-OOD implication elimination, 3-shot 1-hop, strict",
    )
    points = published_points(task, metric, settings)
    assert len(points) == len({p.model for p in points}) == 26  # one figure per model: v1's, else the revision's
    smol = next(p for p in points if p.model == "SmolLM2-135M-Instruct")
    assert (smol.correct, smol.n) == (46, 100)  # the v1 table's 0.46, not the revision's
    assert len(published_points(*PUBLISHED_TASKS["prontoqa_disjunction_elimination"][:3])) == 8  # v1 only
    # the probe's proof by contradiction is graded strictly, and so are the study's points it is shown with
    assert PUBLISHED_TASKS["proof_by_contradiction"][1:3] == ("proof_success_rate(strict)", ("cot_8shot_1hop_v1",))
    assert len(published_points(*PUBLISHED_TASKS["proof_by_contradiction"][:3])) == 18


def test_a_study_suite_group_is_drawn_over_the_studys_points_for_that_rule() -> None:
    models = [candidate(n, p, k, 10) for n, p, k in (("a", 135_000_000, 4), ("b", 494_000_000, 7))]
    for model in models:  # the group `poccheck tasks prontoqa-study` gives its implication-elimination items
        model.rows = [replace(r, item=replace(r.item, category="prontoqa_implication_elimination")) for r in model.rows]
    (group,) = scaling_groups(findings(*models))
    assert group.published_label == "PrOntoQA-OOD implication elimination, 3-shot 1-hop, strict"
    assert group.published is not None and len(group.published.points) == 26
    assert [(p.model, p.correct) for p in group.fit.points] == [("a", 4), ("b", 7)]


def test_proofs_of_one_depth_get_one_fit_and_several_depths_one_more_per_depth() -> None:
    def proofs(depth_of: Callable[[int], int]) -> list[ScalingGroup]:
        models = [candidate(n, p, k, 10) for n, p, k in (("a", 135_000_000, 4), ("b", 494_000_000, 7))]
        for model in models:
            model.rows = [
                replace(r, item=replace(r.item, type="proof", category="rules", metadata={"hops": depth_of(i)}))
                for i, r in enumerate(model.rows)
            ]
        return scaling_groups(findings(*models), with_published=False)

    assert [(g.name, g.hops) for g in proofs(lambda i: 1)] == [("rules", None)]  # the same items twice: one fit
    several = proofs(lambda i: 1 + i % 2)
    assert [(g.name, g.hops) for g in several] == [("rules", None), ("rules", 1), ("rules", 2)]
    assert [p.n for p in several[1].fit.points] == [5, 5]
