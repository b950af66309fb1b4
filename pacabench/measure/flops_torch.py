"""A second FLOP counter: ``torch.utils.flop_counter.FlopCounterMode``, in fvcore's convention.

Why a second one: fvcore (last release 2022) traces with TorchScript, which torch deprecates, and
a FLOP number that goes into a paper is safer when two independent counters agree. torch's
counter dispatches on aten ops, so it sees what actually runs, and under ``FakeTensorMode`` it
counts a 4096² input without allocating it (seconds instead of minutes).

Conventions, made equal to fvcore's: one multiply-add = one FLOP (torch counts 2 per MAC: we
halve), batch 1, eval mode. Known gap: fvcore also counts normalisation layers (LayerNorm,
BatchNorm), adaptive pooling and upsampling, the torch counter does not, so fvcore reads 0.4–1.1%
higher on these backbones at 224²; without those ops the two counts are equal (tested for every
registered model). torch 2.14's counter has no formula for the CPU attention kernel
(``_scaled_dot_product_flash_attention_for_cpu``): it would count CPU attention as free, the
same blind spot as fvcore's; we register one (q·kᵀ plus attn·v, as for the CUDA kernels).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ..spec.sizes import as_hw
from .flops import FlopsRecord, count_flops, count_params

__all__ = [
    "TorchFlopsRecord",
    "count_flops_torch",
    "EXTRA_FORMULAS",
    "COUNTERS",
    "FVCORE_ONLY_OPS",
    "FLAG_PCT",
    "count_flops_as",
    "counter_gap",
]


def _cpu_flash_attention(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention}


@dataclass
class TorchFlopsRecord:
    gflops: float  # GMACs: one multiply-add counted once (fvcore's convention), per image
    resolution: tuple[int, int]
    batch_size: int
    fake: bool  # counted under FakeTensorMode (nothing allocated)
    by_operator: dict[str, float] = field(default_factory=dict)  # GMACs per aten op
    wall_s: float = 0.0
    counter: str = "torch"
    by_module: dict[str, float] | None = None  # module name ("" = the model) → GMACs, when asked

    def to_dict(self) -> dict:
        d = asdict(self)
        d["resolution"] = list(self.resolution)
        return d


def count_flops_torch(
    model: torch.nn.Module,
    resolution: int | Sequence[int],
    *,
    batch_size: int = 1,
    fake: bool = True,
    device: str | torch.device | None = None,
    modules: bool = False,
) -> TorchFlopsRecord:
    """FLOPs of one forward of ``model`` on a ``batch_size``×3×H×W input, per image, in GMACs.

    ``fake=True`` runs the forward on a fake input (shapes only; the model's real weights are
    read for their shapes): any resolution is counted in seconds without its memory.
    ``modules=True`` also fills ``by_module`` (every module of ``model.named_modules()``).
    """
    hw = as_hw(resolution)
    if min(hw) <= 0 or batch_size <= 0:
        raise ValueError(
            f"resolution must be R or (H, W) > 0 and batch_size > 0, got {resolution}, {batch_size}"
        )
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else "cpu"
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
    t0 = time.perf_counter()
    try:
        if fake:
            from torch._subclasses.fake_tensor import FakeTensorMode

            with FakeTensorMode(allow_non_fake_inputs=True):
                x = torch.empty(batch_size, 3, *hw, device=device)
                with counter, torch.no_grad():
                    model(x)
        else:
            x = torch.zeros(batch_size, 3, *hw, device=device)
            with counter, torch.no_grad():
                model(x)
    finally:
        model.train(was_training)
    wall = time.perf_counter() - t0
    total = counter.get_total_flops()
    per_op = counter.get_flop_counts().get("Global", {})
    scale = 1.0 / (2.0 * batch_size * 1e9)
    by_op = {
        str(op).replace("aten.", ""): n * scale for op, n in sorted(per_op.items(), key=lambda kv: -kv[1])
    }
    rec = TorchFlopsRecord(
        gflops=total * scale, resolution=hw, batch_size=batch_size, fake=fake, by_operator=by_op, wall_s=wall
    )
    if modules:
        rec.by_module = _by_module(model, counter.get_flop_counts(), scale)
    return rec


def _by_module(model: torch.nn.Module, counts: dict, scale: float) -> dict[str, float]:
    """FlopCounterMode's per-module table (keys '<RootClass>.<name>') by ``named_modules`` name.

    A container never called itself (a ``ModuleList`` of blocks) is not in the table: it gets
    the sum of its children, as fvcore, which attributes by name, gives it."""
    root = type(model).__name__
    out: dict[str, float] = {}
    for name, mod in reversed(list(model.named_modules())):  # children before their parent
        key = f"{root}.{name}" if name else root
        if key in counts:
            out[name] = sum(counts[key].values()) * scale
        else:
            prefix = f"{name}." if name else ""
            out[name] = sum(out.get(prefix + child, 0.0) for child, _ in mod.named_children())
    return out


COUNTERS = ("fvcore", "torch", "both")
# ops fvcore counts and torch's counter does not: the expected gap between the two
FVCORE_ONLY_OPS = (
    "layer_norm", "batch_norm", "group_norm", "instance_norm",
    "adaptive_avg_pool2d", "upsample_bilinear2d", "upsample_nearest2d",
)  # fmt: skip
FLAG_PCT = 1.0  # counters further apart than this (in %) are flagged


def count_flops_as(
    model: torch.nn.Module, resolution: int | Sequence[int], counter: str = "fvcore"
) -> FlopsRecord:
    """FLOPs (GMACs, batch 1, eval) by ``counter``: ``fvcore`` (``gflops``), ``torch``
    (``gflops_torch``, under fake tensors) or ``both`` (both, and ``counter_diff_pct``)."""
    if counter not in COUNTERS:
        raise ValueError(f"counter must be one of {', '.join(COUNTERS)}, got {counter!r}")
    hw = as_hw(resolution)
    if counter == "torch":
        tc = count_flops_torch(model, hw)
        return FlopsRecord(
            gflops=None, params=count_params(model), resolution=hw, by_operator=tc.by_operator,
            uncounted_share=None, counter="torch", gflops_torch=tc.gflops,
        )  # fmt: skip
    rec = count_flops(model, hw)
    if counter == "both":
        rec.counter = "both"
        rec.gflops_torch = count_flops_torch(model, hw).gflops
        gap = counter_gap(rec)
        rec.counter_diff_pct = gap["diff_pct"] if gap else None
    return rec


def counter_gap(rec: FlopsRecord) -> dict | None:
    """For a ``both`` record: the counters' difference, the part fvcore's extra ops explain
    (normalisation, adaptive pooling, upsampling), what is left unexplained, and whether the
    counters differ by more than ``FLAG_PCT``. None unless both counters ran."""
    if rec.gflops is None or rec.gflops_torch is None or not rec.gflops:
        return None
    diff = 100.0 * (rec.gflops - rec.gflops_torch) / rec.gflops
    explained = 100.0 * sum(rec.by_operator.get(op, 0.0) for op in FVCORE_ONLY_OPS) / rec.gflops
    return {
        "diff_pct": diff,
        "explained_pct": explained,
        "unexplained_pct": diff - explained,
        "flagged": abs(diff) > FLAG_PCT,
    }
