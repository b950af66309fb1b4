"""Per-module views: ``pacabench flops --by-module`` (params and FLOPs per module) and
``pacabench profile`` (per-module latency from ``torch.profiler`` record_function scopes)."""

from __future__ import annotations

import json
import sys

import typer

from ..errors import UsageError, first_line
from ..spec.sizes import hw_text, parse_hw
from . import _app

_MODULE_UNITS = "GMACs per image (1 multiply-add = 1 FLOP), batch 1, eval; parents include their children"


MAX_FLOPS_SIDE = 8192
MAX_BATCH = (
    2**20
)  # a larger batch (or side) overflows the int64 of a tensor shape: one line, not torch's TypeError


def flops_size(resolution: str) -> tuple[int, int]:
    """-r as (h, w): every side from 32 (what every family takes) to MAX_FLOPS_SIDE."""
    from ..models import to_hw

    hw = to_hw(parse_hw(resolution))
    if max(hw) > MAX_FLOPS_SIDE:
        raise UsageError(
            f"resolution {hw_text(hw)} is too large: every side must be at most {MAX_FLOPS_SIDE}"
        )
    return hw


def out_of_memory_is_usage(count, what: str = "counting FLOPs"):
    """``count()``, with an allocation failure turned into one line."""
    from ..measure.oom import is_oom

    try:
        return count()
    except (MemoryError, RuntimeError) as e:
        if not is_oom(e):
            raise
        raise UsageError(f"out of memory {what} at this size ({first_line(e)[:120]})") from None


def _label(name: str, depth: int) -> str:
    return "  " * max(depth - 1, 0) + (name or "<model>")


def flops_by_module_cmd(
    model: str, hw: tuple[int, int], head: str | None, counter: str, depth: int, as_json: bool
):
    """``flops --by-module``: one row per module down to ``depth``, as a table or JSON."""
    from ..measure.modules import flops_by_module
    from ..models.segmentation import create_model_or_segmentor

    m = create_model_or_segmentor(model, head, img_size=hw)
    rows = out_of_memory_is_usage(lambda: flops_by_module(m, hw, depth=depth, counter=counter))
    if as_json:
        doc = {"model": model, **({"head": head} if head else {}), "resolution": list(hw), "counter": counter,
               "depth": depth, "units": _MODULE_UNITS, "modules": [r.to_dict() for r in rows]}  # fmt: skip
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    from rich.table import Table

    t = Table(title=f"{model}{' + ' + head if head else ''} at {hw_text(hw)}: FLOPs per module ({counter})")
    for c in ("module", "params (M)", "GFLOPs", "share"):
        t.add_column(c, justify="left" if c == "module" else "right", no_wrap=True)
    for r in rows:
        t.add_row(
            _label(r.name, r.depth), f"{r.params / 1e6:.3f}", f"{r.gflops:.4f}", f"{100 * r.share:.1f} %"
        )
    _app.out().print(t)


def profile(
    model: str = typer.Argument(..., help="Model name (see `pacabench models`)."),
    resolution: str = typer.Option("224", "--resolution", "-r", help="R or HxW."),
    depth: int = typer.Option(1, "--depth", help="Modules down to this depth (1 = the model's children)."),
    iters: int = typer.Option(3, "--iters", help="Profiled forwards (averaged), after one warm-up."),
    batch_size: int = typer.Option(1, "--batch-size", "-b", help="Batch size."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
):
    """Per-module latency of one forward, from torch.profiler (each module a record_function scope)."""
    hw = flops_size(resolution)
    if depth < 0 or iters < 1 or batch_size < 1:
        raise UsageError("--depth must be >= 0, --iters and --batch-size >= 1")
    if batch_size > MAX_BATCH:
        raise UsageError(f"--batch-size must be at most {MAX_BATCH}, got {batch_size}")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu or cuda, got '{device}'")
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available")
    rows = out_of_memory_is_usage(
        lambda: _profile_rows(model, hw, depth, iters, batch_size, device), "profiling"
    )
    if as_json:
        doc = {"model": model, "resolution": list(hw), "batch_size": batch_size, "device": device,
               "iters": iters, "units": "ms per forward; parents include their children", "modules": rows}  # fmt: skip
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    _print_profile(model, hw, device, rows)


def _profile_rows(
    model: str, hw: tuple[int, int], depth: int, iters: int, batch_size: int, device: str
) -> list[dict]:
    import torch

    from ..measure.modules import time_by_module
    from ..models import create_model

    m = create_model(model, img_size=hw).eval().to(device)
    x = torch.randn(batch_size, 3, *hw, device=device)
    times = time_by_module(m, x, depth=depth, iters=iters)
    whole = next((t.cpu_ms for t in times if t.name == ""), 0.0) or 1.0
    return [{**t.to_dict(), "share": t.cpu_ms / whole} for t in times]


def _print_profile(model: str, hw: tuple[int, int], device: str, rows: list[dict]) -> None:
    from rich.table import Table

    t = Table(title=f"{model} at {hw_text(hw)} on {device}: time per module (ms per forward)")
    cols = ["module", "calls", "CPU ms", "share"] + (["device ms"] if device == "cuda" else [])
    for c in cols:
        t.add_column(c, justify="left" if c == "module" else "right", no_wrap=True)
    for r in rows:
        cells = [
            _label(r["name"], r["depth"]),
            str(r["calls"]),
            f"{r['cpu_ms']:.2f}",
            f"{100 * r['share']:.1f} %",
        ]
        if device == "cuda":
            cells.append(f"{r['device_ms']:.2f}" if r["device_ms"] is not None else "–")
        t.add_row(*cells)
    _app.out().print(t)
