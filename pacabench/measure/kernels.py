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

from ..spec.dtypes import TORCH_NAMES
from .latency import measure_latency
from .precision import torch_dtype

__all__ = [
    "sdpa_backends",
    "numerics",
    "GemmRecord",
    "gemm_rate",
    "achieved_gmacs_per_s",
    "kernel_record",
    "gemm_peak",
    "row_efficiency",
    "collect_env_text",
]

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


def gemm_rate(
    device: str = "cpu",
    dtype: str = "fp32",
    n: int | None = None,
    iters: int = 10,
    *,
    warmup: int = 2,
    time_budget_s: float | None = None,
) -> GemmRecord:
    """Median rate of an n×n×n matmul on ``device`` in ``dtype`` (default n: 2048 CPU, 8192 CUDA);
    ``time_budget_s`` stops timing early (at least 3 repeats)."""
    if dtype not in TORCH_NAMES:
        raise ValueError(f"dtype must be one of {', '.join(TORCH_NAMES)}, got {dtype!r}")
    dev = torch.device(device)
    n = n or (8192 if dev.type == "cuda" else 2048)
    gen = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, device=dev, dtype=torch_dtype(dtype), generator=gen)
    b = torch.randn(n, n, device=dev, dtype=torch_dtype(dtype), generator=gen)
    rec = measure_latency(
        lambda: a @ b, warmup=warmup, iters=iters, min_iters=3, time_budget_s=time_budget_s, device=dev
    )
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


def _backend_label(choices: dict[str, int], device: torch.device) -> str:
    """{"flash": 12} → "flash×12" ("flash_cpu" on the CPU, its own kernel); no call → "none"."""
    if not choices:
        return "none"
    names = {"flash": "flash_cpu"} if device.type == "cpu" else {}
    return ", ".join(f"{names.get(k, k)}×{n}" for k, n in choices.items())


def kernel_record(
    forward: Callable[[], object], device: str | torch.device, compiled: bool
) -> dict[str, object]:
    """The kernel columns of a timed row: runs ``forward()`` once (the eager model) to read the
    SDPA backend of every attention call, and records the settings that pick kernels."""
    num = numerics()
    return {
        "sdpa_backend": _backend_label(sdpa_backends(forward), torch.device(device)),
        "matmul_precision": num["float32_matmul_precision"],
        "tf32": num["cuda_matmul_allow_tf32"],
        "cudnn_benchmark": num["cudnn_benchmark"],
        "deterministic": num["deterministic"],
        "compile_mode": "default" if compiled else "eager",
    }


def gemm_peak(device: str, dtype: str) -> float:
    """The machine's GEMM rate (GMAC/s) on ``device`` in ``dtype``: the runner's efficiency ceiling
    (about a second on the CPU: one warm-up, 3–10 repeats within a one-second budget)."""
    return gemm_rate(device, dtype, warmup=1, time_budget_s=1.0).gmacs_per_s


def row_efficiency(
    gmacs: float, batch_size: int, latency_ms: float | None, peak: float
) -> dict[str, float | None]:
    """achieved_gflops_s (GMAC/s: 1 MAC = 1 FLOP), efficiency = achieved ÷ ``peak``, and the peak."""
    if latency_ms is None or latency_ms <= 0 or not gmacs:
        return {"achieved_gflops_s": None, "efficiency": None, "gemm_gflops_s": peak}
    achieved = achieved_gmacs_per_s(gmacs, batch_size, latency_ms)
    return {"achieved_gflops_s": achieved, "efficiency": achieved / peak, "gemm_gflops_s": peak}


def collect_env_text() -> str | None:
    """``torch.utils.collect_env``'s report (pip packages, CUDA, cuDNN, CPU): once per run, it takes
    seconds (3–4 s here, most of it ``pip list``). None if it fails (it shells out to nvidia-smi,
    pip and lscpu) or ``PACABENCH_COLLECT_ENV=0`` (the tests set it: they make many runs)."""
    import os

    if os.environ.get("PACABENCH_COLLECT_ENV", "1") == "0":
        return None
    try:
        from torch.utils import collect_env

        return collect_env.get_pretty_env_info()
    except Exception:  # noqa: BLE001 - the environment record must never stop a run
        return None
