"""``pacabench eval ...`` sub-commands (imagenet, ade20k, coco) over ``pacabench.eval``.

Each works under torchrun: ``run_command`` calls the evaluation on every rank and prints on
rank 0. Bad input: one line on stderr (rank 0) and exit code 2 on every rank.
"""

from __future__ import annotations

import json
import sys

import typer

from ..errors import PacabenchError, UsageError, first_line

eval_app = typer.Typer(
    help="Accuracy on local datasets (ImageNet-1k, ADE20k, COCO); works under torchrun.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")


# --- imagenet (pacabench/eval/imagenet.py) ---
@eval_app.command("imagenet")
def imagenet_command(
    model: str = typer.Option(..., "--model", "-m", help="Model name (see `pacabench models`)."),
    data: str = typer.Option(..., "--data", help="Val folder: <wnid>/*.JPEG, or flat + --labels."),
    checkpoint: str = typer.Option(None, "--checkpoint", help="Local weights (e.g. IMNET_224_<model>.pth)."),
    labels: str = typer.Option(None, "--labels", help="One 'relative/path label_index' per line."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Images per forward, per rank."),
    workers: int = typer.Option(None, "--workers", help="Decoding processes per rank."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32, bf16 or fp16 (autocast)."),
    img_size: str = typer.Option(None, "--img-size", help="Input size R or HxW (default: model config)."),
    crop_pct: float = typer.Option(None, "--crop-pct", help="Resize to size/crop_pct, then center crop."),
    interpolation: str = typer.Option(None, "--interpolation", help="bicubic, bilinear, nearest, ..."),
    limit: int = typer.Option(None, "--limit", help="Only the first N images (sorted order)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Count unreadable images instead of failing."),
    channels_last: bool = typer.Option(False, "--channels-last", help="channels_last memory format."),
    num_classes: int = typer.Option(1000, "--num-classes", help="Classifier size of the checkpoint."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    save_predictions: str = typer.Option(
        None, "--save-predictions", help="Per-image predictions: .csv, or JSON lines otherwise."
    ),
) -> None:
    """ImageNet-1k top-1/top-5 (percent) with timm's validation preprocessing for the model."""
    options = _options(locals())
    from ..eval.imagenet import evaluate_imagenet
    from ..spec.sizes import parse_hw

    hw = parse_hw(img_size, "--img-size", "224 or 2048x512")
    options["img_size"] = hw[0] if hw and hw[0] == hw[1] else hw
    run_command(
        evaluate_imagenet,
        as_json=json_out,
        title=f"ImageNet: {model}",
        summary_keys=("top1", "top5", "num_images", "skipped_images", "throughput_img_s", "resolution"),
        **options,
    )


# --- ade20k (pacabench/eval/ade20k.py) ---
@eval_app.command("ade20k")
def ade20k_command(
    model: str = typer.Option(..., "--model", "-m", help="Backbone name (see `pacabench models`)."),
    head: str = typer.Option(..., "--head", help="paca or upernet."),
    data: str = typer.Option(..., "--data", help="ADEChallengeData2016 folder (images/, annotations/)."),
    checkpoint: str = typer.Option(None, "--checkpoint", help="mmseg checkpoint (pacahead_* / upernet_*)."),
    mode: str = typer.Option("whole", "--mode", help="whole or slide (512 crops, stride 341)."),
    clusters: str = typer.Option(None, "--clusters", help="PaCa clusters per stage (200,200,200,0)."),
    scale: str = typer.Option("2048x512", "--scale", help="Keep-ratio resize LONGxSHORT, or none."),
    crop_size: int = typer.Option(512, "--crop-size", help="Sliding-window crop."),
    stride: int = typer.Option(341, "--stride", help="Sliding-window stride."),
    workers: int = typer.Option(None, "--workers", help="Decoding worker processes per rank."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32, bf16 or fp16 (autocast)."),
    limit: int = typer.Option(None, "--limit", help="Only the first N images (sorted order)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Count bad files instead of failing."),
    num_classes: int = typer.Option(150, "--num-classes", help="Classes of the head (ADE20k: 150)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    save_predictions: str = typer.Option(
        None, "--save-predictions", help="Folder for <stem>.png predictions (values 1..150)."
    ),
    per_class: str = typer.Option(None, "--per-class", help="Write per-class IoU/Acc to this CSV."),
) -> None:
    """ADE20k mIoU / mAcc / aAcc (percent), single scale, as mmseg evaluates it."""
    options = _options(locals())
    from ..eval.ade20k import evaluate_ade20k
    from ..spec.sizes import parse_hw

    if clusters is not None:
        try:
            options["clusters"] = [int(v) for v in clusters.replace(" ", "").split(",")]
        except ValueError:
            raise UsageError(f"--clusters must be comma-separated integers, got '{clusters}'") from None
    options["scale"] = None if scale.lower() == "none" else parse_hw(scale, "--scale", "224 or 2048x512")
    run_command(
        evaluate_ade20k,
        as_json=json_out,
        title=f"ADE20k: {model} + {head}",
        summary_keys=("miou", "macc", "aacc", "num_images", "skipped_images", "throughput_img_s", "mode"),
        drop=("areas",),
        **options,
    )


# --- coco (pacabench/eval/coco.py) ---
@eval_app.command("coco")
def coco_command(
    model: str = typer.Option(..., "--model", "-m", help="Backbone name (see `pacabench models`)."),
    data: str = typer.Option(..., "--data", help="Image folder, e.g. coco/val2017."),
    ann: str = typer.Option(..., "--ann", help="COCO instances JSON, e.g. instances_val2017.json."),
    checkpoint: str = typer.Option(
        None, "--checkpoint", help="mmdet Mask R-CNN checkpoint (mask_rcnn_<backbone>_..._coco.pth)."
    ),
    limit: int = typer.Option(None, "--limit", help="Only the first N images by id (only those scored)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    save_predictions: str = typer.Option(
        None, "--save-predictions", help="Write the detections as a COCO results JSON file."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    workers: int = typer.Option(2, "--workers", help="Image-decoding worker processes per rank."),
    min_size: int = typer.Option(800, "--min-size", help="Test scale: short side (protocol 800)."),
    max_size: int = typer.Option(1333, "--max-size", help="Test scale: long-side cap (protocol 1333)."),
    max_proposals: int = typer.Option(1000, "--max-proposals", help="RPN proposals kept (protocol 1000)."),
    max_detections: int = typer.Option(100, "--max-detections", help="Detections per image (protocol 100)."),
    score_threshold: float = typer.Option(
        0.05, "--score-threshold", help="Keep detections scoring above this (mmdet score_thr, protocol 0.05)."
    ),
) -> None:
    """COCO bbox and segm AP (pycocotools, percent) of Mask R-CNN on a backbone."""
    options = _options(locals())
    from ..eval.coco import METRIC_KEYS, evaluate_coco

    run_command(
        evaluate_coco,
        as_json=json_out,
        title=f"COCO Mask R-CNN: {model}",
        summary_keys=(*METRIC_KEYS, "num_images", "num_detections"),
        log=sys.stderr,
        **options,
    )


def _options(command_locals: dict) -> dict:
    """A command's options as the evaluation's keyword arguments (the names match; --json is the CLI's)."""
    return {k: v for k, v in command_locals.items() if k != "json_out"}


def run_command(fn, *, as_json: bool, title: str, summary_keys: tuple[str, ...], drop=(), **kwargs) -> None:
    """CLI wrapper for an evaluation: call ``fn(**kwargs)`` (torchrun-aware), print the result on
    rank 0 only (``--json``: exactly one JSON object on stdout), tear the process group down.
    Bad input → one line on stderr (rank 0) and exit code 2 on every rank."""
    from ..eval.distributed import cleanup, init_distributed
    from ..paths import OutputWriteError

    info = init_distributed(kwargs.get("device", "auto"))
    failed: PacabenchError | None = None
    try:
        result = fn(**kwargs)
    except OutputWriteError as e:  # the metrics were computed: show them, then the error
        result, failed = e.result, e
    except PacabenchError as e:
        result, failed = None, e
    cleanup(info)
    if result is not None and info.is_main:
        _show(result, as_json=as_json, title=title, summary_keys=summary_keys, drop=drop)
    if failed is not None:
        if info.is_main:
            print(f"pacabench: error: {first_line(failed)}", file=sys.stderr)
        raise typer.Exit(2)


def _show(result: dict, *, as_json: bool, title: str, summary_keys: tuple[str, ...], drop=()) -> None:
    """The result on stdout: one JSON object (``as_json``) or a table, then skipped files on stderr."""
    shown = {k: v for k, v in result.items() if k not in drop}
    if as_json:
        sys.stdout.write(json.dumps(shown, allow_nan=False, default=str) + "\n")
        sys.stdout.flush()
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, show_header=False)
    for k in summary_keys:
        v = result.get(k)
        if v is None:
            continue
        t.add_row(k, f"{v:.2f}" if isinstance(v, float) else str(v))
    Console().print(t)
    if result.get("skipped_files"):
        for m in result["skipped_files"][:20]:
            print(f"skipped: {m}", file=sys.stderr)
