"""The instability detector (pacabench.measure.stability) on synthetic samples: planted drift and
planted modes are found, with their evidence; stable lognormal noise is not flagged."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacabench.measure.stability import MIN_SAMPLES, assess, drift, modes, spread
from tests._tier import examples


def _noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    return np.exp(rng.normal(0.0, sigma, n))


def test_the_issue_cases_are_flagged_with_their_evidence():
    rng = np.random.default_rng(1)
    # PaCa-T 1024² b1 bf16 on the H200: 15 iterations at 6.7–7.0 ms, then 14–22 ms
    paca = list(rng.uniform(6.7, 7.0, 15)) + list(rng.uniform(14.0, 22.0, 25))
    v = assess(paca)
    assert v.unstable and "drift: median" in v.why and "modes: 15 samples near" in v.why
    first, second = np.median(paca[:20]), np.median(paca[20:])
    assert f"median {first:.3g} ms first half vs {second:.3g} ms second half" in v.why
    # Swin-S 512² b1 fp32: climbs from 15 to 27 ms
    swin = list(np.linspace(15, 27, 40) * _noise(rng, 40, 0.02))
    assert assess(swin).unstable and drift(swin) and not modes(swin)
    # PVTv2-b2 512² b1 fp32: swings between 7 and 13 ms
    pvt = list(rng.uniform(7, 13, 40))
    assert assess(pvt).unstable and spread(pvt) and not drift(pvt)


@settings(max_examples=examples(60), deadline=None)
@given(
    n=st.integers(20, 120),
    step=st.floats(0.2, 2.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_planted_drift_is_detected(n, step, seed):
    """The second half runs (1 + step)× slower than the first, under 3% noise: always flagged as drift."""
    rng = np.random.default_rng(seed)
    base = 5.0 * _noise(rng, n, 0.03)
    base[n // 2 :] *= 1 + step
    v = assess(list(base))
    assert v.unstable and "drift:" in v.why


@settings(max_examples=examples(60), deadline=None)
@given(
    n=st.integers(20, 120),
    share=st.floats(0.2, 0.8),
    ratio=st.floats(1.5, 4.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_planted_modes_are_detected_in_any_order(n, share, ratio, seed):
    """Two tight clusters (2% noise) ``ratio`` apart, shuffled (no drift to see): flagged as modes."""
    rng = np.random.default_rng(seed)
    k = max(3, min(n - 3, int(round(share * n))))
    x = np.concatenate([4.0 * _noise(rng, k, 0.02), 4.0 * ratio * _noise(rng, n - k, 0.02)])
    rng.shuffle(x)
    v = assess(list(x))
    assert v.unstable and "modes:" in v.why


def test_stable_noise_is_quiet_at_the_stated_false_positive_rate():
    """Lognormal noise of 5% (a busy GPU's jitter), 10–200 samples: under 0.5% flagged (2000 draws)."""
    rng = np.random.default_rng(2026)
    flagged = 0
    for _ in range(2000):
        n = int(rng.integers(MIN_SAMPLES, 201))
        flagged += assess(list(3.0 * _noise(rng, n, 0.05))).unstable
    assert flagged / 2000 < 0.005


@settings(max_examples=examples(100), deadline=None)
@given(n=st.integers(MIN_SAMPLES, 200), sigma=st.floats(0.0, 0.05), seed=st.integers(0, 2**32 - 1))
def test_stable_noise_with_a_few_percent_is_never_flagged_for_drift_or_modes(n, sigma, seed):
    rng = np.random.default_rng(seed)
    x = list(7.0 * _noise(rng, n, sigma))
    assert drift(x) is None and spread(x) is None


def test_few_samples_are_not_assessed():
    assert assess([1.0] * (MIN_SAMPLES - 1)) is None and assess(None) is None
    assert assess([1.0] * MIN_SAMPLES).unstable is False  # all tied: nothing to see


@pytest.mark.parametrize("bad", [[0.0] * 12, [-1.0] + [1.0] * 11])
def test_non_positive_samples_do_not_crash(bad):
    assert assess(bad) is not None
