"""One entry point for every backbone pacabench knows.

``create_model(name, ...)`` builds timm's Swin and PVTv2, and pacabench's own PaCa-ViT and
PVT v1 (registered with timm's ``register_model``, so ``timm.create_model`` finds them too
once this package is imported). ``list_models()`` is what ``pacabench models`` prints. The
catalogue (names, families, parameter counts, the input-size rule) lives in the torch-free
``pacabench.spec.catalog`` and is re-exported here.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import timm
import torch
from torch import nn

from ..spec.catalog import (
    FAMILIES,
    PARAMS,
    FamilySpec,
    ModelSpec,
    ResolutionError,
    UnknownModelError,
    get_spec,
    list_models,
    model_names,
    suggest_model,
    to_hw,
)
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
    "suggest_model",
    "PARAMS",
    "to_hw",
    "read_state_dict",
    "load_checkpoint",
]


def _register() -> None:
    """Import our own families' modules: each registers its names with timm (``register_model``)."""
    for fam in FAMILIES.values():
        if fam.module is not None:
            importlib.import_module(f"{__name__}.{fam.module}")


_register()


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
