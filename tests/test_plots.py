"""Plots from known rows: files written, sizes sane, log–log axes labelled with units, OOM marked."""

from __future__ import annotations

import pandas as pd
import pytest

from pacabench.reports.plots import (
    accuracy_latency_figure,
    cost_figure,
    figure_png,
    make_figures,
    write_plots,
)


def row(model, res, gflops=None, lat=None, mem=None, status="ok", task="cost", **kw):
    d = {
        "model": model,
        "task": task,
        "resolution": [res, res],
        "batch_size": 1,
        "dtype": "fp32",
        "device": "cpu",
        "status": status,
        "gflops": gflops,
        "latency_ms_median": lat,
        "peak_mem_mb": mem,
    }
    d.update(kw)
    return d


@pytest.fixture
def df():
    rows = []
    for res in (224, 512, 1024):
        k = (res / 224) ** 2
        rows.append(row("pvt_v2_b1", res, 2.1 * k, 10 * k, 40 * k))
        rows.append(row("pacavit_tiny_p2cconv_100_0", res, 3.2 * k, 15 * k, 60 * k))
    rows.append(row("pvt_v2_b1", 2048, status="oom"))
    rows.append(row("pvt_v2_b1", 224, task="imagenet", top1=78.7))
    rows.append(row("pacavit_tiny_p2cconv_100_0", 224, task="imagenet", top1=80.9))
    return pd.DataFrame(rows)


def test_cost_figure_axes(df):
    fig = cost_figure(df, "gflops")
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_ylabel() == "GFLOPs (1 MAC = 1 FLOP, batch 1)"
    assert "Tokens" in ax.get_xlabel() and "(H/4)·(W/4)" in ax.get_xlabel()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["224", "512", "1024", "2048"]
    lines = [ln for ln in ax.get_lines() if ln.get_label() in ("pvt_v2_b1", "pacavit_tiny_p2cconv_100_0")]
    assert len(lines) == 2 and all(len(ln.get_xdata()) == 3 for ln in lines)
    # the OOM case: an × at its resolution's token count
    crosses = [ln for ln in ax.get_lines() if ln.get_marker() == "x" and len(ln.get_xdata())]
    assert [list(ln.get_xdata()) for ln in crosses] == [[(2048 / 4) ** 2]]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "× oom / error (no value)" in legend


def test_latency_and_memory_labels(df):
    assert cost_figure(df, "latency_ms_median").axes[0].get_ylabel() == "Latency, median (ms per batch)"
    assert cost_figure(df, "peak_mem_mb").axes[0].get_ylabel() == "Peak memory (MiB)"
    with pytest.raises(ValueError):
        cost_figure(df, "params")


def test_accuracy_vs_latency(df):
    fig = accuracy_latency_figure(df, "imagenet")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "ImageNet top-1 accuracy (%)"
    assert ax.get_xlabel().startswith("Latency, median (ms per image")
    assert len(ax.collections) == 2
    assert accuracy_latency_figure(df, "ade20k") is None


def test_write_plots(df, tmp_path):
    paths = write_plots(df, tmp_path / "plots")
    assert sorted(p.name for p in paths) == [
        "gflops_vs_resolution.png",
        "imagenet_accuracy_vs_latency.png",
        "latency_vs_resolution.png",
        "memory_vs_resolution.png",
    ]
    for p in paths:
        assert p.exists() and p.stat().st_size > 8_000
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_accuracy_rows_no_accuracy_plot(df):
    figs = make_figures(df[df["task"] == "cost"])
    assert set(figs) == {"gflops_vs_resolution", "latency_vs_resolution", "memory_vs_resolution"}
    assert len(figure_png(figs["gflops_vs_resolution"])) > 8_000


def test_nothing_to_plot():
    empty = pd.DataFrame([row("pvt_v2_b1", 224, status="error")])
    assert make_figures(empty) == {}


def test_one_size_has_no_scaling_plot_two_sizes_do(df):
    """A scaling plot needs two sizes: one size would be a column of points (a one-size zoo's
    picture is its Pareto plot); an OOM row at a second size does not count as a measured size."""
    cost = df[df["task"] == "cost"]
    one = cost[cost["resolution"].map(lambda r: r[0] in (224, 2048))]  # 224 measured, 2048 an OOM
    assert make_figures(one) == {}
    two = cost[cost["resolution"].map(lambda r: r[0] in (224, 512))]
    assert set(make_figures(two)) == {"gflops_vs_resolution", "latency_vs_resolution", "memory_vs_resolution"}
