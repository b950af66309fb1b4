"""One entry point for every backbone pacabench knows.

``create_model(name, ...)`` builds timm's Swin and PVTv2, and pacabench's own PaCa-ViT and
PVT v1 (registered with timm's ``register_model``, so ``timm.create_model`` finds them too
once this package is imported). ``list_models()`` is what ``pacabench models`` prints.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import timm
import torch
from torch import nn

from ..errors import PacabenchError
from ._checkpoint import CheckpointError, LoadReport, load_checkpoint, read_state_dict

__all__ = [
    "FamilySpec",
    "FAMILIES",
    "count_params_of",
    "feature_channels",
    "ModelSpec",
    "UnknownModelError",
    "ResolutionError",
    "CheckpointError",
    "LoadReport",
    "create_model",
    "set_attn_impl",
    "ATTN_IMPLS",
    "list_models",
    "get_spec",
    "model_names",
    "to_hw",
    "read_state_dict",
    "load_checkpoint",
]


class UnknownModelError(PacabenchError):
    """A model name pacabench does not know (message suggests the nearest)."""


class ResolutionError(PacabenchError):
    """An input size the architecture cannot take."""


@dataclass(frozen=True)
class FamilySpec:
    """Everything that differs between families, handed to the one builder (``create_model``)
    and to the segmentor and detector builders (the timm pattern: quirks as data)."""

    name: str
    source: str  # timm | pacabench
    module: str | None = None  # our module that registers the family's names (``MODEL_NAMES``)
    models: tuple[str, ...] = ()  # timm's names, for a family timm implements
    img_size_arg: bool = False  # the timm builder takes img_size (Swin fixes its attention mask)
    nhwc_features: bool = False  # timm's stage maps are NHWC (made NCHW for every consumer)
    checkpoint_filter: str | None = None  # "module:function" remapping the authors' checkpoint keys
    downstream_clusters: tuple[int, ...] | None = None  # PaCa-ViT: clusters of the dense-task backbone
    segmentation_kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    segmentation_pad_to: int = 1  # the segmentor pads inputs to a multiple of this
    detection_kwargs: dict[str, Any] = field(default_factory=dict, hash=False)


# every family pacabench knows; a new family = one entry here (+ its module for our own)
FAMILIES: dict[str, FamilySpec] = {
    f.name: f
    for f in (
        FamilySpec(
            "swin",
            "timm",
            models=tuple(f"swin_{s}_patch4_window7_224" for s in ("tiny", "small", "base")),
            img_size_arg=True,
            nhwc_features=True,
            checkpoint_filter="timm.models.swin_transformer:checkpoint_filter_fn",
            segmentation_kwargs={"strict_img_size": False},
            segmentation_pad_to=32,
            # arbitrary (padded) input sizes; like the Swin detection backbone, every stage is cut
            # into full 7×7 windows and odd blocks shifted even when a map is smaller than a window
            detection_kwargs={"dynamic_img_size": True, "always_partition": True},
        ),
        FamilySpec(
            "pvt_v2",
            "timm",
            models=tuple(f"pvt_v2_{b}" for b in ("b0", "b1", "b2", "b2_li", "b3", "b4", "b5")),
            checkpoint_filter="timm.models.pvt_v2:checkpoint_filter_fn",
        ),
        FamilySpec("paca_vit", "pacabench", module="paca_vit", downstream_clusters=(200, 200, 200, 0)),
        FamilySpec("pvt_v1", "pacabench", module="pvt"),
    )
}


# Parameters of each model at its default size with 1000 classes: what `pacabench models` shows
# without building anything (tests/test_models.py builds every model on the meta device and
# checks these). A model missing here is counted on the meta device.
PARAMS: dict[str, int] = {
    "swin_tiny_patch4_window7_224": 28_288_354,
    "swin_small_patch4_window7_224": 49_606_258,
    "swin_base_patch4_window7_224": 87_768_224,
    "pvt_v2_b0": 3_666_760,
    "pvt_v2_b1": 14_009_000,
    "pvt_v2_b2": 25_362_856,
    "pvt_v2_b2_li": 22_553_512,
    "pvt_v2_b3": 45_238_696,
    "pvt_v2_b4": 62_556_072,
    "pvt_v2_b5": 81_956_008,
    "pacavit_tiny_p2cconv_100_0": 12_200_680,
    "pacavit_small_p2cconv_100_0": 22_037_704,
    "pacavit_base_p2cconv_100_0": 46_911_304,
    "pacavit_small_p2cmlp_100_0": 22_637_268,
    "pacavit_small_p2cconv_2_0": 21_978_120,
    "pacavit_small_p2cconv_49_0": 22_006_696,
    "pacavit_small_p2cconv_49_100": 22_227_560,
    "pacavit_small_p2cconv_100_49": 22_210_696,
    "pacavit_small_p2cconv_100": 22_245_448,
    "pacavit_small_p2cconv_100_blockwise": 24_191_944,
    "pacavit_convmixer_tiny_100": 12_483_672,
    "pacavit_convmixer_small_100": 21_075_064,
    "pacavit_convmixer_base_100": 47_659_192,
    "pvt_tiny": 13_229_288,
    "pvt_small": 24_485_864,
    "pvt_medium": 44_208_104,
    "pvt_large": 61_369_320,
}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # a key of FAMILIES
    default_resolution: int = 224
    source: str = "timm"  # timm | pacabench
    params: int | None = None  # at the default size, 1000 classes (PARAMS)

    @property
    def family_spec(self) -> FamilySpec:
        return FAMILIES[self.family]


def _specs() -> dict[str, ModelSpec]:
    specs = {}
    for fam in FAMILIES.values():
        names = fam.models
        if fam.module is not None:
            names = importlib.import_module(f"{__name__}.{fam.module}").MODEL_NAMES
        for n in names:
            specs[n] = ModelSpec(n, fam.name, 224, fam.source, PARAMS.get(n))
    return specs


_SPECS: dict[str, ModelSpec] = _specs()


def model_names() -> list[str]:
    return list(_SPECS)


def get_spec(name: str) -> ModelSpec:
    try:
        return _SPECS[name]
    except KeyError:
        close = suggest_model(name)
        hint = f" (did you mean '{close}'?)" if close else " (see `pacabench models`)"
        raise UnknownModelError(f"unknown model '{name}'{hint}") from None


def suggest_model(name: str) -> str | None:
    """The model a misspelt ``name`` most likely meant, from the same family first: the shortest
    name it begins; else the closest name of the family sharing the longest prefix with it; else
    the closest name overall (None if nothing is close)."""
    names = list(_SPECS)
    starts = [n for n in names if n.startswith(name)] if len(name) >= 3 else []
    if starts:
        return min(starts, key=len)
    best = max(names, key=lambda n: len(os.path.commonprefix([n, name])))
    if len(os.path.commonprefix([best, name])) >= 3:
        family = [n for n in names if _SPECS[n].family == _SPECS[best].family]
        close = difflib.get_close_matches(name, family, n=1, cutoff=0.3)
        if close:
            return close[0]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    return close[0] if close else None


def list_models() -> list[ModelSpec]:
    return list(_SPECS.values())


def to_hw(resolution: int | Sequence[int] | None) -> tuple[int, int] | None:
    """224 -> (224, 224); [h, w] -> (h, w)."""
    if resolution is None:
        return None
    if isinstance(resolution, bool):
        raise ResolutionError(f"resolution must be an int or [h, w], got {resolution!r}")
    if isinstance(resolution, int):
        hw = (resolution, resolution)
    else:
        vals = list(resolution)
        if len(vals) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            raise ResolutionError(f"resolution must be an int or [h, w] of ints, got {resolution!r}")
        hw = (vals[0], vals[1])
    if min(hw) < 32:
        raise ResolutionError(f"resolution {list(hw)} is too small: every side must be at least 32 pixels")
    return hw


def create_model(
    name: str,
    *,
    img_size: int | Sequence[int] | None = None,
    num_classes: int = 1000,
    checkpoint: str | None = None,
    features_only: bool = False,
    strict: bool = True,
    **kwargs,
) -> nn.Module:
    """Build a backbone by name.

    ``img_size``: the input size the model is built for (Swin fixes its attention mask from it;
    the others take any size). ``features_only``: the model returns the four stage maps, NCHW,
    strides 4/8/16/32, for every family. ``checkpoint``: a local file (flat state_dict, or
    under ``state_dict``/``model``; ``module.``/``backbone.`` stripped), loaded strictly by key
    unless ``features_only`` (then every family ignores the classifier's keys, and tensors the
    model declares resizable, PaCa's cluster count, keep their fresh init with a one-line notice
    on stderr; any other shape mismatch is an error). ``attn_impl``: ``"sdpa"`` (default: every
    family's attention through fused ``scaled_dot_product_attention``) or ``"explicit"`` (the
    attention map materialised, as the authors' reference code and timm's unfused path do).
    """
    attn_impl = kwargs.pop("attn_impl", "sdpa")
    if attn_impl not in ATTN_IMPLS:
        raise ValueError(f"attn_impl must be one of {', '.join(ATTN_IMPLS)}, got {attn_impl!r}")
    spec = get_spec(name)
    fam = spec.family_spec
    hw = to_hw(img_size)

    build_kwargs = dict(kwargs)
    if hw is not None and (fam.source == "pacabench" or fam.img_size_arg):
        build_kwargs["img_size"] = hw
    if fam.source == "pacabench":
        build_kwargs["features_only"] = features_only
    if features_only and fam.source == "timm":
        num_classes = 0  # no classifier: its checkpoint keys are ignored, as our families do
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, **build_kwargs)

    if checkpoint is not None:
        filter_fn = _load_attr(fam.checkpoint_filter) if fam.checkpoint_filter else None
        own_ignore = getattr(model, "checkpoint_ignore", None)

        def ignore(k: str) -> bool:
            if own_ignore is not None and own_ignore(k):
                return True
            return features_only and k.startswith("head.")

        report = load_checkpoint(
            model,
            checkpoint,
            strict=strict,
            ignore=ignore,
            allow_shape_mismatch=features_only and getattr(model, "checkpoint_resizable", False),
            filter_fn=filter_fn,
        )
        note = report.notice()
        if note:
            print(f"[pacabench] {name}: {note}", file=sys.stderr)
        model.pacabench_load_report = report

    set_attn_impl(model, attn_impl)
    if features_only and fam.source == "timm":
        report = getattr(model, "pacabench_load_report", None)
        model = TimmFeatures(model, nhwc=fam.nhwc_features)
        if report is not None:
            model.pacabench_load_report = report
    return model.eval()


def _load_attr(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def count_params_of(name: str, *, build: bool = False) -> int:
    """Parameters of a model at its default size (1000 classes): from its spec, or (``build``, or
    a model not in ``PARAMS``) counted on a build on the meta device, where no memory is
    allocated and no weight initialised (a real build only if meta cannot build it)."""
    spec = get_spec(name)
    if spec.params is not None and not build:
        return spec.params
    try:
        with torch.device("meta"):
            m = create_model(name)
    except Exception:  # noqa: BLE001 - a model that cannot build on meta: build for real
        m = create_model(name)
    return sum(p.numel() for p in m.parameters())


def feature_channels(features: nn.Module) -> list[int]:
    """Channels of the four stage maps of a features model (timm FeatureInfo or a list of dicts)."""
    info = features.feature_info
    if hasattr(info, "channels"):
        return list(info.channels())
    return [int(d["num_chs"]) for d in info]


ATTN_IMPLS = ("sdpa", "explicit")


def set_attn_impl(model: nn.Module, impl: str) -> int:
    """Switch every attention module of ``model`` (any family) to ``sdpa`` or ``explicit``;
    returns how many modules were switched. timm's modules carry ``fused_attn``; ours ``attn_impl``."""
    if impl not in ATTN_IMPLS:
        raise ValueError(f"attn_impl must be one of {', '.join(ATTN_IMPLS)}, got {impl!r}")
    n = 0
    for mod in model.modules():
        if hasattr(mod, "attn_impl"):
            mod.attn_impl = impl
            n += 1
        elif hasattr(mod, "fused_attn"):
            mod.fused_attn = impl == "sdpa"
            n += 1
    return n


class TimmFeatures(nn.Module):
    """Four stage maps of a timm model, always NCHW (Swin's are NHWC in timm)."""

    def __init__(self, model: nn.Module, nhwc: bool):
        super().__init__()
        from timm.models._features import FeatureListNet

        self.body = FeatureListNet(model, out_indices=(0, 1, 2, 3), flatten_sequential=True)
        self.nhwc = nhwc
        self.feature_info = self.body.feature_info

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.body(x)
        if self.nhwc:
            feats = [f.permute(0, 3, 1, 2).contiguous() for f in feats]
        return feats
