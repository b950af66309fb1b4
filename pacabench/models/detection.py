"""Mask R-CNN (FPN) on any pacabench backbone, configured as the PaCa-ViT authors' mmdet config.

Built from torchvision's detection components (``MaskRCNN``, ``RegionProposalNetwork``,
``RoIHeads``, ``FeaturePyramidNetwork``, ``GeneralizedRCNNTransform``), with three small
subclasses where torchvision's defaults differ from mmdetection's Mask R-CNN:

* anchors (``MMDetAnchorGenerator``): mmdet's base anchors are not rounded to integers and the
  level strides are the fixed 4/8/16/32/64 (torchvision rounds, and infers strides from
  ``padded_size // feature_size``, which is 61 rather than 64 on an odd stride-64 map);
* RoI pooling (``MMDetRoIAlign``): mmcv ``RoIAlign(aligned=True, sampling_ratio=0)`` on the
  stride 4–32 maps, level = ``floor(log2(sqrt(wh) / 56 + 1e-6))`` (torchvision: aligned=False);
* image transform (``MMDetTransform``): test-time resize to 1333×800 keeping the ratio with
  mmcv's rounding of the new size and a uint8-rounded bilinear resample, ImageNet
  normalisation, zero padding to a multiple of 32; masks pasted back with mmdet's
  ``_do_paste_mask`` (grid_sample of the 28×28 probabilities, threshold ``>= 0.5``).

The rest is the mmdet config: FPN 256 channels on strides 4–32 plus a max-pooled stride-64
level; RPN head one 3×3 conv, 3 anchors per position (32–512, ratios 0.5/1/2), 1000 top
proposals per level before NMS 0.7, 1000 kept; two shared FCs of 1024; class-specific box
regression with target stds 0.1/0.1/0.2/0.2 (= torchvision box-coder weights 10/10/5/5);
score threshold 0.05, NMS 0.5, at most 100 detections; mask head four 3×3 convs, a 2×2
deconvolution and a 1×1 classifier on 14×14 RoIs.

Checkpoints: the authors' mmdet files (``mask_rcnn_<backbone>_mstrain_480_800_1x_coco.pth``)
are mapped onto the torchvision modules by ``mmdet_to_torchvision``; ``torchvision_to_mmdet``
is the exact inverse. Class order: mmdet's classifier has 81 outputs with background *last*,
torchvision's has background *first*; mmdet regresses (and segments) the 80 object classes
only, torchvision also has rows for the background, which are zero-filled on import (they are
never used at inference) and dropped on export.
"""

from __future__ import annotations

import math
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from . import (
    FAMILIES,
    CheckpointError,
    create_model,
    feature_channels,
    feature_strides,
    get_spec,
    probe_size,
    read_state_dict,
)
from ._checkpoint import fit_problems, summarise_keys

__all__ = [
    "COCO_CATEGORY_IDS",
    "BOX_STDS",
    "MMDetAnchorGenerator",
    "MMDetRoIAlign",
    "MMDetTransform",
    "BackboneFPN",
    "create_detector",
    "mmdet_to_torchvision",
    "torchvision_to_mmdet",
    "load_detector_checkpoint",
    "detector_params",
    "detector_flops",
    "paste_masks_mmdet",
]

# COCO's 80 object categories: model label i (1-based; 0 is background) -> COCO category id.
COCO_CATEGORY_IDS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
    28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
    54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
    81, 82, 84, 85, 86, 87, 88, 89, 90,
]  # fmt: skip

# mmdet DeltaXYWHBBoxCoder target_stds of the RoI box head; torchvision's BoxCoder divides the
# predicted deltas by its weights, mmdet multiplies them by the stds: weights = 1 / stds.
BOX_STDS = (0.1, 0.1, 0.2, 0.2)
BOX_CODER_WEIGHTS = tuple(1.0 / s for s in BOX_STDS)  # (10, 10, 5, 5)

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # = mmdet img_norm_cfg mean/255 (123.675, 116.28, 103.53)
IMAGENET_STD = (0.229, 0.224, 0.225)  # = std/255 (58.395, 57.12, 57.375)

FPN_CHANNELS = 256
ANCHOR_STRIDES = (4, 8, 16, 32, 64)
ANCHOR_SIZES = tuple(8 * s for s in ANCHOR_STRIDES)  # octave_base_scale 8 -> 32 .. 512
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
ROI_STRIDES = (4, 8, 16, 32)


# --------------------------------------------------------------------------------------------
# mmdet-equivalent components
# --------------------------------------------------------------------------------------------


class MMDetAnchorGenerator(AnchorGenerator):
    """torchvision's anchor generator with mmdet's anchors: unrounded, fixed level strides.

    mmdet ``AnchorGenerator(strides=[4..64], scales=[8], ratios=[0.5, 1, 2], center_offset=0)``:
    base anchor of size s and ratio r is centred on 0 with h = s·√r, w = s/√r, shifted by
    (x·stride, y·stride); order per position: ratios. Same order as torchvision.
    """

    def __init__(
        self,
        sizes=tuple((s,) for s in ANCHOR_SIZES),
        aspect_ratios=(ANCHOR_RATIOS,) * 5,
        strides: Sequence[int] = ANCHOR_STRIDES,
    ):
        super().__init__(sizes, aspect_ratios)
        self.strides = tuple(int(s) for s in strides)

    def generate_anchors(self, scales, aspect_ratios, dtype=torch.float32, device=torch.device("cpu")):
        scales = torch.as_tensor(scales, dtype=dtype, device=device)
        aspect_ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)
        h_ratios = torch.sqrt(aspect_ratios)
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).view(-1)
        hs = (h_ratios[:, None] * scales[None, :]).view(-1)
        return torch.stack([-ws, -hs, ws, hs], dim=1) / 2  # no .round(): mmdet keeps fractions

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        grid_sizes = [fm.shape[-2:] for fm in feature_maps]
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        strides = [
            [
                torch.tensor(s, dtype=torch.int64, device=device),
                torch.tensor(s, dtype=torch.int64, device=device),
            ]
            for s in self.strides[: len(grid_sizes)]
        ]
        self.set_cell_anchors(dtype, device)
        per_level = self.grid_anchors(grid_sizes, strides)
        all_anchors = torch.cat(per_level)
        return [all_anchors for _ in range(len(image_list.image_sizes))]


class MMDetRoIAlign(MultiScaleRoIAlign):
    """mmdet ``SingleRoIExtractor`` + mmcv ``RoIAlign(output_size, sampling_ratio=0, aligned=True)``.

    RoIs go to level ``floor(log2(sqrt(w·h) / finest_scale + 1e-6))`` clamped to the available
    levels (the same rule as torchvision's LevelMapper up to the epsilon), pooled with
    ``aligned=True`` (half-pixel offset, as mmcv) and the adaptive sampling ratio 0.
    """

    def __init__(
        self,
        featmap_names: list[str],
        output_size: int,
        *,
        strides: Sequence[int] = ROI_STRIDES,
        sampling_ratio: int = 0,
        aligned: bool = True,
        finest_scale: int = 56,
    ):
        super().__init__(featmap_names, output_size, sampling_ratio)
        self.strides = tuple(int(s) for s in strides)
        self.aligned = aligned
        self.finest_scale = finest_scale

    def roi_levels(self, rois: Tensor, num_levels: int) -> Tensor:
        scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
        lvl = torch.floor(torch.log2(scale / self.finest_scale + 1e-6))
        return lvl.clamp(min=0, max=num_levels - 1).long()

    def forward(
        self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> Tensor:
        feats = [x[n] for n in self.featmap_names]
        rois = torch.cat(
            [torch.cat([b.new_full((b.shape[0], 1), float(i)), b], dim=1) for i, b in enumerate(boxes)], dim=0
        )
        c = feats[0].shape[1]
        out = feats[0].new_zeros((rois.shape[0], c, *self.output_size))
        if rois.shape[0] == 0:
            return out
        levels = self.roi_levels(rois, len(feats))
        for lvl, (feat, stride) in enumerate(zip(feats, self.strides, strict=False)):
            idx = torch.nonzero(levels == lvl).squeeze(1)
            if idx.numel() == 0:
                continue
            out[idx] = roi_align(
                feat,
                rois[idx],
                self.output_size,
                spatial_scale=1.0 / stride,
                sampling_ratio=self.sampling_ratio,
                aligned=self.aligned,
            ).to(out.dtype)
        return out

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(featmap_names={self.featmap_names}, output_size={self.output_size}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}, strides={self.strides})"
        )


def paste_masks_mmdet(
    masks: Tensor, boxes: Tensor, img_h: int, img_w: int, threshold: float | None = 0.5
) -> Tensor:
    """mmdet's ``_do_paste_mask``: sample each R×R mask probability map at the centres of the
    image pixels its box covers (``grid_sample``, align_corners=False), then ``>= threshold``.

    masks: N×1×R×R probabilities; boxes: N×4 (x1, y1, x2, y2) in image pixels. Returns N×H×W
    bool (or float probabilities with ``threshold=None``).
    """
    n = masks.shape[0]
    dtype = torch.bool if threshold is not None else torch.float32
    out = torch.zeros((n, img_h, img_w), dtype=dtype, device=masks.device)
    for i in range(n):
        x0, y0, x1, y1 = (float(v) for v in boxes[i])
        xa = max(int(math.floor(x0)) - 1, 0)
        ya = max(int(math.floor(y0)) - 1, 0)
        xb = min(int(math.ceil(x1)) + 1, img_w)
        yb = min(int(math.ceil(y1)) + 1, img_h)
        if xb <= xa or yb <= ya:
            continue
        ys = torch.arange(ya, yb, device=masks.device, dtype=torch.float32) + 0.5
        xs = torch.arange(xa, xb, device=masks.device, dtype=torch.float32) + 0.5
        ys = (ys - y0) / (y1 - y0) * 2 - 1 if y1 > y0 else torch.zeros_like(ys)
        xs = (xs - x0) / (x1 - x0) * 2 - 1 if x1 > x0 else torch.zeros_like(xs)
        grid = torch.stack(
            [xs[None, :].expand(ys.numel(), xs.numel()), ys[:, None].expand(ys.numel(), xs.numel())], dim=2
        )
        m = F.grid_sample(masks[i : i + 1].float(), grid[None], align_corners=False)[0, 0]
        out[i, ya:yb, xa:xb] = (m >= threshold) if threshold is not None else m
    return out


class MMDetTransform(GeneralizedRCNNTransform):
    """Test-time pipeline of the mmdet config on float RGB images in [0, 1] (C×H×W).

    Resize keeping the ratio so the image fits ``max_size``×``min_size`` (mmcv ``imrescale``:
    scale = min(max_size / long side, min_size / short side), new size ``int(x·scale + 0.5)``),
    bilinear (align_corners=False) with the result rounded to uint8 levels as cv2 does on the
    uint8 image, ImageNet normalisation, zero padding to a multiple of 32. Outputs: boxes scaled
    back by the resize factors, masks pasted with mmdet's rule into bool H×W maps.
    """

    def __init__(
        self,
        min_size: int = 800,
        max_size: int = 1333,
        *,
        size_divisible: int = 32,
        mask_threshold: float | None = 0.5,
    ):
        super().__init__(
            min_size, max_size, list(IMAGENET_MEAN), list(IMAGENET_STD), size_divisible=size_divisible
        )
        self.mask_threshold = mask_threshold

    def normalize(self, image: Tensor) -> Tensor:  # done in resize(), after the uint8 rounding
        if not image.is_floating_point():
            raise TypeError(f"expected a float image in [0, 1], got {image.dtype}")
        return image

    def target_size(self, h: int, w: int) -> tuple[int, int]:
        scale = min(self.max_size / max(h, w), self.min_size[-1] / min(h, w))
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None):
        h, w = image.shape[-2:]
        nh, nw = self.target_size(int(h), int(w))
        if (nh, nw) != (h, w):
            image = F.interpolate(image[None] * 255.0, size=(nh, nw), mode="bilinear", align_corners=False)[0]
            image = image.round().clamp(0, 255) / 255.0
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)[:, None, None]
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)[:, None, None]
        image = (image - mean) / std
        if target is not None:
            target = dict(target)
            target["boxes"] = resize_boxes(target["boxes"], (h, w), (nh, nw))
            if "masks" in target:
                target["masks"] = F.interpolate(target["masks"][:, None].float(), size=(nh, nw))[:, 0].byte()
        return image, target

    def postprocess(self, result, image_shapes, original_image_sizes):
        if self.training:
            return result
        for i, (pred, im_s, o_im_s) in enumerate(
            zip(result, image_shapes, original_image_sizes, strict=False)
        ):
            # mmdet: bboxes / scale_factor with scale_factor = new / original per axis
            sh, sw = im_s[0] / o_im_s[0], im_s[1] / o_im_s[1]
            boxes = pred["boxes"] / torch.tensor(
                [sw, sh, sw, sh], dtype=pred["boxes"].dtype, device=pred["boxes"].device
            )
            result[i]["boxes"] = boxes
            if "masks" in pred:
                result[i]["masks"] = paste_masks_mmdet(
                    pred["masks"], boxes, int(o_im_s[0]), int(o_im_s[1]), self.mask_threshold
                )
        return result


class BackboneFPN(nn.Module):
    """A backbone's stage maps → FPN → one map per stage named '0', '1', … plus 'pool' (our
    families: strides 4–32 and 64; any other model: its ``feature_info`` strides and twice the last)."""

    def __init__(self, body: nn.Module, in_channels: Sequence[int], out_channels: int = FPN_CHANNELS):
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(list(in_channels), out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        feats = self.body(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


# --------------------------------------------------------------------------------------------
# builder
# --------------------------------------------------------------------------------------------


def create_detector(
    backbone: str,
    *,
    num_classes: int = 80,
    checkpoint: str | os.PathLike | dict | None = None,
    min_size: int = 800,
    max_size: int = 1333,
    rpn_pre_nms_top_n: int = 1000,
    rpn_post_nms_top_n: int = 1000,
    detections_per_img: int = 100,
    score_thresh: float = 0.05,
    mask_threshold: float | None = 0.5,
) -> MaskRCNN:
    """Mask R-CNN (FPN) on ``backbone`` (any ``pacabench models`` name, any timm architecture with
    feature extraction, a factory whose model has ``feature_info``), in eval mode. The levels,
    anchor strides and RoI strides follow the backbone's ``feature_info`` (the mmdet config's
    4–64 for our families).

    ``num_classes``: object classes (80 for COCO; the classifier has one more, background at
    index 0). ``checkpoint``: an mmdet Mask R-CNN checkpoint (keys ``backbone.*``, ``neck.*``,
    ``rpn_head.*``, ``roi_head.*``), or this model's own ``state_dict`` (``roi_heads.*``), as a
    path or an in-memory dict. Without one the detector has random weights (seed torch first
    for reproducibility). The other arguments are the test configuration (mmdet defaults).
    """
    spec = get_spec(backbone)
    mm_sd = own_sd = None
    if checkpoint is not None:
        if isinstance(checkpoint, dict):
            inner = next(
                (checkpoint[w] for w in ("state_dict", "model") if isinstance(checkpoint.get(w), dict)), None
            )
            sd = dict(inner if inner is not None else checkpoint)
        else:
            sd = read_state_dict(checkpoint)
        sd = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in sd.items()}
        if any(k.startswith("roi_heads.") for k in sd):
            own_sd = sd
        elif any(k.startswith(("roi_head.", "neck.", "rpn_head.")) for k in sd):
            mm_sd = sd
        else:
            raise CheckpointError(
                f"{_ckpt_name(checkpoint)} is not a Mask R-CNN checkpoint (no neck./rpn_head./roi_head. keys)"
            )

    kwargs = dict(spec.family_spec.detection_kwargs)
    backbone_ckpt = None
    if mm_sd is not None:
        backbone_ckpt = {k[len("backbone.") :]: v for k, v in mm_sd.items() if k.startswith("backbone.")}
        if not backbone_ckpt:
            raise CheckpointError(f"{_ckpt_name(checkpoint)} has no backbone.* weights")
    # create_model's loader takes a path or a state_dict and applies the family's key filter
    if spec.source == "timm":
        kwargs["num_classes"] = 0  # no classifier: a detection checkpoint has none to load
    if spec.source == "timm" and spec.family not in FAMILIES:
        kwargs["dynamic_img_size"] = True  # every test image has its own size, where the builder allows
    body = create_model(backbone, features_only=True, checkpoint=backbone_ckpt, **kwargs)  # type: ignore[arg-type]
    if spec.family not in FAMILIES:
        # a test image's short side is min_size: a backbone fixed to another size (a position table
        # without dynamic_img_size, e.g. CoaT) is refused here, a ResolutionError (a skipped row in
        # a suite), instead of failing on the first image
        probe_size(body, (min_size, min_size), backbone)
    model = _assemble(
        body,
        num_classes,
        min_size=min_size,
        max_size=max_size,
        rpn_pre_nms_top_n=rpn_pre_nms_top_n,
        rpn_post_nms_top_n=rpn_post_nms_top_n,
        detections_per_img=detections_per_img,
        score_thresh=score_thresh,
        mask_threshold=mask_threshold,
    )
    model.pacabench_backbone = backbone
    if mm_sd is not None:
        heads = {k: v for k, v in mm_sd.items() if not k.startswith("backbone.")}
        load_detector_checkpoint(model, heads, source=_ckpt_name(checkpoint), heads_only=True)
    elif own_sd is not None:
        load_detector_checkpoint(model, own_sd, source=_ckpt_name(checkpoint))
    return model.eval()


def _ckpt_name(checkpoint) -> str:
    return "checkpoint" if isinstance(checkpoint, dict) else os.fspath(checkpoint)


def _assemble(
    body: nn.Module,
    num_classes: int,
    *,
    min_size,
    max_size,
    rpn_pre_nms_top_n,
    rpn_post_nms_top_n,
    detections_per_img,
    score_thresh,
    mask_threshold,
) -> MaskRCNN:
    neck = BackboneFPN(body, feature_channels(body))
    strides = feature_strides(body)  # our families: 4, 8, 16, 32 (ROI_STRIDES)
    levels = [str(i) for i in range(len(strides))]
    anchor_strides = (*strides, 2 * strides[-1])  # + the max-pooled level
    c = FPN_CHANNELS
    model = MaskRCNN(
        neck,
        num_classes=None,
        min_size=min_size,
        max_size=max_size,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        rpn_anchor_generator=MMDetAnchorGenerator(
            tuple((8 * s,) for s in anchor_strides), (ANCHOR_RATIOS,) * len(anchor_strides), anchor_strides
        ),
        rpn_head=RPNHead(c, len(ANCHOR_RATIOS)),
        rpn_pre_nms_top_n_train=2000,
        rpn_post_nms_top_n_train=1000,
        rpn_pre_nms_top_n_test=rpn_pre_nms_top_n,
        rpn_post_nms_top_n_test=rpn_post_nms_top_n,
        rpn_nms_thresh=0.7,
        rpn_score_thresh=0.0,
        box_roi_pool=MMDetRoIAlign(levels, 7, strides=strides),
        box_head=TwoMLPHead(c * 7 * 7, 1024),
        box_predictor=FastRCNNPredictor(1024, num_classes + 1),
        box_score_thresh=score_thresh,
        box_nms_thresh=0.5,
        box_detections_per_img=detections_per_img,
        bbox_reg_weights=BOX_CODER_WEIGHTS,
        mask_roi_pool=MMDetRoIAlign(levels, 14, strides=strides),
        mask_head=MaskRCNNHeads(c, (256, 256, 256, 256), 1),
        mask_predictor=MaskRCNNPredictor(256, 256, num_classes + 1),
    )
    model.transform = MMDetTransform(
        min_size, max_size, size_divisible=max(strides), mask_threshold=mask_threshold
    )
    model.num_classes = num_classes
    return model


# --------------------------------------------------------------------------------------------
# mmdet <-> torchvision state_dict mapping
# --------------------------------------------------------------------------------------------

# (mmdet key prefix, torchvision key prefix); {i} is a level / layer index
_HEAD_MAP = [
    ("neck.lateral_convs.{i}.conv.", "backbone.fpn.inner_blocks.{i}.0."),
    ("neck.fpn_convs.{i}.conv.", "backbone.fpn.layer_blocks.{i}.0."),
    ("rpn_head.rpn_conv.", "rpn.head.conv.0.0."),
    ("rpn_head.rpn_cls.", "rpn.head.cls_logits."),
    ("rpn_head.rpn_reg.", "rpn.head.bbox_pred."),
    ("roi_head.bbox_head.shared_fcs.0.", "roi_heads.box_head.fc6."),
    ("roi_head.bbox_head.shared_fcs.1.", "roi_heads.box_head.fc7."),
    ("roi_head.bbox_head.fc_cls.", "roi_heads.box_predictor.cls_score."),
    ("roi_head.bbox_head.fc_reg.", "roi_heads.box_predictor.bbox_pred."),
    ("roi_head.mask_head.convs.{i}.conv.", "roi_heads.mask_head.{i}.0."),
    ("roi_head.mask_head.upsample.", "roi_heads.mask_predictor.conv5_mask."),
    ("roi_head.mask_head.conv_logits.", "roi_heads.mask_predictor.mask_fcn_logits."),
]

# keys an mmdet checkpoint may hold that no module needs at test time
_MMDET_IGNORE = ("data_preprocessor.", "ema_")


def _compile_map(pairs, src_first: bool):
    import re

    out = []
    for mm, tv in pairs:
        src, dst = (mm, tv) if src_first else (tv, mm)
        pat = re.compile("^" + re.escape(src).replace(re.escape("{i}"), r"(\d+)"))
        out.append((pat, dst))
    return out


_MM2TV = _compile_map(_HEAD_MAP, True)
_TV2MM = _compile_map(_HEAD_MAP, False)


def _rename(key: str, table) -> str | None:
    for pat, dst in table:
        m = pat.match(key)
        if m:
            new = dst.replace("{i}", m.group(1)) if m.groups() else dst
            return new + key[m.end() :]
    return None


def _timm_name_maps(model: nn.Module) -> tuple[Callable[[str], str], Callable[[str], str]] | None:
    """For a timm backbone wrapped as ``TimmFeatures`` (``body.<flattened names>``): key maps
    between the wrapper's names and the timm model's own (``stages_0.`` <-> ``stages.0.``)."""
    body = getattr(model, "body", None)
    from timm.models._features import FeatureListNet

    if not isinstance(body, FeatureListNet):
        return None
    import re

    # FeatureListNet flattens one level of nn.Sequential children: "<seq>.<i>" -> "<seq>_<i>"
    flat = re.compile(r"^body\.([A-Za-z_][A-Za-z0-9_]*?)_(\d+)\.")
    own_top = {n for n, _ in body.named_children()}

    def to_native(k: str) -> str:
        m = flat.match(k)
        if m and f"{m.group(1)}_{m.group(2)}" in own_top:
            return f"{m.group(1)}.{m.group(2)}." + k[m.end() :]
        return k[len("body.") :] if k.startswith("body.") else k

    def to_ours(k: str) -> str:
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\.(\d+)\.", k)
        if m and f"{m.group(1)}_{m.group(2)}" in own_top:
            return f"body.{m.group(1)}_{m.group(2)}." + k[m.end() :]
        return "body." + k

    return to_native, to_ours


def _backbone_key_maps(detector: MaskRCNN):
    body = detector.backbone.body
    maps = _timm_name_maps(body)
    if maps is None:
        return (lambda k: k), (lambda k: k)
    return maps


def torchvision_to_mmdet(
    state_dict: dict[str, Tensor], detector: MaskRCNN | None = None
) -> dict[str, Tensor]:
    """Our Mask R-CNN ``state_dict`` → an mmdet-style one (the inverse of ``mmdet_to_torchvision``).

    Background moves from first to last in ``fc_cls``; torchvision's background rows of
    ``bbox_pred`` (4) and ``mask_fcn_logits`` (1) are dropped. Backbone keys become
    ``backbone.<the backbone's native names>`` (timm names for Swin/PVTv2).
    """
    to_native = _backbone_key_maps(detector)[0] if detector is not None else (lambda k: k)
    out: dict[str, Tensor] = {}
    for k, v in state_dict.items():
        if k.startswith("backbone.body."):
            out["backbone." + to_native(k[len("backbone.body.") :])] = v
            continue
        new = _rename(k, _TV2MM)
        if new is None:
            raise KeyError(f"no mmdet name for {k}")
        if new.startswith("roi_head.bbox_head.fc_cls."):
            v = torch.cat([v[1:], v[:1]], dim=0)  # background first -> last
        elif new.startswith("roi_head.bbox_head.fc_reg."):
            v = v[4:]  # drop background deltas
        elif new.startswith("roi_head.mask_head.conv_logits."):
            v = v[1:]  # drop background mask channel
        out[new] = v.clone()
    return out


def mmdet_to_torchvision(
    state_dict: dict[str, Tensor], detector: MaskRCNN | None = None
) -> dict[str, Tensor]:
    """An mmdet Mask R-CNN ``state_dict`` → this module's names (see the module docstring)."""
    to_ours = _backbone_key_maps(detector)[1] if detector is not None else (lambda k: k)
    out: dict[str, Tensor] = {}
    unknown = []
    for k, v in state_dict.items():
        if k.startswith(_MMDET_IGNORE):
            continue
        if k.startswith("backbone."):
            out["backbone.body." + to_ours(k[len("backbone.") :])] = v
            continue
        new = _rename(k, _MM2TV)
        if new is None:
            unknown.append(k)
            continue
        if new.startswith("roi_heads.box_predictor.cls_score."):
            v = torch.cat([v[-1:], v[:-1]], dim=0)  # background last -> first
        elif new.startswith("roi_heads.box_predictor.bbox_pred."):
            if v.shape[0] % 4 != 0:
                raise CheckpointError(f"{k}: unexpected shape {list(v.shape)}")
            v = torch.cat([v.new_zeros((4, *v.shape[1:])), v], dim=0)  # background deltas (unused)
        elif new.startswith("roi_heads.mask_predictor.mask_fcn_logits."):
            v = torch.cat([v.new_zeros((1, *v.shape[1:])), v], dim=0)  # background channel (unused)
        out[new] = v
    if unknown:
        raise CheckpointError(
            "mmdet checkpoint has keys this Mask R-CNN does not know: " + summarise_keys(unknown, 5)
        )
    return out


def load_detector_checkpoint(
    detector: MaskRCNN, state_dict: dict[str, Tensor], *, source: str = "checkpoint", heads_only: bool = False
) -> None:
    """Load an mmdet-style or own-style state_dict strictly (shapes and keys must all match).

    ``heads_only``: the backbone was loaded separately; only neck/RPN/RoI keys are expected.
    """
    if any(k.startswith(("roi_head.", "neck.", "rpn_head.")) for k in state_dict):
        sd = mmdet_to_torchvision(state_dict, detector)
    else:
        sd = dict(state_dict)
    own = detector.state_dict()
    expected = [k for k in own if not (heads_only and k.startswith("backbone.body."))]
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [
        f"{k} {list(sd[k].shape)} vs model {list(own[k].shape)}"
        for k in sd
        if k in own and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    problems = fit_problems(mismatched, missing, unexpected, limit=5)
    if problems:
        raise CheckpointError(f"{source} does not fit Mask R-CNN: " + "; ".join(problems))
    detector.load_state_dict(sd, strict=not heads_only)


# --------------------------------------------------------------------------------------------
# params and FLOPs
# --------------------------------------------------------------------------------------------


def detector_params(detector: MaskRCNN, *, mmdet: bool = True) -> int:
    """Parameters; ``mmdet=True`` leaves out torchvision's unused background rows of the box
    regressor (4·1025) and mask classifier (257), counting what the mmdet model has."""
    n = sum(p.numel() for p in detector.parameters())
    if mmdet:
        rh = detector.roi_heads
        n -= 4 * (rh.box_predictor.bbox_pred.in_features + 1)
        logits = rh.mask_predictor.mask_fcn_logits
        n -= logits.in_channels + 1
    return n


class _Seq(nn.Module):
    """Adapters so fvcore can trace each part with tensors in and tensors out."""

    def __init__(self, fn: Callable, *mods: nn.Module):
        super().__init__()
        self.mods = nn.ModuleList(mods)
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


def _count(module: nn.Module, inputs: tuple, attention: bool = True) -> float:
    """fvcore's total for ``module`` on ``inputs``; ``attention=False``: plain fvcore (fused
    attention ops skipped), as ``flops --no-attention`` shows."""
    import warnings

    from ..measure.flops import flop_count_analysis

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fca = flop_count_analysis(module, inputs, attention=attention)
        return float(fca.total())


def detector_flops(
    backbone: str | MaskRCNN,
    hw: tuple[int, int] = (1280, 800),
    *,
    num_proposals: int = 1000,
    num_mask_rois: int = 100,
    attention: bool = True,
) -> dict[str, Any]:
    """GFLOPs (one multiply-add = one FLOP, fvcore with pacabench's attention handles) of the
    Mask R-CNN at input ``hw`` (padded up to a multiple of 32, or of the backbone's coarsest
    stride), the way mmdet's ``get_flops``
    counts a two-stage detector.

    mmdet (``tools/analysis_tools/get_flops.py``, ``TwoStageDetector.forward_dummy`` /
    ``_forward``) runs backbone + neck + RPN head on the image and then the RoI head on a
    *fixed* proposal list: the box head on 1000 RoIs, the mask head on the first 100; the
    proposal decoding, NMS and RoIAlign are not counted (no FLOP handles). We count the same
    parts on a zero image of size ``hw``: ``backbone`` (the stage maps), ``neck`` (FPN
    laterals, 3×3 outputs, max-pool level), ``rpn_head`` (3×3 conv + cls/reg 1×1 on all 5
    levels), ``bbox_head`` (two FCs + classifier + regressor on ``num_proposals`` 7×7 RoIs)
    and ``mask_head`` (4 convs + deconv + classifier on ``num_mask_rois`` 14×14 RoIs).
    ``attention=False``: plain fvcore (fused attention ops left uncounted, ``flops --detector
    --no-attention``). Returns ``{"gflops": total, "parts": {...}, "params": ...,
    "params_backbone": ..., "resolution": [h, w]}``.

    Calibration at 1280×800: Swin-T Mask R-CNN counts 266.98G / 47.79M params (Swin paper:
    267G / 48M); PaCa-Tiny 236.43G (backbone 65.56G as published, neck 52.94, RPN head 50.62,
    box head 14.31, mask head 53.01) / 31.97M params. The paper's 252G for PaCa-Tiny was
    produced by the authors' mmengine-based ``get_flops.py`` (a real val image and its real
    proposals, or torchprofile), not by this fixed-proposal convention. torchvision's unused
    background rows of the box regressor / mask classifier add 0.006G and 1285 params (left
    out of ``params``).
    """
    det = create_detector(backbone) if isinstance(backbone, str) else backbone
    det = det.eval()
    body = det.backbone.body
    pad = max(feature_strides(body))  # 32 for our families, as mmdet pads
    h, w = (int(math.ceil(s / pad) * pad) for s in hw)
    x = torch.zeros(1, 3, h, w)
    fpn = det.backbone.fpn
    rpn_head = det.rpn.head
    rh = det.roi_heads
    parts: dict[str, float] = {}
    with torch.no_grad():
        feats = tuple(body(x))
        parts["backbone"] = _count(body, (x,), attention)
        names = [str(i) for i in range(len(feats))]
        neck = _Seq(lambda *fs: tuple(fpn(OrderedDict(zip(names, fs, strict=False))).values()), fpn)
        parts["neck"] = _count(neck, feats, attention)
        levels = tuple(fpn(OrderedDict(zip(names, feats, strict=False))).values())
        rpn = _Seq(
            lambda *ls: tuple(t for pair in zip(*rpn_head(list(ls)), strict=False) for t in pair), rpn_head
        )
        parts["rpn_head"] = _count(rpn, levels, attention)
        box = _Seq(lambda r: rh.box_predictor(rh.box_head(r)), rh.box_head, rh.box_predictor)
        parts["bbox_head"] = _count(box, (torch.zeros(num_proposals, FPN_CHANNELS, 7, 7),), attention)
        mask = _Seq(lambda r: rh.mask_predictor(rh.mask_head(r)), rh.mask_head, rh.mask_predictor)
        parts["mask_head"] = _count(mask, (torch.zeros(num_mask_rois, FPN_CHANNELS, 14, 14),), attention)
    return {
        "gflops": sum(parts.values()) / 1e9,
        "parts": {k: v / 1e9 for k, v in parts.items()},
        "params": detector_params(det),
        "params_backbone": sum(p.numel() for p in body.parameters()),
        "resolution": [h, w],
        "num_proposals": num_proposals,
        "num_mask_rois": num_mask_rois,
    }


if __name__ == "__main__":  # pragma: no cover - quick manual check
    name = sys.argv[1] if len(sys.argv) > 1 else "pacavit_tiny_p2cconv_100_0"
    print(detector_flops(name))
