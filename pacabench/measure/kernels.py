"""Which kernels ran, and how fast the machine can multiply: the context a latency needs.

- ``sdpa_backends(fn)``: runs ``fn()`` once and records, for every
  ``scaled_dot_product_attention`` call, the backend torch's dispatcher picks for those exact
  inputs (flash / efficient / cudnn / math; on the CPU, flash is the CPU flash kernel). A model
  with its attention map materialised (``attn_impl="explicit"``) makes no such call.
- ``numerics()``: the settings that change which kernels run: TF32 for matmul and cuDNN,
  ``cudnn.benchmark``, deterministic algorithms, float32 matmul precision.
- ``gemm_rate(device, dtype)``: the machine's matrix-multiply rate (a large square GEMM, median
  of timed repeats), in GMAC/s, the ceiling that ``efficiency`` = achieved ÷ peak refers to.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .latency import measure_latency

__all__ = ["sdpa_backends", "numerics", "GemmRecord", "gemm_rate", "achieved_gmacs_per_s"]

_BACKENDS = {0: "math", 1: "flash", 2: "efficient", 3: "cudnn", 4: "overrideable", -1: "error"}


class _SdpaChoices(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.choices: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            q, k, v = args[:3]
            rest = dict(zip(("attn_mask", "dropout_p", "is_causal"), args[3:]))
            rest.update(kwargs)
            choice = torch._fused_sdp_choice(
                q,
                k,
                v,
                rest.get("attn_mask"),
                rest.get("dropout_p", 0.0),
                rest.get("is_causal", False),
                scale=rest.get("scale"),
                enable_gqa=rest.get("enable_gqa", False),
            )
            self.choices[_BACKENDS.get(int(choice), str(choice))] += 1
        return func(*args, **kwargs)


def sdpa_backends(fn: Callable[[], object]) -> dict[str, int]:
    """Run ``fn()`` once; return {backend: number of attention calls that dispatch to it}."""
    with _SdpaChoices() as mode:
        fn()
    return dict(sorted(mode.choices.items()))


def numerics() -> dict[str, object]:
    cuda = torch.backends.cuda
    return {
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_allow_tf32": bool(cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "deterministic": bool(torch.are_deterministic_algorithms_enabled()),
    }


@dataclass(frozen=True)
class GemmRecord:
    gmacs_per_s: float  # multiply-adds per second, ÷ 1e9 (1 MAC = 1 FLOP, as the FLOP counts)
    n: int
    dtype: str
    device: str
    median_ms: float

    def to_dict(self) -> dict:
        return asdict(self)


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def gemm_rate(device: str = "cpu", dtype: str = "fp32", n: int | None = None, iters: int = 10) -> GemmRecord:
    """Median rate of an n×n×n matmul on ``device`` in ``dtype`` (default n: 2048 CPU, 8192 CUDA)."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    dev = torch.device(device)
    n = n or (8192 if dev.type == "cuda" else 2048)
    gen = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, device=dev, dtype=_DTYPES[dtype], generator=gen)
    b = torch.randn(n, n, device=dev, dtype=_DTYPES[dtype], generator=gen)
    rec = measure_latency(lambda: a @ b, warmup=2, iters=iters, min_iters=3, device=dev)
    return GemmRecord(
        gmacs_per_s=n**3 / (rec.median_ms / 1000.0) / 1e9,
        n=n,
        dtype=dtype,
        device=dev.type,
        median_ms=rec.median_ms,
    )


def achieved_gmacs_per_s(gflops_per_image: float, batch_size: int, latency_ms: float) -> float:
    """Multiply-adds per second a forward reached: GMACs per image × batch ÷ seconds per batch."""
    if latency_ms <= 0:
        raise ValueError("latency must be positive")
    return gflops_per_image * batch_size / (latency_ms / 1000.0)
