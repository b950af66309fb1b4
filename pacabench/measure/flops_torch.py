"""A second FLOP counter: ``torch.utils.flop_counter.FlopCounterMode``, in fvcore's convention.

Why a second one: fvcore (last release 2022) traces with TorchScript, which torch deprecates, and
a FLOP number that goes into a paper is safer when two independent counters agree. torch's
counter dispatches on aten ops, so it sees what actually runs, and under ``FakeTensorMode`` it
counts a 4096² input without allocating it (seconds instead of minutes).

Conventions, made equal to fvcore's: one multiply-add = one FLOP (torch counts 2 per MAC: we
halve), batch 1, eval mode. Known gap: fvcore also counts normalisation layers (LayerNorm,
BatchNorm), adaptive pooling and upsampling, the torch counter does not, so fvcore reads 0.4–1.1%
higher on these backbones at 224² (3–4% on BatchNorm-heavy mobile nets); without those ops the
two counts are equal (tested for every registered model and 40 timm architectures).

torch 2.14's counter has formulas for convolutions, matrix products and the CUDA attention
kernels only: it counts the CPU attention kernel (``_scaled_dot_product_flash_attention_for_cpu``),
``nn.LSTM`` on CPU (``mkldnn_rnn_layer``) and on CUDA (``_cudnn_rnn``), the fused
``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` kernels and ``mv`` as free. We
register those (``EXTRA_FORMULAS``, the formulas of ``flops_ops``). Like fvcore's record, ours
lists what the counter leaves out (element-wise ops, norm layers, any op with no formula) and
bounds its share.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from ..spec.sizes import as_hw
from .flops import FlopsRecord, count_flops, count_params
from .flops_ops import encoder_layer_macs, matmul_macs, native_mha_macs, op_family, rnn_macs, sdpa_macs

__all__ = [
    "TorchFlopsRecord",
    "count_flops_torch",
    "EXTRA_FORMULAS",
    "COUNTERS",
    "FVCORE_ONLY_OPS",
    "FLAG_PCT",
    "count_flops_as",
    "counter_gap",
]

# torch's counter counts 2 FLOPs per multiply-add; these formulas return MACs × 2 like its own,
# ``count_flops_torch`` halves the total. Arguments arrive as shapes (FlopCounterMode's wrapper).


def _sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * sdpa_macs(query_shape, key_shape, value_shape)


def _native_mha(query, key, value, embed_dim, *args, out_shape=None, **kwargs) -> int:
    return 2 * native_mha_macs(query, key, embed_dim)


def _encoder_layer(src, embed_dim, num_heads, qkv_w, qkv_b, proj_w, proj_b, use_gelu, norm_first, eps,
                   nw1, nb1, nw2, nb2, ffn_w1, ffn_b1, ffn_w2, *args, out_shape=None, **kwargs) -> int:  # fmt: skip
    return 2 * encoder_layer_macs(src, [qkv_w, proj_w, ffn_w1, ffn_w2])


def _mkldnn_rnn_layer(x, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
    return 2 * rnn_macs(x, [w_ih, w_hh])


def _rnn_weight_list(x, weights, *args, out_shape=None, **kwargs) -> int:
    """``_cudnn_rnn``/``miopen_rnn(input, weight[], ...)``: every layer's and direction's weights."""
    return 2 * rnn_macs(x, weights)


def _product(a: int, b: int):
    def formula(*args, out_shape=None, **kwargs) -> int:
        return 2 * matmul_macs(args[a], args[b])

    return formula


_aten = torch.ops.aten
# What torch 2.14's counter has no formula for (it counts these ops as free).
EXTRA_FORMULAS = {
    op: f
    for name, f in {
        "_scaled_dot_product_flash_attention_for_cpu": _sdpa,  # every CPU fused attention
        "_scaled_dot_product_fused_attention_overrideable": _sdpa,  # XPU and out-of-tree backends
        "_scaled_dot_product_attention_math_for_mps": _sdpa,
        "_native_multi_head_attention": _native_mha,  # nn.MultiheadAttention's eval fast path
        "_transformer_encoder_layer_fwd": _encoder_layer,  # nn.TransformerEncoderLayer's
        "mkldnn_rnn_layer": _mkldnn_rnn_layer,  # nn.LSTM on CPU (one layer, one direction a call)
        "_cudnn_rnn": _rnn_weight_list,  # nn.LSTM/GRU/RNN on CUDA
        "miopen_rnn": _rnn_weight_list,  # and on ROCm
        "mv": _product(0, 1),
        "dot": _product(0, 1),
        "vdot": _product(0, 1),
        "addmv": _product(1, 2),
        "addbmm": _product(1, 2),
        "_addmm_activation": _product(1, 2),
    }.items()
    if (op := getattr(_aten, name, None)) is not None
}
_COUNTED = {str(op) for op in (*flop_registry, *EXTRA_FORMULAS)}

# Ops torch's counter leaves out (it counts products only): each one's output elements bound its
# cost. Norm layers are here (fvcore counts them; torch's counter does not).
_ELEMENTWISE = frozenset(
    f"aten.{op}"
    for op in """add add_ sub sub_ rsub mul mul_ div div_ addcmul addcmul_ addcdiv addcdiv_ gelu gelu_
    silu silu_ sigmoid sigmoid_ tanh tanh_ hardswish hardswish_ hardsigmoid hardsigmoid_ relu relu_
    leaky_relu leaky_relu_ elu elu_ hardtanh hardtanh_ clamp clamp_ clamp_min clamp_min_ clamp_max
    clamp_max_ _softmax _safe_softmax _log_softmax mean sum pow pow_ sqrt rsqrt exp exp_ neg abs log
    reciprocal erf sin cos square amax amin maximum minimum linalg_vector_norm norm cumsum where
    masked_fill masked_fill_ max_pool2d_with_indices max_pool2d avg_pool2d avg_pool1d adaptive_max_pool2d
    _adaptive_avg_pool2d native_layer_norm native_batch_norm _native_batch_norm_legit_no_training
    _native_batch_norm_legit native_group_norm upsample_bilinear2d upsample_bicubic2d
    _upsample_bicubic2d_aa _upsample_bilinear2d_aa upsample_nearest2d _upsample_nearest_exact2d
    grid_sampler_2d""".split()
)
# Ops that move, create or compare data: nothing to count, nothing to bound.
_FREE = frozenset(
    f"aten.{op}"
    for op in """view _unsafe_view reshape _reshape_alias permute transpose t expand slice select split
    split_with_sizes unbind chunk cat stack clone copy_ _to_copy alias detach empty empty_like
    empty_strided zeros zeros_like ones ones_like full full_like fill_ zero_ arange linspace unsqueeze
    squeeze flatten index index_select index_put index_put_ _unsafe_index gather scatter scatter_ roll
    flip constant_pad_nd reflection_pad1d reflection_pad2d replication_pad2d repeat repeat_interleave
    im2col col2im as_strided as_strided_ lift_fresh lift_fresh_copy bitwise_not bitwise_and bitwise_or
    logical_not logical_and eq ne lt le gt ge floor ceil round trunc remainder floor_divide new_zeros
    new_empty new_ones new_full new_empty_strided unfold pixel_shuffle pixel_unshuffle channel_shuffle
    native_channel_shuffle unsafe_split unsafe_split_with_sizes diagonal tril triu nonzero sort topk argmax argmin max min
    _local_scalar_dense scalar_tensor randn rand normal_ uniform_ bernoulli_ native_dropout""".split()
) | {"prim.device"}


class _Uncounted(TorchDispatchMode):
    """Beside FlopCounterMode (entered outside it, so it sees the ops the counter ran): every call
    of an element-wise op and its output size (the bound), and every other op the counter has no
    formula for (an unknown cost, listed)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter = Counter()
        self.bound = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = str(getattr(func, "_overloadpacket", func))
        if name in _ELEMENTWISE:
            self.calls[name] += 1
            first = out[0] if isinstance(out, (tuple, list)) else out
            self.bound += first.numel() if isinstance(first, torch.Tensor) else 0
        elif name not in _COUNTED and name not in _FREE:
            self.calls[name] += 1
        return out


@contextlib.contextmanager
def _no_grad_params(model: torch.nn.Module) -> Iterator[None]:
    """Parameters that do not require grad while counting. FlopCounterMode's module tracker hooks
    every input that requires grad, and fails on one without a grad function: a view of a
    parameter made under ``no_grad`` (CaiT's and PiT's class token, ``cls_token.expand(B, -1, -1)``
    passed to a block)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@dataclass
class TorchFlopsRecord:
    gflops: float  # GMACs: one multiply-add counted once (fvcore's convention), per image
    resolution: tuple[int, int]
    batch_size: int
    fake: bool  # counted under FakeTensorMode (nothing allocated)
    by_operator: dict[str, float] = field(default_factory=dict)  # GMACs per aten op
    wall_s: float = 0.0
    counter: str = "torch"
    by_module: dict[str, float] | None = None  # module name ("" = the model) → GMACs, when asked
    uncounted_ops: dict[str, int] = field(default_factory=dict)  # op -> calls left uncounted
    uncounted_share: float = 0.0  # ≤ this share of (counted + element-wise bound), as fvcore's

    def to_dict(self) -> dict:
        d = asdict(self)
        d["resolution"] = list(self.resolution)
        return d


def count_flops_torch(
    model: torch.nn.Module,
    resolution: int | Sequence[int],
    *,
    batch_size: int = 1,
    fake: bool = True,
    device: str | torch.device | None = None,
    modules: bool = False,
) -> TorchFlopsRecord:
    """FLOPs of one forward of ``model`` on a ``batch_size``×3×H×W input, per image, in GMACs.

    ``fake=True`` runs the forward on a fake input (shapes only; the model's real weights are
    read for their shapes): any resolution is counted in seconds without its memory. A model
    whose forward reads values (``.item()``, ``nonzero``) cannot run on fake tensors: it is
    counted on a real input instead (``fake`` False in the record).
    ``modules=True`` also fills ``by_module`` (every module of ``model.named_modules()``).
    """
    hw = as_hw(resolution)
    if min(hw) <= 0 or batch_size <= 0:
        raise ValueError(
            f"resolution must be R or (H, W) > 0 and batch_size > 0, got {resolution}, {batch_size}"
        )
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else "cpu"
    t0 = time.perf_counter()
    counter, seen, fake = _count(model, (batch_size, 3, *hw), device, fake)
    wall = time.perf_counter() - t0
    total = counter.get_total_flops()
    per_op = counter.get_flop_counts().get("Global", {})
    scale = 1.0 / (2.0 * batch_size * 1e9)
    by_op = {
        str(op).replace("aten.", ""): n * scale for op, n in sorted(per_op.items(), key=lambda kv: -kv[1])
    }
    macs, bound = total / 2.0, seen.bound  # the bound: one FLOP (MAC) per output element
    rec = TorchFlopsRecord(
        gflops=total * scale, resolution=hw, batch_size=batch_size, fake=fake, by_operator=by_op, wall_s=wall,
        uncounted_ops={op.replace(".", "::", 1): n for op, n in sorted(seen.calls.items())},
        uncounted_share=bound / (macs + bound) if macs + bound > 0 else 0.0,
    )  # fmt: skip
    if modules:
        rec.by_module = _by_module(model, counter.get_flop_counts(), scale)
    return rec


def _count(model: torch.nn.Module, shape: tuple[int, ...], device, fake: bool):
    """(counter, observer, fake): on fake tensors when asked and the forward allows it."""
    if fake:
        from torch._subclasses import fake_tensor as ft
        from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

        try:
            return (*_run_counted(model, shape, device, fake=True), True)
        except (ft.DataDependentOutputException, ft.DynamicOutputShapeException, GuardOnDataDependentSymNode):
            pass  # the forward reads a value (``.item()``, ``nonzero``): a fake tensor has none
    return (*_run_counted(model, shape, device, fake=False), False)


def _run_counted(
    model: torch.nn.Module, shape: tuple[int, ...], device, *, fake: bool
) -> tuple[FlopCounterMode, _Uncounted]:
    """One eval forward under the counter (and the uncounted ops' observer, outside it)."""
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
    seen = _Uncounted()
    was_training = model.training
    model.eval()
    try:
        with _no_grad_params(model), contextlib.ExitStack() as stack:
            if fake:
                from torch._subclasses.fake_tensor import FakeTensorMode

                stack.enter_context(FakeTensorMode(allow_non_fake_inputs=True))
            x = torch.empty(*shape, device=device) if fake else torch.zeros(*shape, device=device)
            with seen, counter, torch.no_grad():
                model(x)
    finally:
        model.train(was_training)
    return counter, seen


def _by_module(model: torch.nn.Module, counts: dict, scale: float) -> dict[str, float]:
    """FlopCounterMode's per-module table (keys '<RootClass>.<name>') by ``named_modules`` name.

    A container never called itself (a ``ModuleList`` of blocks) is not in the table: it gets
    the sum of its children, as fvcore, which attributes by name, gives it."""
    root = type(model).__name__
    out: dict[str, float] = {}
    for name, mod in reversed(list(model.named_modules())):  # children before their parent
        key = f"{root}.{name}" if name else root
        if key in counts:
            out[name] = sum(counts[key].values()) * scale
        else:
            prefix = f"{name}." if name else ""
            out[name] = sum(out.get(prefix + child, 0.0) for child, _ in mod.named_children())
    return out


COUNTERS = ("fvcore", "torch", "both")
# ops fvcore counts and torch's counter does not: the expected gap between the two
FVCORE_ONLY_OPS = (
    "layer_norm", "batch_norm", "group_norm", "instance_norm",
    "adaptive_avg_pool2d", "upsample_bilinear2d", "upsample_nearest2d",
)  # fmt: skip
FLAG_PCT = 1.0  # counters further apart than this (in %) are flagged, and the record says why


def count_flops_as(
    model: torch.nn.Module, resolution: int | Sequence[int], counter: str = "fvcore"
) -> FlopsRecord:
    """FLOPs (GMACs, batch 1, eval) by ``counter``: ``fvcore`` (``gflops``), ``torch``
    (``gflops_torch``, under fake tensors, with torch's uncounted ops and share) or ``both``
    (both, ``counter_diff_pct``, and past ``FLAG_PCT`` the op families behind the gap)."""
    if counter not in COUNTERS:
        raise ValueError(f"counter must be one of {', '.join(COUNTERS)}, got {counter!r}")
    hw = as_hw(resolution)
    if counter == "torch":
        tc = count_flops_torch(model, hw)
        return FlopsRecord(
            gflops=None, params=count_params(model), resolution=hw, by_operator=tc.by_operator,
            uncounted_ops=tc.uncounted_ops, uncounted_share=tc.uncounted_share, counter="torch",
            gflops_torch=tc.gflops,
        )  # fmt: skip
    rec = count_flops(model, hw)
    if counter == "both":
        tc = count_flops_torch(model, hw)
        rec.counter = "both"
        rec.gflops_torch = tc.gflops
        rec.by_operator_torch = tc.by_operator
        gap = counter_gap(rec)
        rec.counter_diff_pct = gap["diff_pct"] if gap else None
        rec.counter_gap_why = gap["why"] if gap and gap["flagged"] else None
    return rec


def counter_gap(rec: FlopsRecord) -> dict | None:
    """For a ``both`` record: the counters' difference, the part fvcore's extra ops explain
    (normalisation, adaptive pooling, upsampling), what is left unexplained, whether the
    counters differ by more than ``FLAG_PCT``, and (from both counters' per-op counts) the
    difference per op family with a one-line ``why``. None unless both counters ran."""
    if rec.gflops is None or rec.gflops_torch is None or not rec.gflops:
        return None
    diff = 100.0 * (rec.gflops - rec.gflops_torch) / rec.gflops
    explained = 100.0 * sum(rec.by_operator.get(op, 0.0) for op in FVCORE_ONLY_OPS) / rec.gflops
    by_family = (
        _family_gap(rec.by_operator, rec.by_operator_torch, rec.gflops) if rec.by_operator_torch else {}
    )
    return {
        "diff_pct": diff,
        "explained_pct": explained,
        "unexplained_pct": diff - explained,
        "flagged": abs(diff) > FLAG_PCT,
        "by_family": by_family,
        "why": _why(diff, explained, by_family),
    }


def _family_gap(fv: dict[str, float], tc: dict[str, float], total: float) -> dict[str, dict]:
    """fvcore − torch per op family, in % of fvcore's total; the families the two agree on left out."""
    fams: dict[str, list[float]] = {}
    for i, ops in enumerate((fv, tc)):
        for op, g in ops.items():
            fams.setdefault(op_family(op), [0.0, 0.0])[i] += g
    out = {}
    for fam, (a, b) in sorted(fams.items(), key=lambda kv: -abs(kv[1][0] - kv[1][1])):
        if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
            only = "fvcore" if not b else "torch" if not a else None
            out[fam] = {"pct": 100.0 * (a - b) / total, "only": only}
    return out


def _why(diff: float, explained: float, by_family: dict[str, dict]) -> str:
    """The gap in words: each family that differs, largest first, and which counter alone knows it."""
    if not by_family:
        if abs(diff - explained) < 1e-6:
            return f"fvcore counts norm layers, pooling and upsampling ({explained:+.2f} %); torch's counter does not"
        return f"{diff:+.2f} %, of which norm layers, pooling and upsampling {explained:+.2f} %"
    parts = []
    for fam, d in by_family.items():
        who = f", only {d['only']} counts it" if d["only"] else ""
        parts.append(f"{fam} {d['pct']:+.2f} %{who}")
    return f"fvcore − torch = {diff:+.2f} %: " + "; ".join(parts)
