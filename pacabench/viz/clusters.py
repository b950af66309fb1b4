"""Cluster maps: where PaCa-ViT's learned clusters fall on an image.

``render_cluster_map`` runs a PaCa-ViT model on one image (timm's data config preprocessing:
resize, centre crop, normalise), takes the patch-to-cluster assignment z (B×M×N, softmax over
the N patches) of one stage (the z of the stage's first block: the one its clustering module,
or for the ConvMixer-teacher variants the teacher, produced) and writes a PNG:

- the (cropped) input image;
- each patch coloured by its dominant cluster (argmax over the M clusters) over the image;
- the soft maps z[m] of the ``top_k`` strongest clusters (those that dominate the most
  patches, ties broken by the peak weight), each over the image.

``pacabench clusters`` (``pacabench.cli``) is the command over it.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

import torch

from ..errors import UsageError, first_line

__all__ = ["render_cluster_map", "cluster_assignment"]

# what the output's suffix names → matplotlib's format (no suffix: PNG)
FORMATS = {"": "png", ".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".pdf": "pdf", ".svg": "svg"}
MAX_IMG_SIZE = 2048


def _out_format(out_path: str | Path) -> str:
    """The image format ``out_path``'s suffix names, after checking the path can be written."""
    from ..paths import check_output_path

    suffix = Path(out_path).suffix.lower()
    if suffix not in FORMATS:
        known = ", ".join(s for s in FORMATS if s)
        raise UsageError(f"cannot write a cluster map as '{suffix}' ({known})")
    check_output_path(out_path, "file", "--out")
    return FORMATS[suffix]


def _paca_names() -> list[str]:
    from ..models.paca_vit import MODEL_NAMES

    return list(MODEL_NAMES)


def _check_model_name(name: str) -> None:
    names = _paca_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else " (cluster maps need a pacavit_* model)"
        raise UsageError(f"unknown PaCa-ViT model '{name}'{hint}")


def _build_model(model_name: str, checkpoint: str | Path | None) -> torch.nn.Module:
    from ..models import CheckpointError, create_model

    try:
        return create_model(model_name, checkpoint=str(checkpoint) if checkpoint is not None else None)
    except CheckpointError as e:
        raise UsageError(str(e)) from None


def _load_image(image_path: str | Path, model: torch.nn.Module, img_size: int) -> tuple[torch.Tensor, Any]:
    """Preprocess with the model's timm data config at ``img_size``: (1×3×S×S tensor, display image)."""
    import warnings

    from PIL import Image, UnidentifiedImageError
    from timm.data import create_transform, resolve_data_config

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(image_path).convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UsageError(f"refusing image {image_path}: {first_line(e)}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise UsageError(f"cannot read image {image_path}: {e}") from None
    cfg = resolve_data_config({"input_size": (3, img_size, img_size)}, model=model)
    x = create_transform(**cfg)(img).unsqueeze(0)
    mean = torch.tensor(cfg["mean"]).view(3, 1, 1)
    std = torch.tensor(cfg["std"]).view(3, 1, 1)
    display = (x[0] * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
    return x, display


@torch.no_grad()
def cluster_assignment(
    model: torch.nn.Module, x: torch.Tensor, stage: int
) -> tuple[torch.Tensor, tuple[int, int]]:
    """z of ``stage`` (1-based) for input ``x``: (B×M×N assignment, (h, w) of the token grid)."""
    _, maps = model.forward_with_maps(x)
    for m in maps:
        if m["stage"] == stage and m["block"] == 0:
            if m["z"] is None:
                break
            return m["z"].float(), m["hw"]
    raise UsageError(f"stage {stage} of this model has no clusters (M = 0: plain self-attention)")


def _check_inputs(
    image_path: Path, out_path, model_name: str | None, checkpoint, img_size: int, top_k: int
) -> str:
    """Every option before the model is built (``model_name`` None: a model was given); the
    output's format."""
    if not image_path.is_file():
        raise UsageError(f"image not found: {image_path}")
    if model_name is not None:
        _check_model_name(model_name)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise UsageError(f"checkpoint not found: {checkpoint}")
    if not 32 <= img_size <= MAX_IMG_SIZE:
        raise UsageError(f"img_size must be between 32 and {MAX_IMG_SIZE}, got {img_size}")
    fmt = _out_format(out_path)
    if top_k < 1:
        raise UsageError(f"top_k must be at least 1, got {top_k}")
    return fmt


def _check_stage(model: torch.nn.Module, model_name: str, stage: int) -> None:
    """``stage`` exists (1-based) and has clusters."""
    num_stages = len(model.clusters)
    if not 1 <= stage <= num_stages:
        raise UsageError(f"stage must be between 1 and {num_stages}, got {stage}")
    if model.clusters[stage - 1] == 0:
        raise UsageError(
            f"stage {stage} of {model_name} has no clusters (M = 0: plain self-attention); "
            f"stages with clusters: {[s + 1 for s, m in enumerate(model.clusters) if m > 0]}"
        )


def render_cluster_map(
    model_name: str,
    image_path: str | Path,
    out_path: str | Path,
    *,
    checkpoint: str | Path | None = None,
    stage: int = 1,
    top_k: int = 8,
    img_size: int = 224,
    model: torch.nn.Module | None = None,
    alpha: float = 0.55,
    dpi: int = 100,
) -> dict[str, Any]:
    """Render the cluster map of ``stage`` for one image into a PNG at ``out_path``.

    ``model``: an already built PaCa-ViT (then ``model_name`` is only the title and
    ``checkpoint`` is ignored). Returns a summary: clusters M, grid (h, w), the top clusters
    and how many patches each dominates.
    """
    image_path = Path(image_path)
    fmt = _check_inputs(
        image_path, out_path, model_name if model is None else None, checkpoint, img_size, top_k
    )
    if model is None:
        model = _build_model(model_name, checkpoint)
    _check_stage(model, model_name, stage)
    model.eval()

    x, display = _load_image(image_path, model, img_size)
    z, (h, w) = cluster_assignment(model, x, stage)
    z = z[0]  # M×N
    M = z.shape[0]
    dominant = z.argmax(dim=0)  # N: argmax over clusters
    counts = torch.bincount(dominant, minlength=M)
    peak = z.max(dim=1).values
    order = sorted(range(M), key=lambda m: (-int(counts[m]), -float(peak[m])))
    top = order[: min(top_k, M)]

    _draw(
        out_path,
        display,
        dominant.view(h, w).numpy(),
        [(m, z[m].view(h, w).numpy(), int(counts[m])) for m in top],
        title=f"{model_name} · stage {stage} · M={M} clusters · {h}×{w} patches",
        num_clusters=M,
        alpha=alpha,
        dpi=dpi,
        fmt=fmt,
    )
    return {
        "out": str(out_path),
        "stage": stage,
        "num_clusters": M,
        "grid": (h, w),
        "top_clusters": top,
        "top_counts": [int(counts[m]) for m in top],
        "used_clusters": int((counts > 0).sum()),
    }


def _draw(out_path, display, dominant, soft_maps, *, title, num_clusters, alpha, dpi, fmt="png") -> None:
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    H, W = display.shape[:2]
    extent = (0, W, H, 0)
    # distinct colours for up to M clusters: tab20 then hsv for the rest
    base = colormaps["tab20"](np.linspace(0, 1, 20))
    if num_clusters > 20:
        extra = colormaps["hsv"](np.linspace(0, 1, num_clusters - 20, endpoint=False))
        base = np.concatenate([base, extra])
    cmap = ListedColormap(base[:num_clusters])

    k = len(soft_maps)
    cols = max(4, min(k, 8))
    rows = math.ceil(k / cols)
    fig = Figure(figsize=(2.2 * cols, 4.6 + 2.4 * rows), dpi=dpi)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(1 + rows, cols, height_ratios=[2.0] + [1.0] * rows)
    half = cols // 2
    ax = fig.add_subplot(gs[0, :half])
    ax.imshow(display, extent=extent)
    ax.set_title("input")
    ax.axis("off")
    ax = fig.add_subplot(gs[0, half:])
    ax.imshow(display, extent=extent)
    ax.imshow(
        dominant,
        cmap=cmap,
        vmin=-0.5,
        vmax=num_clusters - 0.5,
        alpha=alpha,
        extent=extent,
        interpolation="nearest",
    )
    ax.set_title(f"dominant cluster per patch ({len(np.unique(dominant))} used)")
    ax.axis("off")
    for i, (m, soft, count) in enumerate(soft_maps):
        ax = fig.add_subplot(gs[1 + i // cols, i % cols])
        ax.imshow(display, extent=extent)
        ax.imshow(soft, cmap="magma", alpha=0.7, extent=extent, interpolation="nearest")
        ax.set_title(f"cluster {m}: {count} patches", fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    out_path = Path(out_path)
    if out_path.parent and not out_path.parent.exists():
        out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out_path, format=fmt)
    except OSError as e:
        raise UsageError(f"cannot write {out_path}: {e.strerror or e}") from None
