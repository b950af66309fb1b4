"""Accuracy as a suite metric: the runner's rows equal a direct evaluation."""

import pytest
import timm
import torch

import pacabench.runs.runner as runner
from pacabench.eval.imagenet import evaluate_imagenet
from pacabench.runs.folder import RunDir
from pacabench.spec.suite import parse_suite
from tests.test_eval_imagenet import MODEL, NUM_CLASSES, make_imagefolder


def test_imagenet_suite_metric_rows(tmp_path):
    val = make_imagefolder(tmp_path / "val")
    torch.manual_seed(3)
    m = timm.create_model(MODEL, pretrained=False, num_classes=NUM_CLASSES).eval()
    with torch.no_grad():
        m.head.weight.mul_(50)
    ckpt = tmp_path / "w.pth"
    torch.save(m.state_dict(), ckpt)
    suite = parse_suite(
        f"""
name: acc
models: [{MODEL}]
device: cpu
metrics: [imagenet]
eval:
  imagenet: {{data: {val}, batch_size: 4, workers: 0, num_classes: {NUM_CLASSES}, checkpoints: {{{MODEL}: {ckpt}}}}}
""",
        "acc.yaml",
    )
    rd = RunDir(tmp_path / "run")
    runner.run_suite(suite, rd)
    (row,) = rd.rows()
    assert row["status"] == "ok", row["error"]
    assert row["task"] == "imagenet" and row["checkpoint"] == str(ckpt)
    direct = evaluate_imagenet(MODEL, val, checkpoint=ckpt, batch_size=4, workers=0, num_classes=NUM_CLASSES)
    assert row["top1"] == direct["top1"] and row["top5"] == direct["top5"]
    assert row["num_images"] == direct["num_images"] == 9
    assert row["throughput_img_s"] > 0


def test_ade20k_suite_writes_per_class_iou_csv(tmp_path):
    """An ADE20k case of a suite leaves its per-class IoU/Acc CSV in the run folder (these CSVs
    were never written before: the runner looked for results nothing set)."""
    import csv

    from tests.test_eval_ade20k import BACKBONE, NCLS, SCALE, make_ade

    data = make_ade(tmp_path / "ade", n=2)
    suite = parse_suite(
        f"""
name: seg
models: [{{name: {BACKBONE}, head: upernet}}]
device: cpu
metrics: [ade20k]
eval:
  ade20k: {{data: {data}, num_classes: {NCLS}, scale: [{SCALE[0]}, {SCALE[1]}], workers: 0}}
""",
        "seg.yaml",
    )
    rd = RunDir(tmp_path / "run")
    torch.manual_seed(0)
    runner.run_suite(suite, rd)
    (row,) = rd.rows()
    assert row["status"] == "ok", row["error"]
    (path,) = list(rd.path.glob("per_class_iou_*.csv"))
    assert path.name == f"per_class_iou_ade20k_{BACKBONE}-upernet_512x512_1_fp32_cpu_0_0.csv"
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == NCLS
    ious = [float(r["iou"]) for r in table if r["iou"]]
    assert ious and sum(ious) / len(ious) == pytest.approx(row["miou"], abs=1e-3)  # the row's mIoU
    assert [r["label_value"] for r in table] == [str(c + 1) for c in range(NCLS)]
