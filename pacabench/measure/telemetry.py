"""GPU telemetry over the timed loop, read through NVML (``nvidia-ml-py``: ``import pynvml``).

What the GPU did while it was timed: SM and memory clocks (medians of samples taken every
``SAMPLE_S``), board power draw (mean) and its enforced limit, the hottest temperature, the clock
throttle reasons seen, and the energy: the difference of the NVML total-energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, millijoules since the driver loaded, Volta and later)
across the loop, divided by the images the loop processed = ``energy_mj_per_image``. It is the
whole board's energy, idle waits between kernels included: a launch-bound row pays for them.

The counter refreshes every few tens of milliseconds, so a loop shorter than ``ENERGY_MIN_S`` would
read it coarsely: the runner extends such a window with untimed calls of the same forward (each
synchronised, as the timed ones are) and counts their images too; ``energy_window_s`` says how
long the window was. No NVML, no GPU, a counter a
GPU lacks: that column is None, never estimated. On a CPU nothing is read (no RAPL here).
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Telemetry",
    "nvml_window",
    "gpu_window",
    "open_nvml",
    "throttle_names",
    "SAMPLE_S",
    "ENERGY_MIN_S",
]

SAMPLE_S = 0.05  # seconds between samples of clocks, power and temperature
ENERGY_MIN_S = 0.5  # the shortest window the energy per image is read over
MB = 1 << 20
# NVML's clock event ("throttle") reason bits (nvml.h: nvmlClocksEventReason*)
THROTTLE_BITS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
    0x100: "display_clocks",
}


@dataclass
class Telemetry:
    """What one timed loop read; every field None when it could not be read."""

    energy_mj: float | None = None
    window_s: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    temp_c: float | None = None
    throttle: str | None = None
    peak_alloc_mb: float | None = None
    peak_reserved_mb: float | None = None
    samples: dict[str, list[float]] = field(default_factory=dict, repr=False)
    throttle_mask: int = 0

    def columns(self, images: int) -> dict[str, Any]:
        """The row's telemetry columns; ``images``: what the loop processed (iterations × batch)."""
        per_image = None
        if self.energy_mj is not None and self.energy_mj > 0 and images > 0:
            per_image = self.energy_mj / images
        return {
            "energy_mj_per_image": per_image,
            "energy_window_s": self.window_s if self.energy_mj is not None else None,
            "gpu_sm_clock_mhz": self.sm_clock_mhz,
            "gpu_mem_clock_mhz": self.mem_clock_mhz,
            "gpu_power_w": self.power_w,
            "gpu_power_limit_w": self.power_limit_w,
            "gpu_temp_c": self.temp_c,
            "gpu_throttle": self.throttle,
            "latency_peak_alloc_mb": self.peak_alloc_mb,
            "latency_peak_reserved_mb": self.peak_reserved_mb,
        }


def throttle_names(mask: int) -> str:
    """The reasons of a throttle bit mask, comma separated ('' for none)."""
    return ",".join(name for bit, name in THROTTLE_BITS.items() if mask & bit)


def open_nvml() -> Any | None:
    """The initialised ``pynvml`` module; None when it is not installed or NVML does not start."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - ImportError, NVMLError (no driver, no library), OSError
        return None
    return pynvml


def _read(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends: that counter is absent
        return None


class _Sampler:
    """Reads clocks, power, temperature and throttle reasons every ``interval`` s on a thread."""

    def __init__(self, lib: Any, handle: Any, tel: Telemetry, interval: float):
        self.lib, self.handle, self.tel, self.interval = lib, handle, tel, interval
        self.stop = threading.Event()
        self.read_reasons = False  # the throttle reasons were read at least once
        self.thread = threading.Thread(target=self._loop, daemon=True, name="pacabench-nvml")

    def sample(self) -> None:
        lib, h = self.lib, self.handle
        reads = {
            "sm_clock_mhz": _read(lib.nvmlDeviceGetClockInfo, h, lib.NVML_CLOCK_SM),
            "mem_clock_mhz": _read(lib.nvmlDeviceGetClockInfo, h, lib.NVML_CLOCK_MEM),
            "power_w": _read(lib.nvmlDeviceGetPowerUsage, h),  # mW
            "temp_c": _read(lib.nvmlDeviceGetTemperature, h, lib.NVML_TEMPERATURE_GPU),
        }
        for k, v in reads.items():
            if v is not None:
                self.tel.samples.setdefault(k, []).append(float(v) / (1000.0 if k == "power_w" else 1.0))
        reasons = getattr(lib, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            lib, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        mask = _read(reasons, h) if reasons is not None else None
        if mask is not None:
            self.tel.throttle_mask |= int(mask)
            self.read_reasons = True

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> _Sampler:
        self.sample()
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()
        self.sample()


def _summarise(tel: Telemetry, throttle_known: bool) -> None:
    s = tel.samples
    tel.sm_clock_mhz = statistics.median(s["sm_clock_mhz"]) if s.get("sm_clock_mhz") else None
    tel.mem_clock_mhz = statistics.median(s["mem_clock_mhz"]) if s.get("mem_clock_mhz") else None
    tel.power_w = statistics.fmean(s["power_w"]) if s.get("power_w") else None
    tel.temp_c = max(s["temp_c"]) if s.get("temp_c") else None
    tel.throttle = throttle_names(tel.throttle_mask) if throttle_known else None


@contextlib.contextmanager
def nvml_window(lib: Any | None, handle: Any, *, interval: float = SAMPLE_S) -> Iterator[Telemetry]:
    """Telemetry of the block from an NVML library ``lib`` (``pynvml`` or a stand-in) and a device
    handle; all None without a library or handle. The energy is the counter's difference."""
    tel = Telemetry()
    if lib is None or handle is None:
        yield tel
        return
    limit = _read(lib.nvmlDeviceGetEnforcedPowerLimit, handle)  # mW
    tel.power_limit_w = None if limit is None else float(limit) / 1000.0
    e0 = _read(lib.nvmlDeviceGetTotalEnergyConsumption, handle)
    t0 = time.perf_counter()
    sampler = _Sampler(lib, handle, tel, interval)
    with sampler:
        yield tel
    tel.window_s = time.perf_counter() - t0
    e1 = _read(lib.nvmlDeviceGetTotalEnergyConsumption, handle)
    tel.energy_mj = float(e1 - e0) if e0 is not None and e1 is not None else None
    _summarise(tel, sampler.read_reasons)


def _handle(lib: Any, dev: Any) -> Any:
    """The NVML handle of a torch CUDA device: by UUID (CUDA_VISIBLE_DEVICES renumbers devices;
    NVML does not), else by index."""
    import torch

    index = dev.index if dev.index is not None else torch.cuda.current_device()
    uuid = _read(lambda: torch.cuda.get_device_properties(index).uuid)
    if uuid is not None:
        h = _read(lib.nvmlDeviceGetHandleByUUID, f"GPU-{uuid}")
        if h is not None:
            return h
    return _read(lib.nvmlDeviceGetHandleByIndex, index)


@contextlib.contextmanager
def gpu_window(dev: Any, *, interval: float = SAMPLE_S) -> Iterator[Telemetry]:
    """Telemetry of the block on torch device ``dev``: NVML's readings and the allocator's peaks
    (allocated, reserved) over it. Off CUDA every field stays None."""
    if getattr(dev, "type", "cpu") != "cuda":
        yield Telemetry()
        return
    import torch

    lib = open_nvml()
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    try:
        with nvml_window(lib, _handle(lib, dev) if lib else None, interval=interval) as tel:
            yield tel
            torch.cuda.synchronize(dev)
        tel.peak_alloc_mb = torch.cuda.max_memory_allocated(dev) / MB
        tel.peak_reserved_mb = torch.cuda.max_memory_reserved(dev) / MB
    finally:
        if lib is not None:
            _read(lib.nvmlShutdown)
