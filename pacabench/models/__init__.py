"""One entry point for every backbone pacabench knows.

``create_model(name, ...)`` builds timm's Swin and PVTv2, and pacabench's own PaCa-ViT and
PVT v1 (registered with timm's ``register_model``, so ``timm.create_model`` finds them too
once this package is imported). ``list_models()`` is what ``pacabench models`` prints.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import timm
import torch
from torch import nn

from ._checkpoint import CheckpointError, LoadReport, load_checkpoint, read_state_dict

__all__ = [
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


class UnknownModelError(ValueError):
    """A model name pacabench does not know (message suggests the nearest)."""


class ResolutionError(ValueError):
    """An input size the architecture cannot take."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # paca_vit | swin | pvt_v2 | pvt_v1
    default_resolution: int = 224
    source: str = "timm"  # timm | pacabench


_TIMM_MODELS = {
    "swin_tiny_patch4_window7_224": "swin",
    "swin_small_patch4_window7_224": "swin",
    "swin_base_patch4_window7_224": "swin",
    "pvt_v2_b0": "pvt_v2",
    "pvt_v2_b1": "pvt_v2",
    "pvt_v2_b2": "pvt_v2",
    "pvt_v2_b2_li": "pvt_v2",
    "pvt_v2_b3": "pvt_v2",
    "pvt_v2_b4": "pvt_v2",
    "pvt_v2_b5": "pvt_v2",
}

# Our own families: module (relative to this package) -> family. Each module registers its
# names with timm and exposes ``MODEL_NAMES``.
_OWN_FAMILIES = {
    "paca_vit": "paca_vit",
    "pvt": "pvt_v1",
}


def _own_specs() -> dict[str, ModelSpec]:
    specs = {}
    for mod_name, family in _OWN_FAMILIES.items():
        try:
            mod = importlib.import_module(f"{__name__}.{mod_name}")
        except ModuleNotFoundError as e:  # family not landed yet
            if e.name == f"{__name__}.{mod_name}":
                continue
            raise
        for n in getattr(mod, "MODEL_NAMES", ()):
            specs[n] = ModelSpec(n, family, 224, "pacabench")
    return specs


_SPECS: dict[str, ModelSpec] = {n: ModelSpec(n, f) for n, f in _TIMM_MODELS.items()}
_SPECS.update(_own_specs())


def model_names() -> list[str]:
    return list(_SPECS)


def get_spec(name: str) -> ModelSpec:
    try:
        return _SPECS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_SPECS), n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else " (see `pacabench models`)"
        raise UnknownModelError(f"unknown model '{name}'{hint}") from None


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


def check_resolution(name: str, hw: tuple[int, int]) -> None:
    """Raise ResolutionError if the architecture cannot take ``hw``.

    Every family takes any size of at least 32 pixels a side (Swin pads to its windows, PVT
    resizes its position embeddings, PaCa-ViT is convolutional); a family module may add
    constraints with a ``check_resolution(hw)`` function.
    """
    spec = get_spec(name)
    if spec.source == "pacabench":
        mod = importlib.import_module(
            f"{__name__}.{[m for m, f in _OWN_FAMILIES.items() if f == spec.family][0]}"
        )
        check = getattr(mod, "check_resolution", None)
        if check is not None:
            check(hw)


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
    unless ``features_only`` (then the classifier is ignored and shape-mismatched tensors keep
    their fresh init, with a one-line notice on stderr). ``attn_impl``: ``"sdpa"`` (default: every
    family's attention through fused ``scaled_dot_product_attention``) or ``"explicit"`` (the
    attention map materialised, as the authors' reference code and timm's unfused path do).
    """
    attn_impl = kwargs.pop("attn_impl", "sdpa")
    if attn_impl not in ATTN_IMPLS:
        raise ValueError(f"attn_impl must be one of {', '.join(ATTN_IMPLS)}, got {attn_impl!r}")
    spec = get_spec(name)
    hw = to_hw(img_size)
    if hw is not None:
        check_resolution(name, hw)

    build_kwargs = dict(kwargs)
    if spec.source == "timm":
        if spec.family == "swin" and hw is not None:
            build_kwargs["img_size"] = hw
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **build_kwargs)
    else:
        if hw is not None:
            build_kwargs["img_size"] = hw
        model = timm.create_model(
            name, pretrained=False, num_classes=num_classes, features_only=features_only, **build_kwargs
        )

    if checkpoint is not None:
        filter_fn = None
        if spec.family == "swin":
            from timm.models.swin_transformer import checkpoint_filter_fn as filter_fn
        elif spec.family == "pvt_v2":
            from timm.models.pvt_v2 import checkpoint_filter_fn as filter_fn
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
            allow_shape_mismatch=features_only,
            filter_fn=filter_fn,
        )
        note = report.notice()
        if note:
            print(f"[pacabench] {name}: {note}", file=sys.stderr)
        model.pacabench_load_report = report

    set_attn_impl(model, attn_impl)
    if features_only and spec.source == "timm":
        model = TimmFeatures(model, nhwc=spec.family == "swin")
    return model.eval()


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
