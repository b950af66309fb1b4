"""Report tables computed from known rows."""

import math

import pandas as pd
import pytest

from pacabench.reports.sections import (
    fit_exponent,
    metric_table,
    relative_table,
    render_markdown,
    scaling_table,
)


def _rows():
    rows = []
    # model A: FLOPs linear in tokens, latency quadratic; model B: FLOPs quadratic
    for r in (224, 448, 896):
        t = (r // 4) ** 2
        rows.append(
            dict(
                model="A",
                task="cost",
                resolution=[r, r],
                batch_size=1,
                dtype="fp32",
                device="cpu",
                status="ok",
                params=10_000_000,
                gflops=1e-3 * t,
                latency_ms_median=1e-6 * t * t,
                peak_mem_mb=2.0 * t,
                throughput_img_s=1.0,
                device_name="cpu",
            )
        )
        rows.append(
            dict(
                model="B",
                task="cost",
                resolution=[r, r],
                batch_size=1,
                dtype="fp32",
                device="cpu",
                status="ok" if r < 896 else "oom",
                params=20_000_000,
                gflops=1e-6 * t * t if r < 896 else None,
                latency_ms_median=0.5 * t if r < 896 else None,
                peak_mem_mb=3.0 * t if r < 896 else None,
                throughput_img_s=1.0 if r < 896 else None,
                error=None if r < 896 else "CUDA out of memory",
                device_name="cpu",
            )
        )
    return pd.DataFrame(rows)


def test_metric_table_shape_and_status_cells():
    tab = metric_table(_rows(), "gflops")
    assert list(tab.columns) == ["224", "448", "896"]
    assert list(tab.index) == ["A", "B"]
    assert tab.loc["A", "448"] == pytest.approx(1e-3 * 112**2)
    assert tab.loc["B", "896"] == "oom"
    params = metric_table(_rows(), "params")
    assert params.loc["B", "224"] == pytest.approx(20.0)  # in millions


def test_scaling_exponents():
    sc = scaling_table(_rows())
    assert sc.loc["A", "flops_exp"] == pytest.approx(1.0)
    assert sc.loc["A", "latency_exp"] == pytest.approx(2.0)
    assert sc.loc["A", "memory_exp"] == pytest.approx(1.0)
    assert sc.loc["B", "flops_exp"] == pytest.approx(2.0)  # fitted on its two ok sizes
    assert sc.loc["B", "sizes"] == 2
    assert sc.loc["A", "resolutions"] == "224–896"


def test_fit_exponent_edge_cases():
    assert fit_exponent([100], [5.0]) is None
    assert fit_exponent([100, 400], [1.0, 8.0]) == pytest.approx(1.5)
    assert fit_exponent([100, 100], [1.0, 2.0]) is None


def test_relative_table():
    rel = relative_table(_rows(), "A", "gflops")
    assert rel.loc["A"].tolist()[:2] == [1.0, 1.0]
    t = 56**2
    assert rel.loc["B", "224"] == pytest.approx((1e-6 * t * t) / (1e-3 * t))
    assert math.isnan(rel.loc["B", "896"])
    with pytest.raises(ValueError):
        relative_table(_rows(), "C")


def test_markdown_report_contains_every_section():
    md = render_markdown(_rows(), title="t")
    for section in (
        "Params (M)",
        "GFLOPs (1 MAC = 1 FLOP",
        "Latency, median",
        "Peak memory",
        "Complexity scaling",
        "relative to A",
        "did not finish",
    ):
        assert section in md
    assert "| A | 3.136 | 12.544 | 50.176 |" in md
    assert "**oom**" in md


def test_varying_batch_sizes_become_index_levels():
    df = _rows()
    df2 = df.copy()
    df2["batch_size"] = 4
    tab = metric_table(pd.concat([df, df2]), "latency_ms_median")
    assert tab.index.names == ["model", "batch_size"]
    assert len(tab) == 4


def test_activation_memory_exponent_uses_peak_minus_resident():
    df = _rows()
    # A: peak = resident 20000 + activations 2·t → activations exactly linear in tokens
    df["resident_mem_mb"] = 20000.0
    df.loc[df.model == "A", "peak_mem_mb"] = df.loc[df.model == "A", "peak_mem_mb"] + 20000.0
    sc = scaling_table(df)
    assert sc.loc["A", "act_memory_exp"] == pytest.approx(1.0)
    assert sc.loc["A", "memory_exp"] < 0.95  # the whole peak hides it behind the weights
