"""FLOPs with fvcore, every attention op counted.

Convention (the PaCa-ViT, Swin and PVT papers'): one multiply-add counted once — GMACs,
reported in the ``gflops`` field as "GFLOPs (1 MAC = 1 FLOP)". Batch 1, eval mode.

fvcore has no handle for ``aten::scaled_dot_product_attention`` (timm's fused attention, and
our PaCa-ViT / PVT v1) nor ``aten::_native_multi_head_attention`` and silently drops them, so
attention-heavy models look cheaper, more so at high resolution. (It also drops convolutions
with ``padding="same"``, ``aten::_convolution_mode``.) We register one handle per op
(fvcore's style: the handle gets the traced op's inputs and outputs). Element-wise ops that
the convention leaves out (add, GELU, softmax, ...) are still not counted, but each row says
which ops were left out and what share of the total they could represent at most (one FLOP
per output element).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..spec.sizes import as_hw

__all__ = [
    "FlopsRecord",
    "count_flops",
    "flop_count_analysis",
    "sdpa_flop_jit",
    "native_mha_flop_jit",
    "ATTENTION_HANDLES",
    "count_params",
    "conv_mode_flop_jit",
]


def _shape(val: Any) -> list[int] | None:
    from fvcore.nn.jit_handles import get_shape

    try:
        return get_shape(val)
    except Exception:  # noqa: BLE001 - optional args (None) have no shape
        return None


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``scaled_dot_product_attention(q, k, v, ...)``: q·kᵀ and attn·v.

    q: (..., L, E), k: (..., S, E), v: (..., S, Ev) → (..., L, Ev).
    MACs = prod(batch dims) · L · S · (E + Ev). Scaling, masking and softmax are element-wise
    (not counted, as fvcore does for an explicit softmax).
    """
    q, k, v = (_shape(x) for x in inputs[:3])
    assert q is not None and k is not None and v is not None, "SDPA inputs without shapes"
    batch = math.prod(q[:-2])
    L, E = q[-2], q[-1]
    S, Ev = k[-2], v[-1]
    return batch * L * S * (E + Ev)


def native_mha_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``_native_multi_head_attention(q, k, v, embed_dim, num_heads, qkv_w, qkv_b, proj_w, proj_b, ...)``.

    In-projections of q (L·E·E), k and v (S·E·E each), attention (2·L·S·E summed over heads) and
    the out-projection (L·E·E), per batch element.
    """
    q, k = _shape(inputs[0]), _shape(inputs[1])
    assert q is not None and k is not None
    batch = math.prod(q[:-2]) if len(q) > 2 else 1
    L, E = q[-2], q[-1]
    S = k[-2]
    return batch * (2 * L * E * E + 2 * S * E * E + 2 * L * S * E)


def conv_mode_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``_convolution_mode(x, w, b, stride, padding: str, dilation, groups)`` — a convolution with
    ``padding="same"``/``"valid"``, which fvcore does not know and drops. MACs = output elements ×
    (C_in / groups) × kernel area, as fvcore counts ``aten::_convolution``.
    """
    w = _shape(inputs[1])
    out = _shape(outputs[0])
    assert w is not None and out is not None
    return math.prod(out) * math.prod(w[1:])


ATTENTION_HANDLES = {
    "aten::scaled_dot_product_attention": sdpa_flop_jit,
    "aten::_scaled_dot_product_attention_math": sdpa_flop_jit,
    "aten::_scaled_dot_product_flash_attention": sdpa_flop_jit,
    "aten::_scaled_dot_product_flash_attention_for_cpu": sdpa_flop_jit,
    "aten::_scaled_dot_product_efficient_attention": sdpa_flop_jit,
    "aten::_scaled_dot_product_cudnn_attention": sdpa_flop_jit,
    "aten::_native_multi_head_attention": native_mha_flop_jit,
}

# Element-wise ops the papers' convention does not count. We count their calls and bound their
# cost (one FLOP per output element) to report the share they could represent.
_ELEMENTWISE = [
    "aten::add",
    "aten::add_",
    "aten::sub",
    "aten::rsub",
    "aten::mul",
    "aten::mul_",
    "aten::div",
    "aten::div_",
    "aten::gelu",
    "aten::silu",
    "aten::sigmoid",
    "aten::tanh",
    "aten::hardswish",
    "aten::softmax",
    "aten::log_softmax",
    "aten::mean",
    "aten::sum",
    "aten::pow",
    "aten::sqrt",
    "aten::rsqrt",
    "aten::exp",
    "aten::neg",
    "aten::abs",
    "aten::norm",
    "aten::linalg_vector_norm",
    "aten::max_pool2d",
    "aten::avg_pool2d",
    "aten::adaptive_max_pool2d",
    "aten::layer_norm_",
    "aten::leaky_relu",
    "aten::elu",
    "aten::relu6",
    "aten::hardtanh",
    "aten::clamp_min",
    "aten::masked_fill_",
    "aten::fill_",
    "aten::where",
    "aten::cumsum",
]


@dataclass
class FlopsRecord:
    """FLOPs of one model at one input size (batch 1 unless stated)."""

    gflops: float | None  # GMACs (1 multiply-add = 1 FLOP), fvcore's; None when only torch's counter ran
    params: int
    resolution: tuple[int, int]
    batch_size: int = 1
    by_operator: dict[str, float] = field(default_factory=dict)  # GMACs per counted op
    uncounted_ops: dict[str, int] = field(default_factory=dict)  # op -> calls left uncounted
    uncounted_share: float | None = 0.0  # ≤ this share of (counted + uncounted bound)
    counter: str = "fvcore"  # fvcore | torch | both (``flops_torch.count_flops_as``)
    gflops_torch: float | None = None  # torch's FlopCounterMode, same convention (torch, both)
    counter_diff_pct: float | None = None  # (fvcore − torch) ÷ fvcore × 100 (both)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gflops": self.gflops,
            "params": self.params,
            "resolution": list(self.resolution),
            "batch_size": self.batch_size,
            "by_operator": self.by_operator,
            "uncounted_ops": self.uncounted_ops,
            "uncounted_share": self.uncounted_share,
            "counter": self.counter,
            "gflops_torch": self.gflops_torch,
            "counter_diff_pct": self.counter_diff_pct,
        }


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _numel_handle(calls: Counter, name: str):
    def handle(inputs: list[Any], outputs: list[Any]) -> int:
        calls[name] += 1
        total = 0
        for o in outputs:
            s = _shape(o)
            if s:
                total += math.prod(s)
        return total

    return handle


def flop_count_analysis(model: nn.Module, inputs: torch.Tensor | tuple, *, attention: bool = True):
    """An fvcore ``FlopCountAnalysis`` with the attention handles registered and warnings off.

    ``attention=False`` leaves fvcore's defaults (attention ops skipped), for comparison.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    fca = FlopCountAnalysis(model, inputs)
    if attention:
        fca.set_op_handle(**ATTENTION_HANDLES)
        fca.set_op_handle(**{"aten::_convolution_mode": conv_mode_flop_jit})
    fca.unsupported_ops_warnings(False)
    fca.uncalled_modules_warnings(False)
    fca.tracer_warnings("none")
    return fca


def _canon(op: str) -> str:
    return op.split("::")[-1]


def count_flops(
    model: nn.Module,
    resolution: int | Sequence[int] | torch.Tensor,
    *,
    batch_size: int = 1,
    attention: bool = True,
    device: str | torch.device | None = None,
) -> FlopsRecord:
    """Count the FLOPs (GMACs) of ``model`` on a ``batch_size``×3×H×W input, in eval mode.

    ``resolution``: int, (h, w), or a ready input tensor. ``attention=False`` reproduces plain
    fvcore (fused attention skipped), to show what it misses.
    """
    if isinstance(resolution, torch.Tensor):
        x = resolution
        hw = (int(x.shape[-2]), int(x.shape[-1]))
    else:
        hw = as_hw(resolution)
        p = next(model.parameters(), None)
        dev = device if device is not None else (p.device if p is not None else "cpu")
        x = torch.zeros(batch_size, 3, *hw, device=dev)
    was_training = model.training
    model.eval()
    calls: Counter = Counter()
    try:
        fca = flop_count_analysis(model, (x,), attention=attention)
        fca.set_op_handle(**{op: _numel_handle(calls, op) for op in _ELEMENTWISE})
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            by_op = dict(fca.by_operator())
            unsupported = dict(fca.unsupported_ops())
    finally:
        model.train(was_training)

    elementwise_names = {_canon(op) for op in _ELEMENTWISE}
    counted = {k: v for k, v in by_op.items() if k not in elementwise_names}
    bound = sum(v for k, v in by_op.items() if k in elementwise_names)
    total = float(sum(counted.values()))
    uncounted = {op: n for op, n in calls.items() if n}
    for op, n in unsupported.items():
        uncounted[op] = uncounted.get(op, 0) + int(n)
    share = bound / (total + bound) if (total + bound) > 0 else 0.0
    return FlopsRecord(
        gflops=total / 1e9,
        params=count_params(model),
        resolution=hw,
        batch_size=x.shape[0],
        by_operator={k: v / 1e9 for k, v in sorted(counted.items(), key=lambda kv: -kv[1])},
        uncounted_ops=dict(sorted(uncounted.items())),
        uncounted_share=share,
    )
