"""One training step: forward, loss, backward, AdamW step; its latency and peak memory.

A step runs under the suite's dtype as autocast (weights stay fp32); fp16 scales the loss with
a ``GradScaler`` (bf16 and fp32 need none). The loss is cross-entropy against fixed random
labels for a classifier's logits, else the mean of every output tensor (a features-only
backbone), so the backward pass reaches every parameter.

Memory is measured on a step after at least one warm-up step, when the gradients and AdamW's
two moments exist: that is the steady state a training run lives in. The peak means the same as
inference's (``pacabench.measure.memory``): everything resident at the peak — CUDA: the
allocator's ``max_memory_allocated``; CPU: the profiler's running peak plus the bytes already
resident. ``state_mb`` = parameters + gradients + optimizer state (computed from the tensors);
``activation_mb`` = peak − state − input: the part that grows with the input and that gradient
checkpointing trades for recomputation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from .latency import LatencyRecord, measure_latency
from .memory import MB, cpu_peak_bytes
from .precision import autocast

__all__ = [
    "TrainRecord",
    "TrainStep",
    "StateBytes",
    "state_bytes",
    "set_grad_checkpointing",
    "train_peak",
    "measure_train",
]


@dataclass
class StateBytes:
    """Bytes a training run holds whatever the input: weights, gradients, optimizer moments."""

    params: int
    grads: int
    optimizer: int

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer


@dataclass
class TrainRecord:
    """A train step's statistics; ``latency`` is absent when only memory was measured."""

    peak_mb: float | None
    mem_kind: str  # cuda_max_allocated | cpu_profiler_peak
    params_mb: float
    grads_mb: float
    optimizer_mb: float
    input_mb: float
    grad_checkpointing: bool = False
    latency: LatencyRecord | None = field(default=None, repr=False)

    @property
    def state_mb(self) -> float:
        return self.params_mb + self.grads_mb + self.optimizer_mb

    @property
    def activation_mb(self) -> float | None:
        if self.peak_mb is None:
            return None
        return max(0.0, self.peak_mb - self.state_mb - self.input_mb)

    def _lat(self, name: str):
        return getattr(self.latency, name) if self.latency is not None else None

    median_ms = property(lambda self: self._lat("median_ms"))
    iqr_ms = property(lambda self: self._lat("iqr_ms"))
    p90_ms = property(lambda self: self._lat("p90_ms"))
    throughput_img_s = property(lambda self: self._lat("throughput_img_s"))
    times_ms = property(lambda self: self._lat("times_ms"))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("latency")
        d.update(state_mb=self.state_mb, activation_mb=self.activation_mb, median_ms=self.median_ms)
        return d


def _tensor_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> StateBytes:
    """Parameter, gradient and optimizer-state bytes held right now."""
    params = list(model.parameters())
    opt = 0
    if optimizer is not None:
        opt = _tensor_bytes(v for st in optimizer.state.values() for v in st.values())
    return StateBytes(
        params=_tensor_bytes(params) + _tensor_bytes(model.buffers()),
        grads=_tensor_bytes(p.grad for p in params if p.grad is not None),
        optimizer=opt,
    )


def set_grad_checkpointing(model: torch.nn.Module, enable: bool = True) -> None:
    """Turn on activation checkpointing (timm's ``set_grad_checkpointing`` API; PaCa-ViT and PVT
    v1 have it too). A model without it raises ``ValueError``."""
    fn = getattr(model, "set_grad_checkpointing", None)
    if fn is None:
        raise ValueError(f"{type(model).__name__} has no set_grad_checkpointing (no gradient checkpointing)")
    fn(enable)


def _loss(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor) and out.dim() == 2:
        g = torch.Generator().manual_seed(0)
        target = torch.randint(0, out.shape[1], (out.shape[0],), generator=g).to(out.device)
        return F.cross_entropy(out.float(), target)
    tensors = (
        list(out.values()) if isinstance(out, dict) else (out if isinstance(out, (list, tuple)) else [out])
    )
    return sum(t.float().mean() for t in tensors)


class TrainStep:
    """``step()`` = zero_grad, forward + loss under autocast, backward (scaled for fp16), AdamW step."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, *, dtype: str = "fp32", lr: float = 1e-4):
        self.model, self.x, self.dtype = model.train(), x, dtype
        self.device = x.device
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=dtype == "fp16")

    def __call__(self) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.dtype, self.device):
            loss = _loss(self.model(self.x))
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    def state(self) -> StateBytes:
        return state_bytes(self.model, self.optimizer)


def _peak_bytes(step: Callable[[], object], device: torch.device, resident: int) -> tuple[int, str]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device), "cuda_max_allocated"
    return cpu_peak_bytes(step) + resident, "cpu_profiler_peak"


def train_peak(step: TrainStep) -> TrainRecord:
    """Peak memory of one step of ``step`` (call it once before, so gradients and moments exist)."""
    st = step.state()
    x_bytes = step.x.numel() * step.x.element_size()
    peak, kind = _peak_bytes(step, step.device, st.total + x_bytes)
    st = step.state()  # after the step: gradients and moments are all there
    return TrainRecord(
        peak_mb=peak / MB,
        mem_kind=kind,
        params_mb=st.params / MB,
        grads_mb=st.grads / MB,
        optimizer_mb=st.optimizer / MB,
        input_mb=x_bytes / MB,
        grad_checkpointing=bool(getattr(step.model, "grad_checkpointing", False)),
    )


def measure_train(
    step: TrainStep,
    *,
    memory: bool = True,
    latency: bool = True,
    warmup: int = 1,
    iters: int = 5,
    min_iters: int = 2,
    time_budget_s: float | None = None,
) -> TrainRecord:
    """Warm up (at least one step), measure the peak of one step, then time ``iters`` steps."""
    step()
    warmup = max(0, warmup - 1)
    if memory:
        rec = train_peak(step)
        warmup = max(0, warmup - 1)
    else:
        st = step.state()
        x_mb = step.x.numel() * step.x.element_size() / MB
        rec = TrainRecord(None, "", st.params / MB, st.grads / MB, st.optimizer / MB, x_mb)
    if latency:
        rec.latency = measure_latency(
            step,
            batch_size=step.x.shape[0],
            warmup=warmup,
            iters=iters,
            min_iters=min_iters,
            time_budget_s=time_budget_s,
            device=step.device,
        )
    return rec


def train_case(model: torch.nn.Module, x: torch.Tensor, case, *, first: bool = False) -> TrainRecord:
    """A suite case in train mode (``case``: a ``pacabench.spec.suite.Case``): its dtype, gradient
    checkpointing, latency settings and which of latency/memory it asks for. ``first``: the
    process's first step (one more warm-up, as inference gets)."""
    if case.grad_checkpointing:
        set_grad_checkpointing(model, True)
    lat = case.latency
    return measure_train(
        TrainStep(model, x, dtype=case.dtype),
        memory="memory" in case.metrics,
        latency="latency" in case.metrics,
        warmup=lat.warmup + int(first),
        iters=lat.iters,
        min_iters=lat.min_iters,
        time_budget_s=lat.time_budget_s,
    )
