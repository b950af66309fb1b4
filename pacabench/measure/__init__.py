"""Measurements: each a small function returning a typed record.

- ``flops.count_flops`` → ``FlopsRecord`` (fvcore, every attention op counted, GMACs)
- ``latency.measure_latency`` → ``LatencyRecord`` (CUDA events or perf_counter; median/p90/IQR)
- ``memory.measure_peak_memory`` → ``MemoryRecord`` (CUDA allocator peak or CPU profiler peak)
"""

from .flops import FlopsRecord, count_flops, count_params
from .latency import LatencyRecord, measure_latency, summarize_times
from .memory import MemoryRecord, measure_peak_memory

__all__ = [
    "FlopsRecord",
    "count_flops",
    "count_params",
    "LatencyRecord",
    "measure_latency",
    "summarize_times",
    "MemoryRecord",
    "measure_peak_memory",
]
