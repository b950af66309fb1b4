"""ImageNet-1k top-1/top-5 from a local validation set, single process or under torchrun.

Layouts:

* ImageFolder: ``DIR/<wnid>/*.JPEG``; class index = position of the folder in sorted order
  (timm's and torchvision's convention). A root holding ``train/`` and ``val/`` means ``val/``.
* Flat folder + label file (``--labels FILE``): one ``relative/path label_index`` per line
  (the common ``val.txt``); blank lines and ``#`` comments are skipped.

Preprocessing is timm's validation pipeline for the model (``resolve_data_config`` on its
pretrained config, ``create_transform``: resize by crop_pct, center crop, interpolation,
mean/std), with ``img_size``, ``crop_pct``, ``interpolation`` overrides, so predictions equal
what ``timm``'s ``validate.py`` gives for the same model and weights.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UsageError, first_line
from ..measure.precision import autocast
from ..spec.sizes import as_hw
from .common import (
    IMAGE_EXTENSIONS,
    SampleDataset,
    check_dtype,
    check_outputs,
    check_workers,
    default_workers,
    pct,
    place,
    reduce_max,
    require_dir,
    resolve_device,
    run_shard,
    write_or_keep,
)
from .distributed import all_reduce_sum, gather_objects, init_distributed

__all__ = ["Sample", "find_samples", "build_transform", "ImageNetEval", "evaluate_imagenet"]

INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos", "box", "hamming", "random")


@dataclass(frozen=True)
class Sample:
    path: str  # absolute
    rel: str  # as written in the label file / relative to the root
    label: int
    origin: str  # where the label came from, for error messages ("val.txt:12", "folder n01440764")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _parse_label_file(labels: Path, root: Path) -> list[Sample]:
    if not labels.is_file():
        raise UsageError(f"label file not found: {labels}")
    samples = []
    try:
        text = labels.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read label file {labels}: {e}") from None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise UsageError(f"{labels}:{lineno}: expected 'relative/path label_index', got {line!r}")
        rel, lab = parts
        try:
            label = int(lab)
        except ValueError:
            raise UsageError(f"{labels}:{lineno}: label '{lab}' is not an integer (line {line!r})") from None
        if label < 0:
            raise UsageError(f"{labels}:{lineno}: label {label} is negative")
        samples.append(Sample(str(root / rel), rel, label, f"{labels}:{lineno}"))
    if not samples:
        raise UsageError(f"label file {labels} lists no images")
    return samples


def find_samples(
    data: str | os.PathLike, labels: str | os.PathLike | None = None
) -> tuple[list[Sample], str]:
    """Every image of the validation set with its label; returns (samples, layout)."""
    root = require_dir(data, "ImageNet folder")
    if labels is not None:
        return _parse_label_file(Path(labels).expanduser(), root), "labels"
    subdirs = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if subdirs and set(subdirs) <= {"train", "val", "validation", "test"}:
        for split in ("val", "validation"):
            if split in subdirs:
                root = root / split
                subdirs = sorted(
                    e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")
                )
                break
    if not subdirs:
        with os.scandir(root) as it:
            has_images = any(_is_image(e.name) for e in it if e.is_file())
        if has_images:
            raise UsageError(
                f"{root} holds images but no class folders: a flat folder needs a label file "
                "(one 'relative/path label_index' per line)"
            )
        raise UsageError(
            f"no images in {root} (expected <class>/*.JPEG folders, or a flat folder with a label file)"
        )
    samples = []
    for idx, cls in enumerate(subdirs):
        cdir = root / cls
        files = []
        for dirpath, dirnames, filenames in os.walk(cdir):
            dirnames.sort()
            files.extend(os.path.join(dirpath, f) for f in sorted(filenames) if _is_image(f))
        for f in files:
            samples.append(Sample(f, os.path.relpath(f, root), idx, f"class folder {cls} (index {idx})"))
    if not samples:
        raise UsageError(f"no images in the class folders of {root}")
    return samples, "imagefolder"


def build_transform(model: torch.nn.Module, *, img_size=None, crop_pct=None, interpolation=None):
    """timm's eval transform and the data config it came from (validate.py's resolution)."""
    from timm.data import create_transform, resolve_data_config

    args = {}
    if img_size is not None:
        args["input_size"] = (3, *as_hw(img_size))
    if crop_pct is not None:
        if not 0 < crop_pct <= 1.0:
            raise UsageError(f"crop_pct must be in (0, 1], got {crop_pct}")
        args["crop_pct"] = crop_pct
    if interpolation is not None:
        if interpolation not in INTERPOLATIONS:
            raise UsageError(
                f"unknown interpolation '{interpolation}' (choose from {', '.join(INTERPOLATIONS[:-1])})"
            )
        args["interpolation"] = interpolation
    cfg = resolve_data_config(args, model=model, use_test_size=True)
    tf = create_transform(
        input_size=cfg["input_size"],
        is_training=False,
        interpolation=cfg["interpolation"],
        mean=cfg["mean"],
        std=cfg["std"],
        crop_pct=cfg["crop_pct"],
        crop_mode=cfg.get("crop_mode", "center"),
    )
    return tf, cfg


class ImageNetEval(SampleDataset):
    """Items: (image tensor or None, label, index, error message or None). Errors are returned,
    not raised, so a bad file never kills a DataLoader worker with a traceback."""

    def __init__(self, samples: list[Sample], transform):
        super().__init__(samples)
        self.transform = transform

    def __getitem__(self, i: int):
        from PIL import Image

        s = self.samples[i]
        try:
            with open(s.path, "rb") as f:
                img = Image.open(f)
                img = img.convert("RGB")
            x = self.transform(img)
        except FileNotFoundError:
            return None, s.label, i, f"image not found: {s.path} (listed in {s.origin})"
        except Exception as e:  # noqa: BLE001 - any decoding failure is a bad file
            return None, s.label, i, f"cannot read image {s.path}: {first_line(e)}"
        return x, s.label, i, None


def _collate(items):
    good = [it for it in items if it[3] is None]
    bad = [(it[2], it[3]) for it in items if it[3] is not None]
    if good:
        x = torch.stack([it[0] for it in good])
        y = torch.tensor([it[1] for it in good], dtype=torch.int64)
        idx = torch.tensor([it[2] for it in good], dtype=torch.int64)
    else:
        x = y = idx = None
    return x, y, idx, bad


def _to_usage(e: Exception) -> UsageError:
    return UsageError(first_line(e))


def evaluate_imagenet(
    model: str,
    data: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    dtype: str = "fp32",
    img_size: int | tuple[int, int] | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
    limit: int | None = None,
    device: str = "auto",
    skip_bad: bool = False,
    save_predictions: str | os.PathLike | None = None,
    channels_last: bool = False,
    num_classes: int = 1000,
    net: torch.nn.Module | None = None,
) -> dict:
    """ImageNet-1k accuracy of ``model`` (a pacabench name) on a local validation set.

    Works single-process and under torchrun (each rank evaluates a strided shard, every image
    exactly once; counts are summed, so every rank returns the same numbers; only rank 0 writes
    ``save_predictions``). ``limit``: the first N images of the (sorted) set. ``skip_bad``: an
    unreadable image is counted in ``skipped_images`` instead of raising. ``net``: an already
    built model to evaluate instead of building ``model`` (tests, custom weights).

    Returns a dict with Row field names: ``top1``, ``top5`` (percent), ``num_images``,
    ``throughput_img_s`` (images per second over the whole loop, data loading included, all
    ranks together), ``skipped_images``, plus ``resolution``, ``data_config``, ``wall_s``...
    """
    info = init_distributed(device)
    dev = resolve_device(device, info)
    check_dtype(dtype)
    _check_counts(batch_size=batch_size, limit=limit)
    check_workers(workers)
    check_outputs(save_predictions=(save_predictions, "file"))
    samples, layout = find_samples(data, labels)
    samples = samples[:limit] if limit is not None else samples
    net = (_build(model, img_size, num_classes, checkpoint) if net is None else net).eval()
    n_cls = getattr(net, "num_classes", num_classes)
    _check_labels(samples, n_cls)

    transform, cfg = build_transform(net, img_size=img_size, crop_pct=crop_pct, interpolation=interpolation)
    place(net, dev, channels_last)
    loop = _Loop(k=min(5, n_cls), skip_bad=skip_bad, keep_predictions=save_predictions is not None)
    wall = run_shard(loop, net, ImageNetEval(samples, transform), info, dev, default_workers(workers, info, 8),
                     dev, dtype, channels_last, batch_size=batch_size, collate_fn=_collate)  # fmt: skip
    result, skipped_files, pred_rows = _gather(loop, wall, info, save_predictions is not None)
    settings = {"batch_size": batch_size, "dtype": dtype, "device": dev.type, "channels_last": channels_last}
    out = _record(model, checkpoint, result, settings, cfg, layout, info, skipped_files)
    if pred_rows is not None:
        write_or_keep(
            lambda: _write_predictions(Path(save_predictions), pred_rows, samples), save_predictions, out
        )
    return out


def _record(model, checkpoint, result, settings, cfg, layout, info, skipped_files) -> dict:
    """The returned dict: the counts and settings, the resolution and data config actually used."""
    h, w = cfg["input_size"][1:]
    return {
        "task": "imagenet",
        "model": model,
        "checkpoint": None if checkpoint is None else os.fspath(checkpoint),
        **result,
        **settings,
        "resolution": [int(h), int(w)],
        "data_config": {k2: (list(v) if isinstance(v, tuple) else v) for k2, v in cfg.items()},
        "layout": layout,
        **{"world_size": info.world_size, "dist_backend": info.backend},
        **({"skipped_files": skipped_files} if skipped_files else {}),
    }


def _gather(loop: _Loop, wall: float, info, keep_predictions: bool) -> tuple[dict, list, list | None]:
    """Sum the ranks' counts (every rank gets the totals); rank 0 gets the unreadable files and
    (``keep_predictions``) the sorted predictions of every rank."""
    counts = all_reduce_sum(
        torch.tensor([loop.correct1, loop.correct5, loop.seen, len(loop.skipped)], dtype=torch.int64), info
    )
    correct1, correct5, seen, n_skipped = (int(v) for v in counts.tolist())
    wall = reduce_max(wall, info)
    skipped_all = gather_objects(loop.skipped, info)
    rows = None
    if keep_predictions:
        gathered = gather_objects(loop.preds, info)
        if info.is_main:
            rows = sorted((r for part in gathered for r in part), key=lambda r: r[0])
    top1, top5 = pct(correct1, seen), pct(correct5, seen)
    result = {
        "top1": None if math.isnan(top1) else top1,
        "top5": None if math.isnan(top5) else top5,
        "num_images": seen,
        "skipped_images": n_skipped,
        "throughput_img_s": seen / wall if wall > 0 else None,
        "wall_s": wall,
    }
    return result, [m for part in skipped_all for m in part] if info.is_main else [], rows


def _check_counts(**counts: int | None) -> None:
    for name, v in counts.items():
        if v is not None and v < 1:
            raise UsageError(f"{name} must be at least 1, got {v}")


def _build(model: str, img_size, num_classes: int, checkpoint) -> torch.nn.Module:
    from ..models import CheckpointError, ResolutionError, UnknownModelError, create_model

    try:
        return create_model(model, img_size=img_size, num_classes=num_classes, checkpoint=checkpoint)
    except (CheckpointError, ResolutionError, UnknownModelError) as e:
        raise _to_usage(e) from None


def _check_labels(samples: list[Sample], n_cls: int) -> None:
    bad_labels = [s for s in samples if s.label >= n_cls]
    if bad_labels:
        s = bad_labels[0]
        more = f" (and {len(bad_labels) - 1} more)" if len(bad_labels) > 1 else ""
        raise UsageError(f"label {s.label} out of range for a {n_cls}-class model: {s.origin}: {s.rel}{more}")


@dataclass
class _Loop:
    """The evaluation loop of one rank: top-1/top-k hits, unreadable images, predictions."""

    k: int
    skip_bad: bool
    keep_predictions: bool
    correct1: int = 0
    correct5: int = 0
    seen: int = 0
    skipped: list[str] = field(default_factory=list)
    error: str | None = None
    preds: list[tuple[int, int, list[int]]] = field(default_factory=list)

    def run(self, net, loader, dev: torch.device, dtype: str, channels_last: bool) -> None:
        with torch.inference_mode(), autocast(dtype, dev):
            for x, y, idx, bad in loader:
                for _, msg in bad:
                    if self.skip_bad:
                        self.skipped.append(msg)
                    elif self.error is None:
                        self.error = msg
                if self.error is not None:
                    break
                if x is not None:
                    self.batch(net, x.to(dev, non_blocking=True), y, idx, channels_last)

    def batch(self, net, x: torch.Tensor, y: torch.Tensor, idx, channels_last: bool) -> None:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        top = net(x).float().topk(self.k, dim=1).indices.cpu()
        hit = top == y[:, None]
        self.correct1 += int(hit[:, 0].sum())
        self.correct5 += int(hit.any(dim=1).sum())
        self.seen += len(y)
        if self.keep_predictions:
            self.preds.extend((int(i), int(t[0]), t.tolist()) for i, t in zip(idx, top, strict=True))


def _write_predictions(path: Path, rows, samples: list[Sample]) -> None:
    """CSV (``.csv``) or JSON lines (anything else): path, label, top-1 and top-5 predictions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            wr = csv.writer(f)
            wr.writerow(["path", "label", "pred", "top5"])
            for i, p1, top in rows:
                wr.writerow([samples[i].rel, samples[i].label, p1, " ".join(map(str, top))])
    else:
        with open(path, "w", encoding="utf-8") as f:
            for i, p1, top in rows:
                f.write(
                    json.dumps({"path": samples[i].rel, "label": samples[i].label, "pred": p1, "top5": top})
                    + "\n"
                )


def evaluate_case(case) -> dict:
    """A suite's ImageNet case (``pacabench.spec.metrics.TASKS``): the model config's input size."""
    from .common import case_options

    data, cfg = case_options(case)
    return evaluate_imagenet(
        case.model,
        data,
        checkpoint=case.checkpoint,
        device=case.device,
        dtype=case.dtype,
        img_size=None,
        **cfg,
    )
