"""ADE20k (SceneParsing, ADEChallengeData2016 layout) mIoU, mAcc, aAcc, as mmseg evaluates it.

* Data: ``DIR/images/validation/*.jpg`` and ``DIR/annotations/validation/<same stem>.png``
  (``DIR`` may also be the folder holding ``ADEChallengeData2016``).
* Labels: 1..150 are the classes, 0 is "other" and ignored (mmseg's ``reduce_zero_label``).
* Test pipeline (mmseg's ``ade20k.py``): resize keeping the aspect ratio to fit (2048, 512),
  i.e. short side 512 unless the long side would pass 2048 (bilinear, no antialias, rounded to
  uint8 like cv2), normalise with the ImageNet mean/std in 0–255 units, whole-image or
  sliding-window (512 crops, stride 341) inference; logits resized bilinearly to the test size
  and then to the original size, argmax.
* Metric: intersection, union, prediction and label areas per class summed over the whole set
  (all ranks); IoU = I/U, Acc = I/label area; means over classes where they are defined
  (classes absent from both ground truth and prediction leave the mIoU, classes absent from the
  ground truth leave the mAcc, exactly mmseg's nanmean); aAcc = ΣI / Σlabel area.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UsageError, first_line
from ..measure.precision import autocast
from ..spec.sizes import hw_text
from .common import (
    SampleDataset,
    check_dtype,
    check_outputs,
    check_workers,
    default_workers,
    place,
    reduce_max,
    resolve_device,
    run_shard,
    write_or_keep,
)
from .distributed import all_reduce_sum, gather_objects, init_distributed

__all__ = [
    "ADE20K_CLASSES",
    "ADE_MEAN",
    "ADE_STD",
    "SegSample",
    "find_ade_samples",
    "rescale_size",
    "load_image",
    "load_annotation",
    "area_stats",
    "metrics_from_areas",
    "write_per_class",
    "evaluate_ade20k",
]

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
    "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower",
    "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair",
    "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel", "pole",
    "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship",
    "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel",
    "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket",
    "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen",
    "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip
assert len(ADE20K_CLASSES) == 150

ADE_MEAN = (123.675, 116.28, 103.53)
ADE_STD = (58.395, 57.12, 57.375)
IGNORE = 255
_IMG_EXT = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class SegSample:
    image: str
    annotation: str
    stem: str


def find_ade_samples(data: str | os.PathLike, split: str = "validation") -> list[SegSample]:
    """Image/annotation pairs of an ADEChallengeData2016 folder, sorted by file name."""
    root = Path(data).expanduser()
    if not root.is_dir():
        raise UsageError(f"ADE20k folder not found: {root}")
    if not (root / "images").is_dir() and (root / "ADEChallengeData2016").is_dir():
        root = root / "ADEChallengeData2016"
    img_dir = root / "images" / split
    ann_dir = root / "annotations" / split
    for d in (img_dir, ann_dir):
        if not d.is_dir():
            raise UsageError(
                f"ADE20k folder {root} has no {d.relative_to(root)}/ (expected ADEChallengeData2016's layout)"
            )
    images = sorted(f for f in os.listdir(img_dir) if f.lower().endswith(_IMG_EXT) and not f.startswith("."))
    if not images:
        raise UsageError(f"no images in {img_dir}")
    samples = []
    for f in images:
        stem = os.path.splitext(f)[0]
        ann = ann_dir / f"{stem}.png"
        if not ann.is_file():
            raise UsageError(f"annotation missing for {img_dir / f}: {ann}")
        samples.append(SegSample(str(img_dir / f), str(ann), stem))
    return samples


def rescale_size(w: int, h: int, scale: tuple[int, int] = (2048, 512)) -> tuple[int, int]:
    """mmcv's keep-ratio rescale: the largest size with long side ≤ max(scale) and short side
    ≤ min(scale); returns (new_w, new_h) rounded half up."""
    long_max, short_max = max(scale), min(scale)
    factor = min(long_max / max(h, w), short_max / min(h, w))
    return int(w * factor + 0.5), int(h * factor + 0.5)


def load_image(
    path: str, scale: tuple[int, int] | None = (2048, 512)
) -> tuple[torch.Tensor, tuple[int, int]]:
    """RGB image → normalised float tensor 3×h×w at the test scale; returns it and (H, W) original."""
    from PIL import Image

    with open(path, "rb") as f:
        img = Image.open(f)
        img = img.convert("RGB")
    arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)  # 3 H W
    h, w = arr.shape[1:]
    x = arr.float()
    if scale is not None:
        nw, nh = rescale_size(w, h, scale)
        if (nh, nw) != (h, w):
            # cv2.INTER_LINEAR (mmcv's default): half-pixel centres, no antialias, uint8 output
            x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
            x = x.round_().clamp_(0, 255)
    mean = torch.tensor(ADE_MEAN).view(3, 1, 1)
    std = torch.tensor(ADE_STD).view(3, 1, 1)
    return (x - mean) / std, (int(h), int(w))


def load_annotation(path: str, num_classes: int = 150) -> np.ndarray:
    """Annotation PNG (0 = ignore, 1..num_classes) → int64 H×W, classes 0..C-1, 255 = ignore."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(f"annotation must be a single-channel PNG, got mode {im.mode}")
        lab = np.asarray(im).astype(np.int64)
    if lab.ndim != 2:
        raise ValueError(f"annotation must be 2-D, got shape {lab.shape}")
    bad = (lab > num_classes) & (lab != IGNORE)
    if bad.any():
        vals = sorted(set(np.unique(lab[bad]).tolist()))[:5]
        raise ValueError(
            f"label values {vals} out of range (0 = ignore, 1..{num_classes} classes, 255 = ignore)"
        )
    out = lab - 1
    out[(lab == 0) | (lab == IGNORE)] = IGNORE
    return out


class ADE20kEval(SampleDataset):
    """Items: (index, image, label map, error message or None), at the test scale."""

    def __init__(self, samples: list[SegSample], scale, num_classes: int):
        super().__init__(samples)
        self.scale = scale
        self.num_classes = num_classes

    def __getitem__(self, i: int):
        s = self.samples[i]
        try:
            img, (h, w) = load_image(s.image, self.scale)
        except Exception as e:  # noqa: BLE001
            return i, None, None, f"cannot read image {s.image}: {first_line(e)}"
        try:
            lab = load_annotation(s.annotation, self.num_classes)
        except Exception as e:  # noqa: BLE001
            return i, None, None, f"bad annotation {s.annotation}: {first_line(e)}"
        if lab.shape != (h, w):
            return (
                i,
                None,
                None,
                f"annotation {s.annotation} is {lab.shape[1]}x{lab.shape[0]}, image {s.image} is {w}x{h}",
            )
        return i, img, torch.from_numpy(lab), None


def area_stats(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """4×C int64: intersection, union, prediction area, label area over non-ignored pixels."""
    mask = label != IGNORE
    p = pred[mask]
    lab = label[mask]
    inter = p[p == lab]
    a_i = torch.bincount(inter, minlength=num_classes)[:num_classes]
    a_p = torch.bincount(p, minlength=num_classes)[:num_classes]
    a_l = torch.bincount(lab, minlength=num_classes)[:num_classes]
    return torch.stack([a_i, a_p + a_l - a_i, a_p, a_l]).to(torch.int64)


def metrics_from_areas(areas: torch.Tensor) -> dict:
    """aAcc, mIoU, mAcc (percent) and per-class IoU/Acc (fractions, None where undefined)."""
    a = areas.to(torch.float64)
    inter, union, _, label = a
    iou = inter / union  # nan where union == 0 (class absent from GT and prediction)
    acc = inter / label  # nan where the class is absent from the ground truth
    aacc = float(inter.sum() / label.sum()) if label.sum() > 0 else math.nan

    def nanmean(t):
        v = t[~torch.isnan(t)]
        return float(v.mean()) if len(v) else math.nan

    def clean(t):
        return [None if math.isnan(x) else float(x) for x in t.tolist()]

    def pct(x):
        return None if math.isnan(x) else 100.0 * x

    return {
        "miou": pct(nanmean(iou)),
        "macc": pct(nanmean(acc)),
        "aacc": pct(aacc),
        "per_class_iou": clean(iou),
        "per_class_acc": clean(acc),
        "classes_evaluated": int((~torch.isnan(iou)).sum()),
    }


def write_per_class(path: str | os.PathLike, result: dict) -> None:
    """CSV: class index (0-based), annotation value, name, IoU, Acc (percent, empty if undefined)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = result.get("class_names") or [str(i) for i in range(len(result["per_class_iou"]))]
    with open(path, "w", newline="", encoding="utf-8") as f:
        wr = csv.writer(f)
        wr.writerow(["class", "label_value", "name", "iou", "acc"])
        for c, (iou, acc) in enumerate(zip(result["per_class_iou"], result["per_class_acc"], strict=True)):
            wr.writerow(
                [
                    c,
                    c + 1,
                    names[c],
                    "" if iou is None else f"{100 * iou:.4f}",
                    "" if acc is None else f"{100 * acc:.4f}",
                ]
            )


def evaluate_ade20k(
    model: str,
    data: str | os.PathLike,
    *,
    head: str,
    checkpoint: str | os.PathLike | None = None,
    mode: str = "whole",
    clusters: list[int] | None = None,
    workers: int | None = None,
    dtype: str = "fp32",
    limit: int | None = None,
    device: str = "auto",
    skip_bad: bool = False,
    save_predictions: str | os.PathLike | None = None,
    per_class: str | os.PathLike | None = None,
    scale: tuple[int, int] | None = (2048, 512),
    crop_size: int = 512,
    stride: int = 341,
    num_classes: int = 150,
    split: str = "validation",
    channels_last: bool = False,
    net: torch.nn.Module | None = None,
) -> dict:
    """ADE20k semantic segmentation accuracy of backbone ``model`` + ``head`` ('paca' | 'upernet').

    ``checkpoint``: the authors' ``pacahead_*`` / ``upernet_*`` file (mmseg keys). ``mode``:
    'whole' or 'slide' (``crop_size`` crops every ``stride`` pixels). ``scale``: the keep-ratio
    test resize (None: the original size). ``save_predictions``: a folder that receives one
    ``<stem>.png`` per image in the annotations' encoding (1..150). ``per_class``: a CSV of
    per-class IoU/Acc (rank 0). Under torchrun every rank takes a strided shard (each image
    once) and the areas are summed, so all ranks return the same numbers.

    Returns ``miou``, ``macc``, ``aacc`` (percent), ``num_images``, ``per_class_iou`` (fractions,
    None for classes never seen nor predicted), ``throughput_img_s``, ``skipped_images``...
    """
    info = init_distributed(device)
    dev = resolve_device(device, info)
    _check_args(mode, limit, crop_size, stride, num_classes, scale, workers, dtype)
    check_outputs(save_predictions=(save_predictions, "dir"), per_class=(per_class, "file"))

    samples = find_ade_samples(data, split)
    samples = samples[:limit] if limit is not None else samples
    if net is None:
        net = _build(model, head, num_classes, clusters, checkpoint, crop_size, verbose=info.is_main)
        if mode == "whole":
            _check_any_size(net, model, crop_size)
    n_cls = place(net, dev, channels_last).num_classes
    loop = _Loop(n_cls, skip_bad, _prediction_dir(save_predictions))
    ds = ADE20kEval(samples, scale, n_cls)
    how = dict(mode=mode, crop_size=crop_size, stride=stride)
    wall = run_shard(
        loop, net, ds, info, dev, default_workers(workers, info, 4), samples, dev, dtype, channels_last, how
    )
    counts = _gather(loop, wall, info)
    result = _result(
        counts, net, n_cls, model=model, head=head, checkpoint=checkpoint, mode=mode, dtype=dtype,
        device=dev.type, crop_size=crop_size, scale=scale, world_size=info.world_size, dist_backend=info.backend,
    )  # fmt: skip
    if per_class is not None and info.is_main:
        write_or_keep(lambda: write_per_class(per_class, result), per_class, result)
    return result


def _prediction_dir(save_predictions: str | os.PathLike | None) -> Path | None:
    """The folder that receives the predicted PNGs, created; None without ``save_predictions``."""
    if save_predictions is None:
        return None
    out_dir = Path(save_predictions)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"save_predictions must be a folder: {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _gather(loop: _Loop, wall: float, info) -> dict:
    """Sum the ranks' areas and counts (every rank gets the totals); rank 0 gets every rank's
    unreadable files."""
    areas = all_reduce_sum(loop.areas, info)
    seen, n_skipped = (
        int(v) for v in all_reduce_sum(torch.tensor([loop.seen, len(loop.skipped)]), info).tolist()
    )
    wall = reduce_max(wall, info)
    skipped_all = gather_objects(loop.skipped, info)
    skipped_files = [m for part in skipped_all for m in part] if info.is_main else []
    return {
        "areas": areas,
        "seen": seen,
        "n_skipped": n_skipped,
        "wall": wall,
        "skipped_files": skipped_files,
    }


def _result(counts: dict, net, n_cls: int, *, model, head, checkpoint, mode, dtype, device, crop_size,
            scale, world_size, dist_backend=None) -> dict:  # fmt: skip
    seen, wall = counts["seen"], counts["wall"]
    result = {
        "task": "ade20k",
        "model": model,
        "head": head,
        "checkpoint": None if checkpoint is None else os.fspath(checkpoint),
        **metrics_from_areas(counts["areas"]),
        "num_images": seen,
        "skipped_images": counts["n_skipped"],
        "throughput_img_s": seen / wall if wall > 0 else None,
        "wall_s": wall,
        "mode": mode,
        "dtype": dtype,
        "device": device,
        "batch_size": 1,
        "resolution": [crop_size, crop_size],
        "test_scale": None if scale is None else list(scale),
        "world_size": world_size,
        "dist_backend": dist_backend,
        "class_names": list(ADE20K_CLASSES) if n_cls == 150 else None,
        "areas": counts["areas"].tolist(),
    }
    if getattr(net, "load_report", None) is not None:
        result["load_report"] = net.load_report.notice()
    if counts["skipped_files"]:
        result["skipped_files"] = counts["skipped_files"]
    return result


def _check_args(
    mode: str, limit: int | None, crop_size: int, stride: int, num_classes, scale, workers, dtype
) -> None:
    """Every option before any work (the first bad one is the error)."""
    check_dtype(dtype)
    check_workers(workers)
    if num_classes < 1:
        raise UsageError(f"num_classes must be at least 1, got {num_classes}")
    if scale is not None and min(scale) < 1:
        raise UsageError(f"scale must be positive (LONGxSHORT, e.g. 2048x512), got {hw_text(scale)}")
    if mode not in ("whole", "slide"):
        raise UsageError(f"mode must be 'whole' or 'slide', got '{mode}'")
    if limit is not None and limit < 1:
        raise UsageError(f"limit must be at least 1, got {limit}")
    if crop_size < 32 or stride < 1:
        raise UsageError(f"crop size {crop_size} / stride {stride} are invalid")


def _check_any_size(net: torch.nn.Module, model: str, crop_size: int) -> None:
    """Whole-image inference feeds every image at its own size: a backbone fixed to the crop (a
    position table without ``dynamic_img_size``, e.g. CoaT) is refused before the first image, by
    a fake-tensor forward at another size (our families and dynamic models take any size)."""
    from ..models import FAMILIES, ResolutionError, get_spec, probe_size

    if get_spec(model).family in FAMILIES:
        return
    try:
        probe_size(net, (crop_size, crop_size + 64), model)
    except ResolutionError as e:
        raise ResolutionError(f"{e}; whole-image inference needs any size: use mode slide") from None


def _build(model, head, num_classes, clusters, checkpoint, crop_size, *, verbose: bool) -> torch.nn.Module:
    from ..models import CheckpointError, ResolutionError, UnknownModelError
    from ..models.segmentation import create_segmentor

    try:
        return create_segmentor(
            model,
            head,
            num_classes=num_classes,
            clusters=clusters,
            checkpoint=checkpoint,
            img_size=crop_size,
            verbose=verbose,
        )
    except (CheckpointError, ResolutionError, UnknownModelError, ValueError) as e:
        if isinstance(e, (UsageError, ResolutionError)):  # one line already; a size or a model without
            raise  # stage maps the architecture cannot take: a skipped row in a suite, exit 2 from the CLI
        raise UsageError(first_line(e)) from None


@dataclass
class _Loop:
    """The evaluation loop of one rank: areas summed over its images, unreadable files."""

    n_cls: int
    skip_bad: bool
    save_dir: Path | None
    seen: int = 0
    skipped: list[str] = field(default_factory=list)
    error: str | None = None
    areas: torch.Tensor = None  # type: ignore[assignment]

    def run(self, net, loader, samples, dev, dtype: str, channels_last: bool, how: dict) -> None:
        self.areas = torch.zeros(4, self.n_cls, dtype=torch.int64)
        with torch.inference_mode():
            for i, img, lab, msg in loader:
                if msg is not None:
                    if self.skip_bad:
                        self.skipped.append(msg)
                        continue
                    self.error = msg
                    break
                x = img[None].to(dev, non_blocking=True)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast(dtype, dev):
                    logits = net.inference(x, how["mode"], crop_size=how["crop_size"], stride=how["stride"])
                logits = F.interpolate(
                    logits.float(), size=tuple(lab.shape), mode="bilinear", align_corners=False
                )
                pred = logits.argmax(dim=1)[0]
                self.areas += area_stats(pred, lab.to(dev), self.n_cls).cpu()
                self.seen += 1
                if self.save_dir is not None:
                    _save_png(self.save_dir / f"{samples[i].stem}.png", pred)


def _save_png(path: Path, pred: torch.Tensor) -> None:
    from PIL import Image

    Image.fromarray(pred.cpu().numpy().astype(np.uint8) + 1).save(path)


__all__ += ["ADE20kEval"]


def evaluate_case(case) -> dict:
    """A suite's ADE20k case (``pacabench.spec.metrics.TASKS``): the case's head, default PaCa."""
    from .common import case_options

    data, cfg = case_options(case)
    cfg.pop("head", None)
    head = case.head or "paca"
    return evaluate_ade20k(case.model, data, head=head, checkpoint=case.checkpoint, device=case.device, **cfg)
