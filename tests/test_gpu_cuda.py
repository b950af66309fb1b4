"""Latency modes, busy time and NVML telemetry on a GPU: ``pytest -m cuda`` (skipped without one).

Each test checks against something independent of the code under test: the eager output of the
same model (a replayed graph computes the same numbers), the kernel time a known GEMM takes, a
sleep the GPU is told to do (busy share of a launch-bound loop), NVML's power reading against
the energy counter. ``benchmarks/gpu/run.sh`` runs them beside tests/test_cuda.py.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from pacabench.measure.latency import measure_latency
from pacabench.measure.modes import (
    LAUNCH_BOUND_SHARE,
    Unmeasurable,
    compiled_forward,
    cuda_graph_forward,
    gpu_busy_ms,
)
from pacabench.measure.telemetry import gpu_window
from pacabench.models import create_model
from pacabench.runs.runner import run_case
from pacabench.spec.suite import Case, LatencySettings

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
DEV = torch.device("cuda")
PACA_T = "pacavit_tiny_p2cconv_100_0"


def _case(model: str, res: int, batch: int = 1, mode: str = "eager", **lat) -> Case:
    return Case(
        suite="cuda-modes-test", model=model, resolution=(res, res), batch_size=batch, dtype="fp32",
        device="cuda", channels_last=True, compile=False, metrics=("params", "latency"),
        latency=LatencySettings(warmup=5, iters=40, min_iters=10, time_budget_s=1.0, mode=mode, **lat),
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _release_cuda_memory():
    yield
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def test_a_replayed_graph_computes_what_the_eager_model_computes():
    model = create_model("pvt_v2_b0", img_size=224).cuda().eval()
    x = torch.randn(2, 3, 224, 224, device="cuda")
    with torch.inference_mode():
        want = model(x).clone()
    replay = cuda_graph_forward(model, x, "fp32", DEV)
    got = replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    x.copy_(torch.randn_like(x))  # the static input: a replay reads what it holds now
    with torch.inference_mode():
        want2 = model(x).clone()
    torch.testing.assert_close(replay(), want2, rtol=1e-4, atol=1e-4)


def test_a_host_sync_in_the_forward_is_unmeasurable_not_a_crash():
    class Syncing(torch.nn.Module):
        def forward(self, x):
            if x.sum().item() > 0:  # a host sync: not allowed while capturing
                return x * 2
            return x

    with pytest.raises(Unmeasurable, match="cannot be captured in a CUDA graph"):
        cuda_graph_forward(Syncing().cuda(), torch.ones(4, device="cuda"), "fp32", DEV)
    torch.ones(1, device="cuda").add_(1)  # the device still works after the failed capture
    torch.cuda.synchronize()


def test_busy_time_of_a_gemm_matches_its_cuda_event_time():
    """A large GEMM keeps the GPU busy the whole time: profiler busy ≈ CUDA-event time (±15%)."""
    a = torch.randn(8192, 8192, device="cuda")

    def gemm():
        return a @ a

    rec = measure_latency(gemm, warmup=3, iters=10, device="cuda")
    busy = gpu_busy_ms(gemm, DEV)
    assert busy is not None and busy == pytest.approx(rec.median_ms, rel=0.15)


def test_a_launch_bound_loop_shows_a_low_busy_share():
    """Tiny kernels with a host pause between them: the GPU is busy a small share of the wall time."""
    x = torch.ones(16, device="cuda")

    def launches():
        for _ in range(20):
            x.add_(1)
            time.sleep(0.0002)

    rec = measure_latency(launches, warmup=2, iters=10, device="cuda")
    busy = gpu_busy_ms(launches, DEV)
    assert busy is not None and busy / rec.median_ms < 0.2 < LAUNCH_BOUND_SHARE


def test_paca_t_at_512_b1_is_faster_as_a_graph_and_the_graph_keeps_the_gpu_busy():
    """The issue's acceptance on one model (the run script's modes stage shows all four): at 512²
    b1 the cuda_graph row is faster than the eager row, its busy share is ≥ 0.9, and both rows
    carry energy per image and the allocator's peaks over the timed loop."""
    eager, graph = run_case(_case(PACA_T, 512)), run_case(_case(PACA_T, 512, mode="cuda_graph"))
    assert eager.status == "ok" and graph.status == "ok", (eager.error, graph.error)
    print(
        f"PaCa-T 512 b1: eager {eager.latency_ms_median:.3f} ms (busy share {eager.gpu_busy_share}), "
        f"graph {graph.latency_ms_median:.3f} ms (busy share {graph.gpu_busy_share}), "
        f"energy {eager.energy_mj_per_image} / {graph.energy_mj_per_image} mJ/img"
    )
    assert graph.latency_ms_median < eager.latency_ms_median
    assert graph.gpu_busy_share is not None and graph.gpu_busy_share >= 0.9, graph.gpu_busy_share
    assert graph.launch_bound is False and graph.latency_mode == "cuda_graph"
    for row in (eager, graph):
        assert row.energy_mj_per_image is not None and row.energy_mj_per_image > 0
        assert row.energy_window_s >= 0.5  # a short timed loop extended for the counter's resolution
        assert row.latency_peak_reserved_mb >= row.latency_peak_alloc_mb > 0
        assert row.gpu_sm_clock_mhz > 0 and row.gpu_power_limit_w > 0


def test_compiled_forward_matches_eager_numbers():
    """torch.compile's default mode (the autotuning modes take minutes: not in the device budget);
    the compiled rows themselves come from the run script's modes stage."""
    model = create_model("pvt_v2_b0", img_size=224).cuda().eval()
    x = torch.randn(2, 3, 224, 224, device="cuda")

    def run(m):
        with torch.inference_mode():
            return m(x)

    want = run(model).clone()
    fn = compiled_forward(model, run, "default")
    torch.testing.assert_close(fn(), want, rtol=2e-3, atol=2e-3)


def test_energy_agrees_with_the_mean_power_over_the_window():
    """Energy counter ÷ window ≈ the mean of NVML's power samples (±35%: power is averaged by the
    driver over its own window), over a 2 s loop of large GEMMs."""
    pynvml = pytest.importorskip("pynvml")
    del pynvml
    a = torch.randn(8192, 8192, device="cuda")
    with gpu_window(DEV, interval=0.02) as tel:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 2.0:
            a @ a
        torch.cuda.synchronize()
    assert tel.energy_mj is not None and tel.energy_mj > 0 and tel.window_s >= 2.0
    assert tel.samples.get("power_w"), "no power samples"
    mean_power = statistics.fmean(tel.samples["power_w"])
    assert tel.energy_mj / 1000.0 / tel.window_s == pytest.approx(mean_power, rel=0.35)
    assert tel.power_limit_w is not None and tel.sm_clock_mhz > 0 and tel.temp_c > 0
    assert isinstance(tel.throttle, str)


def test_a_slowdown_mid_timing_is_flagged_from_cuda_event_samples():
    """From the 21st call on the forward does three GEMMs instead of one: drift, with its evidence."""
    from pacabench.measure.stability import assess

    a = torch.randn(2048, 2048, device="cuda")
    calls = [0]

    def forward():
        calls[0] += 1
        for _ in range(1 if calls[0] <= 20 else 3):
            a @ a

    forward()
    calls[0] = 0
    rec = measure_latency(forward, warmup=0, iters=40, device="cuda")
    verdict = assess(rec.times_ms)
    assert verdict.unstable and verdict.why.startswith("drift: median"), verdict
