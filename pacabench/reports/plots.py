"""Figures of a run (matplotlib, Agg; no pyplot state, so safe headless and in tests).

* For each cost metric (GFLOPs, latency, peak memory): cost against the number of tokens,
  log–log, one line per model (× batch/dtype/device where those vary in the run); a case that
  ran out of memory or failed is marked with an × at the top of the plot, at its resolution.
  On log–log axes a straight line's slope is the complexity exponent (1 linear, 2 quadratic).
* When the run holds accuracy rows: accuracy against latency (the latency of the same model at
  the same resolution from the run's cost rows).
* When the run is a zoo (``pacabench.reports.zoo.is_zoo``): the Pareto plot, latency against GFLOPs
  and against parameters, one point per (model, resolution) coloured by family, the frontier of
  each resolution drawn as a step line and its models named.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from matplotlib.transforms import blended_transform_factory

from ..spec.metrics import TASKS, columns
from ..spec.metrics import metric as _metric
from ..spec.sizes import res_label, tokens
from .sections import cost_rows, group_cols
from .zoo import LABEL_ALL_UP_TO, is_zoo, label_offsets, pareto_points, row_families

__all__ = [
    "COST_METRICS",
    "ACCURACY_AXES",
    "cost_figure",
    "accuracy_latency_figure",
    "pareto_figure",
    "family_styles",
    "make_figures",
    "write_plots",
    "figure_png",
]

# column -> (axis label with unit, file stem), for every metric the metric table plots
COST_METRICS: dict[str, tuple[str, str]] = {
    c: (_metric(c).plot_label or _metric(c).title, _metric(c).plot) for c in columns() if _metric(c).plot
}
# task -> (column, axis label), from the accuracy tasks' table
ACCURACY_AXES: dict[str, tuple[str, str]] = {t.name: (t.plot_column, t.plot_label) for t in TASKS.values()}
_FAILED = ("oom", "error")
_TOKENS_LABEL = "Tokens at stride 4, (H/4)·(W/4) — log scale; ticks show the input size"


def _isnum(v: Any) -> bool:
    """A finite number (a NaN, an infinity or text is no point of a plot)."""
    if v is None or isinstance(v, (str, bool)):
        return False
    try:
        return math.isfinite(v)
    except TypeError:
        return False


def _positive(v: Any) -> bool:
    """A value a log axis can show (zero or below would only make matplotlib warn)."""
    return _isnum(v) and v > 0


def _group_label(cols: list[str], key: tuple) -> str:
    parts = [str(key[0])]
    for c, v in zip(cols[1:], key[1:]):
        if c == "batch_size":
            parts.append(f"b{v}")
        elif c in ("channels_last", "compile"):
            if v:
                parts.append(c)
        else:
            parts.append(str(v))
    return parts[0] + (f" ({' '.join(parts[1:])})" if len(parts) > 1 else "")


def _plain_log_labels(ax) -> None:
    """Plain numbers on the log y axis (0.5, 2, 10 rather than 10^-1), minor ticks labelled too
    when the data span two decades or less (otherwise a short axis shows a single label)."""
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(fmt)
    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo <= 100:
        ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.yaxis.set_minor_formatter(fmt)


def _plain_log_x(ax) -> None:
    """Plain numbers on a log x axis (0.5, 2, 10), minor ticks at 2 and 5 labelled when the data
    span two decades or less (a zoo's GFLOPs or params rarely span more)."""
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(fmt)
    lo, hi = ax.get_xlim()
    ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    ax.xaxis.set_minor_formatter(fmt if lo > 0 and hi / lo <= 100 else NullFormatter())


def _resolution_ticks(ax, ticks: dict[int, str]) -> None:
    """The x axis (tokens) ticked at the measured sizes, each labelled with its resolution."""
    if not ticks:
        return
    xs = sorted(ticks)
    ax.set_xticks(xs)
    ax.set_xticklabels([ticks[t] for t in xs], rotation=0 if len(xs) < 7 else 45)
    ax.minorticks_off()
    if len(xs) == 1:
        ax.set_xlim(xs[0] / 1.5, xs[0] * 1.5)


def _mark_failed(ax, failed: pd.DataFrame, transform, color) -> bool:
    """An × at the top of the axes for each size that failed (oom, error: no value to plot)."""
    if failed.empty:
        return False
    x = failed["_tok"].astype(float)
    ax.plot(
        x, [0.95] * len(failed), transform=transform, linestyle="none", marker="x", ms=9, mew=2, color=color
    )
    return True


def _quiet(draw: Callable[..., Any]) -> Callable[..., Any]:
    """``draw`` with numpy's floating-point warnings off: matplotlib's log transforms overflow
    on extreme (but finite) values and say so on stderr; the figure is right all the same."""

    def run(*args: Any, **kw: Any) -> Any:
        with np.errstate(all="ignore"):
            return draw(*args, **kw)

    run.__doc__, run.__name__ = draw.__doc__, draw.__name__
    return run


@_quiet
def cost_figure(df: pd.DataFrame, metric: str, style: Callable[[tuple], dict] | None = None) -> Figure | None:
    """Cost against tokens, log–log, one line per model; None if the run has no such values, or
    only one size (a scaling plot of one size is a vertical column of points: a one-size zoo's
    picture is its Pareto plot).

    ``style``: line keyword arguments for a group key (a zoo: colour by family, ``family_styles``)."""
    if metric not in COST_METRICS:
        raise ValueError(f"unknown cost metric '{metric}' ({', '.join(COST_METRICS)})")
    d = cost_rows(df)
    if d.empty or metric not in d.columns:
        return None
    d = d.copy()
    d["_tok"] = d["resolution"].map(tokens)
    d = d[d["_tok"].map(_positive)]
    measured = d[d[metric].map(_positive) & (d["status"] == "ok")]
    if measured["_tok"].nunique() < 2:
        return None
    cols = group_cols(d)
    fig = Figure(figsize=(9.0, 4.8), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    top = blended_transform_factory(ax.transData, ax.transAxes)
    ticks: dict[int, str] = {}
    any_failed = False
    for key, g in d.groupby(cols, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        g = g.sort_values("_tok")
        ok = g[(g["status"] == "ok") & g[metric].map(_positive)]
        (line,) = ax.plot(
            ok["_tok"].astype(float),
            ok[metric].astype(float),
            marker="o",
            ms=4,
            label=_group_label(cols, key),
            **(style(key) if style else {}),
        )
        for t, r in zip(g["_tok"], g["resolution"]):
            ticks.setdefault(int(t), res_label(r, "×"))
        any_failed |= _mark_failed(ax, g[g["status"].isin(_FAILED)], top, line.get_color())
    if any_failed:
        ax.plot(
            [], [], linestyle="none", marker="x", ms=8, mew=2, color="0.3", label="× oom / error (no value)"
        )
    _resolution_ticks(ax, ticks)
    _plain_log_labels(ax)
    title, _ = COST_METRICS[metric]
    ax.set_xlabel(_TOKENS_LABEL)
    ax.set_ylabel(title)
    ax.set_title(f"{title.split(' (')[0]} against resolution (log–log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig


def _accuracy_points(df: pd.DataFrame, task: str) -> list[dict[str, Any]]:
    col, _ = ACCURACY_AXES[task]
    if "task" not in df.columns or col not in df.columns:
        return []
    acc = df[(df["task"] == task) & (df["status"] == "ok")]
    cost = cost_rows(df)
    cost = cost[(cost["status"] == "ok") & cost["latency_ms_median"].map(_isnum)]
    pts = []
    for r in acc.to_dict("records"):
        if not _isnum(r.get(col)):
            continue
        want = [int(v) for v in r["resolution"]]
        same = cost[(cost["model"] == r["model"]) & cost["resolution"].map(lambda x, w=want: list(x) == w)]
        if same.empty:
            continue
        best = same.sort_values("batch_size").iloc[0]
        pts.append(
            {
                "model": r["model"],
                "accuracy": float(r[col]),
                "latency": float(best["latency_ms_median"]),
                "batch_size": int(best["batch_size"]),
                "device": str(best.get("device") or ""),
                "resolution": res_label(r["resolution"], "×"),
            }
        )
    return pts


@_quiet
def accuracy_latency_figure(df: pd.DataFrame, task: str) -> Figure | None:
    """Accuracy of ``task`` against latency at the same resolution; None without such pairs."""
    pts = _accuracy_points(df, task)
    if not pts:
        return None
    _, ylabel = ACCURACY_AXES[task]
    fig = Figure(figsize=(6.5, 4.5), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    for p in pts:
        ax.scatter([p["latency"]], [p["accuracy"]], s=30)
        ax.annotate(
            p["model"], (p["latency"], p["accuracy"]), textcoords="offset points", xytext=(4, 4), fontsize=7
        )
    bs = {p["batch_size"] for p in pts}
    devs = ", ".join(sorted({p["device"] for p in pts if p["device"]}))
    per = "image" if bs == {1} else "batch"
    ax.set_xlabel(f"Latency, median (ms per {per}{', ' + devs if devs else ''})")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{ylabel.split(' (')[0]} against latency")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


_RES_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_RES_LINES = ("-", "--", ":", "-.")
_PARETO_AXES = (("gflops", "GFLOPs (log scale)"), ("params", "Parameters, millions (log scale)"))


def _pareto_panel(ax, pts: pd.DataFrame, cost: str, colours: dict[str, Any], resolutions: list[str]) -> None:
    """One panel: every point coloured by family, marker by resolution; each resolution's frontier."""
    scale = 1e-6 if cost == "params" else 1.0
    p = pts[pts[cost].gt(0)]
    for i, res in enumerate(resolutions):
        g = p[p["res"] == res]
        marker = _RES_MARKERS[i % len(_RES_MARKERS)]
        ax.scatter(
            g[cost] * scale, g["latency"], c=[colours[f] for f in g["family"]], marker=marker, s=28,
            edgecolors="0.2", linewidths=0.4, zorder=3,
        )  # fmt: skip
        front = g[g[f"front_{cost}"]].sort_values([cost, "latency"])
        if front.empty:
            continue
        ax.step(
            front[cost] * scale, front["latency"], where="post", color="0.15", lw=1.1,
            linestyle=_RES_LINES[i % len(_RES_LINES)], zorder=2,
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(dict(_PARETO_AXES)[cost])
    ax.grid(True, which="both", alpha=0.3)


def _pareto_labels(ax, pts: pd.DataFrame, cost: str) -> None:
    """Name the points of a laid-out panel (every point of a small zoo, else the frontiers'), the
    frontier's in bold, placed so that labels do not cover each other (``zoo.label_offsets``)."""
    scale = 1e-6 if cost == "params" else 1.0
    p = pts[pts[cost].gt(0)]
    p = p if len(p) <= LABEL_ALL_UP_TO else p[p[f"front_{cost}"]]
    p = p.sort_values(f"front_{cost}", ascending=False)  # frontier labels placed first
    xy = ax.transData.transform(np.column_stack([p[cost] * scale, p["latency"]]))
    size = 7.0
    box = ax.get_window_extent()
    bounds = (box.x0, box.y0, box.x1, box.y1)
    places = label_offsets([tuple(v) for v in xy], p["model"].tolist(), size, ax.figure.dpi, bounds)
    for r, (dx, dy, ha) in zip(p.itertuples(), places, strict=True):
        front = bool(getattr(r, f"front_{cost}"))
        ax.annotate(
            r.model, (getattr(r, cost) * scale, r.latency), textcoords="offset points", xytext=(dx, dy),
            ha=ha, va="bottom", fontsize=size, color="0.05" if front else "0.35",
            fontweight="bold" if front else "normal",
        )  # fmt: skip


def _family_colours(families: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    if len(families) <= 10:
        cmap = colormaps["tab10"]
        return {f: cmap(i) for i, f in enumerate(families)}
    # tab20 pairs a dark and a light shade of each hue: the ten dark ones first, so that only the
    # families past ten get a lighter twin of an earlier colour
    cmap = colormaps["tab20"]
    return {f: cmap((2 * i + (i // 10) % 2) % 20) for i, f in enumerate(families)}


def family_styles(df: pd.DataFrame) -> Callable[[tuple], dict]:
    """Group key -> line style: the colour of the model's family, the line style cycling over the
    family's models (a zoo's cost plots read by family)."""
    fams = dict(zip(df["model"].astype(str), row_families(df)))
    colours = _family_colours(list(dict.fromkeys(fams.values())))
    members: dict[str, list[str]] = {}
    for m, f in fams.items():
        members.setdefault(f, []).append(m)

    def style(key: tuple) -> dict:
        f = fams.get(str(key[0]))
        if f is None:
            return {}
        return {"color": colours[f], "linestyle": _RES_LINES[members[f].index(str(key[0])) % len(_RES_LINES)]}

    return style


@_quiet
def pareto_figure(df: pd.DataFrame) -> Figure | None:
    """Latency against GFLOPs and against parameters (log–log), one point per (model, resolution)
    of the ok cost rows, coloured by family; the Pareto frontier (non-dominated points, both
    minimised) of each resolution as a step line, its models named. None without latencies."""
    pts = pareto_points(df)
    if pts.empty:
        return None
    from matplotlib.lines import Line2D

    fams = list(dict.fromkeys(pts["family"]))
    colours = _family_colours(fams)
    resolutions = sorted(dict.fromkeys(pts["res"]), key=lambda r: pts.loc[pts["res"] == r, "tokens"].max())
    fig = Figure(figsize=(13.0, 5.4), dpi=110)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (cost, _) in zip(axes, _PARETO_AXES):
        _pareto_panel(ax, pts, cost, colours, resolutions)
    axes[0].set_ylabel("Latency, median (ms; log scale)")
    _plain_log_labels(axes[0])
    for ax in axes:
        _plain_log_x(ax)
    handles = [Line2D([], [], ls="none", marker="o", color=colours[f], mec="0.2", label=f) for f in fams]
    for i, res in enumerate(resolutions):
        handles.append(
            Line2D([], [], color="0.15", ls=_RES_LINES[i % len(_RES_LINES)],
                   marker=_RES_MARKERS[i % len(_RES_MARKERS)], mfc="white", label=f"frontier at {res}")
        )  # fmt: skip
    axes[1].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.suptitle(
        "Latency against cost: the Pareto frontier of each resolution (lower and further left is better)"
    )
    fig.tight_layout()
    for ax, (cost, _) in zip(axes, _PARETO_AXES):
        _pareto_labels(ax, pts, cost)
    return fig


def make_figures(df: pd.DataFrame) -> dict[str, Figure]:
    """File stem -> figure, for every plot this run supports."""
    figs: dict[str, Figure] = {}
    zoo = is_zoo(df)
    style = family_styles(cost_rows(df)) if zoo else None
    for metric, (_, stem) in COST_METRICS.items():
        fig = cost_figure(df, metric, style)
        if fig is not None:
            figs[stem] = fig
    for task in ACCURACY_AXES:
        fig = accuracy_latency_figure(df, task)
        if fig is not None:
            figs[f"{task}_accuracy_vs_latency"] = fig
    if zoo:  # only a zoo: the plots of a few models stay as they were
        fig = pareto_figure(df)
        if fig is not None:
            figs["pareto"] = fig
    return figs


@_quiet
def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


@_quiet
def write_plots(df: pd.DataFrame, outdir: str | os.PathLike, dpi: int = 110) -> list[Path]:
    """Write every figure as ``<outdir>/<stem>.png``; returns the paths."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, fig in make_figures(df).items():
        p = out / f"{stem}.png"
        fig.savefig(p, format="png", dpi=dpi)
        paths.append(p)
    return paths
