"""What our own families (PaCa-ViT, PVT v1) share: the weight initialisation of the authors'
code and timm's default pretrained config for an ImageNet-1k classifier at 224."""

from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import trunc_normal_
from torch import nn


def init_transformer_weights(m: nn.Module) -> None:
    """Linear: truncated normal (std 0.02), zero bias; LayerNorm: weight 1, bias 0."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def imagenet_cfg(**kwargs: Any) -> dict[str, Any]:
    """timm pretrained-config fields of an ImageNet-1k 224 classifier; ``kwargs`` add or override."""
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "classifier": "head",
        **kwargs,
    }


def pop_timm_args(kwargs: dict[str, Any], *unused: str) -> tuple[Any, Any]:
    """``timm.create_model`` passes its own arguments along with the model's: take them out of
    ``kwargs`` (``cache_dir`` and the ``unused`` ones dropped) and return the pretrained config
    and its overlay, which the family's builder resolves itself."""
    pretrained_cfg = kwargs.pop("pretrained_cfg", None)
    overlay = kwargs.pop("pretrained_cfg_overlay", None)
    for k in ("cache_dir", *unused):
        kwargs.pop(k, None)
    return pretrained_cfg, overlay
