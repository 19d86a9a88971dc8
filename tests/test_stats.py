from __future__ import annotations

import math

import pytest

from poccheck.analysis.stats import percentile, wilson


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    # reference values from the closed-form Wilson score interval, z = 1.959964
    [(8, 10, 0.4902, 0.9433), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (50, 100, 0.4038, 0.5962)],
)
def test_wilson_matches_closed_form(k: int, n: int, low: float, high: float) -> None:
    p = wilson(k, n)
    assert p.value == k / n
    assert p.low == pytest.approx(low, abs=1e-4) and p.high == pytest.approx(high, abs=1e-4)


def test_wilson_empty() -> None:
    p = wilson(0, 0)
    assert p.n == 0 and math.isnan(p.value) and math.isnan(p.low)


def test_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile([], 50) is None


def test_exact_mcnemar() -> None:
    from poccheck.analysis.stats import mcnemar_exact

    assert mcnemar_exact(0, 9).p_value == pytest.approx(2 * 0.5**9)
    assert mcnemar_exact(3, 3).p_value == pytest.approx(1.0)
    assert mcnemar_exact(0, 0).p_value == 1.0
    assert mcnemar_exact(1, 10).p_value == pytest.approx(0.01171875)  # 2 * P(X <= 1), X ~ Bin(11, 0.5)
