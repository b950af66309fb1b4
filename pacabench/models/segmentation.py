"""Semantic segmentors: any backbone with stage maps + a decode head. Our families give four
maps at strides 4..32; any other timm model the maps its ``feature_info`` lists (timm's feature
extraction, ``pacabench.models.feature_indices``), a factory's model the ones it declares.

Heads, written here without any mm* dependency but with mmseg's module layout, so the
authors' ADE20k checkpoints (``pacahead_*``, ``upernet_*``) load by key name:

* :class:`PaCaHead`: the PaCa segmentation head (docs/paca-vit.md, "PaCa segmentation head").
* :class:`UPerHead`: UperNet (PPM on the last stage with pool scales 1, 2, 3, 6, FPN fusion,
  512 channels), plus :class:`FCNHead`, the auxiliary head on stage 3 that exists only so
  checkpoints load completely; it is never run at inference.

Every conv-BN-ReLU is a :class:`ConvModule` whose keys are mmcv's (``.conv.weight``,
``.bn.weight/bias/running_mean/running_var/num_batches_tracked``; the conv has no bias).

A :class:`Segmentor` has ``backbone``, ``decode_head`` and (UperNet) ``auxiliary_head``, the
attribute names of mmseg's ``EncoderDecoder``, so a checkpoint's ``backbone.*``,
``decode_head.*`` and ``auxiliary_head.*`` go where they belong. ``forward(img)`` returns the
logits at the finest map's stride, 4 for our families (what mmseg's tensor-mode forward and its
FLOP counter see);
:meth:`Segmentor.inference` does whole-image or sliding-window inference with the logits resized
back to the input size.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PacabenchError
from ..spec.catalog import HEADS  # the names live in the torch-free catalogue (suites check them)
from ..spec.sizes import as_hw


class UnknownHeadError(PacabenchError):
    """A segmentation head name pacabench does not know."""


__all__ = [
    "ConvModule",
    "PaCaHead",
    "UPerHead",
    "FCNHead",
    "Segmentor",
    "SegLoadReport",
    "HEADS",
    "create_segmentor",
    "create_model_or_segmentor",
    "parse_segmentor_name",
    "segmentor_names",
]


def check_head(head: str) -> str:
    """``head`` as one of HEADS ('pacahead' is 'paca'), else UnknownHeadError."""
    head = {"pacahead": "paca"}.get(head, head)
    if head not in HEADS:
        raise UnknownHeadError(f"unknown segmentation head '{head}' (choose from {', '.join(HEADS)})")
    return head


# the authors' checkpoint/config prefix for each head: pacahead_<backbone>, upernet_<backbone>
_NAME_PREFIX = {"paca": "pacahead", "upernet": "upernet"}


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """mmseg's ``resize``: bilinear, align_corners=False."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class ConvModule(nn.Module):
    """conv (no bias) → BatchNorm2d → ReLU, with mmcv's key names ``conv`` / ``bn``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


class _Transpose(nn.Module):
    """B×M×C ↔ B×C×M (no parameters; keeps the authors' Sequential indices)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class _DecodeHead(nn.Module):
    """What mmseg's BaseDecodeHead contributes: ``cls_seg`` = Dropout2d → 1×1 ``conv_seg``."""

    def __init__(self, channels: int, num_classes: int, dropout_ratio: float = 0.1):
        super().__init__()
        self.num_classes = num_classes
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)

    def cls_seg(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(x))


def _token_projection(c_in: int, c_out: int) -> nn.Sequential:
    """Linear → BatchNorm over channels → ReLU, on (B, N, C) tokens (mmseg key layout: .0, .2)."""
    return nn.Sequential(
        nn.Linear(c_in, c_out), _Transpose(), nn.BatchNorm1d(c_out), _Transpose(), nn.ReLU(inplace=True)
    )


class PaCaHead(_DecodeHead):
    """The PaCa segmentation head.

    Each of the four stage maps → 1×1 ConvModule to ``channels`` (256), resized bilinearly to
    stride 4, concatenated (B×4C×h×w). q = ConvModule 4C→C (tokens). Clustering logits =
    ConvModule 4C→C then 1×1 conv C→num_classes (bias); softmax over the N positions; cluster
    features z = assignment @ features (B×M×4C). k, v = Linear 4C→C → BatchNorm over channels
    with the cluster axis as length → ReLU. One head, no 1/√d scaling, softmax over the M
    clusters; → map → ConvModule → Dropout2d(0.1) → 1×1 conv to the classes.

    ``forward`` returns the class logits at stride 4; with ``return_clustering=True`` also the
    raw clustering logits (what training's auxiliary loss reads).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int = 256,
        num_classes: int = 150,
        dropout_ratio: float = 0.1,
    ):
        super().__init__(channels, num_classes, dropout_ratio)
        in_channels = list(in_channels)
        self.in_channels = in_channels
        self.channels = channels
        cat = channels * len(in_channels)
        self.convs = nn.ModuleList([ConvModule(c, channels, 1) for c in in_channels])
        self.q = nn.Sequential(ConvModule(cat, channels, 1))
        self.clustering = nn.Sequential(ConvModule(cat, channels, 1), nn.Conv2d(channels, num_classes, 1))
        self.k = _token_projection(cat, channels)
        self.v = _token_projection(cat, channels)
        self.proj = ConvModule(channels, channels, 1)

    def forward(self, feats: Sequence[torch.Tensor], return_clustering: bool = False):
        size = feats[0].shape[2:]
        x = torch.cat([_resize(conv(f), size) for conv, f in zip(self.convs, feats, strict=True)], dim=1)
        b, _, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2)  # B N C
        c_raw = self.clustering(x)  # B M h w
        assign = c_raw.flatten(2).softmax(dim=-1)  # B M N, softmax over positions
        z = assign @ x.flatten(2).transpose(1, 2)  # B M 4C
        k = self.k(z)  # B M C
        v = self.v(z)
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)  # B N M, no 1/sqrt(d)
        out = (attn @ v).transpose(1, 2).reshape(b, self.channels, h, w)
        out = self.cls_seg(self.proj(out))
        return (out, c_raw) if return_clustering else out


class UPerHead(_DecodeHead):
    """UperNet's head as mmseg builds it: PPM (pool scales 1, 2, 3, 6) + FPN fusion, 512 channels."""

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int = 512,
        num_classes: int = 150,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout_ratio: float = 0.1,
    ):
        super().__init__(channels, num_classes, dropout_ratio)
        in_channels = list(in_channels)
        self.in_channels = in_channels
        self.channels = channels
        self.psp_modules = nn.ModuleList(
            [
                nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(in_channels[-1], channels, 1))
                for s in pool_scales
            ]
        )
        self.bottleneck = ConvModule(in_channels[-1] + len(pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList([ConvModule(c, channels, 1) for c in in_channels[:-1]])
        self.fpn_convs = nn.ModuleList(
            [ConvModule(channels, channels, 3, padding=1) for _ in in_channels[:-1]]
        )
        self.fpn_bottleneck = ConvModule(len(in_channels) * channels, channels, 3, padding=1)

    def psp_forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x] + [_resize(m(x), x.shape[2:]) for m in self.psp_modules]
        return self.bottleneck(torch.cat(outs, dim=1))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(feats[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(feats[-1]))
        n = len(laterals)
        for i in range(n - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [self.fpn_convs[i](laterals[i]) for i in range(n - 1)]
        outs.append(laterals[-1])
        outs = [outs[0]] + [_resize(o, outs[0].shape[2:]) for o in outs[1:]]
        return self.cls_seg(self.fpn_bottleneck(torch.cat(outs, dim=1)))


class FCNHead(_DecodeHead):
    """mmseg's FCNHead as UperNet configs use it for the auxiliary loss: one 3×3 ConvModule
    (256 channels) on one stage (``in_index``), no input concat. Only there so checkpoints load."""

    def __init__(
        self,
        in_channels: int,
        channels: int = 256,
        num_classes: int = 150,
        in_index: int = 2,
        num_convs: int = 1,
        dropout_ratio: float = 0.1,
    ):
        super().__init__(channels, num_classes, dropout_ratio)
        self.in_index = in_index
        self.convs = nn.Sequential(
            *[
                ConvModule(in_channels if i == 0 else channels, channels, 3, padding=1)
                for i in range(num_convs)
            ]
        )

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.cls_seg(self.convs(feats[self.in_index]))


class Segmentor(nn.Module):
    """backbone (NCHW stage maps: our families' four at strides 4..32, any other model's as its
    ``feature_info`` says) + decode head (+ unused auxiliary head).

    ``pad_to``: pad the input on the right/bottom with zeros to a multiple of this before the
    backbone (Swin, whose patch embedding and merging need divisible sizes; any non-pacabench
    model: its coarsest stride); the logits are cropped back, so callers never see it.
    ``out_stride``: the stride of the logits, the finest map's (4 for our families).
    """

    def __init__(
        self,
        backbone: nn.Module,
        decode_head: nn.Module,
        auxiliary_head: nn.Module | None = None,
        *,
        pad_to: int = 1,
        out_stride: int = 4,
        name: str = "",
    ):
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        self.auxiliary_head = auxiliary_head
        self.pad_to = pad_to
        self.out_stride = out_stride
        self.name = name
        self.num_classes = decode_head.num_classes
        self.load_report: SegLoadReport | None = None

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Class logits at ``out_stride`` (ceil(H/s)×ceil(W/s); s = 4 for our families), mmseg's
        tensor-mode output."""
        h, w = img.shape[-2:]
        if self.pad_to > 1:
            ph = (-h) % self.pad_to
            pw = (-w) % self.pad_to
            if ph or pw:
                img = F.pad(img, (0, pw, 0, ph))
        out = self.decode_head(self.backbone(img))
        if self.pad_to > 1:
            out = out[..., : math.ceil(h / self.out_stride), : math.ceil(w / self.out_stride)]
        return out

    def encode_decode(self, img: torch.Tensor) -> torch.Tensor:
        """Logits resized to the input's size (mmseg's ``encode_decode`` + ``predict_by_feat``)."""
        return _resize(self(img), img.shape[-2:])

    @torch.no_grad()
    def slide_inference(
        self, img: torch.Tensor, crop_size: int | Sequence[int] = 512, stride: int | Sequence[int] = 341
    ) -> torch.Tensor:
        """mmseg's sliding window: crops of ``crop_size`` every ``stride`` (the last one flush
        with the border), logits summed and divided by the per-pixel count."""
        ch, cw = as_hw(crop_size)
        sh, sw = as_hw(stride)
        b, _, h, w = img.shape
        h_grids = max(h - ch + sh - 1, 0) // sh + 1
        w_grids = max(w - cw + sw - 1, 0) // sw + 1
        preds = None
        count = img.new_zeros((b, 1, h, w))
        for hi in range(h_grids):
            for wi in range(w_grids):
                y1 = hi * sh
                x1 = wi * sw
                y2 = min(y1 + ch, h)
                x2 = min(x1 + cw, w)
                y1 = max(y2 - ch, 0)
                x1 = max(x2 - cw, 0)
                logit = self.encode_decode(img[:, :, y1:y2, x1:x2])
                if preds is None:
                    preds = img.new_zeros((b, logit.shape[1], h, w), dtype=logit.dtype)
                preds[:, :, y1:y2, x1:x2] += logit
                count[:, :, y1:y2, x1:x2] += 1
        return preds / count.to(preds.dtype)

    @torch.no_grad()
    def inference(
        self, img: torch.Tensor, mode: str = "whole", *, crop_size: int = 512, stride: int = 341
    ) -> torch.Tensor:
        """Logits at the input's size, whole-image or sliding-window."""
        if mode == "whole":
            return self.encode_decode(img)
        if mode == "slide":
            return self.slide_inference(img, crop_size, stride)
        raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")


@dataclass
class SegLoadReport:
    """Where a segmentation checkpoint's tensors went."""

    path: str
    backbone_loaded: int = 0
    decode_head_loaded: int = 0
    auxiliary_head: str = "absent"  # absent | loaded | ignored
    backbone_notice: str = ""
    ignored: tuple[str, ...] = ()

    def notice(self) -> str:
        parts = [
            f"backbone {self.backbone_loaded} tensors",
            f"decode_head {self.decode_head_loaded} tensors",
            f"auxiliary_head {self.auxiliary_head}",
        ]
        if self.backbone_notice:
            parts.append(f"backbone: {self.backbone_notice}")
        if self.ignored:
            parts.append(f"ignored {len(self.ignored)} other tensors")
        return "; ".join(parts)


def segmentor_names(backbones: Sequence[str] | None = None) -> list[str]:
    """``pacahead_<backbone>`` and ``upernet_<backbone>`` for every backbone (the authors' naming)."""
    if backbones is None:
        from . import model_names

        backbones = model_names()
    return [f"{_NAME_PREFIX[h]}_{b}" for h in HEADS for b in backbones]


def parse_segmentor_name(name: str) -> tuple[str, str]:
    """``upernet_pacavit_tiny_p2cconv_100_0`` → (``pacavit_tiny_p2cconv_100_0``, ``upernet``).

    Also accepts the authors' checkpoint stems (``pacahead_<name>_512x512_160k_ade20k``) and
    ``<backbone>+<head>``. Raises ValueError if ``name`` is not a segmentor name.
    """
    from . import get_spec

    stem = os.path.basename(name)
    for suffix in (".pth", ".pt"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    if "+" in stem:
        backbone, head = stem.rsplit("+", 1)
        head = check_head(head)
        get_spec(backbone)
        return backbone, head
    for head, prefix in _NAME_PREFIX.items():
        if stem.startswith(prefix + "_"):
            backbone = stem[len(prefix) + 1 :]
            if backbone.endswith("_512x512_160k_ade20k"):
                backbone = backbone[: -len("_512x512_160k_ade20k")]
            get_spec(backbone)
            return backbone, head
    raise ValueError(
        f"'{name}' is not a segmentor name (pacahead_<backbone>, upernet_<backbone> or <backbone>+<head>)"
    )


def _load_segmentor(seg: Segmentor, sd: dict, path, backbone: str, clusters) -> SegLoadReport:
    """Apply the head weights of an mmseg checkpoint (the backbone's were loaded when it was
    built) and report what went where; a backbone that does not fit is an error."""
    from ._checkpoint import CheckpointError

    report = SegLoadReport(path=path)
    bb_report = getattr(seg.backbone, "pacabench_load_report", None)
    if bb_report is not None:
        if bb_report.mismatched:
            raise CheckpointError(
                f"{path}: backbone does not fit {backbone} "
                + (f"with clusters {clusters} " if clusters is not None else "")
                + "(shape mismatch: "
                + ", ".join(f"{k} {list(a)} vs {list(b)}" for k, a, b in bb_report.mismatched[:4])
                + ")"
            )
        report.backbone_loaded = len(bb_report.loaded)
        report.backbone_notice = bb_report.notice()
    report.decode_head_loaded = _load_head(seg.decode_head, sd, "decode_head.", path)
    has_aux = any(k.startswith("auxiliary_head.") for k in sd)
    if has_aux and seg.auxiliary_head is not None:
        _load_head(seg.auxiliary_head, sd, "auxiliary_head.", path)
        report.auxiliary_head = "loaded"
    elif has_aux:
        report.auxiliary_head = "ignored"
    known = ("backbone.", "decode_head.", "auxiliary_head.")
    report.ignored = tuple(k for k in sd if not k.startswith(known))
    return report


def _read_seg_state_dict(checkpoint) -> tuple[str, dict]:
    from ._checkpoint import CheckpointError, read_state_dict

    if isinstance(checkpoint, dict):
        return "<state_dict>", dict(checkpoint)
    sd = read_state_dict(checkpoint)
    if not any(k.startswith("decode_head.") for k in sd):
        raise CheckpointError(
            f"{os.fspath(checkpoint)} is not a segmentation checkpoint (no decode_head.* keys); "
            "an ImageNet checkpoint leaves the head untrained"
        )
    return os.fspath(checkpoint), sd


def _load_head(module: nn.Module, sd: dict, prefix: str, path: str) -> int:
    from ._checkpoint import CheckpointError, load_checkpoint

    sub = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    try:
        report = load_checkpoint(module, sub, strict=True)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {prefix.rstrip('.')}: {e}") from None
    return len(report.loaded)


def create_segmentor(
    backbone: str,
    head: str,
    *,
    num_classes: int = 150,
    clusters: Sequence[int] | None = None,
    checkpoint=None,
    img_size: int | Sequence[int] | None = None,
    verbose: bool = True,
    **backbone_kwargs,
) -> Segmentor:
    """Backbone by name (ours, any timm model with feature extraction, a factory whose model has
    ``feature_info``) + ``head`` ('paca' | 'upernet'), eval mode.

    A PaCa-ViT backbone gets the downstream cluster counts [200, 200, 200, 0] unless
    ``clusters`` says otherwise. ``img_size`` (default 512) is what Swin builds its attention
    masks for; other sizes still work (Swin is run with padding to a multiple of 32).
    ``checkpoint``: an mmseg-style file (flat, or under ``state_dict``; ``backbone.*`` →
    backbone, ``decode_head.*`` → head, ``auxiliary_head.*`` → the FCN auxiliary head for
    UperNet, ignored for the PaCa head), loaded strictly; what went where is in
    ``segmentor.load_report`` and printed on stderr.
    """
    from . import feature_channels, feature_strides, get_spec
    from ._checkpoint import CheckpointError

    head = check_head(head)
    spec = get_spec(backbone)
    fam = spec.family_spec
    kwargs = dict(backbone_kwargs)
    if fam.downstream_clusters is not None:
        kwargs["clusters"] = list(clusters) if clusters is not None else list(fam.downstream_clusters)
    elif clusters is not None:
        raise ValueError(f"clusters apply to PaCa-ViT backbones only, not {backbone}")
    for k, v in fam.segmentation_kwargs.items():
        kwargs.setdefault(k, v)
    if img_size is None:
        img_size = 512

    path, sd = (None, None) if checkpoint is None else _read_seg_state_dict(checkpoint)

    bb_sd = None
    if sd is not None:
        bb_sd = {k: v for k, v in sd.items() if k.startswith("backbone.")}
        if not bb_sd:
            raise CheckpointError(f"{path}: no backbone.* keys")
    bb, pad_to = _segmentation_backbone(spec, img_size, bb_sd, kwargs)
    channels = feature_channels(bb)
    if head == "paca":
        dec = PaCaHead(channels, 256, num_classes)
        aux = None
    else:
        dec = UPerHead(channels, 512, num_classes)
        aux_in = min(2, len(channels) - 1)  # stage 3 of four; the last one of fewer maps
        aux = FCNHead(channels[aux_in], 256, num_classes, in_index=aux_in)
    seg = Segmentor(
        bb,
        dec,
        aux,
        pad_to=pad_to,
        out_stride=feature_strides(bb)[0],
        name=f"{_NAME_PREFIX[head]}_{backbone}",
    )

    if sd is not None:
        seg.load_report = _load_segmentor(seg, sd, path, backbone, kwargs.get("clusters"))
        if verbose:
            print(f"[pacabench] {seg.name}: {seg.load_report.notice()}", file=sys.stderr)
    return seg.eval()


def _segmentation_backbone(spec, img_size, bb_sd, kwargs: dict) -> tuple[nn.Module, int]:
    """The segmentor's backbone (stage maps, NCHW) and the multiple its input is padded to."""
    from . import FAMILIES, TimmFeatures, create_model, feature_strides

    fam = spec.family_spec
    if fam.name not in FAMILIES:
        # any other timm model (or a factory): timm's feature extraction, maps as feature_info says
        if spec.source == "timm":
            kwargs.setdefault("dynamic_img_size", True)  # any input size where the builder allows it
        bb = create_model(spec.name, img_size=img_size, features_only=True, checkpoint=bb_sd, **kwargs)
        return bb, max(feature_strides(bb))
    if spec.source == "timm":
        # load timm's own key names into the full model, then take its four stage maps
        inner = create_model(spec.name, img_size=img_size, num_classes=0, checkpoint=bb_sd, **kwargs)
        bb = TimmFeatures(inner, nhwc=fam.nhwc_features)
        bb.pacabench_load_report = getattr(inner, "pacabench_load_report", None)
        return bb, fam.segmentation_pad_to
    bb = create_model(spec.name, img_size=img_size, features_only=True, checkpoint=bb_sd, **kwargs)
    return bb, fam.segmentation_pad_to


def create_model_or_segmentor(
    model: str,
    head: str | None = None,
    *,
    img_size: int | Sequence[int] | None = None,
    checkpoint=None,
    verbose: bool = True,
    **kwargs,
) -> nn.Module:
    """The backbone ``model`` (``create_model``), or with ``head`` the whole segmentor on it:
    what a cost case or ``flops``/``profile`` measures. ``clusters`` in ``kwargs`` go to the
    backbone either way (a segmentor's own downstream default applies when it is None)."""
    from . import create_model

    if not head:
        return create_model(model, img_size=img_size, checkpoint=checkpoint, **kwargs)
    clusters = kwargs.pop("clusters", None)
    return create_segmentor(
        model, head, clusters=clusters, checkpoint=checkpoint, img_size=img_size, verbose=verbose, **kwargs
    )
