"""PaCa-ViT: the 13 published variants, identical to the authors' model (docs/paca-vit.md)."""

from __future__ import annotations

import math

import pytest
import timm
import torch

from pacabench.models import create_model
from pacabench.models.paca_vit import (
    MODEL_NAMES,
    BlurConv2d,
    PaCaLayer,
    PaCaTeacher,
    PaCaViT,
)
from tests.conftest import one_per_family

TINY = "pacavit_tiny_p2cconv_100_0"

# name: (params M, FLOPs@224 G (fvcore, eval, authors' code)) -- docs/paca-vit.md
DOC = {
    "pacavit_tiny_p2cconv_100_0": (12.201, 3.237),
    "pacavit_small_p2cconv_100_0": (22.038, 5.529),
    "pacavit_base_p2cconv_100_0": (46.911, 9.574),
    "pacavit_small_p2cmlp_100_0": (22.637, 5.891),
    "pacavit_small_p2cconv_2_0": (21.978, 4.666),
    "pacavit_small_p2cconv_49_0": (22.007, 5.080),
    "pacavit_small_p2cconv_49_100": (22.228, 5.301),
    "pacavit_small_p2cconv_100_49": (22.211, 5.364),
    "pacavit_small_p2cconv_100": (22.245, 5.596),
    "pacavit_small_p2cconv_100_blockwise": (24.192, 6.131),
    "pacavit_convmixer_tiny_100": (12.484, 3.375),
    "pacavit_convmixer_small_100": (21.075, 5.442),
    "pacavit_convmixer_base_100": (47.659, 9.733),
}
STATE_DICT_SIZES = {TINY: 239, "pacavit_small_p2cconv_100_0": 417, "pacavit_base_p2cconv_100_0": 577}


def _small_input(h=64, w=64, b=1):
    return torch.randn(b, 3, h, w)


# ------------------------------------------------------------------------------ registry, cfgs


def test_model_names_are_the_13_published():
    assert sorted(MODEL_NAMES) == sorted(DOC)


def test_timm_finds_every_name():
    listed = set(timm.list_models("pacavit_*"))
    assert set(MODEL_NAMES) <= listed
    for name in MODEL_NAMES:
        assert timm.is_model(name)


def test_pretrained_true_is_a_clear_error():
    with pytest.raises(RuntimeError, match="checkpoint"):
        timm.create_model(TINY, pretrained=True)


def test_pretrained_cfg_resolves_with_timm():
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, resolve_data_config

    model = timm.create_model(TINY)
    cfg = resolve_data_config({}, model=model)
    assert cfg["input_size"] == (3, 224, 224)
    assert cfg["crop_pct"] == 0.9
    assert cfg["interpolation"] == "bicubic"
    assert tuple(cfg["mean"]) == IMAGENET_DEFAULT_MEAN and tuple(cfg["std"]) == IMAGENET_DEFAULT_STD
    assert model.pretrained_cfg["first_conv"] == "patch_embed.proj.0"
    assert model.pretrained_cfg["classifier"] == "head"


# ------------------------------------------------------------------------------ params, FLOPs


def _teacher_same_padded_dw_macs(model: PaCaViT, hw: tuple[int, int]) -> int:
    """MACs of the teacher's 7×7 'same'-padded depthwise convs.

    The authors wrote them with ``padding="same"``, which traces as ``aten::_convolution_mode``:
    fvcore has no handle for that op, so their published FLOPs leave these convs out. Our
    convs use numeric padding (same function) and are counted.
    """
    teacher = model.paca_teacher
    if teacher is None:
        return 0
    h, w = math.ceil(hw[0] / 4), math.ceil(hw[1] / 4)
    total = 0
    for s in range(teacher.num_stages):
        units = list(getattr(teacher, f"block{s + 1}"))
        if hasattr(teacher, f"fpn{s + 1}"):
            units.append(getattr(teacher, f"fpn{s + 1}"))
        for unit in units:
            dw = unit[0].fn[0]
            total += h * w * dw.out_channels * dw.kernel_size[0] * dw.kernel_size[1]
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return total


# default tier: PaCa-T and the tiny teacher variant (the convs the authors' count missed)
@pytest.mark.parametrize("name", one_per_family(MODEL_NAMES, also=("pacavit_convmixer_tiny_100",)))
def test_params_and_flops_at_224_match_doc_table(name, flops_of):
    model = timm.create_model(name)
    params = sum(p.numel() for p in model.parameters())
    assert f"{params / 1e6:.3f}" == f"{DOC[name][0]:.3f}"
    if name in STATE_DICT_SIZES:
        assert len(model.state_dict()) == STATE_DICT_SIZES[name]

    rec = flops_of(name, 224)  # count_flops of the same model, traced once per session
    assert rec.by_operator.get("scaled_dot_product_attention", 0) > 0  # attention is counted
    doc = DOC[name][1]
    # our count minus what the authors' fvcore run could not see (teacher variants only)
    comparable = rec.gflops - _teacher_same_padded_dw_macs(model, (224, 224)) / 1e9
    assert abs(comparable - doc) / doc < 0.01, (name, rec.gflops, comparable, doc)
    if model.paca_teacher is None:
        assert abs(rec.gflops - doc) / doc < 0.001, (name, rec.gflops, doc)
    else:  # the full count is higher by exactly those convs (+0.9 % to +2.3 %)
        assert rec.gflops > doc


# ------------------------------------------------------------------------------ structure


@pytest.mark.parametrize(
    "name, expect",
    [
        # stage-wise: block 0 of the stages with M > 0
        (TINY, {1: [0], 2: [0], 3: [0], 4: []}),
        ("pacavit_small_p2cconv_100", {1: [0], 2: [0], 3: [0], 4: [0]}),
        (
            "pacavit_small_p2cconv_100_blockwise",
            {1: [0, 1, 2], 2: [0, 1, 2], 3: list(range(10)), 4: [0, 1, 2]},
        ),
        ("pacavit_convmixer_tiny_100", {1: [], 2: [], 3: [], 4: []}),
    ],
)
def test_clustering_ownership(name, expect):
    model = timm.create_model(name)
    owners = {s: [] for s in range(1, 5)}
    for s, j, layer in model.paca_layers():
        has = hasattr(layer, "clustering")
        assert has == layer.onsite_clustering
        if has:
            owners[s].append(j)
        # every block of a stage with M > 0 normalises its clusters; M = 0 stages have neither
        assert hasattr(layer, "cluster_norm") == (model.clusters[s - 1] > 0)
    assert owners == expect
    keys = model.state_dict().keys()
    assert any(".attn.clustering.clustering." in k for k in keys) == any(expect.values())
    assert any(k.startswith("paca_teacher.") for k in keys) == ("convmixer" in name)


def test_key_names_and_shapes():
    sd = timm.create_model(TINY).state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["patch_embed.proj.0.weight"] == (48, 3, 3, 3)
    assert shapes["patch_embed.proj.1.weight"] == (96, 48, 3, 3)
    assert shapes["patch_embed.norm.weight"] == (96,)
    assert shapes["transition1.proj.weight"] == (192, 96, 3, 3)
    assert shapes["transition3.norm.bias"] == (384,)
    assert shapes["stage1.0.attn.clustering.clustering.0.weight"] == (96, 1, 7, 7)
    assert shapes["stage1.0.attn.clustering.clustering.2.weight"] == (96, 96, 1, 1)
    assert shapes["stage1.0.attn.clustering.clustering.4.weight"] == (100, 96, 1, 1)
    assert "stage1.0.attn.clustering.clustering.4.bias" not in shapes
    assert shapes["stage1.1.attn.cluster_norm.weight"] == (96,)
    assert "stage1.1.attn.clustering.clustering.0.weight" not in shapes
    assert "stage4.0.attn.cluster_norm.weight" not in shapes
    for n in ("q", "k", "v", "proj"):
        assert shapes[f"stage3.2.attn.{n}.weight"] == (320, 320)
        assert shapes[f"stage3.2.attn.{n}.bias"] == (320,)
    assert shapes["stage2.1.norm1_before.weight"] == (192,)
    assert shapes["stage2.1.norm2_before.weight"] == (192,)
    assert shapes["stage2.1.mlp.fc1.weight"] == (768, 192)
    assert shapes["stage2.1.mlp.dwconv.dwconv.weight"] == (768, 1, 3, 3)
    assert shapes["stage2.1.mlp.fc2.weight"] == (192, 768)
    assert shapes["norm4.weight"] == (384,)
    assert shapes["head.weight"] == (1000, 384)

    mlp = timm.create_model("pacavit_small_p2cmlp_100_0").state_dict()
    assert tuple(mlp["stage1.0.attn.clustering.clustering.0.weight"].shape) == (384, 96)
    assert tuple(mlp["stage1.0.attn.clustering.clustering.2.weight"].shape) == (100, 384)
    assert tuple(mlp["stage1.0.attn.clustering.clustering.2.bias"].shape) == (100,)


def test_layer_norm_eps_and_exact_gelu():
    model = timm.create_model(TINY)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.eps == 1e-6 for m in norms)
    gelus = [m for m in model.modules() if isinstance(m, torch.nn.GELU)]
    assert gelus and all(m.approximate == "none" for m in gelus)


# ------------------------------------------------------------------------------ shapes


def test_classification_and_feature_shapes_at_224():
    model = create_model(TINY)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert model(x).shape == (1, 1000)
    feats_model = create_model(TINY, features_only=True)
    with torch.no_grad():
        feats = feats_model(x)
    assert [tuple(f.shape) for f in feats] == [
        (1, 96, 56, 56),
        (1, 192, 28, 28),
        (1, 320, 14, 14),
        (1, 384, 7, 7),
    ]
    assert [i["reduction"] for i in feats_model.feature_info] == [4, 8, 16, 32]
    assert [i["num_chs"] for i in feats_model.feature_info] == [96, 192, 320, 384]


@pytest.mark.parametrize("name", [TINY, "pacavit_convmixer_tiny_100"])
def test_feature_shapes_non_square(name):
    model = create_model(name, features_only=True, img_size=(224, 320))
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 224, 320))
    assert [tuple(f.shape) for f in feats] == [
        (1, 96, 56, 80),
        (1, 192, 28, 40),
        (1, 320, 14, 20),
        (1, 384, 7, 10),
    ]


def test_odd_sizes_work():
    model = create_model(TINY)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 70, 50)).shape == (1, 1000)


# ------------------------------------------------------------------------------ fast vs explicit


# default tier: PaCa-T; the variants' layers are checked one by one in the next test
@pytest.mark.parametrize(
    "name",
    one_per_family(
        [
            TINY,
            "pacavit_small_p2cmlp_100_0",
            "pacavit_small_p2cconv_100_blockwise",
            "pacavit_convmixer_tiny_100",
        ]
    ),
)
def test_fast_path_equals_explicit_reference(name):
    model = timm.create_model(name).eval()
    x = _small_input(64, 96, b=2)
    with torch.no_grad():
        fast = model(x)
        model.set_attn_impl("explicit")
        ref = model(x)
        model.set_attn_impl("sdpa")
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)


def test_layer_fast_equals_explicit_with_random_weights():
    torch.manual_seed(1)
    for clusters, ctype in ((100, "conv"), (7, "mlp"), (0, "conv")):
        layer = PaCaLayer(64, 4, num_clusters=clusters, clustering_type=ctype).eval()
        for p in layer.parameters():
            torch.nn.init.normal_(p, std=0.2)
        x = torch.randn(2, 12 * 10, 64)
        with torch.no_grad():
            a, za = layer(x, 12, 10)
            layer.attn_impl = "explicit"
            b, zb = layer(x, 12, 10)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        if clusters:
            torch.testing.assert_close(za, zb)
            assert za.shape == (2, clusters, 120)
            torch.testing.assert_close(za.sum(-1), torch.ones(2, clusters))  # softmax over N


def test_forward_with_maps_shapes_and_restores_impl():
    model = timm.create_model(TINY).eval()
    x = _small_input(64, 96)
    with torch.no_grad():
        ref = model(x)
    out, maps = model.forward_with_maps(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert len(maps) == sum(model.depths)
    by_stage = {(m["stage"], m["block"]): m for m in maps}
    m = by_stage[(1, 0)]
    assert m["hw"] == (16, 24)
    assert m["attn"].shape == (1, 2, 16 * 24, 100)
    assert m["z"].shape == (1, 100, 16 * 24)
    torch.testing.assert_close(m["attn"].sum(-1), torch.ones(1, 2, 16 * 24))  # softmax over M
    # stage-wise: block 1 reuses block 0's assignment
    assert torch.equal(by_stage[(1, 1)]["z"], m["z"])
    m4 = by_stage[(4, 0)]  # M = 0: plain MHSA over the 2×3 tokens
    assert m4["z"] is None and m4["attn"].shape == (1, 16, 6, 6)
    assert all(layer.attn_impl == "sdpa" and not layer.keep_maps for _, _, layer in model.paca_layers())


def test_channels_last_and_bf16_autocast():
    model = timm.create_model(TINY).eval()
    x = _small_input(64, 64)
    with torch.no_grad():
        ref = model(x)
        cl = model(x.contiguous(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    torch.testing.assert_close(cl, ref, atol=1e-5, rtol=1e-5)
    assert low.shape == ref.shape and torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() < 0.05 * ref.abs().max() + 0.05


def test_fast_layers_equal_their_plain_module_formulation():
    """Our matmul/channels_last formulations compute what the keyed modules compute plainly."""
    from pacabench.models.paca_vit import Mlp, P2CConv2d, P2CMlp

    torch.manual_seed(2)
    B, h, w, C, M = 2, 5, 7, 16, 6
    x = torch.randn(B, h * w, C)
    as_map = x.transpose(1, 2).reshape(B, C, h, w).contiguous()  # B (H W) C -> B C H W
    conv = P2CConv2d(C, M).eval()
    for p in conv.parameters():
        torch.nn.init.normal_(p, std=0.3)
    mlpc = P2CMlp(C, M).eval()
    mlp = Mlp(C, 4 * C).eval()
    for p in mlp.parameters():
        torch.nn.init.normal_(p, std=0.3)
    with torch.no_grad():
        ref = conv.clustering(as_map).flatten(2)  # the Sequential applied to the NCHW map
        torch.testing.assert_close(conv(x, h, w), ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mlpc(x, h, w), mlpc.clustering(x).transpose(1, 2), atol=1e-5, rtol=1e-5)
        hid = mlp.fc1(x)
        dw = (
            mlp.dwconv.dwconv(hid.transpose(1, 2).reshape(B, 4 * C, h, w).contiguous())
            .flatten(2)
            .transpose(1, 2)
        )
        ref = mlp.fc2(torch.nn.functional.gelu(hid + dw))
        torch.testing.assert_close(mlp(x, h, w), ref, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ hand-computed layer


def _gelu(v: float) -> float:
    return 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))


def _softmax(vals: list[float]) -> list[float]:
    mx = max(vals)
    e = [math.exp(v - mx) for v in vals]
    s = sum(e)
    return [v / s for v in e]


def _layer_norm(vec: list[float], weight: list[float], bias: list[float], eps: float = 1e-6) -> list[float]:
    mu = sum(vec) / len(vec)
    var = sum((v - mu) ** 2 for v in vec) / len(vec)
    return [(v - mu) / math.sqrt(var + eps) * g + b for v, g, b in zip(vec, weight, bias, strict=True)]


def _matvec(W: list[list[float]], x: list[float], b: list[float]) -> list[float]:
    return [sum(wij * xj for wij, xj in zip(row, x, strict=True)) + bi for row, bi in zip(W, b, strict=True)]


def test_hand_built_paca_layer_matches_hand_computation():
    """C=2, 1 head, N=3 tokens (a 1×3 grid), M=2 clusters, MLP clustering with hidden 2."""
    layer = PaCaLayer(2, 1, num_clusters=2, clustering_type="mlp", mlp_ratio=1.0).eval()
    W1, b1 = [[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0]
    W2, b2 = [[1.0, 0.5], [-1.0, 2.0]], [0.1, -0.2]
    g, beta = [1.0, 2.0], [0.5, -0.5]
    Wq, bq = [[1.0, 0.0], [0.0, 1.0]], [0.0, 0.1]
    Wk, bk = [[0.5, 0.0], [0.0, 0.5]], [0.0, 0.0]
    Wv, bv = [[0.0, 1.0], [1.0, 0.0]], [0.2, 0.0]
    Wp, bp = [[1.0, 0.0], [0.0, 1.0]], [0.0, -0.3]
    fc1, fc2 = layer.clustering.clustering[0], layer.clustering.clustering[2]
    with torch.no_grad():
        for mod, W, b in (
            (fc1, W1, b1),
            (fc2, W2, b2),
            (layer.q, Wq, bq),
            (layer.k, Wk, bk),
            (layer.v, Wv, bv),
            (layer.proj, Wp, bp),
        ):
            mod.weight.copy_(torch.tensor(W))
            mod.bias.copy_(torch.tensor(b))
        layer.cluster_norm.weight.copy_(torch.tensor(g))
        layer.cluster_norm.bias.copy_(torch.tensor(beta))
    X = [[0.5, -1.0], [2.0, 0.3], [-0.7, 1.2]]  # N×C

    # 1. logits per token (N×M), z = softmax over the N tokens for every cluster (M×N)
    logits = [_matvec(W2, [_gelu(v) for v in _matvec(W1, x, b1)], b2) for x in X]
    z = [_softmax([logits[n][m] for n in range(3)]) for m in range(2)]
    # 2. clusters c_m = sum_n z[m][n] x_n, then LayerNorm
    c = [[sum(z[m][n] * X[n][ch] for n in range(3)) for ch in range(2)] for m in range(2)]
    c = [_layer_norm(cm, g, beta) for cm in c]
    # 3. attention of every token to the 2 clusters: softmax over M of q·k / sqrt(d), d = 2
    q = [_matvec(Wq, x, bq) for x in X]
    k = [_matvec(Wk, cm, bk) for cm in c]
    v = [_matvec(Wv, cm, bv) for cm in c]
    expected = []
    for n in range(3):
        a = _softmax(
            [sum(qi * ki for qi, ki in zip(q[n], k[m], strict=True)) / math.sqrt(2.0) for m in range(2)]
        )
        o = [sum(a[m] * v[m][ch] for m in range(2)) for ch in range(2)]
        expected.append(_matvec(Wp, o, bp))

    x = torch.tensor([X])
    for impl in ("sdpa", "explicit"):
        layer.attn_impl = impl
        with torch.no_grad():
            out, zz = layer(x, 1, 3)
        assert out.shape == (1, 3, 2) and zz.shape == (1, 2, 3)
        torch.testing.assert_close(zz, torch.tensor([z]), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(out, torch.tensor([expected]), atol=1e-6, rtol=1e-6)


def test_layer_without_own_clustering_uses_given_z():
    layer = PaCaLayer(8, 2, num_clusters=3, onsite_clustering=False).eval()
    assert not hasattr(layer, "clustering")
    x = torch.randn(1, 6, 8)
    z = torch.softmax(torch.randn(1, 3, 6), dim=-1)
    with torch.no_grad():
        out, z_out = layer(x, 2, 3, z)
    assert z_out is z and out.shape == x.shape
    with pytest.raises(RuntimeError, match="assignment"):
        layer(x, 2, 3, None)


# ------------------------------------------------------------------------------ teacher


def test_teacher_blur_buffer():
    blur = BlurConv2d(4, 8)
    assert "blur_filter" in dict(blur.named_buffers())
    assert "blur_filter" in blur.state_dict()  # persistent
    f = torch.tensor([1.0, 2.0, 1.0])
    expected = (f[:, None] * f[None, :] / 16).expand(4, 1, 3, 3)
    torch.testing.assert_close(blur.blur_filter, expected)
    assert not any(p is blur.blur_filter for p in blur.parameters())
    # the blur alone: a constant map stays constant inside (zero padding at the border)
    x = torch.ones(1, 4, 6, 6)
    y = torch.nn.functional.conv2d(x, blur.blur_filter, padding=1, groups=4)
    torch.testing.assert_close(y[..., 1:-1, 1:-1], torch.ones(1, 4, 4, 4))
    assert abs(float(y[0, 0, 0, 0]) - 9 / 16) < 1e-6
    assert blur(torch.randn(2, 4, 10, 14)).shape == (2, 8, 5, 7)

    sd = timm.create_model("pacavit_convmixer_tiny_100").state_dict()
    assert tuple(sd["paca_teacher.transition1.0.blur_filter"].shape) == (96, 1, 3, 3)
    assert tuple(sd["paca_teacher.transition3.0.blur_filter"].shape) == (320, 1, 3, 3)
    assert tuple(sd["paca_teacher.transition2.0.conv.weight"].shape) == (320, 192, 3, 3)
    for key in (
        "block1.0.0.fn.0.weight",
        "block1.0.0.fn.2.running_var",
        "block1.1.1.weight",
        "block4.1.3.bias",
        "lateral1.0.weight",
        "lateral3.2.weight",
        "fpn2.0.fn.0.weight",
        "fpn3.3.bias",
        "to_clusters4.weight",
        "to_clusters4.bias",
        "transition2.2.running_mean",
    ):
        assert f"paca_teacher.{key}" in sd, key


def test_teacher_shapes():
    teacher = PaCaTeacher((8, 16, 24, 32), (1, 1, 1, 1), (5, 6, 7, 0)).eval()
    assert not hasattr(teacher, "to_clusters4")
    with torch.no_grad():
        outs, zs = teacher(torch.randn(2, 8, 13, 18))
    assert [tuple(o.shape) for o in outs] == [(2, 8, 13, 18), (2, 16, 7, 9), (2, 24, 4, 5), (2, 32, 2, 3)]
    assert [None if z is None else tuple(z.shape) for z in zs] == [(2, 5, 234), (2, 6, 63), (2, 7, 20), None]
    for z in zs[:3]:
        torch.testing.assert_close(z.sum(-1), torch.ones(z.shape[:2]))


# ------------------------------------------------------------------------------ checkpoints


def test_checkpoint_round_trip(tmp_path):
    model = timm.create_model(TINY).eval()
    path = tmp_path / "IMNET_224_tiny.pth"
    # the authors' files may be wrapped and DDP-prefixed
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    loaded = create_model(TINY, checkpoint=str(path))
    report = loaded.pacabench_load_report
    assert not report.missing and not report.unexpected and not report.mismatched and not report.skipped
    x = _small_input(64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_teacher_checkpoint_round_trip(tmp_path):
    model = timm.create_model("pacavit_convmixer_tiny_100").eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "teacher.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    loaded = create_model("pacavit_convmixer_tiny_100", checkpoint=str(path))
    x = _small_input(64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_100_cluster_checkpoint_into_200_cluster_features_model(tmp_path, capsys):
    src = timm.create_model(TINY).eval()
    path = tmp_path / "IMNET_224_pacavit_tiny_p2cconv_100_0.pth"
    torch.save(src.state_dict(), path)
    model = create_model(TINY, features_only=True, clusters=[200, 200, 200, 0], checkpoint=str(path))
    report = model.pacabench_load_report
    assert sorted(k for k, _, _ in report.mismatched) == [
        f"stage{s}.0.attn.clustering.clustering.4.weight" for s in (1, 2, 3)
    ]
    assert {k: (a, b) for k, a, b in report.mismatched}["stage2.0.attn.clustering.clustering.4.weight"] == (
        (100, 192, 1, 1),
        (200, 192, 1, 1),
    )
    assert sorted(report.skipped) == ["head.bias", "head.weight"]
    assert report.missing == [] and report.unexpected == []
    assert len(report.loaded) == len(src.state_dict()) - 5
    assert "kept fresh init" in capsys.readouterr().err
    sd = model.state_dict()
    assert torch.equal(
        sd["stage1.0.attn.clustering.clustering.2.weight"],
        src.state_dict()["stage1.0.attn.clustering.clustering.2.weight"],
    )
    assert sd["stage1.0.attn.clustering.clustering.4.weight"].shape[0] == 200
    with torch.no_grad():
        feats = model(_small_input(64, 64))
    assert [f.shape[1] for f in feats] == [96, 192, 320, 384]


def test_cluster_override_to_zero_skips_that_stages_clustering(tmp_path):
    src = timm.create_model("pacavit_small_p2cconv_100")
    path = tmp_path / "small_100.pth"
    torch.save(src.state_dict(), path)
    model = create_model(
        "pacavit_small_p2cconv_100", features_only=True, clusters=[100, 100, 100, 0], checkpoint=str(path)
    )
    report = model.pacabench_load_report
    assert not report.mismatched and not report.unexpected and not report.missing
    assert {k for k in report.skipped if not k.startswith("head.")} == {
        k
        for k in src.state_dict()
        if k.startswith("stage4.0.attn.clustering.") or ".attn.cluster_norm." in k and k.startswith("stage4.")
    }


def test_wrong_checkpoint_is_a_clear_error(tmp_path):
    from pacabench.models import CheckpointError

    path = tmp_path / "small.pth"
    torch.save(timm.create_model("pacavit_small_p2cconv_2_0").state_dict(), path)
    with pytest.raises(CheckpointError, match="clustering.4.weight"):
        create_model(TINY, checkpoint=str(path))


def test_clusters_kwarg_validation():
    with pytest.raises(ValueError, match="clusters"):
        timm.create_model(TINY, clusters=[100, 100])
    model = timm.create_model(TINY, clusters=[10, 20, 30, 40], drop_path_rate=0.0, num_classes=7)
    assert model.clusters == (10, 20, 30, 40)
    assert model.head.out_features == 7
    assert hasattr(model.stage4[0].attn, "clustering") and not hasattr(model.stage4[1].attn, "clustering")
