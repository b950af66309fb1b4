"""Where the cost is: FLOPs and time per module (stage, block, attention vs MLP).

- ``flops_by_module``: fvcore's per-module FLOP counts (with pacabench's attention handles, so
  fused attention is counted), plus parameters, for every module down to ``depth``.
- ``time_by_module``: per-module wall time of a forward from ``torch.profiler``, each module
  wrapped in a ``record_function`` scope by forward hooks (CPU time on the CPU; on CUDA the
  profiler also records the device time of the kernels launched inside the scope).

Shares are of the whole model's count; nested modules are included in their parents, and ops a
module runs itself (outside its children, e.g. PVT resizing its position embeddings) count for it
and no child: the children of a module add up to at most its total.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..spec.sizes import as_hw
from .flops import flop_count_analysis

__all__ = ["ModuleCost", "flops_by_module", "ModuleTime", "time_by_module"]


def _depth(name: str) -> int:
    return 0 if not name else name.count(".") + 1


@dataclass(frozen=True)
class ModuleCost:
    name: str  # "" is the whole model
    depth: int
    params: int
    gflops: float  # GMACs per image (1 MAC = 1 FLOP)
    share: float  # of the whole model's GFLOPs

    def to_dict(self) -> dict:
        return asdict(self)


def flops_by_module(
    model: nn.Module,
    resolution: int | Sequence[int],
    *,
    depth: int = 2,
    batch_size: int = 1,
    counter: str = "fvcore",
) -> list[ModuleCost]:
    """Every module down to ``depth`` (1 = the model's children), in definition order.

    ``counter``: ``fvcore`` (traces a real input) or ``torch`` (FlopCounterMode under fake
    tensors: seconds at 4096², but without the normalisation layers fvcore counts)."""
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if counter not in ("fvcore", "torch"):
        raise ValueError(f"counter must be fvcore or torch, got {counter!r}")
    if counter == "torch":
        from .flops_torch import count_flops_torch

        gmacs = count_flops_torch(model, resolution, batch_size=batch_size, modules=True).by_module or {}
    else:
        gmacs = _fvcore_by_module(model, resolution, batch_size)
    total = gmacs.get("", 0.0) or 1.0
    out = []
    for name, mod in model.named_modules():
        if _depth(name) > depth:
            continue
        g = float(gmacs.get(name, 0.0))
        params = sum(q.numel() for q in mod.parameters())
        out.append(ModuleCost(name, _depth(name), params, g, g / total))
    return out


def _fvcore_by_module(model: nn.Module, resolution: int | Sequence[int], batch_size: int) -> dict[str, float]:
    """fvcore's per-module counts, in GMACs per image."""
    p = next(model.parameters(), None)
    x = torch.zeros(batch_size, 3, *as_hw(resolution), device=p.device if p is not None else "cpu")
    was_training = model.training
    model.eval()
    try:
        fca = flop_count_analysis(model, (x,))
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            counts = fca.by_module()
    finally:
        model.train(was_training)
    return {name: float(n) / batch_size / 1e9 for name, n in counts.items()}


@dataclass(frozen=True)
class ModuleTime:
    name: str
    depth: int
    calls: int
    cpu_ms: float  # wall time inside the module's scope per forward (CPU clock)
    device_ms: float | None  # CUDA kernels' time per forward, when profiled on CUDA

    def to_dict(self) -> dict:
        return asdict(self)


_PREFIX = "pacabench.module:"


@contextlib.contextmanager
def _scopes(model: nn.Module, depth: int) -> Iterator[None]:
    handles, open_scopes = [], {}
    for name, mod in model.named_modules():
        if _depth(name) > depth:
            continue

        def pre(m, args, _name=name):
            scope = torch.profiler.record_function(_PREFIX + (_name or "<model>"))
            scope.__enter__()
            open_scopes.setdefault(_name, []).append(scope)

        def post(m, args, out, _name=name):
            open_scopes[_name].pop().__exit__(None, None, None)

        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def time_by_module(
    model: nn.Module, x: torch.Tensor, *, depth: int = 1, iters: int = 3, warmup: int = 1
) -> list[ModuleTime]:
    """Per-module time of ``model(x)``, averaged over ``iters`` profiled forwards."""
    from torch.profiler import ProfilerActivity, profile

    if iters < 1:
        raise ValueError("iters must be >= 1")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.is_cuda else [])
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        with _scopes(model, depth), profile(activities=acts) as prof:
            for _ in range(iters):
                model(x)
            if x.is_cuda:
                torch.cuda.synchronize(x.device)
    found = {}
    for ev in prof.key_averages():
        if ev.key.startswith(_PREFIX):
            dev_us = getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0)
            found[ev.key[len(_PREFIX) :]] = (ev.count, ev.cpu_time_total, dev_us)
    out = []
    for name, _ in model.named_modules():
        key = name or "<model>"
        if _depth(name) > depth or key not in found:
            continue
        count, cpu_us, dev_us = found[key]
        per = iters
        out.append(
            ModuleTime(
                name,
                _depth(name),
                count // per,
                cpu_us / per / 1000.0,
                dev_us / per / 1000.0 if x.is_cuda else None,
            )
        )
    return out
