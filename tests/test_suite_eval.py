"""Accuracy as a suite metric: the runner's rows equal a direct evaluation."""

import timm
import torch

import pacabench.runner as runner
from pacabench.eval.imagenet import evaluate_imagenet
from pacabench.results import RunDir
from pacabench.suite import parse_suite
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
