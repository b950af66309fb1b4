"""Precision names, the one table of them (torch-free: ``pacabench.measure.precision`` maps a
name to its torch dtype and autocast when a measurement needs one)."""

from __future__ import annotations

__all__ = ["TORCH_NAMES", "DTYPES", "AMP"]

# a measurable precision → the name of its ``torch`` dtype; this order is the one messages list
TORCH_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}

# a suite's ``dtypes``: the precisions above plus ``amp`` (fp16 on CUDA, bf16 on a CPU; the row
# records which), in the order a suite's messages list them
DTYPES = ("fp32", "fp16", "bf16", "amp")
AMP = {"cuda": "fp16", "cpu": "bf16"}
