"""Peak memory of one forward pass.

CUDA: ``reset_peak_memory_stats`` then ``max_memory_allocated`` / ``max_memory_reserved`` —
everything resident on the device at the peak (weights, input, activations).
CPU: ``tracemalloc`` and ``ru_maxrss`` do not see tensor memory, so we profile the forward with
``torch.profiler`` (``profile_memory=True``), take the running sum of its memory events
(each op's self allocations, and the ``[memory]`` frees) in start order, and add the bytes already resident (weights, buffers,
input) so the CPU number means the same thing as the CUDA one.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch

__all__ = ["MemoryRecord", "measure_peak_memory", "cpu_peak_bytes", "resident_bytes"]

MB = 1024.0 * 1024.0


@dataclass
class MemoryRecord:
    peak_mb: float
    reserved_mb: float | None
    kind: str  # cuda_max_allocated | cpu_profiler_peak
    resident_mb: float = 0.0  # part of the peak that was resident before the forward (CPU)

    def to_dict(self) -> dict:
        return asdict(self)


def resident_bytes(*objs) -> int:
    """Bytes held by modules' parameters/buffers and by tensors."""
    total = 0
    for o in objs:
        if isinstance(o, torch.nn.Module):
            seen = set()
            for t in list(o.parameters()) + list(o.buffers()):
                if t.data_ptr() in seen:
                    continue
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
        elif isinstance(o, torch.Tensor):
            total += o.numel() * o.element_size()
    return total


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence the profiler's native log lines (kineto prints 'USDT … profiler_start/stop' on fd 2
    at every session, which would flood the progress bar). Python exceptions are unaffected."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. captured): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def cpu_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak of bytes allocated (net of frees) on the CPU while ``fn()`` runs, from the profiler."""
    from torch.profiler import ProfilerActivity, profile

    with _quiet_native_stderr():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=False) as prof:
            out = fn()
            del out
    # Allocations are attributed to the op that made them (its *self* memory); frees outside
    # any op show up as "[memory]" events. Walk all of them in start order.
    events = [e for e in prof.events() if e.self_cpu_memory_usage]
    events.sort(key=lambda e: e.time_range.start)
    cur = peak = 0
    for e in events:
        cur += e.self_cpu_memory_usage
        peak = max(peak, cur)
    return peak


def measure_peak_memory(
    fn: Callable[[], object], *, device: str | torch.device = "cpu", resident: int = 0
) -> MemoryRecord:
    """Peak memory of ``fn()``. ``resident``: bytes already held (CPU only; CUDA sees them)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        resident_cuda = torch.cuda.memory_allocated(dev)
        out = fn()
        torch.cuda.synchronize(dev)
        del out
        return MemoryRecord(
            peak_mb=torch.cuda.max_memory_allocated(dev) / MB,
            reserved_mb=torch.cuda.max_memory_reserved(dev) / MB,
            kind="cuda_max_allocated",
            resident_mb=resident_cuda / MB,
        )
    peak = cpu_peak_bytes(fn)
    return MemoryRecord(
        peak_mb=(peak + resident) / MB, reserved_mb=None, kind="cpu_profiler_peak", resident_mb=resident / MB
    )
