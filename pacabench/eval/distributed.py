"""torchrun support for the evaluations: init, exact sharding, reductions, rank-0 output.

Run any evaluation as ``torchrun --nproc-per-node N -m pacabench eval ...``. NCCL on GPUs,
gloo on CPU. Every sample is evaluated exactly once: rank r takes indices r, r+W, r+2W, ...
(no padding duplicates as DistributedSampler would add); counts are summed with all_reduce
and per-sample outputs gathered to rank 0, which alone writes results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "init_distributed",
    "shard_indices",
    "all_reduce_sum",
    "gather_objects",
    "cleanup",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # nccl | gloo when a process group exists, else None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """A process group exists (also for one process under torchrun: same code path)."""
        return self.world_size > 1 or self.backend is not None


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun (also ``--nproc-per-node 1``, so one
    GPU runs the same NCCL path as eight) or with WORLD_SIZE > 1 set by hand."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not ("TORCHELASTIC_RUN_ID" in os.environ and "RANK" in os.environ):
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, backend=dist.get_backend())


def shard_indices(n: int, info: DistInfo) -> list[int]:
    """Indices this rank evaluates: a strided split, every index exactly once over all ranks."""
    return list(range(info.rank, n, info.world_size))


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks (float64/int64 recommended for exact counts)."""
    if not info.enabled:
        return t
    backend = dist.get_backend()
    work = t.cuda() if backend == "nccl" else t.cpu()
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(t.device)


def gather_objects(obj, info: DistInfo) -> list | None:
    """Gather one picklable object per rank to rank 0 (returns the list on rank 0, else None)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
