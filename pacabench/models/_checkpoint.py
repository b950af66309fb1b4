"""Checkpoint loading shared by every model family.

Accepts the files the model authors publish: a flat ``state_dict`` or one wrapped under
``state_dict`` / ``model``; strips ``module.`` (DDP) and, for dense-prediction checkpoints,
``backbone.``. Always ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import PacabenchError, first_line

__all__ = ["CheckpointError", "LoadReport", "read_state_dict", "load_checkpoint", "fit_problems"]


class CheckpointError(PacabenchError):
    """A checkpoint that cannot be read or does not fit the model (one-line message)."""


@dataclass
class LoadReport:
    """What happened when a checkpoint was applied to a model."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, ckpt shape, model shape
    skipped: list[str] = field(default_factory=list)  # deliberately ignored (e.g. head.* in features mode)

    def notice(self) -> str:
        parts = []
        if self.mismatched:
            parts.append(
                "kept fresh init for shape-mismatched " + ", ".join(k for k, _, _ in self.mismatched)
            )
        if self.skipped:
            parts.append("ignored " + summarise_keys(self.skipped))
        if self.missing:
            parts.append("missing " + summarise_keys(self.missing))
        return "; ".join(parts)


def summarise_keys(keys: list[str], limit: int = 6) -> str:
    keys = list(keys)
    if len(keys) <= limit:
        return ", ".join(keys)
    return ", ".join(keys[:limit]) + f", … (+{len(keys) - limit} more)"


def fit_problems(
    mismatched: list[str], missing: list[str], unexpected: list[str], limit: int = 6
) -> list[str]:
    """Why a state_dict does not fit a model, one phrase per kind of problem (empty: it fits)."""
    problems = []
    if mismatched:
        problems.append("shape mismatch: " + summarise_keys(mismatched, limit))
    if missing:
        problems.append("missing keys: " + summarise_keys(missing, limit))
    if unexpected:
        problems.append("unexpected keys: " + summarise_keys(unexpected, limit))
    return problems


def read_state_dict(path: str | os.PathLike, *, strip_prefixes: Iterable[str] = ("module.",)) -> dict:
    """Read a checkpoint file into a flat state_dict of tensors."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - surfaced as a one-line error
        raise CheckpointError(f"cannot read checkpoint {path}: {first_line(e)}") from e
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model", "module"):
            if wrapper in obj and isinstance(obj[wrapper], dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state_dict of tensors")
    bad = next((k for k in obj if not isinstance(k, str)), None)
    if bad is not None:
        raise CheckpointError(
            f"{path}: state_dict keys must be parameter names, found {type(bad).__name__} key {bad!r}"
        )
    out = {}
    for k, v in obj.items():
        for p in strip_prefixes:
            if k.startswith(p):
                k = k[len(p) :]
        out[k] = v
    return out


def load_checkpoint(
    model: nn.Module,
    path_or_state: str | os.PathLike | dict,
    *,
    strict: bool = True,
    ignore: Callable[[str], bool] | None = None,
    allow_shape_mismatch: bool | Callable[[str], bool] = False,
    filter_fn: Callable[[dict, nn.Module], dict] | None = None,
) -> LoadReport:
    """Load weights into ``model`` by key.

    ``ignore(key)`` marks checkpoint keys to drop silently-but-reported (e.g. ``head.*`` for a
    features model). Shape-mismatched tensors that ``allow_shape_mismatch`` allows (True: all;
    a callable: the keys it accepts) keep the model's fresh init (reported); any other is an
    error. With ``strict`` any missing or
    unexpected key is an error naming the keys.
    """
    if isinstance(path_or_state, dict):
        sd = dict(path_or_state)
    else:
        sd = read_state_dict(path_or_state)
    # dense-prediction checkpoints (mmseg/mmdet) keep the backbone under `backbone.`
    if any(k.startswith("backbone.") for k in sd):
        sd = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    if filter_fn is not None:
        sd = filter_fn(sd, model)

    report = LoadReport()
    own = model.state_dict()
    to_load = {}
    for k, v in sd.items():
        if ignore is not None and ignore(k):
            report.skipped.append(k)
        elif k not in own:
            report.unexpected.append(k)
        elif tuple(own[k].shape) != tuple(v.shape):
            report.mismatched.append((k, tuple(v.shape), tuple(own[k].shape)))
        else:
            to_load[k] = v
    report.missing = [k for k in own if k not in to_load and not any(k == m for m, _, _ in report.mismatched)]

    allowed = (
        allow_shape_mismatch if callable(allow_shape_mismatch) else (lambda k: bool(allow_shape_mismatch))
    )
    problems = fit_problems(
        [f"{k} {list(a)} vs model {list(b)}" for k, a, b in report.mismatched if not allowed(k)],
        report.missing if strict else [],
        report.unexpected if strict else [],
    )
    if problems:
        raise CheckpointError("checkpoint does not fit the model: " + "; ".join(problems))

    model.load_state_dict(to_load, strict=False)
    report.loaded = list(to_load)
    return report
