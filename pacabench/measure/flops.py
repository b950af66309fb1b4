"""FLOPs with fvcore, every attention op counted.

Convention (the PaCa-ViT, Swin and PVT papers'): one multiply-add counted once — GMACs,
reported in the ``gflops`` field as "GFLOPs (1 MAC = 1 FLOP)". Batch 1, eval mode.

fvcore has no handle for ``aten::scaled_dot_product_attention`` (timm's fused attention, and
our PaCa-ViT / PVT v1) nor ``aten::_native_multi_head_attention`` and silently drops them, so
attention-heavy models look cheaper, more so at high resolution. It also drops convolutions
with ``padding="same"`` (``aten::_convolution_mode``), recurrent layers (``aten::lstm``: most
of Sequencer's cost), ``baddbmm``/``mv``, and undercounts a broadcast ``matmul``. We register
one handle per op (fvcore's style: the handle gets the traced op's inputs and outputs; the
formulas are in ``flops_ops``). Element-wise ops that
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
from .flops_ops import einsum_macs, matmul_macs, native_mha_macs, rnn_macs, sdpa_macs

__all__ = [
    "FlopsRecord",
    "count_flops",
    "flop_count_analysis",
    "sdpa_flop_jit",
    "native_mha_flop_jit",
    "ATTENTION_HANDLES",
    "EXTRA_HANDLES",
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
    return sdpa_macs(q, k, v)


def native_mha_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``_native_multi_head_attention(q, k, v, embed_dim, num_heads, qkv_w, qkv_b, proj_w, proj_b, ...)``.

    In-projections of q (L·E·E), k and v (S·E·E each), attention (2·L·S·E summed over heads) and
    the out-projection (L·E·E), per batch element.
    """
    q, k = _shape(inputs[0]), _shape(inputs[1])
    assert q is not None and k is not None
    return native_mha_macs(q, k, q[-1])


def conv_mode_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``_convolution_mode(x, w, b, stride, padding: str, dilation, groups)`` — a convolution with
    ``padding="same"``/``"valid"``, which fvcore does not know and drops. MACs = output elements ×
    (C_in / groups) × kernel area, as fvcore counts ``aten::_convolution``.
    """
    w = _shape(inputs[1])
    out = _shape(outputs[0])
    assert w is not None and out is not None
    return math.prod(out) * math.prod(w[1:])


def _list_shapes(val: Any) -> list[list[int]]:
    """The shapes of a traced ``Tensor[]`` argument (a ``prim::ListConstruct`` of tensors)."""
    node = val.node()
    if node.kind() != "prim::ListConstruct":
        return []
    return [s for s in (_shape(v) for v in node.inputs()) if s is not None]


def rnn_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::lstm``/``gru``/``rnn_tanh``/``rnn_relu`` (input or packed data, hx, params, ...): the
    weights are the op's last ``Tensor[]`` argument (an LSTM's hx is a list too)."""
    x = _shape(inputs[0])
    lists = [v for v in inputs if v.type().kind() == "ListType"]
    assert x is not None and lists, "recurrent op without input shape or weights"
    return rnn_macs(x, _list_shapes(lists[-1]))


def rnn_cell_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::lstm_cell``/``gru_cell``/``rnn_*_cell(input, hx, w_ih, w_hh, b_ih, b_hh)``: one step."""
    x, w_ih, w_hh = _shape(inputs[0]), _shape(inputs[2]), _shape(inputs[3])
    assert x is not None and w_ih is not None and w_hh is not None
    return rnn_macs(x, [w_ih, w_hh])


def _product_flop_jit(a: int, b: int):
    """A matrix product of inputs ``a`` and ``b`` (``matmul``, ``baddbmm``, ``mv``, ...), with
    ``torch.matmul``'s broadcasting (fvcore's ``matmul`` handle counts the first batch only)."""

    def handle(inputs: list[Any], outputs: list[Any]) -> int:
        x, y = _shape(inputs[a]), _shape(inputs[b])
        assert x is not None and y is not None, "matrix product without shapes"
        return matmul_macs(x, y)

    return handle


def einsum_flop_jit(inputs: list[Any], outputs: list[Any]) -> float:
    """``aten::einsum`` as torch computes it (``flops_ops.einsum_macs``); fvcore's own count for
    three or more operands."""
    from fvcore.nn.jit_handles import einsum_flop_jit as fvcore_einsum

    equation = inputs[0].toIValue()
    shapes = [_shape(v) for v in inputs[1].node().inputs()]
    macs = None if any(s is None for s in shapes) else einsum_macs(equation, shapes)
    return fvcore_einsum(inputs, outputs) if macs is None else macs


ATTENTION_HANDLES = {
    "aten::scaled_dot_product_attention": sdpa_flop_jit,
    "aten::_scaled_dot_product_attention_math": sdpa_flop_jit,
    "aten::_scaled_dot_product_flash_attention": sdpa_flop_jit,
    "aten::_scaled_dot_product_flash_attention_for_cpu": sdpa_flop_jit,
    "aten::_scaled_dot_product_efficient_attention": sdpa_flop_jit,
    "aten::_scaled_dot_product_cudnn_attention": sdpa_flop_jit,
    "aten::_native_multi_head_attention": native_mha_flop_jit,
}

# The other ops with products fvcore misses or miscounts (registered with ``attention=True``).
EXTRA_HANDLES = {
    "aten::_convolution_mode": conv_mode_flop_jit,
    **{f"aten::{op}": rnn_flop_jit for op in ("lstm", "gru", "rnn_tanh", "rnn_relu")},
    **{f"aten::{op}_cell": rnn_cell_flop_jit for op in ("lstm", "gru", "rnn_tanh", "rnn_relu")},
    "aten::matmul": _product_flop_jit(0, 1),
    "aten::mv": _product_flop_jit(0, 1),
    "aten::dot": _product_flop_jit(0, 1),
    "aten::baddbmm": _product_flop_jit(1, 2),
    "aten::addbmm": _product_flop_jit(1, 2),
    "aten::addmv": _product_flop_jit(1, 2),
    "aten::einsum": einsum_flop_jit,
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
    # in-place and rarer element-wise ops of timm's architectures (fvcore reports them unsupported)
    "aten::sub_",
    "aten::gelu_",
    "aten::silu_",
    "aten::sigmoid_",
    "aten::tanh_",
    "aten::hardswish_",
    "aten::hardsigmoid",
    "aten::hardsigmoid_",
    "aten::clamp_min_",
    "aten::leaky_relu_",
    "aten::elu_",
    "aten::hardtanh_",
    "aten::addcmul",
    "aten::addcdiv",
    "aten::square",
    "aten::erf",
    "aten::log",
    "aten::reciprocal",
    "aten::sin",
    "aten::cos",
    "aten::amax",
    "aten::upsample_bicubic2d",
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
    by_operator_torch: dict[str, float] = field(default_factory=dict)  # torch's GMACs per op (both)
    counter_gap_why: str | None = None  # past FLAG_PCT (both): the op families behind the gap

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
            "by_operator_torch": self.by_operator_torch,
            "counter_gap_why": self.counter_gap_why,
        }


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _numel_handle(calls: Counter, name: str):
    def handle(inputs: list[Any], outputs: list[Any]) -> int:
        calls[name] += 1
        total = 0
        for o in outputs:
            s = _shape(o)
            if s is not None:  # a 0-d result (a full reduction) is one element
                total += math.prod(s)
        return total

    return handle


def flop_count_analysis(model: nn.Module, inputs: torch.Tensor | tuple, *, attention: bool = True):
    """An fvcore ``FlopCountAnalysis`` with the attention handles registered and warnings off.

    ``attention=False`` leaves fvcore's defaults (attention and the other ops of ``EXTRA_HANDLES``
    skipped or counted fvcore's way), for comparison.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    fca = FlopCountAnalysis(model, inputs)
    if attention:
        fca.set_op_handle(**ATTENTION_HANDLES)
        fca.set_op_handle(**EXTRA_HANDLES)
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
