"""Every op counted in every architecture: both counters on timm's zoo against an independent count.

The reference for each model: torch's own ``FlopCounterMode`` with nothing of ours registered
(it counts convolutions and matrix products, and counts the CPU attention kernel and the oneDNN
LSTM kernel as free), plus the costs it misses computed another way — every call of
``F.scaled_dot_product_attention`` intercepted at the Python level, its MACs taken from the q/k/v
it receives (L·S·(E + Ev) per head and image), and every ``nn.LSTM`` measured by a forward hook
from the module's configuration (4 gates · hidden · (input + hidden) per step, per layer and
direction), not from the weights' shapes that our handles read. Our torch count must equal that
sum, and fvcore's (with our handles) must equal ours plus the ops only fvcore counts (norm
layers, adaptive pooling, upsampling). Parameters must be timm's own count.
"""

from __future__ import annotations

import math

import pytest
import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pacabench.measure.flops import FlopsRecord, count_flops
from pacabench.measure.flops_torch import (
    EXTRA_FORMULAS,
    FVCORE_ONLY_OPS,
    count_flops_as,
    count_flops_torch,
    counter_gap,
)

# name -> what it must exercise: "sdpa" (fused attention), "lstm", or "" (products only: convs,
# linear layers, explicit matmul/einsum attention). Default sizes from timm's pretrained_cfg.
ZOO = {
    "resnet50": "",
    "convnext_tiny": "",
    "vit_small_patch16_224": "sdpa",
    "deit_tiny_patch16_224": "sdpa",
    "eva02_tiny_patch14_224": "sdpa",  # RoPE: element-wise, bounded only
    "mobilevit_s": "sdpa",
    "crossvit_small_240": "sdpa",
    "cait_xxs24_224": "sdpa",  # failed under torch's counter (the class token's view)
    "efficientvit_b0": "",  # ReLU linear attention via matmul
    "efficientvit_m0": "",  # cascaded group attention, explicit
    "maxvit_tiny_tf_224": "sdpa",  # block and grid attention (and an einsum)
    "coatnet_0_rw_224": "sdpa",
    "twins_svt_small": "sdpa",  # local windows + global sub-sampled
    "fastvit_t8": "",  # RepMixer: re-parameterised convolutions
    "hiera_tiny_224": "sdpa",  # mask-unit attention
    "mambaout_tiny": "",
    "sequencer2d_s": "lstm",  # bidirectional LSTMs: most of its cost, uncounted by both before
    "mixer_b16_224": "",
    "resmlp_12_224": "",
    "poolformer_s12": "",
    "levit_128": "",
    "xcit_tiny_12_p16_224": "sdpa",  # cross-covariance attention explicit, class attention fused
    "pit_ti_224": "sdpa",  # failed under torch's counter too
    "tnt_s_patch16_224": "",  # inner and outer attention, explicit
    "regnety_016": "",
    "efficientnet_b0": "",
    "mobilenetv3_large_100": "",
    "repvit_m1": "",
    "edgenext_small": "",
    "davit_tiny": "sdpa",  # window and channel attention
    "focalnet_tiny_srf": "",
    "gcvit_xxtiny": "",
    "nest_tiny": "sdpa",
    "visformer_tiny": "",
    "convit_tiny": "",
    "tiny_vit_5m_224": "sdpa",
    "inception_next_tiny": "",
    "caformer_s18": "sdpa",
    "swinv2_tiny_window8_256": "",  # cosine window attention, explicit
    "pvt_v2_b0": "sdpa",
}

# The default tier: one of each kind, made small (fewer blocks) so each runs in a few seconds; the
# attention forms are the same as at full depth.
QUICK = [
    ("resnet18", {}, "", 128),  # convolutional
    ("deit_tiny_patch16_224", {"depth": 3}, "sdpa", 224),  # plain ViT, fused SDPA
    ("maxvit_nano_rw_256", {"depths": (1, 1, 1, 1), "img_size": 64}, "sdpa", 64),  # window + grid
    ("sequencer2d_s", {"layers": [1, 1, 1, 1]}, "lstm", 112),  # bidirectional LSTMs
]


def _lstm_macs(mod: nn.LSTM, x: torch.Tensor) -> int:
    """An LSTM's MACs from its configuration: per step, per layer and direction, four gates of
    ``hidden`` units each read the layer's input and the recurrent state (a projection adds
    proj·hidden)."""
    steps_batch = math.prod(x.shape[:-1])
    dirs = 2 if mod.bidirectional else 1
    state = mod.proj_size or mod.hidden_size
    per_step = 0
    for layer in range(mod.num_layers):
        inp = mod.input_size if layer == 0 else state * dirs
        per_dir = 4 * mod.hidden_size * (inp + state) + (
            mod.proj_size * mod.hidden_size if mod.proj_size else 0
        )
        per_step += dirs * per_dir
    return steps_batch * per_step


def _independent(model: nn.Module, hw, monkeypatch) -> dict[str, int]:
    """torch's stock counter (MACs) and, counted apart, every SDPA call and every LSTM."""
    found = {"sdpa": 0, "lstm": 0}

    def sdpa(q, k, v, *args, **kwargs):
        heads_images = q.numel() // (q.shape[-2] * q.shape[-1])
        found["sdpa"] += heads_images * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
        # torch picks the kernel (the CPU one, or the math path of bmm's the stock counter does
        # count): the attention is replaced by a result of its shape, counted here only
        return q.new_zeros(*q.shape[:-1], v.shape[-1])

    def lstm_hook(mod, args, out):
        found["lstm"] += _lstm_macs(mod, args[0])

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa)
    hooks = [m.register_forward_hook(lstm_hook) for m in model.modules() if isinstance(m, nn.LSTM)]
    for p in model.parameters():
        p.requires_grad_(False)  # the stock counter's module tracker fails on CaiT's class token
    stock = FlopCounterMode(display=False)
    try:
        with stock, torch.no_grad():
            model(torch.zeros(1, 3, *hw))
    finally:
        for h in hooks:
            h.remove()
        monkeypatch.undo()
    found["stock"] = stock.get_total_flops() // 2  # torch counts 2 FLOPs per multiply-add
    return found


def _check(name: str, kwargs: dict, kind: str, hw, monkeypatch) -> None:
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    hw = hw or tuple(model.pretrained_cfg["input_size"][1:])
    rec = count_flops_as(model, hw, "both")  # before the reference: it leaves grads as they were
    assert all(p.requires_grad for p in model.parameters())
    ref = _independent(model, hw, monkeypatch)

    assert rec.params == sum(p.numel() for p in model.parameters())
    expected = ref["stock"] + ref["sdpa"] + ref["lstm"]
    assert rec.gflops_torch * 1e9 == pytest.approx(expected, rel=1e-9), (ref, rec.by_operator_torch)
    fvcore_only = sum(v for k, v in rec.by_operator.items() if k in FVCORE_ONLY_OPS)
    assert rec.gflops == pytest.approx(rec.gflops_torch + fvcore_only, rel=1e-9), rec.by_operator
    if kind:  # the part the stock counters miss, found where the model has it, by both counters
        assert ref[kind] > 0
        fv_op, tc_op = {"sdpa": ("scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu"),
                        "lstm": ("lstm", "mkldnn_rnn_layer")}[kind]  # fmt: skip
        assert rec.by_operator[fv_op] * 1e9 == pytest.approx(ref[kind], rel=1e-9)
        if kind == "lstm" or not any(k.startswith("bmm") for k in rec.by_operator_torch):
            # (attention with some masks runs torch's math path: bmm's, counted as products)
            assert rec.by_operator_torch[tc_op] * 1e9 == pytest.approx(ref[kind], rel=1e-9)
    else:
        assert ref["sdpa"] == ref["lstm"] == 0
    assert 0 < rec.uncounted_share < 0.1


@pytest.mark.parametrize("name,kwargs,kind,res", QUICK, ids=[q[0] for q in QUICK])
def test_every_op_counted_one_of_each_kind(name, kwargs, kind, res, monkeypatch):
    _check(name, kwargs, kind, (res, res), monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ZOO))
def test_every_op_counted_in_the_zoo(name, monkeypatch):
    _check(name, {}, ZOO[name], None, monkeypatch)


# Published numbers (the papers' tables; 1 MAC = 1 FLOP): params in millions, GMACs at 224².
PUBLISHED = {
    "resnet50": (25.56, 4.1),  # timm / torchvision
    "deit_tiny_patch16_224": (5.7, 1.3),  # DeiT, Table 1
    "convnext_tiny": (28.6, 4.5),  # ConvNeXt, Table 1
    "efficientnet_b0": (5.3, 0.39),  # EfficientNet, Table 2
    "mobilenetv3_large_100": (5.4, 0.219),  # MobileNetV3, Table 3 (219 M MAdds)
    "sequencer2d_s": (28, 8.4),  # Sequencer, Table 1: the LSTMs are 40 % of it
    "poolformer_s12": (12, 1.8),  # MetaFormer, Table 1
    "pvt_v2_b0": (3.7, 0.6),  # PVT v2, Table 1
}


def _agrees(value: float, published: float) -> bool:
    """Within the published figure's rounding (half its last digit), or 3 % (papers count BN or not)."""
    digits = len(str(published).replace(".", "").lstrip("0"))
    half_ulp = 0.5 * 10 ** (math.floor(math.log10(published)) - digits + 1)
    return abs(value - published) <= max(half_ulp * 1.001, 0.03 * published)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_counts(name):
    params_m, gmacs = PUBLISHED[name]
    model = timm.create_model(name, pretrained=False).eval()
    rec = count_flops_as(model, 224, "both")
    assert _agrees(rec.params / 1e6, params_m), rec.params
    assert _agrees(rec.gflops, gmacs) and _agrees(rec.gflops_torch, gmacs), (rec.gflops, rec.gflops_torch)


# ----------------------------------------------------------------- the handles, in closed form
class _Feed(nn.Module):
    """Runs ``mod`` on a tensor of ``shape`` made from the image (so both counters trace it)."""

    def __init__(self, mod: nn.Module, shape: tuple[int, ...], call=None):
        super().__init__()
        self.mod, self.shape, self.call = mod, shape, call

    def forward(self, x):
        z = x.new_ones(self.shape) * x.mean()
        out = self.call(self.mod, z) if self.call else self.mod(z)
        return out[0] if isinstance(out, tuple) else out


def _both(mod: nn.Module, shape, call=None) -> tuple[float, float]:
    """(fvcore's, torch's) MACs of ``mod`` on a ``shape`` input, torch's on fake and real tensors."""
    m = _Feed(mod, shape, call).eval()
    fv = count_flops(m, 4).gflops * 1e9
    fake, real = (count_flops_torch(m, 4, fake=f).gflops * 1e9 for f in (True, False))
    assert fake == pytest.approx(real, rel=1e-12)
    return round(fv, 3), round(fake, 3)  # MACs, back from GMACs


RECURRENT = [
    (nn.LSTM(16, 32, num_layers=2, bidirectional=True, batch_first=True), (2, 7, 16)),
    (nn.LSTM(16, 32, proj_size=8), (7, 2, 16)),
    (nn.GRU(16, 32), (7, 2, 16)),
    (nn.RNN(16, 32, bidirectional=True), (7, 16)),  # unbatched
    (nn.LSTMCell(16, 32), (2, 16)),
]


def _recurrent_macs(mod: nn.Module, shape) -> int:
    """From the configuration: gates (LSTM 4, GRU 3, RNN 1) · hidden · (input + state) per step,
    layer and direction, and proj·hidden for an LSTM's projection."""
    gates = 4 if isinstance(mod, (nn.LSTM, nn.LSTMCell)) else 3 if isinstance(mod, nn.GRU) else 1
    if isinstance(mod, nn.LSTMCell):
        return shape[0] * gates * mod.hidden_size * (mod.input_size + mod.hidden_size)
    dirs = 2 if mod.bidirectional else 1
    state = getattr(mod, "proj_size", 0) or mod.hidden_size
    per_step = 0
    for layer in range(mod.num_layers):
        inp = mod.input_size if layer == 0 else state * dirs
        proj = state * mod.hidden_size if state != mod.hidden_size else 0
        per_step += dirs * (gates * mod.hidden_size * (inp + state) + proj)
    return math.prod(shape[:-1]) * per_step


@pytest.mark.parametrize(
    "mod,shape", RECURRENT, ids=["lstm_2x_bi", "lstm_proj", "gru", "rnn_bi", "lstm_cell"]
)
def test_recurrent_layers_in_closed_form(mod, shape):
    """Both counters count every step of every layer and direction (fvcore: ``aten::lstm``...;
    torch: the oneDNN kernel, or the linear layers of the fallback path)."""
    fv, tc = _both(mod, shape)
    assert fv == tc == _recurrent_macs(mod, shape)


def test_the_cuda_rnn_formula_reads_every_weight():
    """``_cudnn_rnn`` receives the flat weight list: every layer's and direction's (no GPU here)."""
    lstm = nn.LSTM(16, 32, num_layers=2, bidirectional=True, proj_size=8)
    weights = [tuple(w.shape) for w in lstm._flat_weights]
    formula = EXTRA_FORMULAS[torch.ops.aten._cudnn_rnn]
    assert formula((7, 2, 16), weights) == 2 * _recurrent_macs(lstm, (7, 2, 16))


def test_fused_transformer_kernels_in_closed_form():
    """``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` in eval run one fused kernel
    each (torch's counter counted both as free). B·L tokens of width E, F hidden units."""
    B, L, E, F_ = 2, 7, 32, 64
    attention = 2 * B * L * L * E  # q·kᵀ and attn·v over all heads
    projections = B * L * 4 * E * E  # q, k, v and out
    mha = nn.MultiheadAttention(E, 4, batch_first=True)
    fv, tc = _both(mha, (B, L, E), call=lambda m, z: m(z, z, z, need_weights=False))
    assert fv == tc == projections + attention
    layer = nn.TransformerEncoderLayer(E, 4, F_, batch_first=True)
    fv, tc = _both(layer, (B, L, E))
    assert tc == projections + attention + B * L * 2 * E * F_
    assert fv == tc + 2 * B * L * E * 5  # fvcore also counts the two LayerNorms (5 per element)


PRODUCTS = {
    "broadcast_matmul": (lambda a, b: torch.matmul(a, b), [(5, 16), (3, 16, 4)], 3 * 5 * 16 * 4),
    "matrix_vector": (lambda a, b: torch.matmul(a, b), [(3, 5, 16), (16,)], 3 * 5 * 16),
    "mv": (torch.mv, [(5, 16), (16,)], 5 * 16),
    "baddbmm": (lambda c, a, b: torch.baddbmm(c, a, b), [(3, 5, 4), (3, 5, 16), (3, 16, 4)], 3 * 5 * 16 * 4),
    "einsum_attention": (lambda a, b: torch.einsum("bhqd,bhkd->bhqk", a, b), [(1, 2, 5, 8), (1, 2, 6, 8)], 2 * 5 * 6 * 8),
    "einsum_relpos": (lambda a, b: torch.einsum("bhwc,wkc->bhwk", a, b), [(1, 3, 7, 16), (7, 5, 16)], 3 * 7 * 5 * 16),
    "einsum_sum_first": (lambda a, b: torch.einsum("ij,jk->i", a, b), [(8, 9), (9, 10)], 8 * 9),
    "einsum_permute": (lambda a: torch.einsum("nhwc->nchw", a), [(1, 4, 5, 6)], 0),
    "einsum_outer": (lambda a, b: torch.einsum("bw,bc->bwc", a, b), [(2, 5), (2, 6)], 0),
}  # fmt: skip


@pytest.mark.parametrize("name", list(PRODUCTS))
def test_matrix_products_in_closed_form(name):
    """Products fvcore missed (``baddbmm``, ``mv``), undercounted (a broadcast ``matmul``: the
    first operand's batch only), failed on (a matrix × vector ``matmul``) or miscounted
    (``einsum`` through numpy: a permutation as FLOPs, a summed-out index as products), and that
    torch's counter missed (``mv``): both now count products only, once."""
    fn, shapes, expected = PRODUCTS[name]

    class Product(nn.Module):
        def forward(self, x):
            return fn(*(x.new_ones(s) * x.mean() for s in shapes))

    m = Product().eval()
    assert count_flops(m, 4).gflops * 1e9 == pytest.approx(expected, abs=1e-6)
    assert count_flops_torch(m, 4, fake=False).gflops * 1e9 == pytest.approx(expected, abs=1e-6)


def test_the_torch_counter_bounds_what_it_leaves_out_as_fvcore_does():
    """Linear 8→16 then GELU on 3 tokens: 3·8·16 MACs counted, 3·16 GELU outputs bounded (and
    the mean and product that make the input): the same share from both counters."""
    m = _Feed(nn.Sequential(nn.Linear(8, 16), nn.GELU()), (3, 8)).eval()
    tc, fv = count_flops_as(m, 4, "torch"), count_flops_as(m, 4)
    elementwise = 3 * 16 + 1 + 3 * 8  # gelu, mean (1 output), mul (3·8)
    assert tc.gflops_torch * 1e9 == pytest.approx(3 * 8 * 16)
    assert tc.uncounted_share == pytest.approx(elementwise / (3 * 8 * 16 + elementwise))
    assert fv.uncounted_share == pytest.approx(tc.uncounted_share)
    assert tc.uncounted_ops == {"aten::gelu": 1, "aten::mean": 1, "aten::mul": 1}


def test_a_forward_that_reads_values_is_counted_on_real_tensors():
    """``.item()`` cannot run on fake tensors: the torch counter falls back to a real input."""

    class Reads(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(12, 5)

        def forward(self, x):
            n = int(x.abs().sum().item()) + 2  # a value-dependent shape
            return self.fc(x.new_ones(n, 12))

    rec = count_flops_torch(Reads(), 4)
    assert not rec.fake and rec.gflops * 1e9 == pytest.approx(2 * 12 * 5)


def test_a_gap_past_the_flag_says_which_families_make_it():
    """A record whose counters differ: the gap per op family, largest first, with which counter
    alone knows it (the names of both counters' ops mapped to one family)."""
    rec = FlopsRecord(
        gflops=1.0, params=1, resolution=(224, 224), counter="both", gflops_torch=0.5,
        by_operator={"conv": 0.48, "lstm": 0.5, "layer_norm": 0.02},
        by_operator_torch={"convolution": 0.48, "addmm": 0.02},
    )  # fmt: skip
    gap = counter_gap(rec)
    assert gap["flagged"] and gap["diff_pct"] == pytest.approx(50.0)
    assert list(gap["by_family"])[0] == "recurrent"  # largest first
    assert set(gap["by_family"]) == {"recurrent", "matmul", "norm layers"}  # convolutions agree
    assert gap["by_family"]["recurrent"] == {"pct": pytest.approx(50.0), "only": "fvcore"}
    assert gap["by_family"]["matmul"] == {"pct": pytest.approx(-2.0), "only": "torch"}
    assert gap["why"].startswith("fvcore − torch = +50.00 %: recurrent +50.00 %, only fvcore counts it")
    assert sum(d["pct"] for d in gap["by_family"].values()) == pytest.approx(gap["diff_pct"])


def test_a_real_gap_past_the_flag_is_the_norm_layers():
    """MobileNetV3 (BatchNorm after every convolution of a 0.2-GMAC model): the counters differ
    by ~4 %, all of it the norm layers (and pooling) that fvcore counts and torch's does not."""
    rec = count_flops_as(timm.create_model("mobilenetv3_small_050", pretrained=False), 96, "both")
    gap = counter_gap(rec)
    assert rec.counter_diff_pct > 2.0 and gap["flagged"] and abs(gap["unexplained_pct"]) < 1e-6
    assert set(gap["by_family"]) <= {"norm layers", "pooling"} and "norm layers" in gap["by_family"]
    assert rec.counter_gap_why == gap["why"] and "norm layers" in rec.counter_gap_why
