"""Latency: warm-up, then timed iterations; robust statistics.

Timer/measurement split after ``torch.utils.benchmark``: ``measure_latency`` collects raw
per-iteration times with the right clock (CUDA events with synchronisation on GPU,
``time.perf_counter`` on CPU); ``summarize_times`` turns them into a ``LatencyRecord``
(median, p90, IQR, mean, min, images per second). Noisy shared machines: trust the median and
the spread, and keep the load average that was recorded with it.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

__all__ = ["LatencyRecord", "summarize_times", "measure_latency", "measure_rounds", "percentile"]


@dataclass
class LatencyRecord:
    median_ms: float
    p90_ms: float
    iqr_ms: float
    mean_ms: float
    min_ms: float
    std_ms: float
    iters: int
    batch_size: int
    throughput_img_s: float
    timer: str  # cuda_event | perf_counter | custom
    loadavg_1m: float | None = None
    times_ms: list[float] = field(default_factory=list, repr=False)
    round_sizes: list[int] = field(default_factory=list)  # samples per round (measure_rounds)

    def to_dict(self) -> dict:
        return asdict(self)


def percentile(sorted_vals: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of already sorted values."""
    if not sorted_vals:
        raise ValueError("no values")
    if len(sorted_vals) == 1:
        return sorted_vals[0]
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    frac = pos - lo
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * frac


def summarize_times(
    times_s: list[float], batch_size: int, timer: str, loadavg_1m: float | None = None
) -> LatencyRecord:
    """Per-iteration times in seconds → statistics in milliseconds."""
    if not times_s:
        raise ValueError("no timed iterations")
    ms = sorted(t * 1000.0 for t in times_s)
    med = statistics.median(ms)
    return LatencyRecord(
        median_ms=med,
        p90_ms=percentile(ms, 90),
        iqr_ms=percentile(ms, 75) - percentile(ms, 25),
        mean_ms=statistics.fmean(ms),
        min_ms=ms[0],
        std_ms=statistics.pstdev(ms) if len(ms) > 1 else 0.0,
        iters=len(ms),
        batch_size=batch_size,
        throughput_img_s=batch_size / (med / 1000.0) if med > 0 else float("inf"),
        timer=timer,
        loadavg_1m=loadavg_1m,
        times_ms=[t * 1000.0 for t in times_s],
    )


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def _time_iters(
    fn: Callable[[], object],
    dev: torch.device,
    iters: int,
    min_iters: int,
    time_budget_s: float | None,
    clock: Callable[[], float] | None,
) -> tuple[list[float], str]:
    """Per-iteration seconds of ``fn()`` (no warm-up) and the timer that measured them."""
    times: list[float] = []
    if dev.type == "cuda" and clock is None:
        budget_start = time.perf_counter()
        for i in range(max(iters, min_iters)):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000.0)
            if (
                time_budget_s is not None
                and i + 1 >= min_iters
                and time.perf_counter() - budget_start > time_budget_s
            ):
                break
        return times, "cuda_event"
    now = clock or time.perf_counter
    budget_start = now()
    for i in range(max(iters, min_iters)):
        t0 = now()
        fn()
        t1 = now()
        times.append(t1 - t0)
        if time_budget_s is not None and i + 1 >= min_iters and t1 - budget_start > time_budget_s:
            break
    return times, "perf_counter" if clock is None else "custom"


def _warm(fn: Callable[[], object], warmup: int, dev: torch.device, clock) -> None:
    for _ in range(max(0, warmup)):
        fn()
    if dev.type == "cuda" and clock is None:
        torch.cuda.synchronize(dev)


def measure_latency(
    fn: Callable[[], object],
    *,
    batch_size: int = 1,
    warmup: int = 3,
    iters: int = 20,
    min_iters: int = 3,
    time_budget_s: float | None = None,
    device: str | torch.device = "cpu",
    clock: Callable[[], float] | None = None,
    around: contextlib.AbstractContextManager | None = None,
) -> LatencyRecord:
    """Time ``fn()`` (one forward) ``iters`` times after ``warmup`` calls.

    With ``time_budget_s`` timing stops early once the budget is spent, but never before
    ``min_iters`` iterations. ``clock`` replaces the CPU clock (tests use a fake one).
    ``around``: a context entered around the timed iterations only (GPU telemetry:
    ``pacabench.measure.telemetry.gpu_window``), not the warm-up.
    """
    dev = torch.device(device)
    _warm(fn, warmup, dev, clock)
    load = _loadavg()
    with around if around is not None else contextlib.nullcontext():
        times, timer = _time_iters(fn, dev, iters, min_iters, time_budget_s, clock)
    return summarize_times(times, batch_size, timer, loadavg_1m=load)


def measure_rounds(
    fns: list[Callable[[], object]],
    *,
    rounds: int = 1,
    warmups: list[int] | None = None,
    batch_size: int = 1,
    iters: int = 20,
    min_iters: int = 3,
    time_budget_s: float | None = None,
    device: str | torch.device = "cpu",
    clock: Callable[[], float] | None = None,
    around: contextlib.AbstractContextManager | None = None,
) -> list[LatencyRecord | Exception]:
    """Time several forwards side by side in ``rounds`` alternating rounds: A B C, A B C, ...

    Each function is warmed up once (``warmups[i]`` calls, before the first round); each round
    times every function ``iters`` times (``min_iters``/``time_budget_s`` apply per round). A slow
    spell of a shared machine then falls on every function alike instead of on whichever ran
    during it. The record of each function holds all its samples, ``round_sizes`` how many came
    from each round. A function that raises is dropped from the later rounds and its entry is the
    exception (KeyboardInterrupt propagates). ``around``: a context entered around the rounds
    (not the warm-up).
    """
    dev = torch.device(device)
    out: list[LatencyRecord | Exception | None] = [None] * len(fns)
    times: list[list[float]] = [[] for _ in fns]
    sizes: list[list[int]] = [[] for _ in fns]
    loads: list[float] = []
    timer = "perf_counter"
    for i, fn in enumerate(fns):
        try:
            _warm(fn, (warmups or [0] * len(fns))[i], dev, clock)
        except Exception as e:  # noqa: BLE001 - one failing model must not stop the others
            out[i] = e
    with around if around is not None else contextlib.nullcontext():
        for _ in range(max(1, rounds)):
            if (load := _loadavg()) is not None:
                loads.append(load)
            for i, fn in enumerate(fns):
                if out[i] is not None:
                    continue
                try:
                    t, timer = _time_iters(fn, dev, iters, min_iters, time_budget_s, clock)
                except Exception as e:  # noqa: BLE001
                    out[i] = e
                    continue
                times[i].extend(t)
                sizes[i].append(len(t))
    for i in range(len(fns)):
        if out[i] is None:
            rec = summarize_times(times[i], batch_size, timer, loadavg_1m=max(loads) if loads else None)
            rec.round_sizes = sizes[i]
            out[i] = rec
    return out  # type: ignore[return-value]
