"""Input sizes: parsing 'R' / 'HxW', labels, and the token count every table and plot uses; memory
sizes ('4GiB')."""

from __future__ import annotations

import re
from typing import Any

from ..errors import UsageError

__all__ = ["parse_hw", "as_hw", "hw_text", "res_label", "tokens", "parse_memory"]


def parse_hw(
    text: str | None, what: str = "resolution", example: str = "512 or 512x1024"
) -> tuple[int, int] | None:
    """'512' → (512, 512); '512x640' → (512, 640); None → None; anything else → UsageError."""
    if text is None:
        return None
    t = str(text).lower().replace(" ", "")
    try:
        if "x" in t:
            h, w = t.split("x")
            return int(h), int(w)
        return int(t), int(t)
    except ValueError:
        raise UsageError(f"{what} must be R or HxW (e.g. {example}), got '{text}'") from None


def as_hw(resolution: Any) -> tuple[int, int]:
    """An int R → (R, R); an (h, w) pair → (h, w) as ints. No size rule (``models.to_hw`` has
    the architectures' minimum); anything else → ValueError."""
    if isinstance(resolution, bool):
        raise ValueError(f"resolution must be R or (H, W), got {resolution!r}")
    if isinstance(resolution, int):
        return resolution, resolution
    try:
        h, w = resolution
        return int(h), int(w)
    except (TypeError, ValueError):
        raise ValueError(f"resolution must be R or (H, W), got {resolution!r}") from None


def hw_text(hw: Any) -> str:
    """(512, 1024) → '512x1024'; both sides even when they are equal (``res_label`` writes one)."""
    return f"{hw[0]}x{hw[1]}"


def res_label(r: Any, sep: str = "x") -> str:
    """[224, 224] → '224'; [512, 1024] → '512x1024' (``sep`` between the sides); else str(r)."""
    if not isinstance(r, (list, tuple)) or len(r) != 2:
        return str(r)
    return str(r[0]) if r[0] == r[1] else f"{r[0]}{sep}{r[1]}"


def tokens(r: Any) -> int | None:
    """Stage-1 tokens at stride 4, (H/4)·(W/4); None for anything but an [h, w] pair."""
    if isinstance(r, (list, tuple)) and len(r) == 2:
        return (int(r[0]) // 4) * (int(r[1]) // 4)
    return None


_UNITS = {"": 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_UNITS |= {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "k": 2**10, "m": 2**20, "g": 2**30}


def parse_memory(text: str) -> int:
    """'4GiB' / '512MiB' / '24GB' / '1.5g' / '1000000' → bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS or float(m.group(1)) <= 0:
        raise UsageError(f"memory must be a positive size like 4GiB, 512MiB or 24GB, got {text!r}")
    return int(float(m.group(1)) * _UNITS[unit])
