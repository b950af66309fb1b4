"""Intervals for latency comparisons, from the raw per-iteration samples a row keeps.

``ratio_ci(a, b)``: the ratio of the medians of two sets of timings (e.g. PaCa-T ÷ Swin-T at one
resolution) with a percentile-bootstrap interval: both sets are resampled independently with
replacement, the ratio of medians recomputed each time, and the interval read off the
resampled ratios. It reflects the iteration-to-iteration noise of the two measurements; a slow
drift between them (the machine warming up, a neighbour's job) is not in it, which is why side by
side cases should be measured close together (or in alternating rounds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["RatioCI", "ratio_ci"]


@dataclass(frozen=True)
class RatioCI:
    ratio: float  # median(a) / median(b)
    low: float
    high: float
    level: float
    n_a: int
    n_b: int

    def format(self, digits: int = 3) -> str:
        return f"{self.ratio:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def ratio_ci(
    a: Sequence[float], b: Sequence[float], *, level: float = 0.95, n_boot: int = 4000, seed: int = 0
) -> RatioCI:
    """median(a) / median(b) with a ``level`` percentile-bootstrap interval (deterministic: ``seed``)."""
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    if xa.size == 0 or xb.size == 0:
        raise ValueError("ratio_ci needs at least one sample on each side")
    if not (0.0 < level < 1.0):
        raise ValueError(f"level must be in (0, 1), got {level}")
    if np.any(xb <= 0) or np.any(xa < 0):
        raise ValueError("timings must be positive")
    rng = np.random.default_rng(seed)
    ra = np.median(xa[rng.integers(0, xa.size, size=(n_boot, xa.size))], axis=1)
    rb = np.median(xb[rng.integers(0, xb.size, size=(n_boot, xb.size))], axis=1)
    boot = ra / rb
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail])
    return RatioCI(
        ratio=float(np.median(xa) / np.median(xb)),
        low=float(low),
        high=float(high),
        level=level,
        n_a=int(xa.size),
        n_b=int(xb.size),
    )
