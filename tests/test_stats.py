"""pacabench.analysis.stats.ratio_ci: the ratio of medians and its bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacabench.analysis.stats import ratio_ci
from tests._tier import examples


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


# ------------------------------------------------------------------------------ Mann–Whitney U
def test_mann_whitney_against_a_hand_computation():
    """new = 3 5 7 9 9, base = 1 2 4 6 9. Sorted: 1b 2b 3n 4b 5n 6b 7n 9n 9n 9b; the three 9s
    share rank (8+9+10)/3 = 9, so R_new = 3+5+7+9+9 = 33 and U = 33 − 5·6/2 = 18 (pair count:
    2 + 3 + 4 + 4.5 + 4.5). Mean 12.5; variance 25/12 · (11 − (3³−3)/(10·9))."""
    from statistics import NormalDist

    from pacabench.analysis.stats import mann_whitney

    mw = mann_whitney([3, 5, 7, 9, 9], [1, 2, 4, 6, 9])
    assert mw.u == 18.0 and (mw.n_new, mw.n_base) == (5, 5)
    sd = (25 / 12 * (11 - 24 / 90)) ** 0.5
    assert mw.z == pytest.approx(5.5 / sd)
    assert mw.p_greater == pytest.approx(1 - NormalDist().cdf((18 - 12.5 - 0.5) / sd))
    assert mw.p_less == pytest.approx(NormalDist().cdf((18 - 12.5 + 0.5) / sd))
    assert 0.14 < mw.p_greater < 0.15


def test_mann_whitney_separated_samples_and_ties():
    from pacabench.analysis.stats import mann_whitney

    slow, fast = [13.0 + 0.1 * i for i in range(10)], [10.0 + 0.1 * i for i in range(10)]
    mw = mann_whitney(slow, fast)
    assert mw.u == 100 and mw.p_greater < 1e-3 and mw.p_less > 0.999
    same = mann_whitney([5.0] * 6, [5.0] * 6)  # all tied: no evidence either way
    assert same.p_greater == same.p_less == 1.0 and same.z == 0.0
    itself = mann_whitney(fast, fast)
    assert itself.u == 50 and itself.p_greater > 0.4 and itself.p_less > 0.4


@settings(max_examples=examples(60), deadline=None)
@given(
    st.lists(st.integers(1, 6), min_size=1, max_size=12),
    st.lists(st.integers(1, 6), min_size=1, max_size=12),
)
def test_mann_whitney_u_is_the_pair_count(new, base):
    from pacabench.analysis.stats import mann_whitney

    pairs = sum((x > y) + 0.5 * (x == y) for x in new for y in base)
    assert mann_whitney(new, base).u == pytest.approx(pairs)
    assert mann_whitney(base, new).u == pytest.approx(len(new) * len(base) - pairs)


# ------------------------------------------------------------------------- intervals over rounds
def _drifting(rng, ratio, drift, per_round):
    """Two models measured side by side in rounds; the machine's speed changes between rounds."""
    a = np.concatenate([ratio * d * rng.lognormal(0, 0.02, per_round) for d in drift])
    b = np.concatenate([d * rng.lognormal(0, 0.02, per_round) for d in drift])
    return a, b, [per_round] * len(drift)


def test_paired_rounds_cancel_a_drift_that_widens_the_unpaired_interval():
    from pacabench.analysis.stats import round_ratio_ci

    rng = np.random.default_rng(3)
    a, b, sizes = _drifting(rng, 0.8, [1.0, 1.6, 0.9, 2.2, 1.2, 1.0], 3)
    paired = round_ratio_ci(a, b, sizes, sizes)
    assert paired.low <= 0.8 <= paired.high and paired.high - paired.low < 0.06
    unpaired = round_ratio_ci(a, b)  # the same samples, rounds ignored
    assert unpaired.high - unpaired.low > 5 * (paired.high - paired.low)
    assert paired.ratio == pytest.approx(np.median(a) / np.median(b))
    assert paired == round_ratio_ci(a, b, sizes, sizes)  # deterministic


def test_rounds_without_sizes_match_the_sample_bootstrap_in_width():
    from pacabench.analysis.stats import round_ratio_ci

    rng = np.random.default_rng(5)
    a, b = rng.lognormal(0, 0.1, 60), rng.lognormal(0, 0.1, 60)
    one, other = round_ratio_ci(a, b), ratio_ci(a, b)
    assert one.ratio == other.ratio
    assert (one.high - one.low) == pytest.approx(other.high - other.low, rel=0.25)


def test_round_sizes_must_add_up():
    from pacabench.analysis.stats import round_ratio_ci, split_rounds

    assert [list(p) for p in split_rounds([1, 2, 3], [2, 1])] == [[1, 2], [3]]
    with pytest.raises(ValueError):
        round_ratio_ci([1.0, 2.0, 3.0], [1.0, 2.0], [2, 2], None)


def test_exponent_interval_holds_a_planted_slope():
    from pacabench.analysis.stats import exponent_ci

    rng = np.random.default_rng(11)
    toks = [3136.0, 9216.0, 16384.0, 36864.0, 65536.0]
    samples = [list(1e-3 * t**1.4 * rng.lognormal(0, 0.05, 8)) for t in toks]
    ci = exponent_ci(toks, samples, [[2, 2, 2, 2]] * 5)
    assert ci.low <= 1.4 <= ci.high and ci.high - ci.low < 0.1
    meds = [np.median(s) for s in samples]
    assert ci.slope == pytest.approx(np.polyfit(np.log(toks), np.log(meds), 1)[0])
    assert ci.format(2).startswith(f"{ci.slope:.2f} [")
    with pytest.raises(ValueError):
        exponent_ci([1.0, 1.0], samples[:2])


@pytest.mark.parametrize(
    "df,want", [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262), (30, 2.042), (200, 1.972)]
)
def test_t_quantile_matches_the_printed_table(df, want):
    from pacabench.analysis.stats import t_quantile

    assert t_quantile(0.95, df) == pytest.approx(want, abs=1.5e-3)
    assert t_quantile(0.99, 2) == pytest.approx(9.925, abs=1.5e-3)


def test_few_rounds_widen_the_interval_to_the_t_interval_of_round_ratios():
    """3 rounds of one sample: per-round ratios 0.63, 0.64, 0.80 (measured here under load).
    The interval holds exp(mean ± t(2)·sd/√3) of their logs, beyond the rounds' own range."""
    from pacabench.analysis.stats import round_ratio_ci

    a, b = [1289.0, 1249.0, 1441.0], [2046.0, 1956.0, 1806.0]
    ci = round_ratio_ci(a, b, [1, 1, 1], [1, 1, 1])
    logs = np.log(np.array(a) / np.array(b))
    half = 4.3027 * logs.std(ddof=1) / np.sqrt(3)
    assert ci.low == pytest.approx(np.exp(logs.mean() - half), rel=1e-3)
    assert ci.high == pytest.approx(np.exp(logs.mean() + half), rel=1e-3)
    assert ci.low < min(a[i] / b[i] for i in range(3)) and ci.high > max(a[i] / b[i] for i in range(3))
    assert ci.ratio == pytest.approx(np.median(a) / np.median(b))
