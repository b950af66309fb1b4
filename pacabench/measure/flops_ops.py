"""MACs of the ops the stock counters miss, from shapes alone, and the op families that explain
why two counters disagree.

Both counters (fvcore's trace, torch's FlopCounterMode) know convolutions and matrix products,
but each has blind spots in timm's architectures: neither counts a recurrent layer (Sequencer's
``nn.LSTM``: fvcore sees ``aten::lstm``, torch's counter the oneDNN kernel ``mkldnn_rnn_layer``),
fvcore knows no ``baddbmm``/``mv`` and undercounts a broadcast ``matmul``, torch's counter knows
no CPU attention kernel, no ``mv`` and no fused ``nn.MultiheadAttention``/encoder-layer kernel.
The formulas here are the one place those costs are written down; ``flops.py`` (fvcore) and
``flops_torch.py`` (torch) adapt them to their counter's calling convention.

Convention: one multiply-add (MAC) per product term, the papers' "FLOPs"; element-wise work
(activations, softmax, scaling, RoPE's rotations) is not counted, only bounded (each counter's
``uncounted_share``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Shape = Sequence[int]

__all__ = [
    "matmul_macs",
    "einsum_macs",
    "sdpa_macs",
    "native_mha_macs",
    "encoder_layer_macs",
    "rnn_macs",
    "op_family",
    "FAMILIES",
]


def matmul_macs(a: Shape, b: Shape) -> int:
    """``torch.matmul(a, b)`` with its broadcasting and 1-D rules: (…, n, k) @ (…, k, m).

    MACs = prod(broadcast batch dims) · n · k · m; a 1-D operand has no n (or m). fvcore's own
    handle takes the batch of ``a`` only (a (n, k) @ (B, k, m) product counted once, not B
    times) and fails on a 1-D ``b``."""
    a, b = list(a), list(b)
    if len(a) == 1:
        a = [1, *a]
    if len(b) == 1:
        b = [*b, 1]
    batch = _broadcast(a[:-2], b[:-2])
    return math.prod(batch) * a[-2] * a[-1] * b[-1]


def _broadcast(x: Shape, y: Shape) -> list[int]:
    n = max(len(x), len(y))
    x = [1] * (n - len(x)) + list(x)
    y = [1] * (n - len(y)) + list(y)
    return [max(i, j) for i, j in zip(x, y, strict=True)]


def einsum_macs(equation: str, shapes: Sequence[Shape]) -> int | None:
    """MACs of a one- or two-operand ``torch.einsum``, as torch computes it; None for three or more
    operands (the contraction order is the library's choice; the caller falls back).

    One operand (a transpose, a trace, a sum) has no products. With two, an index found in one
    operand only and not in the output is summed out first (no products); every other index
    spans the product: MACs = prod of their sizes. No index contracted at all (an outer or
    element-wise product) is element-wise work: 0 MACs, as torch's counter sees a ``mul``.
    (fvcore's numpy-based count gives the first case half the elements and the last one half of
    an outer product, and counts the summed-out indices as products.)"""
    eq = equation.replace(" ", "")
    if "->" not in eq:  # implicit output: the indices seen once, in alphabetical order
        lhs = eq
        once = [c for c in lhs if c.isalpha() and lhs.count(c) == 1]
        eq = f"{lhs}->{''.join(sorted(once))}"
    lhs, out = eq.split("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes) or "." in eq:
        return None  # ellipsis: left to the caller
    if len(terms) == 1:
        return 0
    if len(terms) > 2:
        return None
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes, strict=True):
        for c, n in zip(term, shape, strict=True):
            sizes[c] = max(sizes.get(c, 1), int(n))
    a, b = set(terms[0]), set(terms[1])
    contracted = (a & b) - set(out)
    if not contracted:
        return 0
    spans = (a & b) | set(out)
    return math.prod(sizes[c] for c in spans)


def sdpa_macs(q: Shape, k: Shape, v: Shape) -> int:
    """Scaled dot-product attention, every form (fused CPU/CUDA kernels, the math path, GQA):
    q (…, L, E), k (…, S, E), v (…, S, Ev) → (…, L, Ev). MACs = prod(q's batch dims) · L · S ·
    (E + Ev): q·kᵀ and attn·v, every query head against its (possibly shared) key head. Scaling,
    masking and softmax are element-wise."""
    return math.prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


def native_mha_macs(q: Shape, k: Shape, embed_dim: int) -> int:
    """``nn.MultiheadAttention``'s fused kernel (``_native_multi_head_attention``): q (…, L, E),
    k/v (…, S, E). In-projections L·E² + 2·S·E², attention 2·L·S·E over all heads, output
    projection L·E², per batch element."""
    batch = math.prod(q[:-2])
    L, S, E = q[-2], k[-2], embed_dim
    return batch * (2 * L * E * E + 2 * S * E * E + 2 * L * S * E)


def encoder_layer_macs(src: Shape, weights: Sequence[Shape]) -> int:
    """``nn.TransformerEncoderLayer``'s fused kernel (``_transformer_encoder_layer_fwd``): src
    (…, L, E); its qkv, out-projection and two feed-forward weights, each a product per token,
    plus self-attention's 2·L·L·E. Norm layers and activations are element-wise."""
    tokens = math.prod(src[:-1])
    L, E = src[-2] if len(src) > 1 else 1, src[-1]
    per_token = sum(math.prod(w) for w in weights if len(w) == 2)
    return tokens * per_token + math.prod(src[:-2]) * 2 * L * L * E


def rnn_macs(x: Shape, weights: Sequence[Shape]) -> int:
    """A recurrent layer (LSTM, GRU, RNN; any layers, directions and projection): every step of
    every sequence multiplies its input by W_ih (gates·hidden × input) and its state by W_hh
    (gates·hidden × hidden), plus W_hr with a projection — so MACs = steps·batch × Σ numel of
    the 2-D weights (4 gates for an LSTM, 3 for a GRU, 1 for an RNN are in the weights' shapes;
    a reverse direction and a second layer have weights of their own). ``x``: the input, time
    and batch in any order, or packed (total steps, input): steps·batch = prod of all dims but
    the last. Biases, gate non-linearities and the cell update are element-wise."""
    return math.prod(x[:-1]) * sum(math.prod(w) for w in weights if len(w) == 2)


# Op families (op names without namespace), for a per-family difference of the two counters.
FAMILIES: dict[str, tuple[str, ...]] = {
    "convolution": ("conv", "convolution", "_convolution", "_convolution_mode"),
    "matmul": (
        "linear", "matmul", "mm", "addmm", "_addmm_activation", "bmm", "baddbmm", "addbmm",
        "einsum", "mv", "addmv", "dot", "vdot",
    ),
    "attention": (
        "scaled_dot_product_attention", "_scaled_dot_product_attention_math",
        "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable", "_flash_attention_forward",
        "_efficient_attention_forward", "flex_attention", "_native_multi_head_attention",
        "_transformer_encoder_layer_fwd",
    ),
    "recurrent": (
        "lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell",
        "rnn_relu_cell", "mkldnn_rnn_layer", "_cudnn_rnn", "miopen_rnn",
    ),
    "norm layers": ("layer_norm", "batch_norm", "group_norm", "instance_norm"),
    "pooling": ("adaptive_avg_pool2d",),
    "upsampling": ("upsample_bilinear2d", "upsample_nearest2d", "grid_sampler"),
}  # fmt: skip
_FAMILY_OF = {op: fam for fam, ops in FAMILIES.items() for op in ops}


def op_family(op: str) -> str:
    """The family of a counted op (``aten::``/``aten.`` prefixes and overloads ignored)."""
    name = op.split("::")[-1].removeprefix("aten.").split(".")[0]
    return _FAMILY_OF.get(name, name)
