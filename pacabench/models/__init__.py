"""One entry point for every backbone pacabench can measure.

``create_model(name, ...)`` builds timm's Swin and PVTv2, pacabench's own PaCa-ViT and PVT v1
(registered with timm's ``register_model``, so ``timm.create_model`` finds them too once this
package is imported), any other timm architecture by name, and a user's factory
(``module:function`` or ``path/file.py:function``, returning an ``nn.Module``). ``list_models()``
is what ``pacabench models`` prints. The catalogue (names, families, parameter counts, the
input-size rule) lives in the torch-free ``pacabench.spec.catalog`` and is re-exported here.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from torch import nn

from ..errors import UsageError, first_line
from ..spec.catalog import (
    FACTORY,
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
    "timm_default_size",
    "load_factory",
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
    ours = fam.name in FAMILIES  # a family with its own spec: built exactly as before
    if spec.source == FACTORY:
        model = _build_factory(name, hw, num_classes, kwargs)
    else:
        model = _build_timm(spec, hw, num_classes, features_only, kwargs, checkpoint is None)
    if not ours and hw is not None:
        probe_size(model, hw, name)

    if checkpoint is not None:
        _load_into(model, spec, checkpoint, strict, features_only)
    set_attn_impl(model, attn_impl)
    if features_only and spec.source != "pacabench":
        report = getattr(model, "pacabench_load_report", None)
        model = TimmFeatures(model, nhwc=fam.nhwc_features)
        if report is not None:
            model.pacabench_load_report = report
    return model.eval()


def _build_timm(spec: ModelSpec, hw, num_classes: int, features_only: bool, kwargs: dict, cache_ok: bool):
    """A timm model (ours registered with timm too). Our families keep their quirks; any other
    timm model is offered the asked ``img_size`` (ViT, DeiT, Swin, MaxViT, CoAtNet, Hiera, EVA...
    then build at that size, timm resampling what depends on it) and built without it when its
    builder takes none (a convnet takes any size). Weights of a ``name.tag``: timm's cache only."""
    fam = spec.family_spec
    name = spec.name
    build_kwargs = dict(kwargs)
    if hw is not None and (fam.source == "pacabench" or fam.img_size_arg or fam.name not in FAMILIES):
        build_kwargs["img_size"] = hw
    if fam.source == "pacabench":
        build_kwargs["features_only"] = features_only
    if features_only and fam.source != "pacabench":
        num_classes = 0  # no classifier: its checkpoint keys are ignored, as our families do
    if "." in name and fam.name not in FAMILIES and cache_ok:
        build_kwargs.update(_cached_weights(name))
    try:
        return timm.create_model(name, num_classes=num_classes, **{"pretrained": False, **build_kwargs})
    except TypeError as e:
        if fam.name in FAMILIES or "img_size" not in str(e) or "img_size" in kwargs:
            raise
    build_kwargs.pop("img_size")
    return timm.create_model(name, num_classes=num_classes, **{"pretrained": False, **build_kwargs})


def _cached_weights(name: str) -> dict:
    """timm's pretrained weights of ``name`` (``arch.tag``) if the Hugging Face cache already holds
    them (build with them), else a one-line notice and random weights: pacabench never downloads."""
    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        for fn in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            path = try_to_load_from_cache(hub_id, fn)
            if isinstance(path, str):
                return {"pretrained": True, "pretrained_cfg_overlay": {"file": path, "source": "timm"}}
    print(
        f"[pacabench] {name}: no local weights (not in timm's cache, no --checkpoint; pacabench never "
        "downloads): random weights, fine for cost, not for accuracy",
        file=sys.stderr,
    )
    return {}


def _load_into(model: nn.Module, spec: ModelSpec, checkpoint, strict: bool, features_only: bool) -> None:
    fam = spec.family_spec
    if fam.checkpoint_filter:
        filter_fn = _load_attr(fam.checkpoint_filter)
    elif spec.source == "timm" and fam.name not in FAMILIES:
        module = importlib.import_module(f"timm.models.{fam.name}")
        filter_fn = getattr(module, "checkpoint_filter_fn", None)
    else:
        filter_fn = None
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
        print(f"[pacabench] {spec.name}: {note}", file=sys.stderr)
    model.pacabench_load_report = report


def timm_default_size(name: str) -> tuple[int, int]:
    """The input size timm's ``pretrained_cfg`` gives a model (224×224 when it says none)."""
    cfg = timm.models.get_pretrained_cfg(name)
    size = getattr(cfg, "input_size", None) if cfg is not None else None
    return (int(size[-2]), int(size[-1])) if size else (224, 224)


def load_factory(name: str):
    """The function of ``module:function`` or ``path/file.py:function`` (a relative path: from the
    working folder). Importing it runs the user's code: a suite must have been trusted first."""
    target, _, fn_name = name.rpartition(":")
    if target.endswith(".py"):
        path = Path(target).expanduser()
        if not path.is_file():
            raise UsageError(f"model factory '{name}': no such file {target}")
        mod_spec = importlib.util.spec_from_file_location(f"pacabench_factory_{path.stem}", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            raise UsageError(f"model factory '{name}': cannot import {target} ({first_line(e)})") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise UsageError(f"model factory '{name}': {target} has no function '{fn_name}'")
    return fn


def _build_factory(name: str, hw, num_classes: int, kwargs: dict) -> nn.Module:
    """Call the user's factory with the entry's kwargs, plus ``img_size``/``num_classes`` when
    it names such a parameter."""
    fn = load_factory(name)
    params = inspect.signature(fn).parameters
    kw = dict(kwargs)
    if hw is not None and "img_size" in params:
        kw.setdefault("img_size", hw)
    if "num_classes" in params:
        kw.setdefault("num_classes", num_classes)
    model = fn(**kw)
    if not isinstance(model, nn.Module):
        raise UsageError(f"model factory '{name}' returned {type(model).__name__}, not a torch nn.Module")
    return model


def probe_size(model: nn.Module, hw: tuple[int, int], name: str) -> None:
    """One forward at ``hw`` on fake tensors (shapes only: no compute, no memory): a size the
    architecture cannot take (a window that does not divide the map, a fixed position table)
    raises ``ResolutionError`` with the model's own reason, before anything is measured. An op
    fake tensors cannot run says nothing about the size and is let through."""
    from torch._subclasses.fake_tensor import (
        DataDependentOutputException,
        DynamicOutputShapeException,
        FakeTensorMode,
        UnsupportedOperatorException,
    )

    unknown = (DataDependentOutputException, DynamicOutputShapeException, UnsupportedOperatorException)
    log = logging.getLogger("torch._subclasses.fake_tensor")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
            model.eval()(torch.empty(1, 3, *hw))
    except unknown:
        pass
    except (AssertionError, RuntimeError, ValueError, IndexError) as e:
        raise ResolutionError(f"{name} cannot take {hw[0]}x{hw[1]}: {first_line(e)}"[:300]) from None
    finally:
        log.setLevel(level)


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
