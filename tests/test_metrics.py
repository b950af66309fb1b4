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
        "energy_mj_per_image": None,
        "peak_mem_mb": None,
        "train_ms_median": "train_ms_iqr",
        "train_peak_mb": None,
    }
    assert compare.ACCURACY_METRICS[:3] == ("top1", "top5", "miou")
    assert compare.METRIC_GROUPS["latency"] == ("latency_ms_median", "energy_mj_per_image")
    assert list(report.METRICS) == [
        "params",
        "gflops",
        "gflops_torch",
        "latency_ms_median",
        "throughput_img_s",
        "achieved_gflops_s",
        "efficiency",
        "energy_mj_per_image",
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


def test_the_derived_sets_are_the_ones_the_table_declares():
    """Pinned: the suite's names, the executors' timed set and the runner's refill set as they were
    written out by hand before they were derived (and every measure a metric names is declared)."""
    from pacabench.runs.executors import kinds as submit

    assert metrics.COST_MEASURES == ("params", "flops", "latency", "memory")
    assert metrics.OPTIONAL_COST_MEASURES == ("capacity",)
    assert metrics.MEASURES == SUITE_METRICS
    assert metrics.REFILL == {"flops", "latency", "memory"}
    assert metrics.TIMED == {"latency", "memory"} and submit.TIMED is metrics.TIMED
    assert compare.known_names(metrics.METRICS.values(), metrics.MEASURE_TABLE)[:7] == [
        "params", "flops", "latency", "memory", "train", "accuracy", "exact",
    ]  # fmt: skip
    for m in metrics.METRICS.values():
        assert m.measure in metrics.MEASURE_TABLE or m.measure in metrics.TASKS or m.measure == "accuracy"


def test_timed_cases_run_alone_on_an_executor():
    from pacabench.runs.executors.kinds import is_timed
    from pacabench.spec.suite import parse_suite

    text = "name: t\nmodels: [pvt_v2_b0]\nresolutions: [64]\ndevice: cpu\nmetrics: [{}]\n"
    timed = {
        m: is_timed(parse_suite(text.format(m), "t.yaml").cases()[0]) for m in ("params, flops", "memory")
    }
    assert timed == {"params, flops": False, "memory": True}


def test_compare_accepts_train_and_every_name_it_accepted():
    assert compare.parse_metrics(["train"]) == ("train_ms_median", "train_peak_mb")
    assert compare.parse_metrics(["train,latency"]) == (
        "train_ms_median",
        "train_peak_mb",
        "latency_ms_median",
        "energy_mj_per_image",
    )
    tol = compare.parse_tolerances(["train=0.3"])
    assert tol.for_metric("train_ms_median", "cuda") == tol.for_metric("train_peak_mb", "cpu") == 0.3
    assert tol.min_effect("train_ms_median", "cpu") == 0.3  # its samples test follows it
    assert (
        tol.for_metric("latency_ms_median", "cuda") == 0.15
        and tol.min_effect("latency_ms_median", "cpu") == 0.2
    )
    # each name sets exactly the columns it names; the others keep their declared tolerance
    names = {
        "": compare.NOISY_METRICS, "exact": compare.EXACT_METRICS, "accuracy": compare.ACCURACY_METRICS,
        "latency": ("latency_ms_median", "energy_mj_per_image"), "memory": ("peak_mem_mb",), "mem": ("peak_mem_mb",),
        "params": ("params",), "flops": ("gflops", "gflops_torch"), "gflops": ("gflops",),
        "train": ("train_ms_median", "train_peak_mb"), "top1": ("top1",), "peak_mem_mb": ("peak_mem_mb",),
    }  # fmt: skip
    for name, cols in names.items():
        tol = compare.parse_tolerances([f"{name}=7" if name else "7"])
        for m in (m for m in metrics.METRICS.values() if m.compare):
            for dev in ("cpu", "cuda"):
                want = 7.0 if m.column in cols else _declared(m.tolerance, dev)
                assert tol.for_metric(m.column, dev) == want, (name, m.column, dev)
    # a column wins over a group whatever the order; otherwise the last one given
    assert (
        compare.parse_tolerances(["latency_ms_median=0.2,0.3"]).for_metric("latency_ms_median", "cpu") == 0.2
    )
    assert compare.parse_tolerances(["latency=0.2", "0.3"]).for_metric("latency_ms_median", "cpu") == 0.3
    with pytest.raises(compare.UsageError, match="known: params, flops, latency, memory, train, accuracy"):
        compare.parse_metrics(["speed"])


ENERGY = metrics.Metric("energy_j", "energy", "noisy", "Energy (J per batch)", "J", source="joules",
                        compare=True, tolerance={"cpu": 0.3, "cuda": 0.05})  # fmt: skip


def test_a_new_measurement_reaches_every_derived_set(monkeypatch):
    """A measurement added to the tables shows up in the suite's names, the timed and refill sets,
    compare's names, groups and tolerances, and the runner's plan."""
    from dataclasses import replace

    import pacabench.runs.runner as runner
    from pacabench.spec.suite import parse_suite

    energy = metrics.Measure("energy", "default", timed=True, refill=True)
    monkeypatch.setitem(metrics.MEASURE_TABLE, "energy", energy)
    monkeypatch.setitem(metrics.METRICS, "energy_j", ENERGY)
    sets = metrics.measure_sets(metrics.MEASURE_TABLE.values(), metrics.TASKS)
    assert sets.cost[-1] == "energy" and "energy" in sets.names and sets.names[-3:] == tuple(metrics.TASKS)
    assert sets.timed == {"latency", "memory", "energy"} and sets.refill == {
        "flops",
        "latency",
        "memory",
        "energy",
    }
    groups = compare.metric_groups(metrics.METRICS.values(), metrics.MEASURE_TABLE)
    assert groups["energy"] == groups["energy_j"] == ("energy_j",)
    assert "energy" in compare.known_names(metrics.METRICS.values(), metrics.MEASURE_TABLE)
    assert compare.Tolerances().for_metric("energy_j", "cuda") == 0.05
    assert compare.Tolerances().for_metric("energy_j", "cpu") == 0.3
    # the runner: one dispatch line, and the table's source fills the row
    monkeypatch.setitem(runner._MEASURES, "energy", lambda bench: type("Rec", (), {"joules": 2.5})())
    case = parse_suite(
        "name: e\nmodels: [pvt_v2_b0]\nresolutions: [64]\nmetrics: [params]\n", "e.yaml"
    ).cases()[0]
    case = replace(case, metrics=("params", "flops", "energy"))
    assert runner._plan(case) == ["flops", "energy"]
    row = runner.run_case(replace(case, metrics=("params", "energy")))
    assert row.status == "ok" and row.energy_j == 2.5 and row.params == 3_666_760


def test_a_compared_metric_must_declare_its_tolerance():
    with pytest.raises(ValueError, match="energy_j: a compared metric needs a tolerance"):
        metrics.Metric("energy_j", "energy", "noisy", compare=True)
    with pytest.raises(ValueError, match="needs an effect"):
        metrics.Metric("energy_j", "energy", "noisy", compare=True, tolerance=0.1, samples="energy_samples")


def test_a_resumed_run_refills_only_the_refill_set(tmp_path):
    """Metrics added to a suite after its cases finished: those of the table's refill set are measured
    for the finished cases (the same values as a fresh run); in train mode the train step's columns."""
    import pacabench.runs.runner as runner
    from pacabench.runs.folder import RunDir
    from pacabench.spec.suite import parse_suite

    text = "name: r\nmodels: [pvt_v2_b0]\nresolutions: [64]\ndevice: cpu\nmodes: [{}]\nmetrics: [{}]\n"
    text += "latency: {{warmup: 0, iters: 2, min_iters: 2}}\n"
    suite = lambda mode, m: parse_suite(text.format(mode, m), "r.yaml")  # noqa: E731
    rd = RunDir(tmp_path / "run")
    runner.run_suite(suite("inference", "params"), rd)
    (before,) = rd.rows()
    assert before["gflops"] is None
    summary = runner.run_suite(suite("inference", "params, flops"), rd, refill=frozenset({"flops"}))
    (after,) = rd.rows()
    fresh = RunDir(tmp_path / "fresh")
    runner.run_suite(suite("inference", "params, flops"), fresh)
    assert len(summary.rows) == 1 and after["gflops"] == fresh.rows()[0]["gflops"] > 0
    assert after["timestamp"] == before["timestamp"]  # the row updated in place
    case = dataclasses.replace(suite("inference", "params").cases()[0], metrics=("params", "capacity"))
    assert runner._missing(case, after, frozenset({"capacity"})) == ()  # not in the refill set

    rd = RunDir(tmp_path / "train")
    runner.run_suite(suite("train", "params"), rd)
    runner.run_suite(suite("train", "params, latency"), rd, refill=frozenset({"latency"}))
    (row,) = rd.rows()
    assert row["train_ms_median"] > 0 and len(row["train_ms_samples"]) == 2
