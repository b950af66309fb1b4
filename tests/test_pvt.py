"""PVT v1 (pacabench/models/pvt.py) against shared/docs/pvt-v1.md.

Expected numbers, key names and the reference computations below are written from the doc,
independently of the model code: a functional forward straight from the state_dict (explicit
softmax attention, the authors' position-embedding rule), and a pure-Python attention layer.
"""

from __future__ import annotations

import functools
import math

import pytest
import timm
import torch
import torch.nn.functional as F

import pacabench.models as pm
from pacabench.models import pvt
from tests.conftest import one_per_family

NAMES = ["pvt_tiny", "pvt_small", "pvt_medium", "pvt_large"]
DEPTHS = {
    "pvt_tiny": (2, 2, 2, 2),
    "pvt_small": (3, 4, 6, 3),
    "pvt_medium": (3, 4, 18, 3),
    "pvt_large": (3, 8, 27, 3),
}
PARAMS = {"pvt_tiny": 13_229_288, "pvt_small": 24_485_864, "pvt_medium": 44_208_104, "pvt_large": 61_369_320}
GFLOPS = {"pvt_tiny": 1.944, "pvt_small": 3.834, "pvt_medium": 6.686, "pvt_large": 9.851}
KEY_COUNTS = {"pvt_tiny": 161, "pvt_small": 301, "pvt_medium": 517, "pvt_large": 751}
DIMS = (64, 128, 320, 512)
HEADS = (1, 2, 5, 8)
SR = (8, 4, 2, 1)
GRIDS = (56, 28, 14, 7)  # the 224 grid of each stage


@functools.cache
def _model(name: str) -> torch.nn.Module:
    return timm.create_model(name).eval()


def _randomized(name: str = "pvt_tiny", seed: int = 0, **kwargs) -> torch.nn.Module:
    """A float64 model whose every parameter (biases, LayerNorm affine, pos embeds) is perturbed,
    so that no term hides behind a zero/one init."""
    torch.manual_seed(seed)
    m = pm.create_model(name, **kwargs).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return m.eval()


def _expected_keys(depths: tuple[int, ...]) -> set[str]:
    """The doc's key pattern."""
    keys = {f"pos_embed{i}" for i in range(1, 5)} | {"cls_token"}
    for i in range(1, 5):
        for m in ("proj", "norm"):
            keys |= {f"patch_embed{i}.{m}.weight", f"patch_embed{i}.{m}.bias"}
        mods = ["norm1", "attn.q", "attn.kv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]
        if i < 4:
            mods += ["attn.sr", "attn.norm"]
        for j in range(depths[i - 1]):
            for m in mods:
                keys |= {f"block{i}.{j}.{m}.weight", f"block{i}.{j}.{m}.bias"}
    return keys | {"norm.weight", "norm.bias", "head.weight", "head.bias"}


# ---- a functional PVT v1 written from the doc ----------------------------------------------
def _ref_attention(x, sd, p, heads, sr, H, W):
    B, N, C = x.shape
    d = C // heads
    q = F.linear(x, sd[p + "q.weight"], sd[p + "q.bias"]).reshape(B, N, heads, d).permute(0, 2, 1, 3)
    y = x
    if sr > 1:
        y = F.conv2d(x.transpose(1, 2).reshape(B, C, H, W), sd[p + "sr.weight"], sd[p + "sr.bias"], stride=sr)
        y = y.flatten(2).transpose(1, 2)
        y = F.layer_norm(y, (C,), sd[p + "norm.weight"], sd[p + "norm.bias"], eps=1e-5)
    kv = F.linear(y, sd[p + "kv.weight"], sd[p + "kv.bias"])
    k = kv[..., :C].reshape(B, -1, heads, d).permute(0, 2, 1, 3)  # first C channels: K
    v = kv[..., C:].reshape(B, -1, heads, d).permute(0, 2, 1, 3)  # last C: V
    a = ((q @ k.transpose(-2, -1)) * d**-0.5).softmax(-1)
    o = (a @ v).transpose(1, 2).reshape(B, N, C)
    return F.linear(o, sd[p + "proj.weight"], sd[p + "proj.bias"])


def _ref_forward(sd, x, depths, classifier=True):
    """The authors' model, functionally: their pos-embed rule (resize every stage iff the
    stage-1 token count differs from 56²) — valid at 224 and 256×320. ``classifier=False``:
    their dense-prediction backbone (no cls token, no final norm; the four maps)."""
    B = x.shape[0]
    maps = []
    for s in range(4):
        pe = f"patch_embed{s + 1}."
        x = F.conv2d(x, sd[pe + "proj.weight"], sd[pe + "proj.bias"], stride=4 if s == 0 else 2)
        H, W = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        x = F.layer_norm(x, (DIMS[s],), sd[pe + "norm.weight"], sd[pe + "norm.bias"], eps=1e-5)
        pos = sd[f"pos_embed{s + 1}"]
        cls_pos = None
        if s == 3:
            cls_pos, pos = pos[:, :1], pos[:, 1:]
        if H * W != 56 * 56:
            g = GRIDS[s]
            pos = pos.reshape(1, g, g, -1).permute(0, 3, 1, 2)
            pos = F.interpolate(pos, size=(H, W), mode="bilinear", align_corners=False)
            pos = pos.reshape(1, -1, H * W).permute(0, 2, 1)
        if s == 3 and classifier:
            x = torch.cat((sd["cls_token"].expand(B, -1, -1), x), dim=1)
            pos = torch.cat((cls_pos, pos), dim=1)
        x = x + pos
        for j in range(depths[s]):
            b = f"block{s + 1}.{j}."
            y = F.layer_norm(x, (DIMS[s],), sd[b + "norm1.weight"], sd[b + "norm1.bias"], eps=1e-6)
            x = x + _ref_attention(y, sd, b + "attn.", HEADS[s], SR[s], H, W)
            y = F.layer_norm(x, (DIMS[s],), sd[b + "norm2.weight"], sd[b + "norm2.bias"], eps=1e-6)
            y = F.linear(y, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"])
            x = x + F.linear(F.gelu(y), sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
        if s < 3 or not classifier:
            x_map = x.reshape(B, H, W, -1).permute(0, 3, 1, 2)
            maps.append(x_map)
            if s < 3:
                x = x_map
    if not classifier:
        return maps
    x = F.layer_norm(x, (DIMS[3],), sd["norm.weight"], sd["norm.bias"], eps=1e-6)
    return F.linear(x[:, 0], sd["head.weight"], sd["head.bias"])


# ---- registration, configs ----------------------------------------------------------------
def test_registered_with_timm_and_pacabench():
    for n in NAMES:
        assert timm.is_model(n)
        assert n in pm.model_names() and pm.get_spec(n).family == "pvt_v1"
    assert set(pvt.MODEL_NAMES) == set(NAMES)
    assert isinstance(timm.create_model("pvt_tiny", pretrained=False), pvt.PyramidVisionTransformer)
    # no collision with timm's own PVT names: PVTv2 is still timm's
    assert timm.models.get_pretrained_cfg("pvt_v2_b0").architecture == "pvt_v2_b0"
    assert sorted(n for n in timm.list_models("pvt*") if not n.startswith("pvt_v2")) == sorted(NAMES)


def test_pretrained_cfg_and_data_config():
    m = _model("pvt_tiny")
    cfg = timm.data.resolve_data_config({}, model=m)
    assert cfg["input_size"] == (3, 224, 224)
    assert cfg["crop_pct"] == 0.875 and cfg["interpolation"] == "bicubic"
    assert cfg["mean"] == timm.data.IMAGENET_DEFAULT_MEAN and cfg["std"] == timm.data.IMAGENET_DEFAULT_STD
    assert m.pretrained_cfg["first_conv"] == "patch_embed1.proj" and m.pretrained_cfg["classifier"] == "head"
    assert timm.models.get_pretrained_cfg("pvt_large").crop_pct == 0.875


def test_pretrained_true_is_refused():
    with pytest.raises(RuntimeError, match="checkpoint="):
        timm.create_model("pvt_tiny", pretrained=True)


# ---- params, keys, FLOPs ------------------------------------------------------------------
@pytest.mark.parametrize("name", one_per_family(NAMES))
def test_params_and_keys_match_doc(name):
    m = _model(name)
    assert sum(p.numel() for p in m.parameters()) == PARAMS[name]
    sd = m.state_dict()
    assert len(sd) == KEY_COUNTS[name]
    assert set(sd) == _expected_keys(DEPTHS[name])
    assert [t.shape for t in (sd["pos_embed1"], sd["pos_embed2"], sd["pos_embed3"], sd["pos_embed4"])] == [
        (1, 3136, 64),
        (1, 784, 128),
        (1, 196, 320),
        (1, 50, 512),
    ]
    assert sd["cls_token"].shape == (1, 1, 512) and sd["head.weight"].shape == (1000, 512)
    assert list(m.buffers()) == []


@pytest.mark.parametrize("name", one_per_family(NAMES))
def test_flops_at_224_match_doc(name, flops_of):
    rec = flops_of(name, 224)  # count_flops(_model(name), (224, 224)), traced once per session
    assert abs(rec.gflops - GFLOPS[name]) / GFLOPS[name] < 0.01, rec.gflops
    assert any("scaled_dot_product_attention" in k for k in rec.by_operator)


def test_layernorm_eps_and_gelu():
    m = _model("pvt_tiny")
    for i in range(1, 5):
        assert getattr(m, f"patch_embed{i}").norm.eps == 1e-5
        for blk in getattr(m, f"block{i}"):
            assert blk.norm1.eps == 1e-6 and blk.norm2.eps == 1e-6
            assert blk.mlp.act.approximate == "none"
            assert (hasattr(blk.attn, "norm") and blk.attn.norm.eps == 1e-5) == (i < 4)
            assert blk.attn.scale == 64**-0.5
    assert m.norm.eps == 1e-6


# ---- attention by hand --------------------------------------------------------------------
def test_attention_closed_form():
    """C=2, 1 head, sr 1: tokens e1, e2; q = x; K = 2x (first C rows of kv); V = [[1,2],[3,4]] x
    (last C rows); proj = I + [0.5, -0.5]. Scores differ by 2·2^-0.5 = √2, so
    p = sigmoid(√2) and out1 = (2-p, 4-p), out2 = (1+p, 3+p), plus the proj bias."""
    attn = pvt.Attention(2, num_heads=1, qkv_bias=True, sr_ratio=1).double()
    with torch.no_grad():
        attn.q.weight.copy_(torch.eye(2))
        attn.q.bias.zero_()
        attn.kv.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 2.0], [3.0, 4.0]]))
        attn.kv.bias.zero_()
        attn.proj.weight.copy_(torch.eye(2))
        attn.proj.bias.copy_(torch.tensor([0.5, -0.5]))
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    out = attn(x, (1, 2))
    p = 1.0 / (1.0 + math.exp(-math.sqrt(2.0)))
    expected = torch.tensor([[[2 - p + 0.5, 4 - p - 0.5], [1 + p + 0.5, 3 + p - 0.5]]], dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def _py_attention(tokens, hw, params, heads, sr, eps=1e-5):
    """Spatial-reduction attention in plain Python, from the doc."""
    C = len(tokens[0])
    d = C // heads
    scale = d**-0.5

    def lin(name, v):
        W, b = params[name + ".weight"], params[name + ".bias"]
        return [sum(W[o][i] * v[i] for i in range(len(v))) + b[o] for o in range(len(W))]

    q = [lin("q", t) for t in tokens]
    src = tokens
    if sr > 1:
        H, W = hw
        Wsr, bsr = params["sr.weight"], params["sr.bias"]
        gam, bet = params["norm.weight"], params["norm.bias"]
        src = []
        for y in range(H // sr):
            for x in range(W // sr):
                r = []
                for co in range(C):
                    s = bsr[co]
                    for ci in range(C):
                        for ky in range(sr):
                            for kx in range(sr):
                                s += Wsr[co][ci][ky][kx] * tokens[(y * sr + ky) * W + x * sr + kx][ci]
                    r.append(s)
                mu = sum(r) / C
                var = sum((v - mu) ** 2 for v in r) / C
                src.append([(v - mu) / math.sqrt(var + eps) * gam[c] + bet[c] for c, v in enumerate(r)])
    kv = [lin("kv", t) for t in src]
    keys, vals = [r[:C] for r in kv], [r[C:] for r in kv]
    out = []
    for qi in q:
        o = [0.0] * C
        for h in range(heads):
            chans = range(h * d, (h + 1) * d)
            scores = [sum(qi[c] * k[c] for c in chans) * scale for k in keys]
            m = max(scores)
            e = [math.exp(s - m) for s in scores]
            z = sum(e)
            for c in chans:
                o[c] = sum(e[j] / z * vals[j][c] for j in range(len(keys)))
        out.append(lin("proj", o))
    return out


@pytest.mark.parametrize("sr", [1, 2])
def test_attention_matches_plain_python(sr):
    """C=4 with 2 heads (head dim 2): pins the (2, heads, head_dim) layout of kv, the head split,
    the scale, and with sr 2 the reduction conv + LayerNorm(eps 1e-5)."""
    torch.manual_seed(1)
    attn = pvt.Attention(4, num_heads=2, qkv_bias=True, sr_ratio=sr).double().eval()
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn_like(p))
    H = W = 4
    x = torch.randn(1, H * W, 4, dtype=torch.float64)
    params = {k: v.tolist() for k, v in attn.state_dict().items()}
    expected = _py_attention(x[0].tolist(), (H, W), params, heads=2, sr=sr)
    expected = torch.tensor([expected], dtype=torch.float64)
    torch.testing.assert_close(attn(x, (H, W)), expected, rtol=0, atol=1e-10)


# ---- whole model against the functional reference ------------------------------------------
# 256×320 (resized position embeddings) is slow here; the default tier checks the resize itself
# (test_pos_embed_resize_matches_interpolate) and the backbone at 256×320 against the reference
@pytest.mark.parametrize("hw", [(224, 224), pytest.param((256, 320), marks=pytest.mark.slow)])
def test_logits_equal_reference(hw):
    m = _randomized("pvt_tiny")
    sd = m.state_dict()
    torch.manual_seed(2)
    x = torch.randn(1, 3, *hw, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _ref_forward(sd, x, DEPTHS["pvt_tiny"]), rtol=0, atol=1e-9)


def test_features_equal_reference_backbone():
    m = _randomized("pvt_tiny")
    sd = m.state_dict()
    f = pm.create_model("pvt_tiny", features_only=True).double()
    f.load_state_dict({k: v for k, v in sd.items() if not f.checkpoint_ignore(k)})
    torch.manual_seed(3)
    x = torch.randn(1, 3, 256, 320, dtype=torch.float64)
    with torch.no_grad():
        feats = f(x)
        ref = _ref_forward(sd, x, DEPTHS["pvt_tiny"], classifier=False)
    for a, b in zip(feats, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


# ---- resolutions and features ------------------------------------------------------------
@pytest.mark.parametrize("hw", [pytest.param((448, 448), marks=pytest.mark.slow), (256, 320)])
def test_other_resolutions_run(hw):
    h, w = hw
    m = pm.create_model("pvt_tiny", img_size=hw)
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        y = m(x)
        maps = m.stage_maps(x)
    assert y.shape == (1, 1000) and torch.isfinite(y).all()
    shapes = [(1, c, h // s, w // s) for c, s in zip(DIMS, (4, 8, 16, 32), strict=True)]
    assert [tuple(t.shape) for t in maps] == shapes

    f = pm.create_model("pvt_tiny", img_size=hw, features_only=True)
    with torch.no_grad():
        feats = f(x)
    assert [tuple(t.shape) for t in feats] == shapes
    assert f.feature_info.channels() == list(DIMS) and f.feature_info.reduction() == [4, 8, 16, 32]
    assert not hasattr(f, "head") and not hasattr(f, "norm") and f.cls_token is None


def test_pos_embed_resize_matches_interpolate():
    m = _model("pvt_tiny")
    # at the 224 grid: the stored embedding itself, no resize
    for s in range(3):
        assert m.pos_embed_for(s, (GRIDS[s], GRIDS[s])) is getattr(m, f"pos_embed{s + 1}")
    assert torch.equal(m.pos_embed_for(3, (7, 7)), m.pos_embed4)
    # 256×320: each stage resized from its own 224 grid; stage 4 keeps the cls entry in front
    for s, (h, w) in enumerate([(64, 80), (32, 40), (16, 20), (8, 10)]):
        pos = getattr(m, f"pos_embed{s + 1}").detach()
        patch = pos[:, 1:] if s == 3 else pos
        g = GRIDS[s]
        grid = patch.reshape(1, g, g, -1).permute(0, 3, 1, 2)
        r = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
        expected = r.reshape(1, DIMS[s], h * w).permute(0, 2, 1)
        if s == 3:
            expected = torch.cat((pos[:, :1], expected), dim=1)
        assert torch.equal(m.pos_embed_for(s, (h, w)).detach(), expected)


def test_drop_path_rate():
    m = pm.create_model("pvt_tiny", drop_path_rate=0.1)
    assert m.block4[1].drop_path.drop_prob == pytest.approx(0.1)
    assert isinstance(m.block1[0].drop_path, torch.nn.Identity)
    m.train()
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 1000)


# ---- checkpoints ---------------------------------------------------------------------------
def test_checkpoint_round_trip(tmp_path):
    m = _randomized("pvt_tiny").float()
    sd = m.state_dict()
    flat, wrapped = tmp_path / "flat.pth", tmp_path / "wrapped.pth"
    torch.save(sd, flat)
    torch.save({"model": sd, "epoch": 300}, wrapped)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        want = m(x)
        for path in (flat, wrapped):
            got = pm.create_model("pvt_tiny", checkpoint=str(path))
            assert torch.equal(got(x), want)
            assert sorted(got.pacabench_load_report.loaded) == sorted(sd)


def test_features_load_classification_and_dense_checkpoints(tmp_path, capsys):
    m = _randomized("pvt_tiny").float()
    sd = m.state_dict()
    cls_ckpt = tmp_path / "cls.pth"
    torch.save(sd, cls_ckpt)
    f = pm.create_model("pvt_tiny", features_only=True, checkpoint=str(cls_ckpt))
    skipped = sorted(f.pacabench_load_report.skipped)
    assert skipped == ["cls_token", "head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert "ignored" in capsys.readouterr().err

    # a dense-prediction checkpoint: the backbone (no cls token, norm, head) under `backbone.`
    dense = {"backbone." + k: v for k, v in f.state_dict().items()} | {"neck.lateral.weight": torch.zeros(1)}
    dense_ckpt = tmp_path / "dense.pth"
    torch.save({"state_dict": dense}, dense_ckpt)
    g = pm.create_model("pvt_tiny", features_only=True, checkpoint=str(dense_ckpt))
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        for a, b in zip(f(x), g(x), strict=True):
            assert torch.equal(a, b)
