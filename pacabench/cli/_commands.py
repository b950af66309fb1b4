"""``pacabench models``, ``pacabench flops`` and ``pacabench clusters``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from ..errors import UsageError
from ..spec.sizes import hw_text
from . import _app, _profile
from ._profile import flops_size, out_of_memory_is_usage


def register(app: typer.Typer) -> None:
    app.command("models")(models_cmd)
    app.command("flops")(flops)
    app.command("profile")(_profile.profile)
    app.command("clusters", help="Render PaCa-ViT cluster assignments over an image.")(clusters)


def models_cmd(
    pattern: str | None = typer.Argument(None, help="With --all: a glob over names, e.g. 'convnext*'."),
    all_timm: bool = typer.Option(False, "--all", help="Every timm architecture too (filter with PATTERN)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON list on stdout."),
    family: str | None = typer.Option(None, "--family", help="Only this family (see the 'family' column)."),
):
    """Every model pacabench can benchmark, with family, parameter count and default resolution."""
    from ..models import FAMILIES, count_params_of, list_models

    if pattern is not None and not all_timm:
        raise UsageError("a name pattern needs --all (pacabench models --all 'convnext*')")
    if all_timm:
        rows = _all_models(pattern or "*", family)
    else:
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
    _models_table(rows)


MAX_COUNTED = 60  # `models --all`: params are counted (a meta-device build each) for at most this many


def _all_models(pattern: str, family: str | None) -> list[dict]:
    """Ours and every timm architecture whose name matches ``pattern``: family (ours, else the timm
    module), default size (timm's ``pretrained_cfg``) and params, counted on the meta device only
    when at most ``MAX_COUNTED`` names match (a build each: ~0.1-1 s); else None, with a note."""
    from fnmatch import fnmatchcase

    from ..models import count_params_of, get_spec, model_names, timm_default_size
    from ..spec.catalog import timm_names

    names = [n for n in dict.fromkeys([*model_names(), *timm_names()]) if fnmatchcase(n, pattern)]
    specs = [s for s in map(get_spec, names) if family is None or s.family == family]
    if not specs:
        raise UsageError(f"no model matches '{pattern}'" + (f" in family '{family}'" if family else ""))
    count = len(specs) <= MAX_COUNTED
    if not count:
        _app.console().print(
            f"[yellow]note[/]: {len(specs)} models match; params are counted for at most {MAX_COUNTED} "
            "(narrow the pattern to see them)"
        )
    return [
        {
            "name": s.name,
            "family": s.family,
            "params": count_params_of(s.name) if count else None,
            "default_resolution": s.default_resolution
            if s.source == "pacabench"
            else timm_default_size(s.name)[0],
            "source": s.source,
        }
        for s in specs
    ]


def _models_table(rows: list[dict]) -> None:
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
        params = "-" if r["params"] is None else f"{r['params'] / 1e6:.3f}"
        t.add_row(r["name"], r["family"], params, str(r["default_resolution"]), r["source"])
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
    counter: str = typer.Option(
        "fvcore",
        "--counter",
        help="fvcore | torch (FlopCounterMode on fake tensors: 4096² in seconds) | both.",
    ),
    by_module: bool = typer.Option(
        False, "--by-module", help="Params and FLOPs per module (stages, blocks, attention, MLP)."
    ),
    depth: int = typer.Option(
        2, "--depth", help="With --by-module: modules down to this depth (1 = children)."
    ),
    kwarg: list[str] = typer.Option(
        [], "--kwarg", "-k", help="KEY=VALUE for the model's builder or factory (value as YAML), repeatable."
    ),
):
    """Parameters and FLOPs (GMACs, batch 1, every attention op counted; fvcore unless --counter).

    MODEL: a name of `pacabench models --all`, or your own factory `module:function` or
    `path/file.py:function` returning an nn.Module (it runs: your own choice on the command line)."""
    hw = flops_size(resolution)
    kwargs = _model_kwargs(kwarg)
    _check_flops_options(counter, head, detector, no_attention, by_module, depth)
    if head:
        from ..models.segmentation import check_head

        head = check_head(head)
    if by_module:
        return _profile.flops_by_module_cmd(model, hw, head, counter, depth, as_json)
    res = out_of_memory_is_usage(
        lambda: (
            _detector_flops(model, hw, not no_attention)
            if detector
            else _model_flops(model, hw, head, not no_attention, counter, kwargs)
        )
    )
    if as_json:
        sys.stdout.write(json.dumps(res) + "\n")
        return
    _app.out().print(_flops_table(f"{model}{' + ' + head if head else ''} at {hw_text(hw)}", res))


def _flops_table(title: str, res: dict):
    """The terminal table of one count: params, GFLOPs by operator, what was left uncounted, the
    torch counter's total and the two counters' gap."""
    from rich.table import Table

    t = Table(title=title, show_header=False)
    t.add_row("params", f"{res['params'] / 1e6:.3f} M")
    if res.get("gflops") is not None:
        t.add_row("GFLOPs (1 MAC = 1 FLOP)", f"{res['gflops']:.3f}")
    if "by_operator" in res:
        for op, v in list(res["by_operator"].items())[:8]:
            t.add_row(f"  {op}", f"{v:.3f}")
    if res.get("uncounted_ops"):
        t.add_row("left uncounted", ", ".join(f"{k}×{v}" for k, v in res["uncounted_ops"].items()))
        t.add_row("their share (upper bound)", f"{100 * res['uncounted_share']:.2f} %")
    _counter_rows(t, res)
    return t


def _check_flops_options(counter: str, head, detector: bool, no_attention: bool, by_module: bool, depth: int):
    from ..measure.flops_torch import COUNTERS

    if counter not in COUNTERS:
        raise UsageError(f"--counter must be one of {', '.join(COUNTERS)}, got '{counter}'")
    if head and detector:
        raise UsageError("--head and --detector are exclusive")
    if counter != "fvcore" and (detector or no_attention):
        raise UsageError(f"--{'detector' if detector else 'no-attention'} needs --counter fvcore")
    if by_module and (detector or no_attention or counter == "both"):
        raise UsageError("--by-module counts a backbone (or --head) with --counter fvcore or torch")
    if depth < 0:
        raise UsageError(f"--depth must be >= 0, got {depth}")


def _counter_rows(t, res: dict) -> None:
    """The torch counter's total and, with both counters, their gap; past FLAG_PCT also why they
    differ (the op families only one counter counts, ``counter_gap_why`` of a row) and the share
    left uncounted, as a row and a note on stderr."""
    if res.get("gflops_torch") is None:
        return
    t.add_row("GFLOPs, torch counter", f"{res['gflops_torch']:.3f}")
    gap = res.get("counter_gap")
    if gap:
        t.add_row("fvcore − torch", f"{gap['diff_pct']:+.2f} %")
        t.add_row("  of which norm/pool/upsample", f"{gap['explained_pct']:+.2f} % (fvcore counts them)")
        if gap["flagged"]:
            t.add_row("why they differ", gap["why"])
            share = res.get("uncounted_share")
            left = ""
            if share is not None:
                left = f"; ops fvcore leaves uncounted: ≤ {100 * share:.2f} % of the total"
            other = gap["unexplained_pct"] if abs(gap["unexplained_pct"]) >= 0.005 else 0.0  # no "-0.00"
            _app.console().print(
                f"[yellow]note[/]: the counters differ by {gap['diff_pct']:+.2f} % (more than "
                f"{res['flag_pct']:g} %); {other:+.2f} % is not normalisation layers. "
                f"Why: {gap['why']}{left}"
            )


def _detector_flops(model: str, hw: tuple[int, int], attention: bool) -> dict:
    from ..models.detection import detector_flops

    rec = detector_flops(model, hw, attention=attention)
    return {
        "model": model,
        "what": "mask_rcnn",
        "resolution": list(hw),
        **rec,
        "attention_counted": attention,
    }


def _model_kwargs(pairs: list[str]) -> dict:
    """``--kwarg depth=12 --kwarg drop_path_rate=0.1`` -> {"depth": 12, "drop_path_rate": 0.1}."""
    import yaml

    out = {}
    for p in pairs:
        key, eq, value = p.partition("=")
        if not eq or not key.strip().isidentifier():
            raise UsageError(f"--kwarg must be KEY=VALUE, got '{p}'")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _model_flops(
    model: str,
    hw: tuple[int, int],
    head: str | None,
    attention: bool,
    counter: str,
    kwargs: dict | None = None,
) -> dict:
    from ..measure.flops import count_flops
    from ..measure.flops_torch import FLAG_PCT, count_flops_as, counter_gap
    from ..models.segmentation import create_model_or_segmentor

    m = create_model_or_segmentor(model, head, img_size=hw, **(kwargs or {}))
    rec = count_flops(m, hw, attention=attention) if counter == "fvcore" else count_flops_as(m, hw, counter)
    extra = {"counter_gap": counter_gap(rec), "flag_pct": FLAG_PCT} if counter == "both" else {}
    return {
        "model": model,
        **({"head": head} if head else {}),
        **rec.to_dict(),
        **extra,
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
    from ..viz.clusters import render_cluster_map

    info = render_cluster_map(
        model, image, out, checkpoint=checkpoint, stage=stage, top_k=top_k, img_size=img_size
    )
    h, w = info["grid"]
    typer.echo(
        f"wrote {info['out']}: stage {stage}, {info['num_clusters']} clusters over {h}×{w} patches, "
        f"{info['used_clusters']} dominate at least one patch"
    )
