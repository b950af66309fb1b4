"""ImageNet evaluation on tiny generated datasets, checked against timm's own pipeline."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from pacabench.errors import UsageError
from pacabench.eval.imagenet import evaluate_imagenet, find_samples
from pacabench.models import create_model

MODEL = "pvt_v2_b0"
NUM_CLASSES = 10
IMG = 64
CLASSES = ["n01440764", "n01443537", "n01484850"]
SIZES = [(40, 48), (64, 56), (48, 72)]


def make_imagefolder(root, seed=0):
    rng = np.random.default_rng(seed)
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for j, (h, w) in enumerate(SIZES):
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"ILSVRC2012_val_{c}_{j}.JPEG", quality=95)
    (root / CLASSES[0] / "notes.txt").write_text("not an image")
    return root


def make_flat(root, seed=0):
    """Same images, flat folder + val.txt with labels 0, 1, 2 (folder order)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    lines = []
    for ci, c in enumerate(CLASSES):
        for j, (h, w) in enumerate(SIZES):
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            name = f"ILSVRC2012_val_{c}_{j}.JPEG"
            Image.fromarray(arr).save(root / name, quality=95)
            lines.append(f"{name} {ci}")
    (root / "val.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("imnet")
    folder = make_imagefolder(base / "imagenet" / "val")
    (base / "imagenet" / "train").mkdir()
    flat = make_flat(base / "flat")
    torch.manual_seed(1)
    m = timm.create_model(MODEL, pretrained=False, num_classes=NUM_CLASSES).eval()
    # a sharper classifier so predictions vary between images
    with torch.no_grad():
        m.head.weight.mul_(50)
    ckpt = base / "weights.pth"
    torch.save({"state_dict": m.state_dict()}, ckpt)
    return base, folder, flat, ckpt, m


def independent_predictions(model, root):
    """timm's eval transform (resolve_data_config + create_transform) over torchvision's
    ImageFolder (its own class indexing and file order), one image at a time."""
    from timm.data import create_transform, resolve_data_config
    from torchvision.datasets import ImageFolder

    cfg = resolve_data_config({"input_size": (3, IMG, IMG)}, model=model)
    tf = create_transform(**cfg)
    ds = ImageFolder(str(root), transform=tf)
    top = []
    labels = []
    with torch.inference_mode():
        for x, y in ds:
            top.append(model(x[None]).topk(5, dim=1).indices[0])
            labels.append(y)
    return torch.stack(top), torch.tensor(labels)


def test_imagefolder_matches_timm_pipeline(setup, tmp_path):
    base, folder, _, ckpt, m = setup
    preds_file = tmp_path / "preds.csv"
    # the root with train/ and val/ resolves to val/
    r = evaluate_imagenet(
        MODEL,
        base / "imagenet",
        checkpoint=ckpt,
        num_classes=NUM_CLASSES,
        img_size=IMG,
        batch_size=4,
        workers=0,
        save_predictions=preds_file,
    )
    top, labels = independent_predictions(m, folder)
    assert len(set(top[:, 0].tolist())) > 1, "degenerate test: every image predicted the same class"
    exp1 = 100.0 * (top[:, 0] == labels).float().mean().item()
    exp5 = 100.0 * (top == labels[:, None]).any(1).float().mean().item()
    assert r["num_images"] == 9 and r["skipped_images"] == 0
    assert r["top1"] == pytest.approx(exp1) and r["top5"] == pytest.approx(exp5)
    assert r["resolution"] == [IMG, IMG]
    assert r["data_config"]["crop_pct"] == pytest.approx(0.9)
    assert r["throughput_img_s"] > 0
    with open(preds_file, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9
    assert [int(row["pred"]) for row in rows] == top[:, 0].tolist()
    assert [list(map(int, row["top5"].split())) for row in rows] == top.tolist()


def test_flat_layout_with_label_file(setup):
    base, folder, flat, ckpt, m = setup
    r = evaluate_imagenet(
        MODEL,
        flat,
        labels=flat / "val.txt",
        checkpoint=ckpt,
        num_classes=NUM_CLASSES,
        img_size=IMG,
        batch_size=3,
        workers=1,
    )
    top, labels = independent_predictions(m, folder)
    assert r["layout"] == "labels" and r["num_images"] == 9
    assert r["top1"] == pytest.approx(100.0 * (top[:, 0] == labels).float().mean().item())
    assert r["top5"] == pytest.approx(100.0 * (top == labels[:, None]).any(1).float().mean().item())


def test_overrides_reach_the_transform(setup):
    base, folder, _, ckpt, m = setup
    r = evaluate_imagenet(
        MODEL,
        folder,
        checkpoint=ckpt,
        num_classes=NUM_CLASSES,
        img_size=(48, 64),
        crop_pct=1.0,
        interpolation="bilinear",
        workers=0,
        limit=4,
    )
    assert r["num_images"] == 4
    assert r["data_config"]["input_size"] == [3, 48, 64]
    assert r["data_config"]["interpolation"] == "bilinear"
    assert r["data_config"]["crop_pct"] == 1.0


def test_discovery_order_is_sorted_synsets(setup):
    _, folder, _, _, _ = setup
    samples, layout = find_samples(folder)
    assert layout == "imagefolder"
    assert [s.label for s in samples] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(s.path.endswith(".JPEG") for s in samples)


def test_corrupt_image_named_or_skipped(setup, tmp_path):
    _, _, _, ckpt, _ = setup
    root = make_imagefolder(tmp_path / "val")
    bad = root / CLASSES[1] / "ILSVRC2012_val_broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    with pytest.raises(UsageError, match="ILSVRC2012_val_broken.JPEG"):
        evaluate_imagenet(MODEL, root, checkpoint=ckpt, num_classes=NUM_CLASSES, img_size=IMG, workers=0)
    r = evaluate_imagenet(
        MODEL, root, checkpoint=ckpt, num_classes=NUM_CLASSES, img_size=IMG, workers=1, skip_bad=True
    )
    assert r["skipped_images"] == 1 and r["num_images"] == 9
    assert "ILSVRC2012_val_broken.JPEG" in r["skipped_files"][0]


def test_label_errors_name_the_line(setup, tmp_path):
    _, _, flat, ckpt, _ = setup
    lines = (flat / "val.txt").read_text().splitlines()
    out_of_range = tmp_path / "range.txt"
    out_of_range.write_text("\n".join(lines[:4] + [lines[4].rsplit(" ", 1)[0] + f" {NUM_CLASSES}"]) + "\n")
    with pytest.raises(UsageError, match=r"range\.txt:5.*out of range|out of range.*range\.txt:5"):
        evaluate_imagenet(
            MODEL,
            flat,
            labels=out_of_range,
            checkpoint=ckpt,
            num_classes=NUM_CLASSES,
            img_size=IMG,
            workers=0,
        )
    malformed = tmp_path / "malformed.txt"
    malformed.write_text(lines[0] + "\n" + lines[1].replace(" ", "\t") + "\nonly_a_path.JPEG\n")
    with pytest.raises(UsageError, match=r"malformed\.txt:3"):
        evaluate_imagenet(MODEL, flat, labels=malformed, checkpoint=ckpt, num_classes=NUM_CLASSES, workers=0)
    not_int = tmp_path / "notint.txt"
    not_int.write_text(lines[0].rsplit(" ", 1)[0] + " seven\n")
    with pytest.raises(UsageError, match=r"notint\.txt:1.*not an integer"):
        evaluate_imagenet(MODEL, flat, labels=not_int, checkpoint=ckpt, num_classes=NUM_CLASSES, workers=0)
    missing = tmp_path / "missing.txt"
    missing.write_text(lines[0] + "\nnope.JPEG 1\n")
    with pytest.raises(UsageError, match=r"nope\.JPEG.*missing\.txt:2"):
        evaluate_imagenet(MODEL, flat, labels=missing, checkpoint=ckpt, num_classes=NUM_CLASSES, workers=0)
    # too many class folders for the classifier
    with pytest.raises(UsageError, match="out of range"):
        evaluate_imagenet(MODEL, setup[1], num_classes=2, workers=0)


def test_missing_folder_and_flat_without_labels(setup, tmp_path):
    with pytest.raises(UsageError, match="not found"):
        evaluate_imagenet(MODEL, tmp_path / "nope", workers=0)
    with pytest.raises(UsageError, match="flat folder needs a label file"):
        evaluate_imagenet(MODEL, setup[2], workers=0)
    with pytest.raises(UsageError, match="label file not found"):
        evaluate_imagenet(MODEL, setup[2], labels=tmp_path / "none.txt", workers=0)


def test_bf16_autocast_runs(setup):
    _, folder, _, ckpt, _ = setup
    r = evaluate_imagenet(
        MODEL,
        folder,
        checkpoint=ckpt,
        num_classes=NUM_CLASSES,
        img_size=IMG,
        workers=0,
        dtype="bf16",
        limit=3,
        channels_last=True,
    )
    assert r["num_images"] == 3 and r["dtype"] == "bf16"


def test_cli_json_is_one_object(setup):
    from typer.testing import CliRunner

    from pacabench.cli._eval import eval_app

    _, folder, _, ckpt, m = setup
    res = CliRunner().invoke(
        eval_app,
        [
            "imagenet",
            "--model",
            MODEL,
            "--data",
            str(folder),
            "--checkpoint",
            str(ckpt),
            "--num-classes",
            str(NUM_CLASSES),
            "--img-size",
            str(IMG),
            "--workers",
            "0",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    d = json.loads(lines[0])
    top, labels = independent_predictions(m, folder)
    assert d["top1"] == pytest.approx(100.0 * (top[:, 0] == labels).float().mean().item())
    assert d["num_images"] == 9

    res = CliRunner().invoke(eval_app, ["imagenet", "--model", MODEL, "--data", "/nonexistent/imagenet"])
    assert res.exit_code == 2
    assert "not found" in res.stderr and "Traceback" not in res.output


def test_checkpoint_equivalence_with_create_model(setup):
    """The checkpoint path loads the same weights the test model has."""
    _, _, _, ckpt, m = setup
    ours = create_model(MODEL, num_classes=NUM_CLASSES, checkpoint=str(ckpt))
    x = torch.randn(1, 3, IMG, IMG)
    with torch.inference_mode():
        assert torch.equal(ours(x), m(x))
