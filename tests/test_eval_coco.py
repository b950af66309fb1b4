"""COCO evaluation: Mask R-CNN builder, mmdet key mapping, pycocotools metrics, CLI, torchrun.

Everything runs on a tiny generated COCO-format dataset (a few 64–128 px images with polygon
objects) with the small ``pvt_v2_b0`` backbone and random weights.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from pacabench.errors import UsageError
from pacabench.eval.coco import (
    METRIC_KEYS,
    coco_metrics,
    detections_to_coco,
    evaluate_coco,
    label_to_category_map,
    load_coco_annotations,
)
from pacabench.models.detection import (
    COCO_CATEGORY_IDS,
    MMDetAnchorGenerator,
    MMDetTransform,
    create_detector,
    detector_flops,
    detector_params,
    mmdet_to_torchvision,
    paste_masks_mmdet,
    torchvision_to_mmdet,
)

BACKBONE = "pvt_v2_b0"
CATS = [1, 3, 18]  # person, car, dog: COCO ids, so the 80-class label mapping applies
SIZES = [(96, 128), (80, 112), (128, 96), (64, 100), (112, 80)]  # (h, w): odd number of images
# pycocotools' Cython code trips numpy 2's __array__(copy=...) DeprecationWarning
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

FAST = dict(min_size=96, max_size=160, max_proposals=50, max_detections=10, workers=0)


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


def _make_dataset(root: Path) -> tuple[Path, Path]:
    from pycocotools import mask as mask_util

    rng = np.random.default_rng(0)
    img_dir = root / "images"
    img_dir.mkdir()
    images, anns = [], []
    aid = 1
    for i, (h, w) in enumerate(SIZES):
        img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(img)
        for k in range(1 + i % 3):
            bw, bh = rng.integers(w // 5, w // 2), rng.integers(h // 5, h // 2)
            x0, y0 = rng.integers(1, w - bw - 1), rng.integers(1, h - bh - 1)
            poly = [x0, y0 + bh / 2, x0 + bw / 2, y0, x0 + bw, y0 + bh / 2, x0 + bw / 2, y0 + bh]  # diamond
            if k == 1:
                poly = [x0, y0, x0 + bw, y0, x0 + bw, y0 + bh, x0, y0 + bh]  # box
            poly = [float(v) for v in poly]
            draw.polygon(poly, fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
            rle = mask_util.frPyObjects([poly], h, w)
            xs, ys = poly[0::2], poly[1::2]
            anns.append({
                "id": aid, "image_id": 100 + i, "category_id": CATS[(i + k) % 3], "iscrowd": 0,
                "segmentation": [poly], "area": float(mask_util.area(mask_util.merge(rle))),
                "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
            })  # fmt: skip
            aid += 1
        name = f"img_{i:03d}.png"
        img.save(img_dir / name)
        images.append({"id": 100 + i, "file_name": name, "height": h, "width": w})
    cats = [{"id": c, "name": f"c{c}", "supercategory": "x"} for c in CATS]
    ann = root / "instances_tiny.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return img_dir, ann


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # small CPU work: one intra-op thread is faster (and immune to oversubscription on a
    # shared 2-core machine) and makes runs bit-comparable across processes
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    img_dir, ann = _make_dataset(root)
    # a random-weight detector whose classifier favours the dataset's classes, so that random
    # boxes pass the 0.05 score threshold and the metrics are not all trivially zero
    torch.manual_seed(0)
    det = create_detector(BACKBONE)
    with torch.no_grad():
        b = det.roi_heads.box_predictor.cls_score.bias
        b.fill_(-2.0)
        b[0] = -6.0
        for c in CATS:
            b[COCO_CATEGORY_IDS.index(c) + 1] = 2.0
    ckpt = root / "mask_rcnn_pvt_v2_b0_tiny_coco.pth"
    torch.save({"meta": {}, "state_dict": torchvision_to_mmdet(det.state_dict(), det)}, ckpt)
    return {"root": root, "data": img_dir, "ann": ann, "ckpt": ckpt}


# --------------------------------------------------------------------------------------------
# detector
# --------------------------------------------------------------------------------------------


def test_detector_config_matches_mmdet():
    torch.manual_seed(0)
    det = create_detector(BACKBONE, min_size=64, max_size=100)
    ag = det.rpn.anchor_generator
    assert isinstance(ag, MMDetAnchorGenerator) and ag.num_anchors_per_location() == [3] * 5
    # mmdet base anchors: not rounded (size 32, ratio 0.5 -> w = 32·√2 = 45.25)
    base = ag.cell_anchors[0]
    assert torch.allclose(base[0], torch.tensor([-16 * 2**0.5, -8 * 2**0.5, 16 * 2**0.5, 8 * 2**0.5]))
    assert det.rpn._pre_nms_top_n["testing"] == 1000 and det.rpn._post_nms_top_n["testing"] == 1000
    assert det.rpn.nms_thresh == 0.7
    rh = det.roi_heads
    assert rh.box_coder.weights == (10.0, 10.0, 5.0, 5.0)
    assert (rh.score_thresh, rh.nms_thresh, rh.detections_per_img) == (0.05, 0.5, 100)
    assert rh.box_roi_pool.output_size == (7, 7) and rh.mask_roi_pool.output_size == (14, 14)
    assert rh.box_roi_pool.aligned and rh.box_roi_pool.sampling_ratio == 0
    assert rh.box_predictor.cls_score.out_features == 81
    assert MMDetTransform().target_size(427, 640) == (800, 1199)  # mmcv imrescale to 1333x800
    assert MMDetTransform().target_size(500, 1500) == (444, 1333)
    # output: boxes in original pixels, masks bool at the original size
    with torch.inference_mode():
        out = det([torch.rand(3, 70, 90)])[0]
    assert out["masks"].dtype == torch.bool and out["masks"].shape[1:] == (70, 90)


def test_paste_masks_mmdet_box_mask():
    # an all-ones mask pasted into a box covers exactly the pixels whose centres are inside it
    m = paste_masks_mmdet(torch.ones(1, 1, 28, 28), torch.tensor([[2.0, 3.0, 10.0, 7.0]]), 12, 14)[0]
    expect = torch.zeros(12, 14, dtype=torch.bool)
    expect[3:7, 2:10] = True
    assert torch.equal(m, expect)


def test_mmdet_key_mapping_round_trip():
    torch.manual_seed(0)
    small = dict(min_size=96, max_size=160, rpn_post_nms_top_n=100, detections_per_img=20)
    det = create_detector(BACKBONE, **small)
    mm = torchvision_to_mmdet(det.state_dict(), det)
    # mmdet layout: 81 classes with background last, class-specific regression without background
    assert mm["roi_head.bbox_head.fc_cls.weight"].shape == (81, 1024)
    assert torch.equal(
        mm["roi_head.bbox_head.fc_cls.weight"][80],
        det.state_dict()["roi_heads.box_predictor.cls_score.weight"][0],
    )
    assert mm["roi_head.bbox_head.fc_reg.weight"].shape == (320, 1024)
    assert mm["roi_head.mask_head.conv_logits.weight"].shape == (80, 256, 1, 1)
    for k in (
        "neck.lateral_convs.3.conv.weight",
        "neck.fpn_convs.0.conv.bias",
        "rpn_head.rpn_conv.weight",
        "rpn_head.rpn_cls.weight",
        "rpn_head.rpn_reg.bias",
        "roi_head.bbox_head.shared_fcs.1.weight",
        "roi_head.mask_head.convs.3.conv.weight",
        "roi_head.mask_head.upsample.weight",
        "backbone.stages.0.blocks.0.attn.q.weight",
    ):
        assert k in mm, k
    assert not any(k.startswith(("backbone.body", "roi_heads.", "rpn.")) for k in mm)
    # forward mapping restores our names (background rows are zero-filled, unused)
    back = mmdet_to_torchvision(mm, det)
    assert set(back) == set(det.state_dict())

    # load the mmdet-style state_dict into a fresh, differently initialised detector: same outputs
    torch.manual_seed(1)
    fresh = create_detector(BACKBONE, checkpoint=mm, **small)
    with torch.no_grad():  # make the classifier confident so there are detections to compare
        for d in (det, fresh):
            d.roi_heads.box_predictor.cls_score.bias[1:4] += 8.0
    img = torch.rand(3, 90, 120, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a, b = det([img])[0], fresh([img])[0]
    assert len(a["boxes"]) > 0
    for k in ("boxes", "scores", "labels", "masks"):
        assert torch.equal(a[k], b[k]), k


def test_params_and_flops_parts():
    torch.manual_seed(0)
    det = create_detector(BACKBONE, min_size=96, max_size=160)
    mm = torchvision_to_mmdet(det.state_dict(), det)
    assert detector_params(det) == sum(v.numel() for v in mm.values())
    f = detector_flops(det, (128, 96), num_proposals=10, num_mask_rois=4)
    p = f["parts"]
    assert abs(sum(p.values()) - f["gflops"]) < 1e-9
    # heads: exact multiply-adds of the FCs / convs (RoIAlign, NMS are not counted, as in mmdet)
    assert p["bbox_head"] * 1e9 == pytest.approx(
        10 * (256 * 49 * 1024 + 1024 * 1024 + 1024 * 81 + 1024 * 324)
    )
    mask = 4 * (14 * 14 * 256 * 256 * 9) + 14 * 14 * 256 * 256 * 4 + 28 * 28 * 256 * 81
    assert p["mask_head"] * 1e9 == pytest.approx(4 * mask)
    levels = [32 * 24, 16 * 12, 8 * 6, 4 * 3, 2 * 2]
    assert p["rpn_head"] * 1e9 == pytest.approx(sum(levels) * (256 * 256 * 9 + 256 * 3 + 256 * 12))


def test_paca_tiny_mask_rcnn_params():
    pytest.importorskip("pacabench.models.paca_vit")
    torch.manual_seed(0)
    det = create_detector("pacavit_tiny_p2cconv_100_0")
    n = detector_params(det)
    assert abs(n / 32.0e6 - 1) < 0.02, n  # paper: 32.0M


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------


def test_ground_truth_as_predictions_gives_ap_1(tiny):
    coco = load_coco_annotations(tiny["ann"])
    l2c = label_to_category_map(coco, 80)
    c2l = {c: label for label, c in l2c.items()}
    results = []
    for img_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        boxes = torch.tensor(
            [
                [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                for a in anns
            ],
            dtype=torch.float64,
        )
        masks = torch.from_numpy(np.stack([coco.annToMask(a) for a in anns]).astype(bool))
        labels = torch.tensor([c2l[a["category_id"]] for a in anns])
        results += detections_to_coco(img_id, boxes, torch.ones(len(anns)), labels, masks, l2c)
    m = coco_metrics(coco, results, coco.getImgIds())
    for t in ("bbox", "segm"):
        assert m[f"{t}_ap"] == pytest.approx(100.0)
        assert m[f"{t}_ap50"] == pytest.approx(100.0) and m[f"{t}_ap75"] == pytest.approx(100.0)
        for s in ("aps", "apm", "apl"):
            assert m[f"{t}_{s}"] is None or m[f"{t}_{s}"] == pytest.approx(100.0)
    assert m["bbox_aps"] == pytest.approx(100.0)  # the tiny objects are small (< 32²)
    # and no predictions at all is 0, not a crash
    assert coco_metrics(coco, [], coco.getImgIds())["segm_ap"] == 0.0


def _independent_cocoeval(ann: Path, pred: Path, img_ids: list[int]) -> dict[str, float | None]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(ann))
    preds = json.loads(pred.read_text())
    out = {}
    for t in ("bbox", "segm"):
        res = preds if t == "bbox" else [{k: v for k, v in p.items() if k != "bbox"} for p in preds]
        ev = COCOeval(gt, gt.loadRes(res), t)
        ev.params.imgIds = img_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        for name, v in zip(("ap", "ap50", "ap75", "aps", "apm", "apl"), ev.stats[:6], strict=True):
            out[f"{t}_{name}"] = None if v < 0 else v * 100
    return out


def test_cli_end_to_end_and_independent_pycocotools(tiny, tmp_path, capsys):
    from typer.testing import CliRunner

    from pacabench.cli._eval import eval_app

    pred = tmp_path / "pred.json"
    args = [
        "coco",
        "--model",
        BACKBONE,
        "--data",
        str(tiny["data"]),
        "--ann",
        str(tiny["ann"]),
        "--checkpoint",
        str(tiny["ckpt"]),
        "--json",
        "--save-predictions",
        str(pred),
        "--device",
        "cpu",
        "--workers",
        "0",
        "--min-size",
        "96",
        "--max-size",
        "160",
        "--max-proposals",
        "100",
        "--max-detections",
        "20",
        "--limit",
        "4",
    ]
    r = CliRunner().invoke(eval_app, args)
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    res = json.loads(lines[0])
    assert res["num_images"] == 4 and set(METRIC_KEYS) <= set(res)
    assert res["num_detections"] > 0
    preds = json.loads(pred.read_text())
    assert len(preds) == res["num_detections"]
    p0 = preds[0]
    assert set(p0) == {"image_id", "category_id", "bbox", "score", "segmentation"}
    assert p0["category_id"] in CATS and isinstance(p0["segmentation"]["counts"], str)
    assert {p["image_id"] for p in preds} <= {100, 101, 102, 103}
    ref = _independent_cocoeval(tiny["ann"], pred, [100, 101, 102, 103])
    capsys.readouterr()
    for k in METRIC_KEYS:
        assert (res[k] is None) == (ref[k] is None), k
        if ref[k] is not None:
            assert res[k] == pytest.approx(ref[k], abs=1e-9), k
    assert res["bbox_ap50"] > 0 or res["segm_ap50"] > 0  # random boxes hit something


def test_cli_errors_name_the_file(tiny, tmp_path):
    from typer.testing import CliRunner

    from pacabench.cli._eval import eval_app

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    notcoco = tmp_path / "list.json"
    notcoco.write_text("[1, 2]")
    cases = [
        (str(tmp_path / "missing.json"), str(tiny["data"]), "missing.json"),
        (str(bad), str(tiny["data"]), "bad.json"),
        (str(notcoco), str(tiny["data"]), "list.json"),
        (str(tiny["ann"]), str(tmp_path / "noimages"), "noimages"),
    ]
    for ann, data, name in cases:
        r = CliRunner().invoke(
            eval_app, ["coco", "--model", BACKBONE, "--data", data, "--ann", ann, "--json"]
        )
        assert r.exit_code == 2, (name, r.output)
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and name in err[0], err
        assert r.stdout.strip() == ""
    with pytest.raises(UsageError, match="instances_tiny.json"):
        # valid JSON whose annotation refers to an image that is not listed
        d = json.loads(Path(tiny["ann"]).read_text())
        d["annotations"][0]["image_id"] = 999
        p = tmp_path / "instances_tiny.json"
        p.write_text(json.dumps(d))
        load_coco_annotations(p)


# --------------------------------------------------------------------------------------------
# distributed: 2 gloo processes == 1 process
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, kwargs: dict, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    res = evaluate_coco(**kwargs)
    Path(f"{out}.{rank}").write_text(json.dumps(res))


@pytest.mark.slow  # two fresh interpreters; distributed evaluation: test_eval_distributed (default tier)
def test_two_process_gloo_equals_one_process(tiny, tmp_path):
    import torch.multiprocessing as mp

    common = dict(
        model=BACKBONE,
        data=str(tiny["data"]),
        ann=str(tiny["ann"]),
        checkpoint=str(tiny["ckpt"]),
        device="cpu",
        **FAST,
    )
    # reference: one process, one thread as in the workers (bit-identical convolutions)
    one = evaluate_coco(**common, save_predictions=str(tmp_path / "one.json"))
    assert one["num_images"] == len(SIZES) and one["world_size"] == 1

    out = str(tmp_path / "res")
    kw = dict(common, save_predictions=str(tmp_path / "two.json"))
    mp.spawn(_worker, args=(2, _free_port(), kw, out), nprocs=2, join=True)
    r0 = json.loads(Path(out + ".0").read_text())
    r1 = json.loads(Path(out + ".1").read_text())
    assert r0["world_size"] == 2
    for k in (*METRIC_KEYS, "num_images", "num_detections"):
        assert r0[k] == one[k] and r1[k] == one[k], k
    # every image evaluated exactly once: identical prediction files
    assert json.loads((tmp_path / "two.json").read_text()) == json.loads((tmp_path / "one.json").read_text())
