"""Reports for a zoo: the family of every model, the rule that makes a run a zoo, the Pareto
frontier of latency against cost, and the scaling exponents summarised per family. Torch-free.

**Family of a model** (``family_of``), first rule that applies:

1. a user factory ``module:function`` or ``path/file.py:function``: the module's last part without
   ``.py`` (``nets/my_net.py:build`` → ``my_net``), so the variants of one file group together;
2. a name the catalogue knows (``spec.catalog.get_spec``, torch-free): pacabench's family (``swin``,
   ``pvt_v2``, ``paca_vit``, ``pvt_v1``), or for any other timm architecture its timm module
   (``convnext_tiny`` → ``convnext``, ``resnet50d`` → ``resnet``);
3. a name this timm does not register (rows from another install), pretrained tag and a leading
   ``tf_`` dropped: the letters of its first ``_``-separated word, a version suffix ``v<digits>``
   kept and other digits cut (``eva02_tiny`` → ``eva``). A row's own non-empty ``family`` field
   wins over all three.

**A zoo** (``is_zoo``): the cost rows hold more than ``ZOO_MODELS`` (6) models, or at least two
families one of which has two or more models. Only then do the reports add the family column, the
per-family exponents and the Pareto plot, so a run of a few unrelated models reads as before.

**Pareto frontier** (``pareto_mask``): a point (cost, latency) is dominated when another point is no
worse in both and better in one; the frontier is the set of non-dominated points (both minimised;
equal points are all kept). The plot draws one frontier per resolution: models are compared at the
same input size.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..spec.catalog import UnknownModelError, get_spec, is_factory
from ..spec.sizes import res_label, tokens

__all__ = [
    "ZOO_MODELS",
    "FAMILY_EXP_TITLE",
    "family_of",
    "row_families",
    "is_zoo",
    "pareto_mask",
    "pareto_points",
    "family_exponents",
    "with_family",
    "label_offsets",
    "LABEL_ALL_UP_TO",
]

ZOO_MODELS = 6  # more models than this make a zoo
FAMILY_EXP_TITLE = "Scaling exponents per family (median over the family's models)"
_FIRST_WORD = re.compile(r"([a-z]+?)(v\d+)?(?:\d|$)")


@functools.cache
def family_of(model_name: str) -> str:
    """The family of ``model_name`` by the rules in this module's docstring (never imports torch)."""
    name = str(model_name).strip()
    if is_factory(name):
        module = name.rsplit(":", 1)[0].replace("\\", "/").rsplit("/", 1)[-1]
        return module[:-3] if module.endswith(".py") else module
    try:
        return get_spec(name).family
    except UnknownModelError:  # a timm name this timm does not register (rows from another install)
        pass
    base = name.split(".", 1)[0].lower()
    base = base[3:] if base.startswith("tf_") else base
    word = base.split("_", 1)[0]
    m = _FIRST_WORD.match(word)
    return m.group(1) + (m.group(2) or "") if m else (word or name)


def row_families(df: pd.DataFrame) -> pd.Series:
    """The family of every row: the row's own ``family`` field where set, else ``family_of``."""
    own = df["family"] if "family" in df.columns else pd.Series([None] * len(df), index=df.index)
    return pd.Series(
        [f if isinstance(f, str) and f else family_of(m) for m, f in zip(df["model"], own)],
        index=df.index,
        dtype=object,
    )


def _model_families(df: pd.DataFrame) -> dict[str, str]:
    """model -> family, in run order (first row of each model)."""
    out: dict[str, str] = {}
    for m, f in zip(df["model"], row_families(df)):
        out.setdefault(str(m), f)
    return out


def is_zoo(df: pd.DataFrame) -> bool:
    """More than ``ZOO_MODELS`` models, or ≥ 2 families one of which has ≥ 2 models (cost rows)."""
    if df.empty or "model" not in df.columns:
        return False
    if "task" in df.columns:
        df = df[df["task"].fillna("cost") == "cost"]
    fams = _model_families(df)
    if len(fams) > ZOO_MODELS:
        return True
    counts = pd.Series(list(fams.values()), dtype=object).value_counts()
    return len(counts) >= 2 and int(counts.max()) >= 2


def pareto_mask(costs: Sequence[float], latencies: Sequence[float]) -> list[bool]:
    """True for each non-dominated point (both coordinates minimised), in O(n log n)."""
    c = np.asarray(costs, dtype=float)
    lat = np.asarray(latencies, dtype=float)
    order = np.lexsort((lat, c))  # by cost, then latency
    mask = [False] * len(c)
    best = np.inf  # lowest latency among points of strictly smaller cost
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and c[order[j]] == c[order[i]]:
            j += 1
        low = lat[order[i]]  # the group's lowest latency (sorted)
        if low < best:  # not dominated by a cheaper point; within the group only its minimum survives
            for k in order[i:j]:
                mask[int(k)] = bool(lat[k] == low)
        best = min(best, low)
        i = j
    return mask


def pareto_points(df: pd.DataFrame, latency: str = "latency_ms_median") -> pd.DataFrame:
    """One point per (model, resolution) of the ok cost rows with a latency: columns model, family,
    res, tokens, gflops, params, latency, and ``front_gflops`` / ``front_params`` (on that cost's
    frontier among the points of the same resolution). A (model, resolution) measured in several
    settings keeps its row of smallest batch (the first in run order on ties)."""
    if "task" in df.columns:
        df = df[df["task"].fillna("cost") == "cost"]
    if df.empty or latency not in df.columns:
        return pd.DataFrame()
    ok = df[(df["status"] == "ok") & pd.to_numeric(df[latency], errors="coerce").gt(0)].copy()
    if ok.empty:
        return pd.DataFrame()
    ok["family"] = row_families(ok)
    ok["res"] = ok["resolution"].map(res_label)
    ok["tokens"] = ok["resolution"].map(tokens)
    ok["_n"] = range(len(ok))
    sort = ["batch_size", "_n"] if "batch_size" in ok.columns else ["_n"]
    ok = ok.sort_values(sort).drop_duplicates(["model", "res"]).sort_values("_n")
    pts = pd.DataFrame(
        {
            "model": ok["model"].astype(str),
            "family": ok["family"],
            "res": ok["res"],
            "tokens": ok["tokens"],
            "latency": ok[latency].astype(float),
        }
    )
    for cost in ("gflops", "params"):
        pts[cost] = pd.to_numeric(ok[cost], errors="coerce") if cost in ok.columns else np.nan
        pts[f"front_{cost}"] = False
        for _, g in pts[pts[cost].gt(0)].groupby("res", sort=False):
            pts.loc[g.index, f"front_{cost}"] = pareto_mask(g[cost].tolist(), g["latency"].tolist())
    return pts.reset_index(drop=True)


def family_exponents(scaling: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """Per family (× the scaling table's other index levels): the number of models and the median
    of each fitted exponent (``*_exp`` columns of ``scaling_table``) over the family's models."""
    if scaling.empty:
        return pd.DataFrame()
    fams = _model_families(df)
    t = scaling.reset_index()
    exp_cols = [c for c in scaling.columns if str(c).endswith("_exp")]
    t[exp_cols] = t[exp_cols].apply(pd.to_numeric, errors="coerce")
    t.insert(0, "family", t["model"].map(lambda m: fams.get(str(m)) or family_of(m)))
    keys = ["family"] + [n for n in scaling.index.names if n != "model"]
    out = t.groupby(keys, sort=False).agg(models=("model", "nunique"), **{c: (c, "median") for c in exp_cols})
    return out


def with_family(tab: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """``tab`` (indexed by model first) with a ``family`` index level right after ``model``."""
    if tab.empty or "model" not in (tab.index.names or []):
        return tab
    fams = _model_families(df)
    t = tab.reset_index()
    t.insert(1, "family", t["model"].map(lambda m: fams.get(str(m)) or family_of(m)))
    idx = ["model", "family"] + [n for n in tab.index.names if n != "model"]
    out = t.set_index(idx)
    out.columns.name = tab.columns.name
    return out


LABEL_ALL_UP_TO = 24  # a Pareto panel names every point up to this many, else its frontier's only


def label_offsets(
    xy: Sequence[tuple[float, float]],
    texts: Sequence[str],
    size_pt: float,
    dpi: float,
    bounds: tuple[float, float, float, float] | None = None,
) -> list[tuple[float, float, str]]:
    """Where to write each point's label so that labels do not cover one another or the points:
    greedily, in the order given, the first of six places around the point (right above, right
    below, left above, left below, centred above, centred below) whose text box is free and inside
    ``bounds`` (x0, y0, x1, y1: the panel, so that no label runs under the next one); when none is
    free, the place inside that covers the least of what is already there. ``xy``: the points in
    display pixels (y up); returns (dx, dy) in points from the point and the horizontal alignment,
    for ``annotate(..., textcoords="offset points", va="bottom")``. Text boxes are estimated (0.6
    em per character), which is enough to keep apart what would clash."""
    px = dpi / 72.0
    h = 1.15 * size_pt
    places = (
        (3.0, 2.0, "left"), (3.0, -2.0 - h, "left"), (-3.0, 2.0, "right"), (-3.0, -2.0 - h, "right"),
        (0.0, 4.0, "center"), (0.0, -4.0 - h, "center"),
    )  # fmt: skip
    r = 3.0 * px  # a marker's half-size
    taken = [(x - r, y - r, x + r, y + r) for x, y in xy]
    out = []
    for (x, y), text in zip(xy, texts, strict=True):
        w = 0.6 * size_pt * len(text)
        boxes = []
        for dx, dy, ha in places:
            x0 = x + dx * px - w * px * {"left": 0.0, "center": 0.5, "right": 1.0}[ha]
            boxes.append((x0, y + dy * px, x0 + w * px, y + (dy + h) * px))
        own = (x - r, y - r, x + r, y + r)
        inside = [i for i, b in enumerate(boxes) if bounds is None or _within(b, bounds)] or [0]
        i = min(inside, key=lambda i: sum(_overlap(boxes[i], t) for t in taken if t != own))
        taken.append(boxes[i])
        out.append(places[i])
    return out


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """The area two boxes (x0, y0, x1, y1) share (0 when apart)."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _within(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] >= b[0] and a[1] >= b[1] and a[2] <= b[2] and a[3] <= b[3]
