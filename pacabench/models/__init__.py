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
    "feature_strides",
    "resolution_step",
    "feature_indices",
    "FeatureMaps",
    "NoFeaturesError",
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
    the others take any size). ``features_only``: the model returns its stage maps, NCHW: our
    families' four at strides 4/8/16/32; any other timm model's from timm's feature extraction,
    the maps, channels and strides its ``feature_info`` gives (``feature_indices``); a factory's
    model must list its maps in ``feature_info``. ``checkpoint``: a local file (flat state_dict,
    or under ``state_dict``/``model``; ``module.``/``backbone.`` stripped), loaded strictly by key
    (a timm features model: through timm's own loader) unless ``features_only`` (then every
    family ignores the classifier's keys, and tensors the model declares resizable, PaCa's cluster
    count, keep their fresh init with a one-line notice on stderr; any other shape mismatch is an
    error). ``attn_impl``: ``"sdpa"`` (default: every
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
    if features_only and spec.source == "timm" and not ours:
        model = _timm_features(spec, hw, kwargs, checkpoint)  # timm's own feature extraction
        if hw is not None:
            probe_size(model, hw, name)
        set_attn_impl(model, attn_impl)
        return model.eval()
    if spec.source == FACTORY:
        model = _build_factory(name, hw, num_classes, kwargs)
    else:
        model = _build_timm(spec, hw, num_classes, features_only, kwargs, checkpoint is None)
    if not ours and hw is not None:
        probe_size(model, hw, name)

    if checkpoint is not None:
        _load_into(model, spec, checkpoint, strict, features_only)
    set_attn_impl(model, attn_impl)
    if features_only and spec.source == FACTORY:
        return _factory_features(model, name).eval()
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
    build_kwargs = {**kwargs, "num_classes": num_classes}
    if fam.source == "pacabench":
        build_kwargs["features_only"] = features_only
    if features_only and fam.source != "pacabench":
        build_kwargs["num_classes"] = 0  # no classifier: its checkpoint keys are ignored, as our families do
    if fam.name not in FAMILIES:  # offered img_size, dropped when the builder takes none
        if "." in name and cache_ok:
            build_kwargs.update(_cached_weights(name))
        return _create_sized(name, hw, build_kwargs, keep=kwargs)
    if hw is not None and (fam.source == "pacabench" or fam.img_size_arg):
        build_kwargs["img_size"] = hw
    return timm.create_model(name, **{"pretrained": False, **build_kwargs})


def _timm_features(spec: ModelSpec, hw, kwargs: dict, checkpoint) -> nn.Module:
    """The stage maps of any timm architecture through timm's own feature extraction
    (``timm.create_model(name, features_only=True, out_indices=...)``): which maps, their
    channels and strides come from the model's ``feature_info`` (``feature_indices``), never
    from constants. A checkpoint goes through timm's loader before the model is cut (the
    architecture's own key filter; the classifier dropped, as timm does for features)."""
    name = spec.name
    build = dict(kwargs)
    if checkpoint is not None:
        sd = checkpoint if isinstance(checkpoint, dict) else read_state_dict(checkpoint)
        build.update(pretrained=True, pretrained_cfg_overlay={"state_dict": dict(sd)})
    elif "." in name:
        build.update(_cached_weights(name))
    info = _default_feature_info(name, hw, kwargs)
    try:
        body = _create_sized(name, hw, {**build, "features_only": True, "out_indices": feature_indices(info)})
    except RuntimeError as e:
        if checkpoint is None or "state_dict" not in str(e):
            raise
        raise CheckpointError(f"{name}: checkpoint does not fit its feature model: {first_line(e)}") from None
    return FeatureMaps(body, nhwc=str(getattr(body, "output_fmt", "NCHW")).endswith("NHWC"))


def _default_feature_info(name: str, hw, kwargs: dict):
    """timm's ``feature_info`` of ``name`` with its default maps, from a build on the meta device
    (no memory, no init); a model timm cannot cut into features is a one-line UsageError."""
    try:
        try:
            with torch.device("meta"):
                return _create_sized(name, hw, {**kwargs, "features_only": True}).feature_info
        except (NotImplementedError, RuntimeError):  # an init that cannot run on meta: build for real
            return _create_sized(name, hw, {**kwargs, "features_only": True}).feature_info
    except Exception as e:  # noqa: BLE001 - timm's reasons vary by architecture
        raise NoFeaturesError(
            f"{name} has no feature extraction in timm ({first_line(e)[:120]}): "
            "eval ade20k/coco need a model with features_only"
        ) from None


def _create_sized(name: str, hw, build_kwargs: dict, keep=()) -> nn.Module:
    """``timm.create_model`` offered ``img_size`` (ViT-like builders take it) and any optional size
    argument in ``build_kwargs`` (``dynamic_img_size``), each dropped when the builder takes none
    (a convnet takes any size); one named in ``keep`` (the user's own kwargs) is never dropped."""
    kw = {"pretrained": False, **build_kwargs}
    if hw is not None:
        kw["img_size"] = hw
    while True:
        try:
            return timm.create_model(name, **kw)
        except TypeError as e:
            drop = next((k for k in _OPTIONAL_SIZE_ARGS if k in kw and k not in keep and k in str(e)), None)
            if drop is None:
                raise
            kw.pop(drop)


_OPTIONAL_SIZE_ARGS = ("dynamic_img_size", "img_size")


def feature_indices(info) -> tuple[int, ...]:
    """Which of a features model's maps the dense heads take (values of ``info.out_indices``): per
    stride the deepest map (the last one with that ``reduction``), at most the four coarsest
    strides, in timm's order. A convnet's stride-2 stem map is left out (strides 4..32, what
    UperNet and the FPN recipes use); a plain ViT gives one stride-16 map."""
    deepest: dict[int, int] = {}
    for idx, red in zip(info.out_indices, info.reduction(), strict=True):
        deepest[int(red)] = idx
    chosen = [deepest[r] for r in sorted(deepest)][-4:]
    return tuple(sorted(chosen, key=list(info.out_indices).index))


def _factory_features(model: nn.Module, name: str) -> nn.Module:
    """A user's model cut into stage maps by timm's ``FeatureListNet``, which needs the model to
    list them in ``feature_info`` (timm's dicts: ``num_chs``, ``reduction``, ``module``)."""
    from timm.models._features import FeatureInfo, FeatureListNet

    info = getattr(model, "feature_info", None)
    if not info:
        raise NoFeaturesError(
            f"model factory '{name}' returns a model without feature_info: eval ade20k/coco need its "
            "stage maps (timm's feature_info: num_chs, reduction, module per map)"
        )
    if not isinstance(info, FeatureInfo):
        info = FeatureInfo(list(info), tuple(range(len(info))))
    body = FeatureListNet(model, out_indices=feature_indices(info), flatten_sequential=True)
    return FeatureMaps(body, nhwc=False)


class NoFeaturesError(UsageError, ResolutionError):
    """A model with no stage maps to give a dense head: one line and exit 2 on the command line, a
    ``skipped`` row in a suite (as a size the architecture cannot take)."""


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
    """Channels of the stage maps of a features model (timm FeatureInfo or a list of dicts)."""
    info = features.feature_info
    if hasattr(info, "channels"):
        return list(info.channels())
    return [int(d["num_chs"]) for d in info]


def resolution_step(name: str, **kwargs) -> int:
    """The multiple a resolution search steps by: 32 for our families (every stage divides it);
    for any other model its coarsest stride in ``feature_info`` rounded up to a multiple of 32
    (LeViT, EfficientViT-M: 64), read from a build on the meta device; 32 when it lists none."""
    if get_spec(name).family in FAMILIES:
        return 32
    try:
        with torch.device("meta"):
            info = getattr(create_model(name, **kwargs), "feature_info", None)
        strides = [int(r) for r in info.reduction()] if hasattr(info, "reduction") else []
        strides = strides or [
            int(d["reduction"]) for d in info or [] if isinstance(d, dict) and "reduction" in d
        ]
    except Exception:  # noqa: BLE001 - no metadata to read: the default step
        return 32
    return 32 * max(1, -(-max(strides, default=32) // 32))


def feature_strides(features: nn.Module) -> list[int]:
    """Strides (timm's ``reduction``) of the stage maps of a features model: 4, 8, 16, 32 for our
    families; whatever ``feature_info`` says for any other (a plain ViT: 16)."""
    info = features.feature_info
    if hasattr(info, "reduction"):
        return [int(r) for r in info.reduction()]
    return [int(d["reduction"]) for d in info]


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


class FeatureMaps(nn.Module):
    """A features model's stage maps as a list, always NCHW (timm's Swin-like models give NHWC),
    with its ``feature_info`` (channels, strides)."""

    def __init__(self, body: nn.Module, nhwc: bool):
        super().__init__()
        self.body = body
        self.nhwc = nhwc
        self.feature_info = body.feature_info

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = list(self.body(x))
        if self.nhwc:
            feats = [f.permute(0, 3, 1, 2).contiguous() for f in feats]
        return feats


class TimmFeatures(FeatureMaps):
    """Four stage maps of a timm model of our families (Swin, PVTv2), cut as their dense-task
    checkpoints expect (``FeatureListNet``, maps 0..3, flattened names)."""

    def __init__(self, model: nn.Module, nhwc: bool):
        from timm.models._features import FeatureListNet

        super().__init__(FeatureListNet(model, out_indices=(0, 1, 2, 3), flatten_sequential=True), nhwc)
