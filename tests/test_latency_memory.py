import statistics

import numpy as np
import pytest
import torch

from pacabench.measure.latency import measure_latency, summarize_times
from pacabench.measure.memory import measure_peak_memory, resident_bytes


class FakeClock:
    """Each fn() call advances the clock by the next scripted duration."""

    def __init__(self, durations):
        self.t = 0.0
        self.durations = list(durations)
        self.calls = 0

    def __call__(self):
        return self.t

    def step(self):
        self.t += self.durations[self.calls]
        self.calls += 1


def test_latency_statistics_on_fake_timer():
    # 2 warm-up calls (10 s each: must not be counted), then 7 timed ones
    timed = [0.010, 0.012, 0.011, 0.050, 0.013, 0.009, 0.011]
    clock = FakeClock([10.0, 10.0] + timed)
    rec = measure_latency(clock.step, batch_size=4, warmup=2, iters=7, clock=clock)
    ms = np.array(timed) * 1000
    assert rec.iters == 7
    assert rec.median_ms == pytest.approx(np.median(ms))
    assert rec.p90_ms == pytest.approx(np.percentile(ms, 90))
    assert rec.iqr_ms == pytest.approx(np.percentile(ms, 75) - np.percentile(ms, 25))
    assert rec.mean_ms == pytest.approx(ms.mean())
    assert rec.min_ms == pytest.approx(ms.min())
    assert rec.throughput_img_s == pytest.approx(4 / (np.median(ms) / 1000))
    assert rec.timer == "custom"


def test_time_budget_stops_early_but_keeps_min_iters():
    clock = FakeClock([1.0] * 100)
    rec = measure_latency(clock.step, warmup=0, iters=50, min_iters=3, time_budget_s=0.5, clock=clock)
    assert rec.iters == 3
    clock = FakeClock([0.1] * 100)
    rec = measure_latency(clock.step, warmup=0, iters=50, min_iters=3, time_budget_s=0.45, clock=clock)
    assert rec.iters == 5  # stops after the first iteration that crosses the budget


def test_summarize_single():
    rec = summarize_times([0.002], 1, "perf_counter")
    assert rec.median_ms == rec.p90_ms == 2.0 and rec.iqr_ms == 0.0
    assert statistics.median([1.0]) == 1.0


def test_cpu_peak_memory_matches_known_allocations():
    def f():
        a = torch.empty(1_000_000)  # 4 MB
        b = torch.empty(2_000_000)  # 8 MB -> peak 12 MB
        del a
        c = torch.empty(500_000)  # 2 MB, after a freed
        del c
        return b

    rec = measure_peak_memory(f)
    assert rec.kind == "cpu_profiler_peak"
    assert rec.peak_mb * 1024 * 1024 == pytest.approx(12_000_000, rel=0.01)
    # repeatable
    assert measure_peak_memory(f).peak_mb == rec.peak_mb


def test_resident_bytes_counts_params_buffers_and_inputs():
    m = torch.nn.BatchNorm2d(10)  # 20 params + 20 running stats + num_batches_tracked (int64)
    x = torch.zeros(2, 10)
    assert resident_bytes(m, x) == 20 * 4 + 20 * 4 + 8 + 20 * 4
