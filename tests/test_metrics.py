"""The metric table: every entry is wired into the row, the suite, the runner, report and compare."""

from __future__ import annotations

import dataclasses

import pytest

from pacabench.analysis import compare
from pacabench.cli._report import FORMATS
from pacabench.measure.capacity import Capacity
from pacabench.measure.flops import FlopsRecord
from pacabench.measure.latency import LatencyRecord
from pacabench.measure.memory import MemoryRecord
from pacabench.measure.train import TrainRecord
from pacabench.reports import plots
from pacabench.reports import sections as report
from pacabench.reports.formats import RENDERERS
from pacabench.runs.results import ROW_FIELDS
from pacabench.spec import metrics
from pacabench.spec.suite import METRICS as SUITE_METRICS

RECORDS = {"flops": FlopsRecord, "latency": LatencyRecord, "memory": MemoryRecord}
RECORDS |= {"train": TrainRecord, "capacity": Capacity}


@pytest.mark.parametrize("m", list(metrics.METRICS.values()), ids=lambda m: m.column)
def test_every_metric_is_wired(m):
    assert m.column in ROW_FIELDS
    assert m.measure in SUITE_METRICS or m.measure in ("accuracy", "train")  # train: suite modes
    if isinstance(m.source, str):  # the runner copies this attribute of the measure's record
        rec = RECORDS[m.measure]
        fields = {f.name for f in dataclasses.fields(rec)}
        assert m.source in fields or isinstance(getattr(rec, m.source, None), property)
    for col in (m.spread, m.samples):
        assert col is None or col in metrics.METRICS
    if m.compare:
        assert m.column in compare.ALL_METRICS and m.tolerance is not None
        assert compare.Tolerances().for_metric(m.column, "cpu") >= 0
    if m.table:
        assert report.METRICS[m.column][0] == m.title
    if m.plot:
        assert plots.COST_METRICS[m.column][1] == m.plot
    if m.fit:
        assert m.kind in ("exact", "noisy")


def test_tables_derived_from_it():
    assert SUITE_METRICS == ("params", "flops", "latency", "memory", "capacity", "imagenet", "ade20k", "coco")
    assert compare.EXACT_METRICS == ("params", "gflops", "gflops_torch")
    assert compare.NOISY_METRICS == {
        "latency_ms_median": "latency_ms_iqr",
        "peak_mem_mb": None,
        "train_ms_median": "train_ms_iqr",
        "train_peak_mb": None,
    }
    assert compare.ACCURACY_METRICS[:3] == ("top1", "top5", "miou")
    assert compare.METRIC_GROUPS["latency"] == ("latency_ms_median",)
    assert list(report.METRICS) == [
        "params",
        "gflops",
        "gflops_torch",
        "latency_ms_median",
        "throughput_img_s",
        "achieved_gflops_s",
        "efficiency",
        "peak_mem_mb",
        "train_ms_median",
        "train_peak_mb",
    ]
    assert set(plots.ACCURACY_AXES) == set(metrics.TASKS)
    assert FORMATS == tuple(RENDERERS)


def test_a_new_metric_reaches_report_and_compare(monkeypatch):
    """Adding a metric is one table entry: it gets a Row-independent report table and a compare rule."""
    import pandas as pd

    new = metrics.Metric("energy_j", "latency", "noisy", "Energy (J per batch)", "J", "{:.1f}", table=True,
                         compare=True, tolerance={"cpu": 0.2, "cuda": 0.2})  # fmt: skip
    monkeypatch.setitem(metrics.METRICS, "energy_j", new)
    assert "energy_j" in metrics.columns(table=True)
    rows = pd.DataFrame(
        [
            {"model": "A", "task": "cost", "resolution": [64, 64], "status": "ok", "energy_j": 2.5},
            {"model": "A", "task": "cost", "resolution": [96, 96], "status": "ok", "energy_j": 4.0},
        ]
    )
    tab = report.metric_table(rows, "energy_j")
    assert tab.loc["A", "96"] == 4.0
    assert compare._fmt_val("energy_j", 2.5) == "2.50 J"


def test_format_value():
    f = metrics.format_value
    assert f(None) == f(float("nan")) == "–"
    assert f("oom") == "oom"
    assert f(3, "{:.2f}") == "3.00" and f(3, "{:.2f}", plain_ints=True) == "3"
    assert f(28_288_354, "{:.3f}", scale=1e-6) == "28.288"


# ------------------------------------------------------------------- derived from the one table
def _declared(value, device):
    return value[device] if isinstance(value, dict) else value


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("m", [m for m in metrics.METRICS.values() if m.compare], ids=lambda m: m.column)
def test_every_compared_metric_is_judged_at_its_declared_tolerance(m, device):
    """compare's effective tolerance (and the samples test's minimum effect) is the table's, unless
    overridden (train_ms_median was judged at memory's 0.1 instead of its declared 0.5 / 0.15)."""
    tol = compare.Tolerances()
    assert tol.for_metric(m.column, device) == _declared(m.tolerance, device)
    if m.samples:
        assert tol.min_effect(m.column, device) == _declared(m.effect, device)
