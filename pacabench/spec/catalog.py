"""The model catalogue: every name pacabench knows, its family, its parameter count, the input-size
rule and the segmentation heads, without importing torch or timm.

Names resolve in this order: pacabench's families (``FAMILIES``: their keys, digests and baselines
never change), then any architecture of the installed timm (``timm_names``: read from timm's
source files, not by importing it, so a light command that checks a suite stays torch-free;
``name.tag`` pretrained tags accepted), then a user factory ``module:function`` or
``path/file.py:function`` (``is_factory``; only its syntax is checked here, nothing is imported).

A suite is validated against this (``pacabench status``, ``baseline`` and ``report`` read suites
and must stay light); ``pacabench.models`` re-exports all of it and builds the models. A new
family = one ``FamilySpec`` here (+ its module in ``pacabench.models`` for our own, whose
``MODEL_NAMES`` must equal the names listed here: tests/test_entrypoints.py checks).
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import PacabenchError

__all__ = [
    "FamilySpec",
    "FAMILIES",
    "PARAMS",
    "ModelSpec",
    "UnknownModelError",
    "ResolutionError",
    "HEADS",
    "list_models",
    "get_spec",
    "model_names",
    "suggest_model",
    "to_hw",
    "timm_names",
    "is_factory",
    "FACTORY",
    "FACTORY_DOC",
    "TIMM_DOC",
]

FACTORY = "factory"  # the family (and source) of a user's ``module:function`` model
# what the docs say of the names outside FAMILIES (docs/reference/models.md)
FACTORY_DOC = (
    "A user's model: `package.module:function` or `path/to/file.py:function`, called with the suite's "
    "kwargs (plus img_size and num_classes when it takes them) and returning an nn.Module; only the "
    "syntax is checked until it is built."
)
TIMM_DOC = (
    "Any other architecture the installed timm registers (`pacabench models --all`), with an optional "
    "pretrained tag (`name.tag`: weights only from timm's local cache); its family is its timm module; "
    "it is offered the case's img_size and built without it when its builder takes none."
)

HEADS = ("paca", "upernet")  # the segmentation heads (pacabench.models.segmentation builds them)


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
    module: str | None = None  # our module in pacabench.models that registers the names with timm
    models: tuple[str, ...] = ()  # every name of the family, in the order `pacabench models` lists them
    img_size_arg: bool = False  # the timm builder takes img_size (Swin fixes its attention mask)
    nhwc_features: bool = False  # timm's stage maps are NHWC (made NCHW for every consumer)
    checkpoint_filter: str | None = None  # "module:function" remapping the authors' checkpoint keys
    downstream_clusters: tuple[int, ...] | None = None  # PaCa-ViT: clusters of the dense-task backbone
    segmentation_kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    segmentation_pad_to: int = 1  # the segmentor pads inputs to a multiple of this
    detection_kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    timm_modules: tuple[str, ...] = ()  # timm's modules whose other names belong to this family too
    doc: str = ""  # one line for `docs/reference/models.md`: what the family is and its quirks


_PACA_NAMES = (
    "pacavit_tiny_p2cconv_100_0",
    "pacavit_small_p2cconv_100_0",
    "pacavit_base_p2cconv_100_0",
    "pacavit_small_p2cmlp_100_0",
    "pacavit_small_p2cconv_2_0",
    "pacavit_small_p2cconv_49_0",
    "pacavit_small_p2cconv_49_100",
    "pacavit_small_p2cconv_100_49",
    "pacavit_small_p2cconv_100",
    "pacavit_small_p2cconv_100_blockwise",
    "pacavit_convmixer_tiny_100",
    "pacavit_convmixer_small_100",
    "pacavit_convmixer_base_100",
)

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
            timm_modules=("swin_transformer",),
            doc="Swin Transformer (timm): shifted 7x7 windows; built at the case's img_size (its attention "
            "masks depend on it), NHWC stage maps; any input is padded to full windows for dense tasks.",
        ),
        FamilySpec(
            "pvt_v2",
            "timm",
            models=tuple(f"pvt_v2_{b}" for b in ("b0", "b1", "b2", "b2_li", "b3", "b4", "b5")),
            checkpoint_filter="timm.models.pvt_v2:checkpoint_filter_fn",
            timm_modules=("pvt_v2",),
            doc="PVTv2 (timm): overlapping patch embeddings and spatial-reduction attention (linear "
            "attention for b2_li); takes any input size.",
        ),
        FamilySpec(
            "paca_vit",
            "pacabench",
            module="paca_vit",
            models=_PACA_NAMES,
            downstream_clusters=(200, 200, 200, 0),
            doc="PaCa-ViT (ours, registered with timm): patch-to-cluster attention; the name says the "
            "clustering (p2cconv / p2cmlp, convmixer) and clusters per stage; 200 clusters for dense tasks.",
        ),
        FamilySpec(
            "pvt_v1",
            "pacabench",
            module="pvt",
            models=tuple(f"pvt_{s}" for s in ("tiny", "small", "medium", "large")),
            doc="PVT v1 (ours, registered with timm): spatial-reduction attention, non-overlapping patch "
            "embeddings; position embeddings interpolated to the input size.",
        ),
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
        """Ours, or for any other timm model its module's plain spec (no quirks: timm's own
        metadata says the rest), or the factory's."""
        return FAMILIES.get(self.family) or FamilySpec(self.family, self.source)


_SPECS: dict[str, ModelSpec] = {
    n: ModelSpec(n, fam.name, 224, fam.source, PARAMS.get(n)) for fam in FAMILIES.values() for n in fam.models
}


def model_names() -> list[str]:
    return list(_SPECS)


def list_models() -> list[ModelSpec]:
    return list(_SPECS.values())


def get_spec(name: str) -> ModelSpec:
    """The spec of a name: ours, a timm architecture (``name`` or ``name.tag``; its family is
    the timm module, or ours when that module is listed in a family's ``timm_modules``), or a
    factory. timm's default size is read when the model is built (``pretrained_cfg``), not here."""
    if name in _SPECS:
        return _SPECS[name]
    if is_factory(name):
        return ModelSpec(name, FACTORY, 224, FACTORY, None)
    module = timm_names().get(name.partition(".")[0]) if isinstance(name, str) else None
    if module is not None:
        return ModelSpec(name, _TIMM_FAMILY.get(module, module), 224, "timm", PARAMS.get(name))
    close = suggest_model(name)
    hint = f" (did you mean '{close}'?)" if close else " (see `pacabench models --all`)"
    raise UnknownModelError(f"unknown model '{name}'{hint}") from None


_TIMM_FAMILY = {mod: f.name for f in FAMILIES.values() for mod in f.timm_modules}
_FACTORY = re.compile(r"^(?:[A-Za-z_][\w.]*|[^:]*\.py):[A-Za-z_]\w*$")
_REGISTER = re.compile(r"@register_model(?:\([^)]*\))?\s*\ndef\s+(\w+)\s*\(")


def is_factory(name: str) -> bool:
    """``package.module:function`` or ``path/to/file.py:function``: a user's model factory."""
    return isinstance(name, str) and bool(_FACTORY.match(name))


@functools.cache
def timm_names() -> dict[str, str]:
    """Every architecture the installed timm registers -> its module (``convnext_tiny`` ->
    ``convnext``), read from the ``@register_model`` functions of timm's source files without
    importing timm (and so torch): ~40 ms, the same list as ``timm.list_models()``."""
    spec = importlib.util.find_spec("timm")
    if spec is None or spec.origin is None:
        return {}
    folder = os.path.join(os.path.dirname(spec.origin), "models")
    out: dict[str, str] = {}
    for fn in sorted(os.listdir(folder)):
        if fn.endswith(".py"):
            with open(os.path.join(folder, fn), encoding="utf-8") as f:
                out.update(dict.fromkeys(_REGISTER.findall(f.read()), fn[:-3]))
    return out


def suggest_model(name: str) -> str | None:
    """The model a misspelt ``name`` most likely meant: pacabench's nearest name (``_suggest_ours``)
    or timm's (the shortest name it begins, else the closest), whichever shares the longer prefix
    with it, then the more similar one (ours on a tie)."""
    ours = _suggest_ours(name)
    theirs = _suggest_timm(name)
    if ours is None or theirs is None:
        return ours or theirs

    def closeness(n: str) -> tuple[int, float]:
        return len(os.path.commonprefix([n, name])), difflib.SequenceMatcher(None, name, n).ratio()

    return theirs if closeness(theirs) > closeness(ours) else ours


def _suggest_timm(name: str) -> str | None:
    names = [n for n in timm_names() if n not in _SPECS]
    starts = [n for n in names if n.startswith(name)] if len(name) >= 3 else []
    if starts:
        return min(starts, key=len)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return close[0] if close else None


def _suggest_ours(name: str) -> str | None:
    """From the same family first: the shortest name it begins; else the closest name of the
    family sharing the longest prefix with it; else the closest name overall (None if nothing is close)."""
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
