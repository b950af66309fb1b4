"""A precision name (``pacabench.spec.dtypes``) as torch sees it: the dtype, and the autocast
every forward of a measurement, an evaluation or a training step runs under."""

from __future__ import annotations

import contextlib

import torch

from ..spec.dtypes import TORCH_NAMES

__all__ = ["torch_dtype", "autocast"]


def torch_dtype(name: str) -> torch.dtype:
    """'fp32' → torch.float32, 'bf16' → torch.bfloat16, 'fp16' → torch.float16; else KeyError."""
    return getattr(torch, TORCH_NAMES[name])


def autocast(dtype: str, device: torch.device):
    """Autocast to bf16/fp16 (weights stay fp32); fp32 runs plainly."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch_dtype(dtype))
