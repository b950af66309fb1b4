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
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pacabench.measure.flops_torch import FVCORE_ONLY_OPS, count_flops_as

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
    ("resnet18", {}, "", 160),  # convolutional
    ("deit_tiny_patch16_224", {"depth": 3}, "sdpa", 224),  # plain ViT, fused SDPA
    ("maxvit_nano_rw_256", {"depths": (1, 1, 1, 1)}, "sdpa", 256),  # window + grid attention
    ("sequencer2d_s", {"layers": [1, 1, 1, 1]}, "lstm", 224),  # bidirectional LSTMs
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
    stock_sdpa = F.scaled_dot_product_attention

    def sdpa(q, k, v, *args, **kwargs):
        heads_images = q.numel() // (q.shape[-2] * q.shape[-1])
        found["sdpa"] += heads_images * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
        return stock_sdpa(q, k, v, *args, **kwargs)

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
