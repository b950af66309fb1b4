"""COCO detection and instance segmentation: Mask R-CNN on a pacabench backbone, pycocotools AP.

``evaluate_coco(model, data, ann, ...)`` reads a COCO-format annotation file and its image
folder, runs the detector (``pacabench.models.detection.create_detector``) one image at a time
(as mmdet's test loop: batch 1, 1333×800 keep-ratio resize, padding to 32), RLE-encodes the
masks and scores bbox and segm with pycocotools' ``COCOeval``. Metrics are **percentages**
(AP × 100, as the papers print them): ``bbox_ap, bbox_ap50, bbox_ap75, bbox_aps, bbox_apm,
bbox_apl`` and the same for ``segm_``; an area range without ground truth (COCOeval's -1) is
reported as None.

Category ids: with 80 classes the model's label i is COCO's i-th category id
(``COCO_CATEGORY_IDS``: 1..90 with gaps); the annotation file's categories must be a subset of
those (predictions of classes the file lacks are dropped). With another ``num_classes`` the
labels map to the file's category ids in sorted order.

Under torchrun every rank evaluates its strided shard of the (sorted) images once; detections
are gathered to rank 0, which writes ``--save-predictions`` (COCO results format: a JSON list of
``{image_id, category_id, bbox [x, y, w, h], score, segmentation {size, counts}}``) and runs
COCOeval once; the metrics are broadcast so every rank returns the same dict.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..errors import UsageError, first_line
from ..paths import OutputWriteError
from .common import require_dir, resolve_device
from .distributed import DistInfo, cleanup, gather_objects, init_distributed, shard_indices

__all__ = [
    "METRIC_KEYS",
    "evaluate_coco",
    "load_coco_annotations",
    "label_to_category_map",
    "detections_to_coco",
    "coco_metrics",
]

_STAT_NAMES = ("ap", "ap50", "ap75", "aps", "apm", "apl")
METRIC_KEYS = [f"{iou}_{s}" for iou in ("bbox", "segm") for s in _STAT_NAMES]


# --------------------------------------------------------------------------------------------
# annotations
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet():
    """pycocotools prints progress to stdout (keep stdout for the one JSON object) and, with
    numpy 2, raises a DeprecationWarning about ``__array__(copy=...)`` in its Cython code."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield buf


def load_coco_annotations(ann: str | os.PathLike):
    """Read and check a COCO instances file → ``pycocotools.coco.COCO`` (UsageError naming the file)."""
    from pycocotools.coco import COCO

    path = Path(ann).expanduser()
    if not path.exists():
        raise UsageError(f"annotation file not found: {path}")
    if not path.is_file():
        raise UsageError(f"annotation file is not a file: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read annotation file {path}: {e}") from None

    def bad(why: str) -> UsageError:
        return UsageError(f"{path}: not a COCO instances file ({why})")

    if not isinstance(d, dict):
        raise bad("top level is not an object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(d.get(key), list):
            raise bad(f"no '{key}' list")
    for im in d["images"]:
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise bad("an image without 'id' and 'file_name'")
    for c in d["categories"]:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int):
            raise bad("a category without an integer 'id'")
    image_ids = {im["id"] for im in d["images"]}
    for a in d["annotations"]:
        if not isinstance(a, dict) or not {"image_id", "category_id", "bbox"} <= set(a):
            raise bad("an annotation without image_id, category_id and bbox")
        if a["image_id"] not in image_ids:
            raise bad(f"annotation {a.get('id')} refers to unknown image {a['image_id']}")
        if "id" not in a:
            raise bad("an annotation without 'id'")
        if "area" not in a:
            x, y, w, h = a["bbox"]
            a["area"] = float(w) * float(h)
        a.setdefault("iscrowd", 0)
    if not d["images"]:
        raise bad("no images")
    coco = COCO()
    coco.dataset = d
    with _quiet():
        coco.createIndex()
    return coco


def label_to_category_map(coco, num_classes: int = 80) -> dict[int, int]:
    """Model label (1-based) → the annotation file's category id."""
    from ..models.detection import COCO_CATEGORY_IDS

    file_ids = sorted(coco.getCatIds())
    if num_classes == len(COCO_CATEGORY_IDS):
        unknown = [c for c in file_ids if c not in COCO_CATEGORY_IDS]
        if unknown:
            raise UsageError(
                f"annotation categories {unknown[:5]} are not among COCO's 80 category ids "
                "(which an 80-class model predicts)"
            )
        keep = set(file_ids)
        return {i + 1: c for i, c in enumerate(COCO_CATEGORY_IDS) if c in keep}
    if len(file_ids) > num_classes:
        raise UsageError(f"the annotation file has {len(file_ids)} categories, the model only {num_classes}")
    return {i + 1: c for i, c in enumerate(file_ids)}


# --------------------------------------------------------------------------------------------
# detections -> COCO results
# --------------------------------------------------------------------------------------------


def _rle(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_util

    with _quiet():
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]
    return {
        "size": [int(s) for s in rle["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def detections_to_coco(
    image_id: int,
    boxes: torch.Tensor | np.ndarray,
    scores: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    masks: torch.Tensor | np.ndarray | None,
    label_to_cat: dict[int, int],
) -> list[dict[str, Any]]:
    """One image's detections (boxes x1,y1,x2,y2 in original pixels; labels 1-based; masks N×H×W
    bool) → COCO result dicts with ``bbox`` [x, y, w, h] and an RLE ``segmentation``."""
    boxes = np.asarray(torch.as_tensor(boxes).detach().cpu().float(), dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(torch.as_tensor(scores).detach().cpu().float(), dtype=np.float64).reshape(-1)
    labels = np.asarray(torch.as_tensor(labels).detach().cpu(), dtype=np.int64).reshape(-1)
    if masks is not None:
        masks = torch.as_tensor(masks).detach().cpu().numpy()
    out = []
    for i in range(len(scores)):
        cat = label_to_cat.get(int(labels[i]))
        if cat is None:
            continue
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        r: dict[str, Any] = {
            "image_id": int(image_id),
            "category_id": int(cat),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(scores[i]),
        }
        if masks is not None:
            r["segmentation"] = _rle(masks[i] >= 0.5 if masks.dtype != np.bool_ else masks[i])
        out.append(r)
    return out


def coco_metrics(
    coco_gt,
    results: list[dict[str, Any]],
    image_ids: list[int] | None = None,
    iou_types: tuple[str, ...] = ("bbox", "segm"),
    log=None,
) -> dict[str, float | None]:
    """pycocotools COCOeval on ``results`` → {bbox_ap, …, segm_apl} in percent (None for -1).

    ``image_ids``: the images that were evaluated (the others are left out of the score, as
    with --limit). ``log``: a file to print COCOeval's summaries to (default: nowhere).
    """
    from pycocotools.cocoeval import COCOeval

    metrics: dict[str, float | None] = {}
    for iou_type in iou_types:
        if iou_type == "segm":
            # as mmdet: without "bbox" loadRes takes the area from the mask, so APs/APm/APl use
            # mask areas (with it, COCO uses the box area for the size ranges)
            res = [{k: v for k, v in r.items() if k != "bbox"} for r in results if "segmentation" in r]
        else:
            res = list(results)
        with _quiet() as buf:
            if res:
                dt = coco_gt.loadRes([dict(r) for r in res])
            else:  # loadRes cannot take an empty list; no detections scores 0 (-1 without GT)
                from pycocotools.coco import COCO

                dt = COCO()
                dt.dataset = {
                    "images": list(coco_gt.dataset["images"]),
                    "annotations": [],
                    "categories": list(coco_gt.dataset["categories"]),
                }
                dt.createIndex()
            ev = COCOeval(coco_gt, dt, iou_type)
            if image_ids is not None:
                ev.params.imgIds = sorted(image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        if log is not None:
            print(f"[coco] {iou_type}\n" + buf.getvalue().rstrip(), file=log)
        for name, v in zip(_STAT_NAMES, ev.stats[:6], strict=False):
            metrics[f"{iou_type}_{name}"] = None if v < 0 else float(v) * 100.0
    return metrics


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------


def _read_image(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255.0)


class _Images(torch.utils.data.Dataset):
    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return i, _read_image(self.paths[i]), None
        except Exception as e:  # noqa: BLE001 - reported as a one-line usage error
            return i, None, f"cannot read image {self.paths[i]}: {first_line(e)}"


def _broadcast(obj, info: DistInfo):
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _collective_error(error: str | None, info: DistInfo) -> None:
    from .common import raise_if_any_failed

    raise_if_any_failed(error, info)


def evaluate_coco(
    model: str,
    data: str | os.PathLike,
    ann: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    num_classes: int = 80,
    # the test protocol: short side, long-side cap, RPN proposals kept, detections per image
    min_size: int = 800,
    max_size: int = 1333,
    max_proposals: int = 1000,
    max_detections: int = 100,
    score_threshold: float = 0.05,
    limit: int | None = None,
    device: str = "auto",
    workers: int = 2,
    seed: int = 0,
    save_predictions: str | os.PathLike | None = None,
    log=None,
) -> dict[str, Any]:
    """COCO bbox/segm AP of Mask R-CNN on ``model`` (a backbone name) over ``data`` + ``ann``.

    ``checkpoint``: the authors' mmdet Mask R-CNN file (random weights without one, seeded by
    ``seed`` so every rank builds the same model). ``limit``: the first N images by id (and only
    those are scored). ``save_predictions``: write the COCO-format results JSON (rank 0).
    ``min_size``/``max_size``: test scale (mmdet: 800/1333); ``max_proposals`` and
    ``max_detections`` are the RPN's kept proposals and the detections per image (protocol:
    1000 and 100; smaller only for quick checks); ``score_threshold``: detections kept above this
    score (mmdet's ``score_thr``, protocol 0.05). Works single-process and under torchrun.

    Returns ``{bbox_ap, bbox_ap50, bbox_ap75, bbox_aps, bbox_apm, bbox_apl, segm_ap, …,
    segm_apl}`` as percentages, plus ``num_images``, ``num_detections``, ``model``,
    ``checkpoint``, ``device``, ``world_size`` and ``wall_s``.
    """
    t0 = time.perf_counter()
    was_initialised = dist.is_available() and dist.is_initialized()
    info = init_distributed(device)
    try:
        _check_args(limit=limit, min_size=min_size, max_size=max_size, max_proposals=max_proposals,
                    max_detections=max_detections, score_threshold=score_threshold, workers=workers,
                    save_predictions=save_predictions)  # fmt: skip
        dev = resolve_device(device, info)
        coco = load_coco_annotations(ann)
        img_dir = require_dir(data, "image folder")
        label_to_cat = label_to_category_map(coco, num_classes)
        image_ids, mine, paths = _my_images(coco, img_dir, limit, info)
        torch.manual_seed(seed)
        det = _build(model, num_classes, checkpoint, min_size, max_size, max_proposals, max_detections,
                     score_threshold).to(dev).eval()  # fmt: skip
        loader = torch.utils.data.DataLoader(_Images(paths), batch_size=None, num_workers=int(workers))
        results, error = _detect_all(det, loader, mine, label_to_cat, dev, info, log)
        _collective_error(error, info)
        metrics = _score(coco, results, image_ids, info, save_predictions, log)
        result = _record(metrics, len(image_ids), model, checkpoint, dev, info, wall=time.perf_counter() - t0)
        if metrics.get("write_error"):
            raise OutputWriteError(metrics["write_error"], result)
        return result
    finally:
        if not was_initialised:
            cleanup(info)


def _my_images(coco, img_dir: Path, limit: int | None, info: DistInfo) -> tuple[list, list, list[Path]]:
    """The image ids scored (the first ``limit`` by id), this rank's shard of them and their files;
    a missing file is every rank's error."""
    image_ids = sorted(coco.getImgIds())[:limit] if limit is not None else sorted(coco.getImgIds())
    mine = [image_ids[i] for i in shard_indices(len(image_ids), info)]
    paths = [img_dir / coco.imgs[i]["file_name"] for i in mine]
    missing = next((p for p in paths if not p.is_file()), None)
    _collective_error(f"image not found: {missing}" if missing is not None else None, info)
    return image_ids, mine, paths


def _record(metrics: dict, num_images: int, model, checkpoint, dev, info: DistInfo, wall: float) -> dict:
    """The returned dict: the AP metrics, counts, what was evaluated where, the wall time."""
    return {
        **{k: metrics[k] for k in METRIC_KEYS},
        "num_images": num_images,
        "num_detections": metrics["num_detections"],
        "model": model,
        "checkpoint": os.fspath(checkpoint) if checkpoint is not None else None,
        "device": dev.type,
        "world_size": info.world_size,
        "dist_backend": info.backend,
        "wall_s": wall,
    }


def _check_args(*, limit, min_size, max_size, max_proposals, max_detections, score_threshold, workers,
                save_predictions) -> None:  # fmt: skip
    """Every option before any work: counts at least 1, a score in [0, 1], a writable output."""
    from .common import check_outputs, check_workers

    for name, v in (("limit", limit), ("min_size", min_size), ("max_size", max_size),
                    ("max_proposals", max_proposals), ("max_detections", max_detections)):  # fmt: skip
        if v is not None and v < 1:
            raise UsageError(f"{name} must be at least 1, got {v}")
    if not 0.0 <= score_threshold <= 1.0:
        raise UsageError(f"score_threshold must be between 0 and 1, got {score_threshold}")
    check_workers(workers)
    check_outputs(save_predictions=(save_predictions, "file"))


def _build(
    model, num_classes, checkpoint, min_size, max_size, max_proposals, max_detections, score_threshold=0.05
):
    from ..models import CheckpointError, UnknownModelError
    from ..models.detection import create_detector

    try:
        return create_detector(
            model,
            num_classes=num_classes,
            checkpoint=checkpoint,
            min_size=min_size,
            max_size=max_size,
            rpn_pre_nms_top_n=1000,
            rpn_post_nms_top_n=max_proposals,
            detections_per_img=max_detections,
            score_thresh=score_threshold,
        )
    except (CheckpointError, UnknownModelError) as e:
        raise UsageError(str(e)) from None


def _detect_all(
    det, loader, image_ids, label_to_cat, dev, info, log
) -> tuple[list[dict[str, Any]], str | None]:
    """This rank's detections as COCO results, and the first unreadable image (or None)."""
    results: list[dict[str, Any]] = []
    with torch.inference_mode():
        for i, img, err in loader:
            if err is not None:
                return results, err
            out = det([img.to(dev)])[0]
            results.extend(
                detections_to_coco(
                    image_ids[i], out["boxes"], out["scores"], out["labels"], out.get("masks"), label_to_cat
                )
            )
            if log is not None and (i + 1) % 100 == 0:
                print(f"[coco] rank {info.rank}: {i + 1}/{len(image_ids)} images", file=log)
    return results, None


def _score(coco, results, image_ids, info, save_predictions, log) -> dict[str, Any]:
    """Every rank's detections scored by pycocotools on rank 0; every rank gets the metrics."""
    gathered = gather_objects(results, info)
    metrics: dict[str, Any] | None = None
    if info.is_main:
        all_results = [r for part in gathered for r in part]
        all_results.sort(key=lambda r: (r["image_id"], -r["score"]))
        metrics = coco_metrics(coco, all_results, image_ids, log=log)
        metrics["num_detections"] = len(all_results)
        if save_predictions is not None:  # after scoring: a failed write keeps the metrics
            try:
                with open(Path(save_predictions).expanduser(), "w", encoding="utf-8") as f:
                    json.dump(all_results, f)
            except OSError as e:
                metrics["write_error"] = f"cannot write {save_predictions}: {e.strerror or e}"
    return _broadcast(metrics, info)


def evaluate_case(case) -> dict:
    """A suite's COCO case (``pacabench.spec.metrics.TASKS``): ``eval.coco.ann`` names the annotations."""
    from .common import case_options

    data, cfg = case_options(case)
    ann = cfg.pop("ann")
    return evaluate_coco(case.model, data, ann, checkpoint=case.checkpoint, device=case.device, **cfg)
