"""Pieces every evaluation shares: device and dtype, autocast, rank-wide failure handling."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Subset

from ..errors import UsageError
from ..measure.precision import autocast, torch_dtype
from ..spec.dtypes import TORCH_NAMES
from .distributed import DistInfo, all_reduce_sum, gather_objects, shard_indices

__all__ = [
    "IMAGE_EXTENSIONS",
    "resolve_device",
    "autocast",
    "reduce_max",
    "raise_if_any_failed",
    "require_dir",
    "sync",
    "default_workers",
    "place",
    "run_shard",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def resolve_device(device: str, info: DistInfo) -> torch.device:
    """'auto' → this rank's GPU if there is one, else CPU; 'cuda' → cuda:<local_rank>."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("device cuda: no CUDA device is available")
        return torch.device("cuda", info.local_rank if info.enabled else torch.cuda.current_device())
    if device == "cpu":
        return torch.device(device)
    if device.startswith("cuda:"):
        return _cuda_index(device)
    if device == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise UsageError("device mps: no MPS device is available")
        return torch.device(device)
    raise UsageError(f"unknown device '{device}' (auto, cpu, cuda, cuda:N)")


def _cuda_index(device: str) -> torch.device:
    """'cuda:N' when GPU N exists, else UsageError naming how many there are."""
    try:
        index = int(device.split(":", 1)[1])
    except ValueError:
        raise UsageError(f"unknown device '{device}' (auto, cpu, cuda, cuda:N)") from None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not 0 <= index < count:
        raise UsageError(f"device {device}: no such CUDA device ({count} available)")
    return torch.device("cuda", index)


def check_workers(workers: int | None) -> None:
    if workers is not None and workers < 0:
        raise UsageError(f"workers must be 0 or more, got {workers}")


def check_outputs(**outputs: tuple[str | os.PathLike | None, str]) -> None:
    """Before any work: every output ``name=(path, 'file' | 'dir')`` that is not None can be written."""
    from ..paths import check_output_path

    for name, (path, kind) in outputs.items():
        if path is not None:
            check_output_path(path, kind, name)


def write_or_keep(write, path, result: dict) -> None:
    """Call ``write()``; when it fails, raise OutputWriteError carrying ``result`` (shown first)."""
    from ..paths import OutputWriteError

    try:
        write()
    except OSError as e:
        raise OutputWriteError(f"cannot write {path}: {e.strerror or e}", result) from None


def check_dtype(dtype: str) -> torch.dtype:
    if dtype not in TORCH_NAMES:
        raise UsageError(f"unknown dtype '{dtype}' (choose from {', '.join(TORCH_NAMES)})")
    return torch_dtype(dtype)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def default_workers(workers: int | None, info: DistInfo, most: int) -> int:
    """``workers``, or by default this machine's CPUs shared among the ranks (``most`` at most)."""
    if workers is not None:
        return workers
    return min(most, max(1, (os.cpu_count() or 1) // max(1, info.world_size)))


def place(net: torch.nn.Module, dev: torch.device, channels_last: bool) -> torch.nn.Module:
    """``net`` in eval mode on ``dev``, its weights channels-last if asked."""
    net.eval().to(dev)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    return net


def reduce_max(value: float, info: DistInfo) -> float:
    """Maximum of a float over ranks (e.g. the slowest rank's wall time)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def raise_if_any_failed(error: str | None, info: DistInfo) -> None:
    """Collective: if any rank hit a fatal input error, every rank raises it (no rank hangs).

    Call on every rank at the same point; ``error`` is this rank's first error message or None.
    """
    if not info.enabled:
        if error is not None:
            raise UsageError(error)
        return
    n_failed = all_reduce_sum(torch.tensor([0 if error is None else 1], dtype=torch.int64), info)
    if int(n_failed.item()) == 0:
        return
    # every rank takes part in the broadcast of the first failing rank's message
    msgs = [None] * info.world_size
    dist.all_gather_object(msgs, error)
    first = next(m for m in msgs if m is not None)
    raise UsageError(first)


def require_dir(path: str | os.PathLike, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise UsageError(f"{what} not found: {p}")
    if not p.is_dir():
        raise UsageError(f"{what} is not a folder: {p}")
    return p


def pct(num: float, den: float) -> float:
    return 100.0 * num / den if den else math.nan


__all__ += ["check_dtype", "check_workers", "check_outputs", "write_or_keep", "pct", "gather_objects"]


class SampleDataset(Dataset):
    """A dataset over a list of samples; subclasses read item ``i`` and return errors as values
    (never raising, so a bad file cannot kill a DataLoader worker with a traceback)."""

    def __init__(self, samples: list):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)


def run_shard(loop, net, ds, info: DistInfo, dev: torch.device, workers: int, *args, batch_size=None,
              collate_fn=None) -> float:  # fmt: skip
    """``loop.run(net, loader, *args)`` over this rank's strided shard of ``ds`` (``shard_indices``,
    in order; ``batch_size`` None: one item at a time). Returns the wall seconds, the device's
    queued work included (the evaluation's ``wall_s``); a failure on any rank (``loop.error``) is
    raised on every rank."""
    loader = DataLoader(
        Subset(ds, shard_indices(len(ds), info)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=dev.type == "cuda",
        collate_fn=collate_fn,
        persistent_workers=False,
    )
    t0 = time.perf_counter()
    loop.run(net, loader, *args)
    sync(dev)
    wall = time.perf_counter() - t0
    raise_if_any_failed(loop.error, info)
    return wall


def case_options(case) -> tuple[str, dict]:
    """(data folder, remaining options) of a suite case's ``eval.<task>`` settings."""
    cfg = dict(case.eval_config)
    data = cfg.pop("data")
    cfg.pop("img_size", None)
    return data, cfg


__all__ += ["case_options", "SampleDataset"]
