"""``pacabench models``, ``pacabench flops`` and ``pacabench clusters``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from ..errors import UsageError
from . import _app


def register(app: typer.Typer) -> None:
    app.command("models")(models_cmd)
    app.command("flops")(flops)
    app.command("clusters", help="Render PaCa-ViT cluster assignments over an image.")(clusters)


def models_cmd(
    as_json: bool = typer.Option(False, "--json", help="One JSON list on stdout."),
    family: str | None = typer.Option(None, "--family", help="Only this family (see the 'family' column)."),
):
    """Every model pacabench can benchmark, with family, parameter count and default resolution."""
    from ..models import FAMILIES, count_params_of, list_models

    specs = [s for s in list_models() if family is None or s.family == family]
    if family is not None and not specs:
        raise UsageError(f"unknown family '{family}' ({', '.join(FAMILIES)})")
    rows = [
        {
            "name": s.name,
            "family": s.family,
            "params": count_params_of(s.name),
            "default_resolution": s.default_resolution,
            "source": s.source,
        }
        for s in specs
    ]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return
    from rich.table import Table

    t = Table(title="pacabench models")
    for c in ("name", "family", "params (M)", "default res", "from"):
        t.add_column(
            c,
            justify="right" if c.startswith(("params", "default")) else "left",
            no_wrap=True,
            min_width=36 if c == "name" else None,
        )
    for r in rows:
        t.add_row(
            r["name"], r["family"], f"{r['params'] / 1e6:.3f}", str(r["default_resolution"]), r["source"]
        )
    _app.out().print(t)


def flops(
    model: str = typer.Argument(..., help="Model name (see `pacabench models`)."),
    resolution: str = typer.Option("224", "--resolution", "-r", help="R or HxW."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
    no_attention: bool = typer.Option(
        False, "--no-attention", help="Plain fvcore: skip fused attention ops (to see what it misses)."
    ),
    head: str | None = typer.Option(None, "--head", help="Segmentor: backbone + paca | upernet head."),
    detector: bool = typer.Option(False, "--detector", help="Mask R-CNN on the backbone (COCO setting)."),
):
    """Parameters and FLOPs (GMACs, fvcore, batch 1, every attention op counted)."""
    hw = _flops_size(resolution)
    if head and detector:
        raise UsageError("--head and --detector are exclusive")
    if head:
        from ..models.segmentation import check_head

        head = check_head(head)
    res = _out_of_memory_is_usage(
        lambda: _detector_flops(model, hw) if detector else _model_flops(model, hw, head, not no_attention)
    )
    if as_json:
        sys.stdout.write(json.dumps(res) + "\n")
        return
    from rich.table import Table

    t = Table(title=f"{model}{' + ' + head if head else ''} at {hw[0]}x{hw[1]}", show_header=False)
    t.add_row("params", f"{res['params'] / 1e6:.3f} M")
    t.add_row("GFLOPs (1 MAC = 1 FLOP)", f"{res['gflops']:.3f}")
    if "by_operator" in res:
        for op, v in list(res["by_operator"].items())[:8]:
            t.add_row(f"  {op}", f"{v:.3f}")
    if res.get("uncounted_ops"):
        t.add_row("left uncounted", ", ".join(f"{k}×{v}" for k, v in res["uncounted_ops"].items()))
        t.add_row("their share (upper bound)", f"{100 * res['uncounted_share']:.2f} %")
    _app.out().print(t)


MAX_FLOPS_SIDE = 8192


def _flops_size(resolution: str) -> tuple[int, int]:
    """-r as (h, w): every side from 32 (what every family takes) to MAX_FLOPS_SIDE."""
    from ..models import to_hw
    from ..sizes import parse_hw

    hw = to_hw(parse_hw(resolution))
    if max(hw) > MAX_FLOPS_SIDE:
        raise UsageError(
            f"resolution {hw[0]}x{hw[1]} is too large: every side must be at most {MAX_FLOPS_SIDE}"
        )
    return hw


def _out_of_memory_is_usage(count):
    """``count()``, with an allocation failure turned into one line."""
    try:
        return count()
    except (MemoryError, RuntimeError) as e:
        text = (str(e).strip().splitlines() or ["MemoryError"])[0]
        if not isinstance(e, MemoryError) and "alloc" not in text and "out of memory" not in text:
            raise
        raise UsageError(f"out of memory counting FLOPs at this size ({text[:120]})") from None


def _detector_flops(model: str, hw: tuple[int, int]) -> dict:
    from ..models.detection import detector_flops

    return {"model": model, "what": "mask_rcnn", "resolution": list(hw), **detector_flops(model, hw)}


def _model_flops(model: str, hw: tuple[int, int], head: str | None, attention: bool) -> dict:
    from ..measure.flops import count_flops
    from ..models import create_model

    if head:
        from ..models.segmentation import create_segmentor

        m = create_segmentor(model, head, img_size=hw)
    else:
        m = create_model(model, img_size=hw)
    rec = count_flops(m, hw, attention=attention)
    return {
        "model": model,
        **({"head": head} if head else {}),
        **rec.to_dict(),
        "units": "GMACs (1 multiply-add = 1 FLOP), batch 1, eval",
        "attention_counted": attention,
    }


def clusters(
    model: str = typer.Argument(..., help="A PaCa-ViT model name, e.g. pacavit_tiny_p2cconv_100_0."),
    image: Path = typer.Argument(..., help="An image file (any format PIL reads)."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Local weights (IMNET_224_<name>.pth)."
    ),
    out: Path = typer.Option(Path("clusters.png"), "-o", "--out", help="Output PNG."),
    stage: int = typer.Option(1, "--stage", help="Stage 1-4 whose assignment to show (must have clusters)."),
    top_k: int = typer.Option(8, "--top-k", help="How many of the strongest clusters' soft maps to show."),
    img_size: int = typer.Option(224, "--img-size", help="Input size (square) after resize and centre crop."),
) -> None:
    """Render PaCa-ViT's patch-to-cluster assignment of one stage over an image."""
    from ..clusters import render_cluster_map

    info = render_cluster_map(
        model, image, out, checkpoint=checkpoint, stage=stage, top_k=top_k, img_size=img_size
    )
    h, w = info["grid"]
    typer.echo(
        f"wrote {info['out']}: stage {stage}, {info['num_clusters']} clusters over {h}×{w} patches, "
        f"{info['used_clusters']} dominate at least one patch"
    )
