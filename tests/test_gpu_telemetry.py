"""GPU telemetry, busy time and the report's launch-bound mark, on the CPU: NVML absent or failing
gives None (never a guess), a stand-in NVML with planted counters gives the right energy per image,
the busy time is the union of device intervals, and CPU rows carry none of these numbers."""

from __future__ import annotations

import types

import pandas as pd
import pytest
import torch

from pacabench.measure import modes, telemetry
from pacabench.measure.modes import LAUNCH_BOUND_SHARE, busy_columns, busy_union_ms
from pacabench.reports.marks import LAUNCH_MARK, mark_launch_bound
from pacabench.reports.sections import render_markdown
from pacabench.runs.results import rows_frame
from pacabench.runs.runner import run_case
from pacabench.spec.metrics import metric
from pacabench.spec.suite import parse_suite

pynvml = pytest.importorskip("pynvml")


class FakeNvml:
    """NVML's calls the telemetry makes, answering planted counters (units as NVML's: mW, mJ, MHz)."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    def __init__(self, energy_mj=(1_000_000, 1_003_000)):
        self.energy = list(energy_mj)
        self.power = iter([300_000, 500_000] * 1000)
        self.temps = iter([60, 71, 65] * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return self.energy.pop(0)

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return 700_000

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1980 if kind == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetPowerUsage(self, h):
        return next(self.power)

    def nvmlDeviceGetTemperature(self, h, kind):
        return next(self.temps)

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return 0x4 | 0x1  # sw_power_cap, gpu_idle


def test_energy_per_image_is_the_counter_difference_over_the_images():
    fake = FakeNvml(energy_mj=(1_000_000, 1_003_000))  # 3000 mJ over the loop
    with telemetry.nvml_window(fake, handle="h", interval=1000) as tel:
        pass
    cols = tel.columns(images=20 * 8)  # 20 iterations at batch 8
    assert cols["energy_mj_per_image"] == pytest.approx(3000 / 160)
    assert cols["gpu_power_limit_w"] == 700.0 and cols["gpu_sm_clock_mhz"] == 1980
    assert cols["gpu_mem_clock_mhz"] == 2619
    assert cols["gpu_power_w"] == pytest.approx(400.0)  # the samples at enter and exit: 300, 500 W
    assert cols["gpu_temp_c"] == 71 and cols["gpu_throttle"] == "gpu_idle,sw_power_cap"
    assert cols["energy_window_s"] is not None and cols["energy_window_s"] >= 0


def test_a_counter_that_did_not_move_is_no_energy():
    with telemetry.nvml_window(FakeNvml(energy_mj=(5, 5)), handle="h", interval=1000) as tel:
        pass
    assert tel.columns(images=4)["energy_mj_per_image"] is None


def test_nvml_errors_give_none_without_error(monkeypatch):
    def fail(*a, **k):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    fake = FakeNvml()
    for name in ("nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetPowerUsage", "nvmlDeviceGetClockInfo",
                 "nvmlDeviceGetTemperature", "nvmlDeviceGetEnforcedPowerLimit",
                 "nvmlDeviceGetCurrentClocksEventReasons"):  # fmt: skip
        monkeypatch.setattr(fake, name, fail)
    with telemetry.nvml_window(fake, handle="h", interval=1000) as tel:
        pass
    assert all(v is None for v in tel.columns(images=10).values())
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: fail())
    assert telemetry.open_nvml() is None  # no driver: NVML does not start, nothing raised


def test_no_library_or_no_device_is_all_none():
    with telemetry.nvml_window(None, None) as tel:
        pass
    assert all(v is None for v in tel.columns(images=10).values())
    with telemetry.gpu_window(torch.device("cpu")) as tel:
        pass
    assert all(v is None for v in tel.columns(images=10).values())


def test_busy_time_is_the_union_of_device_intervals():
    # two kernels overlapping on two streams count once; a gap counts nothing
    assert busy_union_ms([(0, 1000), (500, 1500), (3000, 3500)]) == pytest.approx(2.0)
    assert busy_union_ms([]) == 0.0
    assert modes.gpu_busy_ms(lambda: None, torch.device("cpu")) is None  # not measured on a CPU
    cols = busy_columns(3.0, 4.0)
    assert cols == {"gpu_busy_ms": 3.0, "gpu_busy_share": 0.75, "launch_bound": 0.75 < LAUNCH_BOUND_SHARE}
    assert busy_columns(None, 4.0)["launch_bound"] is None


def test_device_intervals_read_only_gpu_events():
    from torch.autograd import DeviceType

    def ev(dev, start, end, activity="kernel", annotation=False):
        span = types.SimpleNamespace(start=start, end=end)
        return types.SimpleNamespace(
            device_type=dev, time_range=span, activity_type=activity, is_user_annotation=annotation
        )

    events = [
        ev(DeviceType.CPU, 0, 10_000, "cpu_op"),
        ev(DeviceType.CUDA, 100, 600),
        ev(DeviceType.CUDA, 700, 800, "gpu_memcpy"),
        ev(DeviceType.CUDA, 800, 900, "gpu_memset"),
        ev(DeviceType.CUDA, 0, 5_000, "gpu_user_annotation"),  # a range, not work: the gaps are idle
        ev(DeviceType.CUDA, 0, 6_000, "kernel", annotation=True),  # an annotation by its flag
    ]
    assert busy_union_ms(modes._device_intervals(events)) == pytest.approx(0.7)
    # a kernel kind under another name still counts (a renamed kind must not empty the trace)
    renamed = [ev(DeviceType.CUDA, 2_000, 2_500, "concurrent_kernel")]
    assert busy_union_ms(modes._device_intervals(events + renamed)) == pytest.approx(1.2)


def test_energy_is_a_compared_metric_with_its_table():
    m = metric("energy_mj_per_image")
    assert m.table and m.compare and m.tolerance_on("cuda") == 0.2 and m.unit == "mJ"


def test_a_cpu_row_has_stability_but_no_gpu_numbers():
    suite = parse_suite(
        "name: t\nmodels: [pvt_v2_b0]\nresolutions: [64]\ndevice: cpu\nthreads: 1\n"
        "metrics: [params, latency]\nlatency: {warmup: 1, iters: 12, min_iters: 12}\n",
        "t.yaml",
    )
    row = run_case(suite.cases()[0])
    assert row.status == "ok" and row.latency_iters == 12
    assert row.latency_unstable in (True, False) and isinstance(row.latency_unstable_why, str)
    gpu_cols = ("gpu_busy_ms", "gpu_busy_share", "launch_bound", "energy_mj_per_image", "gpu_power_w",
                "latency_peak_alloc_mb")  # fmt: skip
    assert all(getattr(row, c) is None for c in gpu_cols)


def _rows(bound: list[bool | None]) -> list[dict]:
    return [
        {"model": m, "resolution": [512, 512], "batch_size": 1, "dtype": "fp32", "device": "cuda",
         "status": "ok", "latency_ms_median": lat, "launch_bound": lb, "suite": "g", "device_name": "H200"}
        for m, lat, lb in zip(("a", "b"), (4.25, 9.5), bound)
    ]  # fmt: skip


def test_launch_bound_cells_carry_the_mark_and_the_title_says_why():
    df = rows_frame(_rows([True, False]))
    md = render_markdown(df)
    assert f"4.25{LAUNCH_MARK}" in md and "9.50" in md and f"9.50{LAUNCH_MARK}" not in md
    assert f"{LAUNCH_MARK} launch bound: the GPU was busy for less than 80% of the wall time" in md


def test_no_launch_bound_row_leaves_the_table_numeric():
    df = rows_frame(_rows([False, None]))
    tab = pd.DataFrame({"512": [4.25, 9.5]}, index=pd.Index(["a", "b"], name="model"))
    assert mark_launch_bound(tab, df, ["model"], "{:.2f}") is None
    assert LAUNCH_MARK not in render_markdown(df)


def test_an_unstable_case_is_retried_once_and_the_retry_kept(monkeypatch):
    """With ``latency: {retry_unstable: true}`` an unstable first timing is timed again; the row is
    the retry's, says it was retried, and keeps the first try's evidence."""
    from pacabench.measure.stability import Stability
    from pacabench.runs import runner

    verdicts = iter([Stability(True, "drift: median 1 ms first half vs 2 ms second half"), Stability(False)])
    seen = []
    monkeypatch.setattr(runner, "assess", lambda s: seen.append(list(s)) or next(verdicts, Stability(False)))
    suite = parse_suite(
        "name: t\nmodels: [pvt_v2_b0]\nresolutions: [64]\ndevice: cpu\nthreads: 1\nmetrics: [params, latency]\n"
        "latency: {warmup: 0, iters: 3, min_iters: 3, retry_unstable: true}\n",
        "t.yaml",
    )
    row = run_case(suite.cases()[0])
    assert row.status == "ok" and row.latency_retried is True and row.latency_unstable is False
    assert (
        row.latency_unstable_why
        == "stable when retried; first try: drift: median 1 ms first half vs 2 ms second half"
    )
    assert row.latency_ms_samples == pytest.approx(seen[1], abs=1e-3)  # the kept samples are the retry's
    assert seen[0] != seen[1]
