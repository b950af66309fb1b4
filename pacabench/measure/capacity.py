"""Capacity: the largest batch at a resolution, or the largest resolution at a batch, that fits.

The search is generic: a *probe* ``probe(size) -> peak MiB`` runs one step at that size and
returns its measured peak, or raises an out-of-memory error. A size fits when its peak is at
most the budget and it did not run out of memory; every probe, fit or not, is kept as data
(``Probe``), nothing is a failure. Sizes are multiples of ``step`` (1 for a batch, the model's
stride for a resolution). The search grows from ``start`` by a factor predicted from the last
peak (clamped, so a CPU never allocates far past the budget) until a size does not fit, then
bisects between the largest fit and the smallest non-fit: the answer's next size has been
measured and is over the budget (unless the answer is the ``limit``).

``model_probe`` is the real probe: a train step (``pacabench.measure.train``) or an inference
forward on a freshly built model. On CUDA the budget is enforced by the allocator
(``torch.cuda.set_per_process_memory_fraction``) and the peak read from it; on a CPU the
profiler's peak is compared with the budget.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from ..errors import UsageError, first_line
from ..spec.sizes import parse_memory  # torch-free: suites parse their capacity budget with it
from . import oom

__all__ = [
    "Probe",
    "Capacity",
    "search",
    "parse_memory",
    "model_probe",
    "find_capacity",
    "STRIDE",
    "AXES",
    "MODES",
]

STRIDE = 32  # our families' output stride: their resolutions are searched in multiples of it (any other
# model: its coarsest feature_info stride rounded up to a multiple of this, models.resolution_step)
AXES = ("batch", "resolution")
MODES = ("inference", "train")


@dataclass
class Probe:
    size: int
    peak_mb: float | None  # None: it ran out of memory before a peak could be read
    fits: bool
    status: str  # ok | over (peak above the budget) | oom
    error: str | None = None


@dataclass
class Capacity:
    axis: str  # batch | resolution
    budget_mb: float
    answer: int | None  # None: not even the smallest size fits
    peak_mb: float | None  # measured at the answer
    limit: int  # the search's upper bound
    probes: list[Probe] = field(default_factory=list)

    @property
    def capped(self) -> bool:
        """The upper bound itself fits: the real capacity may be larger."""
        return self.answer is not None and self.answer >= self.limit

    def probe_at(self, size: int) -> Probe | None:
        return next((p for p in self.probes if p.size == size), None)

    def to_dict(self) -> dict:
        return {**asdict(self), "capped": self.capped}


def _run_probe(probe: Callable[[int], float], size: int, budget_mb: float, is_oom) -> Probe:
    try:
        peak = float(probe(size))
    except Exception as e:  # noqa: BLE001 - only out-of-memory is data; anything else propagates
        if not is_oom(e):
            raise
        return Probe(size, None, False, "oom", first_line(e)[:200] if str(e).strip() else "")
    fits = peak <= budget_mb
    return Probe(size, peak, fits, "ok" if fits else "over")


def _next_size(fits: list[Probe], budget_mb: float, step: int, power: float, max_factor: float) -> int:
    """Where the peak is predicted to reach the budget: a line through the last two fits in
    size**power (the fixed part, weights, is the intercept); at least one step up, at most
    ``max_factor`` times the size (a CPU never allocates far past the budget)."""
    last = fits[-1]
    target = last.size * max_factor
    if len(fits) >= 2:
        a, b = fits[-2], fits[-1]
        slope = (b.peak_mb - a.peak_mb) / (b.size**power - a.size**power)
        if slope > 0:
            target = min(target, ((budget_mb - b.peak_mb) / slope + b.size**power) ** (1.0 / power))
    return max(last.size + step, int(target) // step * step)


def search(
    probe: Callable[[int], float],
    budget_mb: float,
    *,
    axis: str = "batch",
    start: int = 1,
    step: int = 1,
    limit: int = 4096,
    power: float = 1.0,
    max_factor: float = 2.0,
    is_oom: Callable[[BaseException], bool] = oom.is_oom,
    on_probe: Callable[[Probe], None] | None = None,
) -> Capacity:
    """The largest multiple of ``step`` in [start, limit] whose probe fits ``budget_mb`` (MiB).

    ``is_oom``: which exceptions of a probe mean "out of memory" (data); others propagate.
    ``on_probe``: called with each probe as it is measured (progress)."""
    if start % step or start < step:
        raise UsageError(f"the search starts at {start}, not a positive multiple of {step}")
    res = Capacity(axis, budget_mb, None, None, limit)
    seen: dict[int, Probe] = {}

    def run(size: int) -> Probe:
        if size not in seen:
            seen[size] = _run_probe(probe, size, budget_mb, is_oom)
            res.probes.append(seen[size])
            if on_probe is not None:
                on_probe(seen[size])
        return seen[size]

    good, bad, fits = None, None, []
    size = start
    while size <= limit:  # grow until a size does not fit
        p = run(size)
        if not p.fits:
            bad = size
            break
        good = p
        fits.append(p)
        if size == limit:
            break
        size = min(limit, _next_size(fits, budget_mb, step, power, max_factor))
    if good is None:
        return res
    lo, hi = good.size // step, (bad // step if bad is not None else limit // step + 1)
    while hi - lo > 1:  # bisect: lo fits, hi does not (or is past the limit)
        mid = (lo + hi) // 2
        if run(mid * step).fits:
            lo = mid
        else:
            hi = mid
    res.answer = lo * step
    res.peak_mb = seen[res.answer].peak_mb
    return res


@contextmanager
def _cuda_budget(device, budget_bytes: int) -> Iterator[None]:
    import torch

    total = torch.cuda.get_device_properties(device).total_memory
    if budget_bytes > total:
        have = f"{total / 2**30:.1f} GiB"
        raise UsageError(f"memory budget {budget_bytes / 2**30:.1f} GiB is more than the device's {have}")
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(budget_bytes / total, device)
    try:
        yield
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()


def model_probe(
    model: str,
    *,
    mode: str = "train",
    axis: str = "resolution",
    fixed: int = 1,
    dtype: str = "fp32",
    device: str = "cpu",
    grad_checkpointing: bool = False,
    channels_last: bool = False,
    kwargs: dict | None = None,
) -> Callable[[int], float]:
    """A probe that builds ``model`` and measures one step's peak (MiB) at ``size``: the batch
    (at resolution ``fixed``) or the resolution (at batch ``fixed``)."""
    import torch

    from ..models import create_model
    from .memory import measure_peak_memory, resident_bytes
    from .train import TrainStep, set_grad_checkpointing, train_peak

    dev = torch.device(device)
    built: dict[int, torch.nn.Module] = {}  # a batch search builds its model once

    def probe(size: int) -> float:
        res, batch = (fixed, size) if axis == "batch" else (size, fixed)
        if res not in built:
            built.clear()
            built[res] = create_model(model, img_size=res, **(kwargs or {})).to(dev)
        net = built[res]
        x = torch.randn(batch, 3, res, res, device=dev)
        if channels_last:
            net, x = (
                net.to(memory_format=torch.channels_last),
                x.contiguous(memory_format=torch.channels_last),
            )
        try:
            if mode == "train":
                if grad_checkpointing:
                    set_grad_checkpointing(net, True)
                step = TrainStep(net, x, dtype=dtype)
                step()  # gradients and AdamW moments exist from here: the steady state
                return train_peak(step).peak_mb
            return _inference_peak(net, x, dtype, dev, measure_peak_memory, resident_bytes)
        finally:
            net.zero_grad(set_to_none=True)
            del net, x
            gc.collect()
            if dev.type == "cuda":
                torch.cuda.empty_cache()

    return probe


def _inference_peak(net, x, dtype, dev, measure_peak_memory, resident_bytes) -> float:
    import torch

    from .precision import autocast

    def forward():
        with torch.inference_mode(), autocast(dtype, dev):
            return net(x)

    return measure_peak_memory(forward, device=dev, resident=resident_bytes(net, x)).peak_mb


def find_capacity(
    model: str,
    budget_bytes: int,
    *,
    mode: str = "train",
    resolution: int | None = None,
    batch: int | None = None,
    start: int | None = None,
    limit: int | None = None,
    device: str = "cpu",
    is_oom: Callable[[BaseException], bool] = oom.is_oom,
    on_probe: Callable[[Probe], None] | None = None,
    **probe_kwargs,
) -> Capacity:
    """With ``resolution``: the largest batch at it; else the largest resolution at ``batch`` (1).

    The search runs from ``start`` (default 1, or 64 px; the limit when that is smaller: a
    small ``limit`` is probed, never "nothing fits" untried) to ``limit`` (4096, or 8192 px);
    a ``start`` above the ``limit`` is a UsageError."""
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if resolution is not None and batch is not None:
        raise UsageError("give a resolution (search the batch) or a batch (search the resolution), not both")
    if resolution is not None:
        axis, fixed, step, power, default_limit = "batch", resolution, 1, 1.0, 4096
    else:
        step = _resolution_step(model, probe_kwargs)
        axis, fixed, power, default_limit = "resolution", batch or 1, 2.0, 8192
    limit = max(step, (limit or default_limit) // step * step)
    if start is None:  # the default first size, or the limit when that is smaller: one probe at least
        start = min(1 if axis == "batch" else 2 * step, limit)
    start = max(step, start // step * step)
    if start > limit:
        raise UsageError(
            f"the {axis} search starts at {start}, above its limit {limit} (multiples of {step}): "
            "nothing would be probed"
        )
    probe = model_probe(model, mode=mode, axis=axis, fixed=fixed, device=device, **probe_kwargs)
    # a resolution grows the input by the square of the factor: smaller steps past a fit
    opts = dict(axis=axis, start=start, step=step, limit=limit, power=power, is_oom=is_oom, on_probe=on_probe)
    opts["max_factor"] = 1.5 if axis == "resolution" else 4.0
    budget_mb = budget_bytes / 2**20
    if not device.startswith("cuda"):
        return search(probe, budget_mb, **opts)
    import torch

    with _cuda_budget(torch.device(device), budget_bytes):
        return search(probe, budget_mb, **opts)


def _resolution_step(model: str, probe_kwargs: dict) -> int:
    """``STRIDE`` for our families; any other model's coarsest stride from its ``feature_info``,
    rounded up to a multiple of ``STRIDE`` (``pacabench.models.resolution_step``)."""
    from ..models import resolution_step

    return resolution_step(model, **(probe_kwargs.get("kwargs") or {}))


def case_capacity(case, is_oom: Callable[[BaseException], bool] = oom.is_oom) -> Capacity:
    """A suite case's ``capacity`` metric (``case``: a ``pacabench.spec.suite.Case``): the largest
    resolution at its batch, mode and dtype within ``case.capacity['memory']``, from its resolution.
    A ``limit`` below that resolution is an error (the case's row says so), never an ``ok`` row
    with no answer and no probe."""
    start, limit = max(case.resolution), case.capacity.get("limit")
    step = _resolution_step(case.model, {"kwargs": case.kwargs} if case.kwargs else {})
    if limit is not None and max(step, limit // step * step) < max(step, start // step * step):
        raise UsageError(
            f"capacity.limit {limit} is below the case's resolution {start}, where the search starts: "
            "nothing to probe (raise the limit or start from a smaller resolution)"
        )
    return find_capacity(
        case.model,
        case.capacity["memory"],
        mode=case.mode,
        batch=case.batch_size,
        start=start,
        limit=limit,
        device=case.device,
        is_oom=is_oom,
        dtype=case.dtype,
        grad_checkpointing=case.grad_checkpointing,
        channels_last=case.channels_last,
        kwargs=case.kwargs or None,
    )
