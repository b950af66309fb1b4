"""Whether an exception means "out of memory": a row's ``oom`` status, a capacity probe that did
not fit, and the one-line refusal of ``flops``/``profile`` at a size too large all ask this."""

from __future__ import annotations

import torch

__all__ = ["is_oom"]


def is_oom(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, a MemoryError, or a RuntimeError from an allocator that says so."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    msg = str(exc).lower()
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        "out of memory" in msg or "can't allocate memory" in msg or isinstance(exc, MemoryError)
    )
