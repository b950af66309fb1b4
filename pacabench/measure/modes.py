"""Latency modes: what the timed callable is (suite ``latency: {mode: eager | cuda_graph | compiled}``).

At batch 1 a small backbone on a large GPU spends most of its eager forward waiting for Python to
launch kernels: its latency then measures the host, not the model. Two modes take the launcher
out of the number:

- ``cuda_graph``: the forward is warmed up on a side stream, captured once on a static input into
  a ``torch.cuda.CUDAGraph`` and the graph is replayed: one launch per iteration, so what is left
  is the GPU's own time. A model that cannot be captured (a host sync such as ``.item()``, a
  shape read from data, a CPU op) is ``Unmeasurable``: its row is skipped with the reason.
- ``compiled``: ``torch.compile(model, mode=compile_mode)``; the first call compiles and is not
  timed (nor are the suite's warm-up calls after it). ``reduce-overhead`` and ``max-autotune``
  use CUDA graphs themselves on a GPU; ``max-autotune-no-cudagraphs`` fuses without them.

``gpu_busy_ms`` reads how long the GPU itself worked per iteration (the union of the kernel,
memcpy and memset intervals in a ``torch.profiler`` trace over a few extra iterations, after the
timing) and ``launch_bound`` compares it with the wall time: a share of the wall time under
``LAUNCH_BOUND_SHARE`` means the GPU idled between kernels, waiting for the host.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import torch

from .oom import is_oom
from .precision import torch_dtype

__all__ = [
    "Unmeasurable",
    "LAUNCH_BOUND_SHARE",
    "BUSY_ITERS",
    "compiled_forward",
    "cuda_graph_forward",
    "busy_union_ms",
    "gpu_busy_ms",
    "busy_columns",
]

# Under this share of the wall time spent in GPU work, a row is launch bound: the GPU waited for the
# host more than a fifth of the time, and the latency says more about Python and the driver than
# about the architecture. (A captured CUDA graph of a model of useful size reaches 0.9 and more.)
LAUNCH_BOUND_SHARE = 0.8
BUSY_ITERS = 5  # profiled iterations after the timing (the busy time is their mean)
GRAPH_WARMUP = 3  # forwards on the side stream before the capture (cuDNN/cuBLAS choose their kernels)


class Unmeasurable(Exception):
    """This case cannot be timed in the suite's latency mode: its row is ``skipped`` with the reason."""


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip().rstrip(":")[:300]


def compiled_forward(
    model: torch.nn.Module, forward: Callable[[torch.nn.Module], Any], compile_mode: str
) -> Callable[[], Any]:
    """``forward(torch.compile(model, mode=compile_mode))`` as a callable, compiled now (the first
    call; not timed). A compiler that fails (no C compiler for inductor's CPU code, an op it does
    not support) makes the case ``Unmeasurable``; running out of memory stays an OOM."""
    try:
        compiled = torch.compile(model, mode=compile_mode)
        fn = functools.partial(forward, compiled)
        fn()
    except Exception as e:  # noqa: BLE001 - the compiler raises many kinds
        if is_oom(e):
            raise
        raise Unmeasurable(f"torch.compile(mode={compile_mode}) failed: {_one_line(e)}") from e
    return fn


def _graph_body(model: torch.nn.Module, x: torch.Tensor, dtype: str, dev: torch.device) -> Callable[[], Any]:
    """One forward as captured: inference mode; autocast without its weight cache (a cast cached
    during the capture would be freed memory the graph still reads)."""

    def body():
        if dtype == "fp32":
            with torch.inference_mode():
                return model(x)
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch_dtype(dtype), cache_enabled=False):
            return model(x)

    return body


def cuda_graph_forward(
    model: torch.nn.Module, x: torch.Tensor, dtype: str, dev: torch.device
) -> Callable[[], Any]:
    """The forward on the static input ``x`` captured into a CUDA graph; returns its replay.

    Warm-up on a side stream first (as ``torch.cuda.graphs`` asks: the capture must not record
    one-off work such as cuBLAS workspace allocation), then one capture. The returned callable
    keeps the graph and its static output alive."""
    if dev.type != "cuda":
        raise Unmeasurable("cuda_graph needs a CUDA device")
    body = _graph_body(model, x, dtype, dev)
    side = torch.cuda.Stream(dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):
        for _ in range(GRAPH_WARMUP):
            body()
    torch.cuda.current_stream(dev).wait_stream(side)
    torch.cuda.synchronize(dev)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            static_out = body()
    except Exception as e:  # noqa: BLE001 - capture errors come as RuntimeError, AcceleratorError, ...
        if is_oom(e):
            raise
        try:  # the failed capture ended; let the device finish what was queued before it
            torch.cuda.synchronize(dev)
        except Exception:  # noqa: BLE001 - the capture's own error is the one to report
            pass
        raise Unmeasurable(f"cannot be captured in a CUDA graph: {_one_line(e)}") from e

    def replay() -> Any:
        graph.replay()
        return static_out

    replay.graph = graph  # type: ignore[attr-defined] - kept alive with the callable
    return replay


def busy_union_ms(intervals_us: Iterable[tuple[float, float]]) -> float:
    """Milliseconds covered by the union of ``(start, end)`` intervals in microseconds: the time
    the GPU did something (kernels overlapping on two streams count once)."""
    total, cur_start, cur_end = 0.0, None, None
    for start, end in sorted((float(s), float(e)) for s, e in intervals_us if e > s):
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        total += cur_end - cur_start
    return total / 1000.0


# GPU work in a trace: kernels, copies, sets (kineto's "kernel", "gpu_memcpy", "gpu_memset", or
# a variant name such as "concurrent_kernel"). A ``gpu_user_annotation`` (a record_function range
# drawn on the GPU's timeline, e.g. torch.compile's) spans the gaps between kernels: not work.
DEVICE_WORK = ("kernel", "gpu_memcpy", "gpu_memset")
NOT_WORK = ("annotation", "overhead", "runtime", "driver")


def _is_work(e: Any) -> bool:
    """A device event of the trace that is GPU work, by its kineto activity name; an unknown name
    counts unless it says it is an annotation (so a renamed kernel kind is not silently dropped)."""
    if getattr(e, "is_user_annotation", False):
        return False
    kind = str(getattr(e, "activity_type", None) or "").lower()  # absent in an older torch
    return kind in DEVICE_WORK or not any(word in kind for word in NOT_WORK)


def _device_intervals(events: Iterable[Any]) -> list[tuple[float, float]]:
    """The (start, end) microseconds of the GPU work of a profiler trace (kernels, copies, sets)."""
    from torch.autograd import DeviceType

    return [
        (e.time_range.start, e.time_range.end)
        for e in events
        if getattr(e, "device_type", None) == DeviceType.CUDA and _is_work(e)
    ]


def gpu_busy_ms(fn: Callable[[], Any], dev: torch.device, iters: int = BUSY_ITERS) -> float | None:
    """The GPU's busy time per iteration of ``fn``: ``iters`` calls under ``torch.profiler`` (CUDA
    activity only), the union of their device intervals ÷ ``iters``. None off CUDA, or when the
    trace holds no device events (a profiler without CUPTI)."""
    if dev.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize(dev)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize(dev)
    intervals = _device_intervals(prof.events())
    return busy_union_ms(intervals) / iters if intervals else None


def busy_columns(busy_ms: float | None, wall_ms: float | None) -> dict[str, Any]:
    """``gpu_busy_ms``, ``gpu_busy_share`` (busy ÷ wall per iteration) and ``launch_bound``."""
    if busy_ms is None or not wall_ms:
        return {"gpu_busy_ms": busy_ms, "gpu_busy_share": None, "launch_bound": None}
    share = busy_ms / wall_ms
    return {"gpu_busy_ms": busy_ms, "gpu_busy_share": share, "launch_bound": share < LAUNCH_BOUND_SHARE}
