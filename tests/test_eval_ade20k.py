"""ADE20k evaluation and the segmentors (PaCa head, UperNet) on tiny generated data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pacabench.errors import UsageError
from pacabench.eval.ade20k import (
    ADE20K_CLASSES,
    evaluate_ade20k,
    find_ade_samples,
    load_annotation,
    rescale_size,
)
from pacabench.models import CheckpointError, model_names
from pacabench.models.segmentation import (
    PaCaHead,
    UPerHead,
    create_segmentor,
    parse_segmentor_name,
)

BACKBONE = "pvt_v2_b0"
NCLS = 6
SCALE = (128, 48)  # keep-ratio test resize: short side 48 (ADE's 2048x512, shrunk)
SIZES = [(48, 64), (64, 48), (40, 72), (56, 56), (60, 90)]
HAS_PACA = "pacavit_tiny_p2cconv_100_0" in model_names()


def make_ade(root, n=len(SIZES), seed=0, ncls=NCLS):
    rng = np.random.default_rng(seed)
    base = root / "ADEChallengeData2016"
    (base / "images" / "validation").mkdir(parents=True)
    (base / "annotations" / "validation").mkdir(parents=True)
    for j, (h, w) in enumerate(SIZES[:n]):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        # blocky labels 0..ncls (0 = ignored)
        lab = rng.integers(0, ncls + 1, (h // 8 + 1, w // 8 + 1), dtype=np.uint8)
        lab = np.kron(lab, np.ones((8, 8), dtype=np.uint8))[:h, :w]
        Image.fromarray(img).save(base / "images" / "validation" / f"ADE_val_{j:08d}.jpg", quality=95)
        Image.fromarray(lab).save(base / "annotations" / "validation" / f"ADE_val_{j:08d}.png")
    return root


@pytest.fixture(scope="module")
def ade(tmp_path_factory):
    return make_ade(tmp_path_factory.mktemp("ade"))


@pytest.fixture(scope="module")
def seg_ckpt(tmp_path_factory):
    """An mmseg-style checkpoint of a pvt_v2_b0 + UperNet segmentor (with its FCN auxiliary
    head) with random weights (UperNet's spatial convs give predictions that vary over an image;
    a random PaCa head predicts one class everywhere)."""
    torch.manual_seed(3)
    seg = create_segmentor(BACKBONE, "upernet", num_classes=NCLS)
    with torch.no_grad():  # give the BN statistics something other than their init values
        for m in seg.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    sd = {k: v for k, v in seg.state_dict().items()}
    # the timm backbone is wrapped for features; the checkpoint keeps timm's own key names
    from pacabench.models import create_model

    inner = create_model(BACKBONE, num_classes=0)
    inner_sd = inner.state_dict()
    body = seg.backbone.body.state_dict()
    assert len(body) == len(inner_sd)
    bb = {f"backbone.{k}": v for k, v in zip(inner_sd, body.values(), strict=True)}
    full = {**bb, **{k: v for k, v in sd.items() if not k.startswith("backbone.")}}
    path = tmp_path_factory.mktemp("ckpt") / f"upernet_{BACKBONE}_512x512_160k_ade20k.pth"
    torch.save({"meta": {"note": "test"}, "state_dict": full}, path)
    return path, seg


def confusion_metrics(pred_dir, data_root, ncls):
    """mIoU/mAcc/aAcc from the saved PNGs and the annotations, via a confusion matrix."""
    base = data_root / "ADEChallengeData2016" / "annotations" / "validation"
    conf = np.zeros((ncls, ncls), dtype=np.int64)
    for ann in sorted(base.glob("*.png")):
        gt = np.array(Image.open(ann)).astype(np.int64)
        pr = np.array(Image.open(pred_dir / ann.name)).astype(np.int64)
        assert pr.shape == gt.shape
        assert pr.min() >= 1 and pr.max() <= ncls
        m = gt > 0
        np.add.at(conf, (gt[m] - 1, pr[m] - 1), 1)
    inter = np.diag(conf).astype(float)
    gt_area = conf.sum(1).astype(float)
    pr_area = conf.sum(0).astype(float)
    union = gt_area + pr_area - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
        acc = inter / gt_area
    return 100 * np.nanmean(iou), 100 * np.nanmean(acc), 100 * inter.sum() / gt_area.sum(), iou


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_metrics_match_confusion_matrix(ade, seg_ckpt, tmp_path, mode):
    ckpt, _ = seg_ckpt
    preds = tmp_path / "pred"
    per_class = tmp_path / "per_class.csv"
    r = evaluate_ade20k(
        BACKBONE,
        ade,
        head="upernet",
        checkpoint=ckpt,
        mode=mode,
        num_classes=NCLS,
        scale=SCALE,
        crop_size=48,
        stride=32,
        workers=0,
        save_predictions=preds,
        per_class=per_class,
    )
    assert r["num_images"] == len(SIZES) and r["skipped_images"] == 0
    miou, macc, aacc, iou = confusion_metrics(preds, ade, NCLS)
    assert len(set(np.concatenate([np.unique(np.array(Image.open(p))) for p in preds.glob("*.png")]))) > 1
    assert r["miou"] == pytest.approx(miou, abs=1e-9)
    assert r["macc"] == pytest.approx(macc, abs=1e-9)
    assert r["aacc"] == pytest.approx(aacc, abs=1e-9)
    for ours, ref in zip(r["per_class_iou"], iou, strict=True):
        assert (ours is None and math.isnan(ref)) or ours == pytest.approx(ref, abs=1e-12)
    assert len(per_class.read_text().splitlines()) == NCLS + 1


def test_class_absent_everywhere_leaves_the_mean(ade, tmp_path):
    """A 150-class head on data using 6 classes: mIoU averages only classes seen or predicted."""
    preds = tmp_path / "pred"
    r = evaluate_ade20k(
        BACKBONE, ade, head="upernet", scale=SCALE, workers=0, limit=2, save_predictions=preds
    )
    assert len(r["per_class_iou"]) == 150
    present = [i for i, v in enumerate(r["per_class_iou"]) if v is not None]
    assert 0 < len(present) < 150 and r["classes_evaluated"] == len(present)
    vals = [r["per_class_iou"][i] for i in present]
    assert r["miou"] == pytest.approx(100 * sum(vals) / len(vals))
    assert r["class_names"][0] == "wall" and len(ADE20K_CLASSES) == 150


def test_slide_equals_whole_when_one_window(seg_ckpt):
    _, seg = seg_ckpt
    x = torch.randn(1, 3, 40, 56)
    with torch.inference_mode():
        whole = seg.inference(x, "whole")
        slide = seg.inference(x, "slide", crop_size=64, stride=43)
        assert torch.allclose(whole, slide, atol=1e-5)
        multi = seg.inference(x, "slide", crop_size=32, stride=16)
    assert multi.shape == whole.shape == (1, NCLS, 40, 56)


def test_checkpoint_loads_by_mmseg_keys(seg_ckpt, tmp_path):
    ckpt, seg = seg_ckpt
    loaded = create_segmentor(BACKBONE, "upernet", num_classes=NCLS, checkpoint=ckpt)
    rep = loaded.load_report
    assert rep.decode_head_loaded == len(seg.decode_head.state_dict())
    assert rep.backbone_loaded == len(seg.backbone.state_dict()) and rep.auxiliary_head == "loaded"
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(loaded(x), seg(x))
    # an ImageNet checkpoint is not a segmentation checkpoint
    imnet = tmp_path / "imnet.pth"
    from pacabench.models import create_model

    torch.save(create_model(BACKBONE).state_dict(), imnet)
    with pytest.raises(CheckpointError, match="not a segmentation checkpoint"):
        create_segmentor(BACKBONE, "paca", checkpoint=imnet)
    # a decode head of the wrong class count is named
    with pytest.raises(CheckpointError, match="decode_head"):
        create_segmentor(BACKBONE, "upernet", num_classes=150, checkpoint=ckpt)
    with pytest.raises(CheckpointError, match="decode_head"):
        create_segmentor(BACKBONE, "paca", num_classes=NCLS, checkpoint=ckpt)


def test_upernet_checkpoint_with_auxiliary_head(tmp_path):
    torch.manual_seed(0)
    seg = create_segmentor(BACKBONE, "upernet", num_classes=NCLS)
    keys = set(seg.state_dict())
    for k in (
        "decode_head.psp_modules.0.1.conv.weight",
        "decode_head.psp_modules.3.1.bn.running_var",
        "decode_head.bottleneck.conv.weight",
        "decode_head.lateral_convs.2.bn.weight",
        "decode_head.fpn_convs.0.conv.weight",
        "decode_head.fpn_bottleneck.bn.num_batches_tracked",
        "decode_head.conv_seg.bias",
        "auxiliary_head.convs.0.conv.weight",
        "auxiliary_head.conv_seg.weight",
    ):
        assert k in keys, k
    assert not any(k.endswith(".conv.bias") for k in keys if not k.startswith("backbone."))
    # reload the heads through the mmseg key mapping (backbone from the same model)
    from pacabench.models import create_model

    inner = create_model(BACKBONE, num_classes=0).state_dict()
    bb = {f"backbone.{k}": v for k, v in zip(inner, seg.backbone.body.state_dict().values(), strict=True)}
    sd = {**bb, **{k: v for k, v in seg.state_dict().items() if not k.startswith("backbone.")}}
    path = tmp_path / "upernet.pth"
    torch.save({"state_dict": sd}, path)
    again = create_segmentor(BACKBONE, "upernet", num_classes=NCLS, checkpoint=path)
    assert again.load_report.auxiliary_head == "loaded"
    for k, v in seg.auxiliary_head.state_dict().items():
        assert torch.equal(v, again.auxiliary_head.state_dict()[k])
    # the PaCa head ignores an auxiliary head
    paca = create_segmentor(BACKBONE, "paca", num_classes=NCLS)
    sd2 = {
        **bb,
        **{k: v for k, v in paca.state_dict().items() if not k.startswith("backbone.")},
        **{k: v for k, v in sd.items() if k.startswith("auxiliary_head.")},
    }
    torch.save(sd2, tmp_path / "paca_aux.pth")
    assert (
        create_segmentor(
            BACKBONE, "paca", num_classes=NCLS, checkpoint=tmp_path / "paca_aux.pth"
        ).load_report.auxiliary_head
        == "ignored"
    )


def test_paca_head_computes_what_the_doc_says():
    """Independent re-computation: softmax over N for the assignment, BN over channels with the
    cluster axis as length, single head, no 1/sqrt(d), softmax over clusters."""
    torch.manual_seed(0)
    head = PaCaHead([8, 16, 24, 32], channels=16, num_classes=5).eval()
    with torch.no_grad():
        for m in head.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    feats = [torch.randn(2, c, 16 // 2**i, 20 // 2**i) for i, c in enumerate([8, 16, 24, 32])]

    def cbr(mod, x):
        y = torch.nn.functional.conv2d(x, mod.conv.weight, padding=mod.conv.padding)
        bn = mod.bn
        y = (y - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
        return torch.relu(y * bn.weight[:, None, None] + bn.bias[:, None, None])

    def kv(seq, z):
        lin, bn = seq[0], seq[2]
        y = z @ lin.weight.T + lin.bias  # B M C
        y = (y - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        return torch.relu(y)

    with torch.no_grad():
        up = [
            torch.nn.functional.interpolate(cbr(c, f), size=(16, 20), mode="bilinear", align_corners=False)
            for c, f in zip(head.convs, feats, strict=True)
        ]
        x = torch.cat(up, 1)  # B 64 16 20
        tok = x.flatten(2).transpose(1, 2)  # B N 64
        q = cbr(head.q[0], x).flatten(2).transpose(1, 2)
        logits = torch.nn.functional.conv2d(
            cbr(head.clustering[0], x), head.clustering[1].weight, head.clustering[1].bias
        ).flatten(2)  # B M N
        z = torch.softmax(logits, dim=2) @ tok
        attn = torch.softmax(q @ kv(head.k, z).transpose(1, 2), dim=2)
        out = (attn @ kv(head.v, z)).transpose(1, 2).reshape(2, 16, 16, 20)
        ref = torch.nn.functional.conv2d(cbr(head.proj, out), head.conv_seg.weight, head.conv_seg.bias)
        got, raw = head(feats, return_clustering=True)
    assert got.shape == (2, 5, 16, 20) and raw.shape == (2, 5, 16, 20)
    assert torch.allclose(got, ref, atol=1e-5)


def test_head_shapes_and_parameter_counts():
    chans = [96, 192, 320, 384]
    feats = [torch.randn(1, c, 32 // 2**i, 48 // 2**i) for i, c in enumerate(chans)]
    paca, uper = PaCaHead(chans).eval(), UPerHead(chans).eval()
    with torch.inference_mode():
        assert paca(feats).shape == (1, 150, 32, 48)
        assert uper(feats).shape == (1, 150, 32, 48)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # by hand: 4 lateral 1x1 (992*256) + q, clustering (1024*256 + 256*150+150), k, v (1024*256+256),
    # proj 256*256, conv_seg 256*150+150, and the BN affine pairs
    assert (
        n(paca)
        == 992 * 256
        + 2 * 1024 * 256
        + 2 * (1024 * 256 + 256)
        + 256 * 256
        + 2 * (256 * 150 + 150)
        + (4 + 1 + 1 + 2 + 1) * 512
    )
    assert n(uper) == 28_908_694


@pytest.mark.skipif(not HAS_PACA, reason="PaCa-ViT not available")
def test_paca_tiny_segmentor_parameter_counts_match_the_paper():
    torch.manual_seed(0)
    seg = create_segmentor("pacavit_tiny_p2cconv_100_0", "paca")
    assert seg.backbone.clusters == (200, 200, 200, 0)
    n = sum(p.numel() for p in seg.parameters())
    assert abs(n / 1e6 - 13.3) / 13.3 < 0.02, n  # doc: 13.3 M
    with torch.inference_mode():
        assert seg(torch.randn(1, 3, 64, 96)).shape == (1, 150, 16, 24)
    up = create_segmentor("pacavit_tiny_p2cconv_100_0", "upernet")
    n = sum(p.numel() for p in up.parameters())  # includes the FCN auxiliary head, as published
    assert abs(n / 1e6 - 41.6) / 41.6 < 0.02, n  # doc: 41.6 M
    with torch.inference_mode():
        assert up.inference(torch.randn(1, 3, 64, 96)).shape == (1, 150, 64, 96)


def test_swin_segmentor_takes_any_size():
    seg = create_segmentor("swin_tiny_patch4_window7_224", "paca", num_classes=NCLS, img_size=64)
    with torch.inference_mode():
        assert seg(torch.randn(1, 3, 50, 70)).shape == (1, NCLS, 13, 18)


def test_names_and_data_helpers(ade, tmp_path):
    assert parse_segmentor_name("upernet_pvt_v2_b0") == ("pvt_v2_b0", "upernet")
    assert parse_segmentor_name("pacahead_pvt_v2_b0_512x512_160k_ade20k.pth") == ("pvt_v2_b0", "paca")
    assert parse_segmentor_name("pvt_v2_b0+paca") == ("pvt_v2_b0", "paca")
    with pytest.raises(ValueError):
        parse_segmentor_name("pvt_v2_b0")
    assert rescale_size(683, 512) == (683, 512)
    assert rescale_size(2000, 1000) == (1024, 512)
    assert rescale_size(4000, 600) == (2048, 307)
    assert len(find_ade_samples(ade)) == len(SIZES)
    p = tmp_path / "lab.png"
    Image.fromarray(np.array([[0, 1, 150, 255]], dtype=np.uint8)).save(p)
    assert load_annotation(str(p)).tolist() == [[255, 0, 149, 255]]


def test_bad_inputs(ade, tmp_path):
    with pytest.raises(UsageError, match="not found"):
        evaluate_ade20k(BACKBONE, tmp_path / "nope", head="paca", workers=0)
    with pytest.raises(UsageError, match="mode"):
        evaluate_ade20k(BACKBONE, ade, head="paca", mode="tiles", workers=0)
    with pytest.raises(UsageError, match="head"):
        evaluate_ade20k(BACKBONE, ade, head="fpn", workers=0)
    bad = make_ade(tmp_path / "bad", n=3)
    base = bad / "ADEChallengeData2016"
    (base / "images" / "validation" / "ADE_val_00000001.jpg").write_bytes(b"garbage" * 20)
    lab = np.full((48, 64), 200, dtype=np.uint8)
    Image.fromarray(lab).save(base / "annotations" / "validation" / "ADE_val_00000000.png")
    with pytest.raises(UsageError, match=r"ADE_val_00000000\.png.*out of range"):
        evaluate_ade20k(BACKBONE, bad, head="paca", num_classes=NCLS, scale=SCALE, workers=0)
    r = evaluate_ade20k(BACKBONE, bad, head="paca", num_classes=NCLS, scale=SCALE, workers=1, skip_bad=True)
    assert r["num_images"] == 1 and r["skipped_images"] == 2
    assert any("ADE_val_00000001.jpg" in m for m in r["skipped_files"])
    (base / "annotations" / "validation" / "ADE_val_00000002.png").unlink()
    with pytest.raises(UsageError, match=r"annotation missing.*ADE_val_00000002"):
        evaluate_ade20k(BACKBONE, bad, head="paca", workers=0)


def test_cli_json(ade, seg_ckpt, tmp_path):
    from typer.testing import CliRunner

    from pacabench.cli._eval import eval_app

    ckpt, _ = seg_ckpt
    res = CliRunner().invoke(
        eval_app,
        [
            "ade20k",
            "--model",
            BACKBONE,
            "--head",
            "upernet",
            "--data",
            str(ade),
            "--checkpoint",
            str(ckpt),
            "--num-classes",
            str(NCLS),
            "--scale",
            "128x48",
            "--workers",
            "0",
            "--limit",
            "2",
            "--json",
            "--save-predictions",
            str(tmp_path / "p"),
        ],
    )
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    d = json.loads(lines[0])
    assert d["num_images"] == 2 and {"miou", "macc", "aacc", "per_class_iou"} <= set(d)
    assert len(list((tmp_path / "p").glob("*.png"))) == 2
