"""Intervals for latency comparisons, from the raw per-iteration samples a row keeps.

``ratio_ci(a, b)``: the ratio of the medians of two sets of timings (e.g. PaCa-T ÷ Swin-T at one
resolution) with a percentile-bootstrap interval: both sets are resampled independently with
replacement, the ratio of medians recomputed each time, and the interval read off the
resampled ratios. It reflects the iteration-to-iteration noise of the two measurements; a slow
drift between them (the machine warming up, a neighbour's job) is not in it, which is why side by
side cases should be measured close together (or in alternating rounds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

__all__ = [
    "RatioCI",
    "ratio_ci",
    "MannWhitney",
    "mann_whitney",
    "split_rounds",
    "valid_rounds",
    "positive_samples",
    "time_blocks",
    "round_ratio_ci",
    "t_quantile",
    "ExponentCI",
    "exponent_ci",
]


class _Estimate:
    """A point estimate (its dataclass's first field) with its interval ``low``..``high``;
    ``DIGITS``: the decimals ``format`` writes unless told."""

    DIGITS = 3

    def format(self, digits: int | None = None) -> str:
        """'point [low, high]', e.g. '0.781 [0.752, 0.806]'."""
        d = self.DIGITS if digits is None else digits
        point = getattr(self, fields(self)[0].name)
        return f"{point:.{d}f} [{self.low:.{d}f}, {self.high:.{d}f}]"


@dataclass(frozen=True)
class RatioCI(_Estimate):
    ratio: float  # median(a) / median(b)
    low: float
    high: float
    level: float
    n_a: int
    n_b: int


def _interval(boot: np.ndarray, level: float, point: float) -> tuple[float, float]:
    """The percentile interval of bootstrap draws, widened to hold the point estimate."""
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail])
    return float(min(low, point)), float(max(high, point))


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


# ------------------------------------------------------------------------------ Mann–Whitney U
@dataclass(frozen=True)
class MannWhitney:
    """Mann–Whitney U of ``new`` against ``base`` (normal approximation, tie and continuity corrected).

    ``u``: U of ``new`` (the number of (new, base) pairs with new > base, ties counting ½);
    ``p_greater``: one-sided p-value that ``new`` tends to be larger (slower), ``p_less`` smaller.
    """

    u: float
    z: float
    p_greater: float
    p_less: float
    n_new: int
    n_base: int


def _midranks(values: np.ndarray) -> tuple[np.ndarray, float]:
    """Ranks 1..n with ties given their average rank; and Σ(t³ − t) over the tie groups."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(values.size, dtype=float)
    ties = 0.0
    i = 0
    while i < values.size:
        j = i
        while j + 1 < values.size and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    return ranks, ties


def _upper_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def mann_whitney(new: Sequence[float], base: Sequence[float]) -> MannWhitney:
    """The two one-sided Mann–Whitney U tests of ``new`` against ``base``.

    U = R_new − n_new(n_new + 1)/2 with midranks; under H0 its mean is n_new·n_base/2 and its
    variance n_new·n_base/12 · ((n + 1) − Σ(t³ − t)/(n(n − 1))) (t: the size of each tie group);
    z carries a continuity correction of ½ toward the mean. All values tied: z = 0, p = 1.
    """
    xn = np.asarray(new, dtype=float)
    xb = np.asarray(base, dtype=float)
    n1, n2 = xn.size, xb.size
    if n1 == 0 or n2 == 0:
        raise ValueError("mann_whitney needs at least one sample on each side")
    ranks, ties = _midranks(np.concatenate([xn, xb]))
    n = n1 + n2
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)
    mu = n1 * n2 / 2.0
    var = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return MannWhitney(u, 0.0, 1.0, 1.0, n1, n2)
    sd = math.sqrt(var)
    z_hi = (u - mu - 0.5) / sd  # for "new larger"
    z_lo = (u - mu + 0.5) / sd  # for "new smaller"
    return MannWhitney(
        u=u,
        z=(u - mu) / sd,
        p_greater=min(1.0, _upper_tail(z_hi)),
        p_less=min(1.0, 1.0 - _upper_tail(z_lo)),
        n_new=n1,
        n_base=n2,
    )


# ------------------------------------------------------------------ intervals over rounds
def split_rounds(samples: Sequence[float], sizes: Sequence[int] | None) -> list[np.ndarray]:
    """Raw samples cut into their rounds (``sizes``: samples per round); no sizes → one round."""
    x = np.asarray(samples, dtype=float)
    if not sizes:
        return [x]
    if sum(sizes) != x.size or any(s <= 0 for s in sizes):
        raise ValueError(f"round sizes {list(sizes)} do not add up to {x.size} samples")
    return np.split(x, np.cumsum(sizes)[:-1])


def valid_rounds(sizes: object, n: int) -> list[int] | None:
    """``sizes`` (a row's ``latency_round_sizes``) when they are positive ints adding up to the ``n``
    samples, else None: an edited or mismatched record is not used (never a crash)."""
    ok = isinstance(sizes, (list, tuple)) and len(sizes) > 0
    ok = ok and all(type(s) is int and s > 0 for s in sizes) and sum(sizes) == n
    return list(sizes) if ok else None


def positive_samples(v: object) -> list[float] | None:
    """A row's raw timings as floats when every one is a finite positive number, else None."""
    if not isinstance(v, (list, tuple)) or not v:
        return None
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        return None
    x = [float(t) for t in v]
    return x if all(math.isfinite(t) and t > 0 for t in x) else None


def time_blocks(
    samples: Sequence[float], sizes: Sequence[int] | None = None, *, min_size: int = 5, most: int = 3
) -> list[np.ndarray]:
    """Samples cut into stretches of time: their rounds when there are two or more (``sizes``:
    samples per round, as ``valid_rounds`` accepts), else up to ``most`` consecutive blocks of at
    least ``min_size`` samples (one block when there are too few). A drift within a run shows as
    blocks whose medians differ; iteration noise alone does not."""
    x = np.asarray(samples, dtype=float)
    rounds = valid_rounds(list(sizes) if sizes is not None else None, x.size)
    if rounds is not None and len(rounds) > 1:
        return np.split(x, np.cumsum(rounds)[:-1])
    k = max(1, min(most, x.size // max(1, min_size)))
    return [b for b in np.array_split(x, k) if b.size]


def _boot_medians(rounds: list[np.ndarray], idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two-level bootstrap: for each row of ``idx`` (the resampled rounds), resample the samples
    within each chosen round, and take the median of all of them. Returns one median per row."""
    lens = np.array([r.size for r in rounds])
    width = int(lens.max())
    padded = np.full((len(rounds), width), np.nan)
    for i, r in enumerate(rounds):
        padded[i, : r.size] = r
    chosen = lens[idx]  # (n_boot, R): the sample count of each chosen round
    pos = np.floor(rng.random((*idx.shape, width)) * chosen[..., None]).astype(int)
    vals = padded[idx[..., None], pos]
    vals[np.arange(width) >= chosen[..., None]] = np.nan  # a shorter round: only its own count
    return np.nanmedian(vals.reshape(idx.shape[0], -1), axis=1)


def _check(level: float, *sides: np.ndarray) -> None:
    if not (0.0 < level < 1.0):
        raise ValueError(f"level must be in (0, 1), got {level}")
    for x in sides:
        if x.size == 0:
            raise ValueError("need at least one sample on each side")
        if np.any(x <= 0):
            raise ValueError("timings must be positive")


def round_ratio_ci(
    a: Sequence[float],
    b: Sequence[float],
    a_rounds: Sequence[int] | None = None,
    b_rounds: Sequence[int] | None = None,
    *,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> RatioCI:
    """median(a) / median(b) with a bootstrap interval that respects interleaved rounds.

    When both were measured in the same R > 1 alternating rounds (``a_rounds``/``b_rounds``:
    samples per round), the rounds are resampled **paired** (round i of a with round i of b: they
    ran side by side, so a slow spell of the machine hits both and cancels in the ratio), then the
    samples within each chosen round; the interval thus covers both round-to-round drift and
    iteration noise. Without rounds it is the independent bootstrap of ``ratio_ci``.

    With few rounds a percentile bootstrap is too narrow (with 3 rounds of one sample each it
    cannot reach past the extreme rounds: about 75% coverage, not 95%). So with paired rounds
    the interval is widened to hold the Student-t interval of the per-round log ratios
    (mean ± t(R − 1)·sd/√R, exponentiated), which accounts for the small number of rounds.
    """
    ra, rb = split_rounds(a, a_rounds), split_rounds(b, b_rounds)
    xa, xb = np.concatenate(ra), np.concatenate(rb)
    _check(level, xa, xb)
    rng = np.random.default_rng(seed)
    if len(ra) == len(rb) > 1:
        idx_a = idx_b = rng.integers(0, len(ra), size=(n_boot, len(ra)))
    else:
        idx_a = rng.integers(0, len(ra), size=(n_boot, len(ra)))
        idx_b = rng.integers(0, len(rb), size=(n_boot, len(rb)))
    boot = _boot_medians(ra, idx_a, rng) / _boot_medians(rb, idx_b, rng)
    ratio = float(np.median(xa) / np.median(xb))
    low, high = _interval(boot, level, ratio)
    if len(ra) == len(rb) > 1:
        logs = np.log([np.median(p) / np.median(q) for p, q in zip(ra, rb)])
        half = t_quantile(level, len(logs) - 1) * float(np.std(logs, ddof=1)) / math.sqrt(len(logs))
        low, high = min(low, math.exp(logs.mean() - half)), max(high, math.exp(logs.mean() + half))
    return RatioCI(ratio, low, high, level, int(xa.size), int(xb.size))


def _t_central(t: float, df: int) -> float:
    """P(|T| ≤ t) for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3–4)."""
    th = math.atan(t / math.sqrt(df))
    c2 = math.cos(th) ** 2
    term, series = 1.0, 1.0
    if df % 2 == 0:
        for k in range(1, (df - 2) // 2 + 1):
            term *= (2 * k - 1) / (2 * k) * c2
            series += term
        return math.sin(th) * series
    if df == 1:
        return 2.0 * th / math.pi
    for k in range(1, (df - 3) // 2 + 1):
        term *= (2 * k) / (2 * k + 1) * c2
        series += term
    return 2.0 / math.pi * (th + math.sin(th) * math.cos(th) * series)


def t_quantile(level: float, df: int) -> float:
    """The t with P(|T| ≤ t) = ``level`` for Student's t with ``df`` ≥ 1 degrees of freedom."""
    if df < 1 or not (0.0 < level < 1.0):
        raise ValueError(f"t_quantile needs df >= 1 and level in (0, 1), got {df}, {level}")
    lo, hi = 0.0, 1.0
    while _t_central(hi, df) < level:
        hi *= 2.0
    for _ in range(100):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if _t_central(mid, df) < level else (lo, mid)
    return (lo + hi) / 2.0


@dataclass(frozen=True)
class ExponentCI(_Estimate):
    """Log–log slope of median latency against tokens, with a bootstrap interval."""

    DIGITS = 2

    slope: float
    low: float
    high: float
    level: float


def exponent_ci(
    tokens: Sequence[float],
    samples: Sequence[Sequence[float]],
    rounds: Sequence[Sequence[int] | None] | None = None,
    *,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> ExponentCI:
    """Least-squares slope of log(median) against log(tokens) over several sizes, with a
    percentile interval: each size's median is bootstrapped on its own (over its rounds, then
    within them; sizes were measured at different times, so nothing is paired) and the slope
    refitted for every draw."""
    if len(set(tokens)) < 2 or len(tokens) != len(samples):
        raise ValueError("exponent_ci needs samples at two or more distinct sizes")
    rounds = rounds or [None] * len(samples)
    rng = np.random.default_rng(seed)
    x = np.log(np.asarray(tokens, dtype=float))
    xc = x - x.mean()
    meds, boots = [], []
    for s, r in zip(samples, rounds):
        parts = split_rounds(s, r)
        _check(level, np.concatenate(parts))
        meds.append(float(np.median(np.concatenate(parts))))
        boots.append(_boot_medians(parts, rng.integers(0, len(parts), size=(n_boot, len(parts))), rng))
    y = np.log(np.stack(boots, axis=1))  # (n_boot, sizes)
    slopes = ((y - y.mean(axis=1, keepdims=True)) @ xc) / float(xc @ xc)
    slope = float((np.log(meds) - np.mean(np.log(meds))) @ xc / float(xc @ xc))
    return ExponentCI(slope, *_interval(slopes, level, slope), level)
