"""``pacabench capacity``: the largest batch or resolution that fits a memory budget."""

from __future__ import annotations

import json
import sys

import typer

from ..errors import UsageError
from . import _app
from ._profile import MAX_BATCH


def register(app: typer.Typer) -> None:
    app.command("capacity")(capacity)


def capacity(
    model: str = typer.Argument(..., help="Model name (see `pacabench models`)."),
    mode: str = typer.Option("train", "--mode", help="train (AdamW step) | inference (forward)."),
    memory: str = typer.Option(
        ...,
        "--memory",
        help="Budget with a unit, e.g. 4GiB, 24GB, 512MiB (a bare number is bytes; >= 1 MiB).",
    ),
    resolution: int | None = typer.Option(None, "--resolution", "-r", help="Search the batch at this size."),
    batch: int | None = typer.Option(
        None, "--batch", "-b", help="Search the resolution at this batch (default 1)."
    ),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 | fp16 | bf16 (autocast)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda"),
    grad_checkpointing: bool = typer.Option(False, "--grad-checkpointing", help="Train with checkpointing."),
    limit: int | None = typer.Option(
        None, "--limit", help="Largest size tried (batch 4096, resolution 8192)."
    ),
    start: int | None = typer.Option(None, "--start", help="First size tried (batch 1, resolution 64)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Each probe on stderr as it is measured."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
):
    """Largest batch (at --resolution) or resolution (multiple of 32, at --batch) that fits --memory."""
    from ..measure.capacity import find_capacity
    from ..models import get_spec
    from ..spec.dtypes import TORCH_NAMES

    budget = _budget(memory)
    get_spec(model)
    if dtype not in TORCH_NAMES:
        raise UsageError(f"dtype must be fp32, fp16 or bf16, got {dtype!r}")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"device must be cpu or cuda, got {device!r}")
    for name, v in (("--resolution", resolution), ("--batch", batch), ("--limit", limit), ("--start", start)):
        if v is not None and v < (32 if name == "--resolution" else 1):
            raise UsageError(
                f"{name} must be {'at least 32' if name == '--resolution' else 'positive'}, got {v}"
            )
        if v is not None and v > MAX_SIZE:
            raise UsageError(f"{name} must be at most {MAX_SIZE}, got {v}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: CUDA is not available on this machine")
    cap = find_capacity(
        model, budget, mode=mode, resolution=resolution, batch=batch, limit=limit, device=device,
        dtype=dtype, grad_checkpointing=grad_checkpointing, start=start,
        on_probe=_show_probe if verbose else None,
    )  # fmt: skip
    result = {"model": model, "mode": mode, "dtype": dtype, "device": device, "memory_bytes": budget}
    result |= {"fixed": {"resolution": resolution} if resolution else {"batch": batch or 1}}
    result |= cap.to_dict()
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    _print(result)


MAX_SIZE = MAX_BATCH  # the largest batch or side: beyond it an input's shape would not fit torch's int64


def _budget(memory: str) -> int:
    """``--memory`` in bytes: a size with a unit (4GiB, 512MiB, 24GB); a bare number is bytes, and
    a budget under 1 MiB (``--memory 0.5``: 0 bytes) is refused rather than searched."""
    from ..measure.capacity import parse_memory

    shown = memory if len(memory) <= 24 else memory[:20] + "…"
    try:
        budget = parse_memory(memory)
    except OverflowError:
        raise UsageError(f"memory {shown!r} is too large a budget") from None
    if budget < 2**20:
        raise UsageError(
            f"memory budget {shown!r} is {budget} bytes, under 1 MiB: a number without a unit is bytes "
            "(give a unit: 512MiB, 0.5GiB, 24GB)"
        )
    return budget


def _show_probe(p) -> None:
    peak = "out of memory" if p.peak_mb is None else f"peak {p.peak_mb:.1f} MiB"
    print(f"[capacity] {p.size}: {peak} ({'fits' if p.fits else p.status})", file=sys.stderr, flush=True)


def _print(r: dict) -> None:
    from rich.table import Table

    fixed = ", ".join(f"{k} {v}" for k, v in r["fixed"].items())
    t = Table(title=f"{r['model']} {r['mode']} {r['dtype']} {r['device']}: largest {r['axis']} at {fixed}")
    t.add_column(r["axis"], justify="right")
    t.add_column("peak (MiB)", justify="right")
    t.add_column("fits", justify="center")
    for p in sorted(r["probes"], key=lambda p: p["size"]):
        peak = "–" if p["peak_mb"] is None else f"{p['peak_mb']:.1f}"
        t.add_row(str(p["size"]), peak, "yes" if p["fits"] else p["status"])
    _app.out().print(t)
    budget = f"{r['budget_mb']:.0f} MiB"
    if r["answer"] is None:
        _app.out().print(f"nothing fits in {budget}: the smallest {r['axis']} tried needs more")
        return
    more = " (the search's limit: it may fit more)" if r["capped"] else ""
    _app.out().print(f"largest {r['axis']}: {r['answer']} (peak {r['peak_mb']:.1f} MiB of {budget}){more}")
