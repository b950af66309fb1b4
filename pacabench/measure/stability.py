"""Are a case's latency samples one number? Drift and modes, seen instead of averaged away.

A median summarises samples that scatter around one value. It misleads when the samples
*drift* (a GPU that clocks down, a neighbour that starts a job: 15 ms climbing to 27 ms) or split
into *modes* (15 iterations at 6.8 ms, then 25 at 14.2 ms): the median then lands on whichever
regime had more samples. ``assess`` looks for both, on the samples in the order they were taken:

- drift: the first half against the second half, a two-sided Mann–Whitney U test
  (``pacabench.analysis.stats.mann_whitney``) at ``ALPHA``, *and* the medians of the halves apart
  by at least ``DRIFT_EFFECT`` (relative): many samples make a 1% drift significant, and 1% is
  not what this flag is for.
- modes: sorted in log scale, the widest gap between neighbouring samples, with at least
  ``MIN_MODE_SHARE`` of the samples (and 3) on each side, is a step of at least ``MODE_GAP``
  (relative) *and* at least ``MODE_SPREAD_RATIO`` times the interquartile range of the wider of
  the two groups: two tight clusters far apart, not a long tail.
- spread: the interquartile range is at least ``WIDE_SPREAD`` of the median (samples swinging
  between 7 and 13 ms without a trend or a gap are no single number either).

Both thresholds are set so that stable samples stay quiet: for lognormal noise of 5% (σ = 0.05
in log) and 10–200 samples, tests/test_gpu_stability.py finds no false flag in 2000 draws (the
stated rate: under 0.5%). Fewer than ``MIN_SAMPLES`` samples are not assessed (None).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ..analysis.stats import mann_whitney
from .latency import percentile

__all__ = ["Stability", "assess", "drift", "modes", "spread", "MIN_SAMPLES"]

MIN_SAMPLES = 10
ALPHA = 0.001  # two-sided: the p of the halves' Mann–Whitney test
DRIFT_EFFECT = 0.10  # the halves' medians at least 10% apart
MODE_GAP = 0.15  # two neighbouring sorted samples at least 15% apart
MODE_SPREAD_RATIO = 3.0  # ... and the gap at least 3 × the interquartile range of either group
MIN_MODE_SHARE = 0.15  # each group holds at least 15% of the samples
WIDE_SPREAD = 0.25  # interquartile range ≥ 25% of the median


@dataclass(frozen=True)
class Stability:
    """The verdict on one case's samples: ``unstable`` and its evidence (``why``, '' when stable)."""

    unstable: bool
    why: str = ""


def _ms(v: float) -> str:
    return f"{v:.3g} ms" if v < 100 else f"{v:.0f} ms"


def drift(samples: Sequence[float]) -> str | None:
    """Evidence of a drift between the first and second half of ``samples``; None without."""
    half = len(samples) // 2
    first, second = list(samples[:half]), list(samples[len(samples) - half :])
    m1, m2 = statistics.median(first), statistics.median(second)
    if min(m1, m2) <= 0 or abs(m2 - m1) / min(m1, m2) < DRIFT_EFFECT:
        return None
    mw = mann_whitney(second, first)
    p = min(1.0, 2 * min(mw.p_greater, mw.p_less))
    if p >= ALPHA:
        return None
    return f"drift: median {_ms(m1)} first half vs {_ms(m2)} second half (Mann-Whitney p={p:.1g})"


def _iqr(v: Sequence[float]) -> float:
    """The interquartile range as the rows' ``latency_ms_iqr`` computes it (linear interpolation)."""
    s = sorted(v)
    return percentile(s, 75) - percentile(s, 25)


def modes(samples: Sequence[float]) -> str | None:
    """Evidence of two separated groups of samples; None without."""
    if min(samples) <= 0:
        return None
    logs = sorted(math.log(v) for v in samples)
    n = len(logs)
    least = max(3, math.ceil(MIN_MODE_SHARE * n))
    if n < 2 * least:
        return None
    k = max(range(least, n - least + 1), key=lambda i: logs[i] - logs[i - 1])
    gap = logs[k] - logs[k - 1]
    low, high = logs[:k], logs[k:]
    if gap < math.log1p(MODE_GAP) or gap < MODE_SPREAD_RATIO * max(_iqr(low), _iqr(high)):
        return None
    lo_med, hi_med = math.exp(statistics.median(low)), math.exp(statistics.median(high))
    return (
        f"modes: {len(low)} samples near {_ms(lo_med)}, {len(high)} near {_ms(hi_med)} "
        f"(nothing between {_ms(math.exp(logs[k - 1]))} and {_ms(math.exp(logs[k]))})"
    )


def spread(samples: Sequence[float]) -> str | None:
    """Evidence of samples spread too wide to be one number; None without."""
    med = statistics.median(samples)
    iqr = _iqr(samples)
    if med <= 0 or iqr / med < WIDE_SPREAD:
        return None
    return f"spread: interquartile range {_ms(iqr)} is {iqr / med:.0%} of the median {_ms(med)}"


def assess(samples: Sequence[float] | None) -> Stability | None:
    """Drift, modes or a wide spread in ``samples`` (in the order taken); None for fewer than ``MIN_SAMPLES``."""
    if not samples or len(samples) < MIN_SAMPLES:
        return None
    found = [w for w in (drift(samples), modes(samples), spread(samples)) if w]
    return Stability(bool(found), "; ".join(found))
