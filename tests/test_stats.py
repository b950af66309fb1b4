"""pacabench.stats.ratio_ci: the ratio of medians and its bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest

from pacabench.stats import ratio_ci


def test_ratio_is_the_ratio_of_medians_and_lies_in_its_interval():
    a = [10.0, 11.0, 12.0, 13.0, 100.0]
    b = [20.0, 21.0, 22.0, 23.0, 24.0]
    ci = ratio_ci(a, b)
    assert ci.ratio == pytest.approx(12.0 / 22.0)
    assert ci.low <= ci.ratio <= ci.high
    assert (ci.n_a, ci.n_b, ci.level) == (5, 5, 0.95)
    assert ci.format(2) == f"{12 / 22:.2f} [{ci.low:.2f}, {ci.high:.2f}]"


def test_constant_samples_give_a_point_interval():
    ci = ratio_ci([3.0] * 7, [4.0] * 9)
    assert ci.ratio == ci.low == ci.high == pytest.approx(0.75)


def test_deterministic_and_narrower_with_more_samples():
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(0, 0.1, 10), rng.lognormal(0, 0.1, 10)
    few = ratio_ci(a, b)
    assert few == ratio_ci(a, b)
    many = ratio_ci(rng.lognormal(0, 0.1, 1000), rng.lognormal(0, 0.1, 1000))
    assert many.high - many.low < (few.high - few.low) / 3


def test_coverage_of_a_known_ratio():
    """Timings with true medians 0.8 and 1.0 (lognormal noise, 40 iterations each): over 200
    independent experiments the 95% interval holds the true ratio 0.8 in 90-99% of them."""
    rng = np.random.default_rng(7)
    hits = 0
    for seed in range(200):
        a = 0.8 * rng.lognormal(0.0, 0.05, 40)
        b = 1.0 * rng.lognormal(0.0, 0.05, 40)
        ci = ratio_ci(a, b, n_boot=1000, seed=seed)
        hits += ci.low <= 0.8 <= ci.high
    assert 180 <= hits <= 199, hits


@pytest.mark.parametrize("a,b,level", [([], [1.0], 0.95), ([1.0], [0.0], 0.95), ([1.0], [1.0], 1.0)])
def test_bad_input(a, b, level):
    with pytest.raises(ValueError):
        ratio_ci(a, b, level=level)
