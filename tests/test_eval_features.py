"""Segmentors and detectors on any timm model with feature extraction: the maps, channels and
strides come from timm's ``feature_info``, never from constants (issue 20).

The expected shapes are computed from what timm itself says about the model
(``timm.create_model(name, features_only=True).feature_info``), independently of pacabench's
choice of maps, at sizes that are not 224 and not multiples of the coarsest stride.
"""

from __future__ import annotations

import json
import math

import pytest
import timm
import torch
from timm.models._features import FeatureInfo

from pacabench.errors import UsageError
from pacabench.models import create_model, feature_indices, feature_strides
from pacabench.models.detection import create_detector
from pacabench.models.segmentation import create_segmentor
from tests.test_eval_ade20k import make_ade

NCLS = 5


def timm_info(name: str):
    """timm's own reductions/channels of every default feature map of ``name``."""
    with torch.device("meta"):
        fi = timm.create_model(name, features_only=True, pretrained=False).feature_info
    return fi.reduction(), fi.channels()


def info(reductions, out_indices=None):
    dicts = [dict(num_chs=8 * (i + 1), reduction=r, module=f"m{i}") for i, r in enumerate(reductions)]
    return FeatureInfo(dicts, tuple(range(len(dicts))) if out_indices is None else out_indices)


def test_feature_indices_one_map_per_stride_the_four_coarsest():
    assert feature_indices(info([2, 4, 8, 16, 32])) == (1, 2, 3, 4)  # a convnet: the stem map dropped
    assert feature_indices(info([4, 8, 16, 32])) == (0, 1, 2, 3)  # our families' four
    assert feature_indices(info([16, 32, 64])) == (0, 1, 2)  # LeViT-like: fewer than four
    assert feature_indices(info([4, 4, 8, 8, 16, 32])) == (1, 3, 4, 5)  # the deepest map per stride
    # a plain ViT: timm's defaults are the last blocks, all at stride 16 -> the last one
    assert feature_indices(info([16] * 12, tuple(range(12)))) == (11,)


def test_resnet18_segmentor_maps_and_logits_follow_feature_info():
    """A convnet whose timm features start at stride 2: the segmentor takes the stride-4..32 maps
    with timm's channels, and its logits are at stride 4 of an input of any size."""
    reductions, channels = timm_info("resnet18")
    assert reductions == [2, 4, 8, 16, 32]  # timm's metadata, not ours
    h, w = 200, 264  # neither 224 nor a multiple of 32
    torch.manual_seed(0)
    seg = create_segmentor("resnet18", "upernet", num_classes=NCLS, img_size=(h, w), verbose=False)
    assert feature_strides(seg.backbone) == reductions[1:]
    assert seg.decode_head.in_channels == channels[1:]
    assert seg.pad_to == 32 and seg.out_stride == 4
    with torch.no_grad():
        x = torch.randn(1, 3, h, w)
        feats = seg.backbone(x)
        logits = seg(x)
        full = seg.inference(x)
    assert [tuple(f.shape) for f in feats] == [
        (1, c, math.ceil(h / s), math.ceil(w / s)) for c, s in zip(channels[1:], reductions[1:], strict=True)
    ]
    assert tuple(logits.shape) == (1, NCLS, math.ceil(h / 4), math.ceil(w / 4))  # padded, cropped back
    assert tuple(full.shape) == (1, NCLS, h, w)


@pytest.mark.slow  # builds a ViT segmentor and detector (~10 s on 2 cores)
def test_vit_segmentor_and_detector_at_its_only_stride():
    """A plain ViT has one stride (16) in its feature_info: the logits are at stride 16, the
    detector has one FPN level plus the pooled one, anchors and RoIs at those strides."""
    name = "vit_tiny_patch16_224"
    reductions, channels = timm_info(name)
    assert set(reductions) == {16}
    h, w = 192, 256
    torch.manual_seed(0)
    seg = create_segmentor(name, "paca", num_classes=NCLS, img_size=(h, w), verbose=False)
    assert seg.out_stride == 16 and seg.decode_head.in_channels == [channels[-1]]
    with torch.no_grad():
        assert tuple(seg(torch.randn(1, 3, h, w)).shape) == (1, NCLS, h // 16, w // 16)
        # another size: the model was built with dynamic_img_size, whole-image inference resizes back
        assert tuple(seg.inference(torch.randn(1, 3, 208, 240)).shape) == (1, NCLS, 208, 240)
    det = create_detector(name, num_classes=NCLS, min_size=h, max_size=w).eval()
    assert det.rpn.anchor_generator.strides == (16, 32)
    assert det.roi_heads.box_roi_pool.strides == (16,)
    with torch.no_grad():
        levels = det.backbone(torch.zeros(1, 3, h, w))
        out = det([torch.rand(3, h, w)])[0]
    assert {k: tuple(v.shape[-2:]) for k, v in levels.items()} == {"0": (12, 16), "pool": (6, 8)}
    assert tuple(out["masks"].shape[1:]) == (h, w) and out["boxes"].shape[1] == 4


@pytest.mark.slow  # a Mask R-CNN on resnet18 forward (~8 s on 2 cores)
def test_resnet18_detector_levels_anchors_and_rois_follow_feature_info():
    reductions, channels = timm_info("resnet18")
    h, w = 200, 264
    torch.manual_seed(0)
    det = create_detector("resnet18", num_classes=NCLS, min_size=h, max_size=w).eval()
    assert det.backbone.fpn.inner_blocks[0][0].in_channels == channels[1]
    assert det.rpn.anchor_generator.strides == (*reductions[1:], 64)
    assert det.roi_heads.box_roi_pool.strides == tuple(reductions[1:])
    assert det.transform.size_divisible == 32
    with torch.no_grad():
        levels = det.backbone(torch.zeros(1, 3, 224, 288))  # padded input, as the transform makes it
        out = det([torch.rand(3, h, w)])[0]
    strides = [*reductions[1:], 64]
    assert [tuple(v.shape[-2:]) for v in levels.values()] == [
        (math.ceil(224 / s), math.ceil(288 / s)) for s in strides
    ]
    assert tuple(out["masks"].shape[1:]) == (h, w)


def test_our_families_keep_four_maps_at_strides_4_to_32():
    """pvt_v2_b0 (ours, from timm) is still cut by our own rule, identical to before."""
    m = create_model("pvt_v2_b0", features_only=True)
    assert type(m).__name__ == "TimmFeatures" and feature_strides(m) == [4, 8, 16, 32]


def test_a_model_without_feature_info_is_one_line_exit_2(tmp_path):
    """A user factory whose model does not list its maps: eval ade20k/coco refuse it in one line."""
    from typer.testing import CliRunner

    from pacabench.cli._eval import eval_app

    (tmp_path / "plain.py").write_text(
        "from torch import nn\n\ndef build(num_classes=1000):\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.AdaptiveAvgPool2d(1))\n"
    )
    factory = f"{tmp_path / 'plain.py'}:build"
    with pytest.raises(UsageError, match="without feature_info"):
        create_model(factory, features_only=True)
    ade = make_ade(tmp_path / "ade", n=1)
    res = CliRunner().invoke(
        eval_app, ["ade20k", "--model", factory, "--head", "upernet", "--data", str(ade)]
    )
    assert res.exit_code == 2
    assert "without feature_info" in res.output and "Traceback" not in res.output


@pytest.mark.slow  # two evaluations on resnet18 (~10 s on 2 cores)
def test_eval_ade20k_and_coco_run_on_a_timm_convnet(tmp_path):
    """End to end on tiny generated data: the evaluations take any timm model with features, and
    their numbers are what the metric code computes from the same predictions (ADE20k: every
    image's areas add up to the pixels scored; COCO: pycocotools' own keys, all in [0, 100])."""
    from pacabench.eval.ade20k import evaluate_ade20k
    from pacabench.eval.coco import METRIC_KEYS, evaluate_coco
    from tests.test_eval_coco import _make_dataset

    ade = make_ade(tmp_path / "ade", n=2)
    torch.manual_seed(0)
    res = evaluate_ade20k("resnet18", ade, head="upernet", num_classes=6, scale=(128, 48), workers=0)
    areas = torch.tensor(res["areas"])
    assert res["num_images"] == 2 and res["model"] == "resnet18"
    assert int(areas[2].sum()) == int(areas[3].sum()) > 0  # every scored pixel predicted once
    (tmp_path / "coco").mkdir()
    img_dir, ann = _make_dataset(tmp_path / "coco")
    out = evaluate_coco("resnet18", img_dir, ann, min_size=96, max_size=128, limit=2, workers=0, device="cpu")
    assert out["num_images"] == 2 and all(out[k] is None or 0 <= out[k] <= 100 for k in METRIC_KEYS)


@pytest.mark.slow  # a suite run (~5 s); the one-line refusal above is the default-tier test
def test_a_model_without_feature_info_is_a_skipped_row_in_a_suite(tmp_path):
    """In a suite the same model is a ``skipped`` row with the reason (as a size an architecture
    cannot take), and the suite goes on."""
    import pacabench

    (tmp_path / "plain.py").write_text(
        "from torch import nn\n\ndef build(num_classes=1000):\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.AdaptiveAvgPool2d(1))\n"
    )
    ade = make_ade(tmp_path / "ade", n=1)
    suite = tmp_path / "seg.yaml"
    suite.write_text(
        f"name: seg\nmodels: [{{name: '{tmp_path / 'plain.py'}:build', head: upernet}}]\ndevice: cpu\n"
        f"metrics: [ade20k]\neval:\n  ade20k: {{data: {ade}, num_classes: 6, workers: 0}}\n"
    )
    run = pacabench.run(suite, results_dir=tmp_path / "res", run_id="r", trust_code=True)
    (row,) = [json.loads(ln) for ln in (run.path / "rows.jsonl").read_text().splitlines()]
    assert row["status"] == "skipped" and "without feature_info" in row["error"]


@pytest.mark.slow  # two Mask R-CNN builds on resnet18 (~6 s)
def test_resnet18_detector_checkpoint_round_trip(tmp_path):
    """An mmdet-style checkpoint of a detector on a timm convnet (backbone under timm's own key
    names) loads back through timm's feature extraction: every tensor equal."""
    from pacabench.models.detection import torchvision_to_mmdet

    torch.manual_seed(0)
    det = create_detector("resnet18", num_classes=NCLS)
    mm = torchvision_to_mmdet(det.state_dict(), det)
    assert "backbone.layer1.0.conv1.weight" in mm  # timm's resnet names, as mmdet stores them
    path = tmp_path / "mask_rcnn_resnet18.pth"
    torch.save({"state_dict": mm}, path)
    torch.manual_seed(1)
    back = create_detector("resnet18", num_classes=NCLS, checkpoint=path)
    a, b = det.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    # torchvision's background rows of the box regressor and mask classifier are not in an
    # mmdet file (zero-filled on import, never used): every other tensor comes back equal
    background = ("roi_heads.box_predictor.bbox_pred.", "roi_heads.mask_predictor.mask_fcn_logits.")
    assert [k for k in a if not torch.equal(a[k], b[k]) and not k.startswith(background)] == []
    assert torch.equal(
        a["roi_heads.box_predictor.bbox_pred.weight"][4:], b["roi_heads.box_predictor.bbox_pred.weight"][4:]
    )


def test_a_detector_backbone_fixed_to_another_size_is_refused_before_any_image():
    """CoaT-Lite's position table is fixed to 224 (its builder takes no dynamic_img_size): a detector
    on it, whose test images have a short side of ``min_size``, is a ResolutionError naming the size
    (a skipped row in a suite), not an assertion on the first image; at its own size it builds."""
    from pacabench.models import ResolutionError

    with pytest.raises(ResolutionError, match="coat_lite_tiny cannot take 800x800"):
        create_detector("coat_lite_tiny")
    det = create_detector("coat_lite_tiny", min_size=224, max_size=224)
    with torch.no_grad():
        (out,) = det.eval()([torch.rand(3, 224, 224)])
    assert set(out) >= {"boxes", "labels", "scores", "masks"}


@pytest.mark.slow  # a suite run with a COCO evaluation (~5 s)
def test_a_detector_backbone_fixed_to_another_size_is_a_skipped_row_in_a_suite(tmp_path):
    import pacabench
    from tests.test_eval_coco import _make_dataset

    (tmp_path / "coco").mkdir()
    img_dir, ann = _make_dataset(tmp_path / "coco")
    suite = tmp_path / "det.yaml"
    suite.write_text(
        f"name: det\nmodels: [coat_lite_tiny, resnet18]\ndevice: cpu\nmetrics: [coco]\n"
        f"eval:\n  coco: {{data: {img_dir}, ann: {ann}, limit: 1, workers: 0}}\n"
    )
    run = pacabench.run(suite, results_dir=tmp_path / "res", run_id="r")
    rows = {r["model"]: r for r in map(json.loads, (run.path / "rows.jsonl").read_text().splitlines())}
    assert rows["coat_lite_tiny"]["status"] == "skipped"
    assert "cannot take 800x800" in rows["coat_lite_tiny"]["error"]
    assert rows["resnet18"]["status"] == "ok"  # the suite went on


@pytest.mark.slow  # a suite run with an ADE20k evaluation (~5 s)
def test_whole_image_ade20k_on_a_fixed_size_backbone_is_a_skipped_row_in_a_suite(tmp_path):
    """Whole-image ADE20k on CoaT-Lite (built for the 512² crop, fixed to it): skipped with the reason
    before the first image, not an error row; our families and dynamic models take any size."""
    import pacabench

    ade = make_ade(tmp_path / "ade", n=1)
    suite = tmp_path / "seg.yaml"
    suite.write_text(
        f"name: seg\nmodels: [{{name: coat_lite_tiny, head: upernet}}]\ndevice: cpu\n"
        f"metrics: [ade20k]\neval:\n  ade20k: {{data: {ade}, num_classes: 6, workers: 0}}\n"
    )
    run = pacabench.run(suite, results_dir=tmp_path / "res", run_id="r")
    (row,) = [json.loads(ln) for ln in (run.path / "rows.jsonl").read_text().splitlines()]
    assert row["status"] == "skipped", row["error"]
    assert "coat_lite_tiny cannot take 512x576" in row["error"] and "use mode slide" in row["error"]
