"""Raw samples and interleaved rounds: suite option, grouping, round-robin timing, rows from
every path (in process, isolated worker), and the report's intervals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor

import pacabench.runs.runner as runner
from pacabench.measure.latency import measure_rounds
from pacabench.runs.folder import RunDir
from pacabench.runs.rounds import interleave_groups
from pacabench.spec.suite import SuiteError, parse_suite

SUITE = """\
name: rounds
models: [pvt_v2_b0, pacavit_tiny_p2cconv_100_0]
resolutions: [64, 96]
device: cpu
metrics: [params, latency]
latency: {warmup: 0, iters: 2, min_iters: 1, rounds: 3, interleave: true}
"""


def _suite(text=SUITE):
    return parse_suite(text, "rounds.yaml")


def _check_stats(row):
    """median, p90 and IQR are the statistics of the row's raw samples (numpy's percentiles)."""
    s = np.asarray(row["latency_ms_samples"])
    assert len(s) == row["latency_iters"]
    assert row["latency_ms_median"] == pytest.approx(np.median(s), abs=2e-4)
    assert row["latency_ms_p90"] == pytest.approx(np.percentile(s, 90), abs=2e-4)
    q75, q25 = np.percentile(s, [75, 25])
    assert row["latency_ms_iqr"] == pytest.approx(q75 - q25, abs=4e-4)


# ------------------------------------------------------------------------------------ the suite
def test_suite_option_parses_and_is_validated():
    lat = _suite().expand("cpu")[0][0].latency
    assert (lat.rounds, lat.interleave, lat.iters) == (3, True, 2)
    plain = _suite(SUITE.replace(", rounds: 3, interleave: true", "")).expand("cpu")[0][0].latency
    assert (plain.rounds, plain.interleave) == (1, False)
    with pytest.raises(SuiteError, match=r"rounds.yaml:6: .*interleave must be true or false"):
        _suite(SUITE.replace("interleave: true", "interleave: 1"))
    with pytest.raises(SuiteError, match=r"rounds.yaml:6: .*rounds must be a positive int"):
        _suite(SUITE.replace("rounds: 3", "rounds: 0"))


def test_groups_are_the_cases_of_one_resolution_in_run_order():
    cases, _ = _suite().expand("cpu")
    groups = interleave_groups(cases)
    assert [[(c.model, c.resolution[0]) for c in g] for g in groups] == [
        [("pvt_v2_b0", 64), ("pacavit_tiny_p2cconv_100_0", 64)],
        [("pvt_v2_b0", 96), ("pacavit_tiny_p2cconv_100_0", 96)],
    ]
    # a case already measured (resume) is not regrouped; without interleave every case is alone
    assert [len(g) for g in interleave_groups(cases, {cases[0].key})] == [1, 2, 1]
    plain, _ = _suite(SUITE.replace("interleave: true", "interleave: false")).expand("cpu")
    assert [len(g) for g in interleave_groups(plain)] == [1, 1, 1, 1]


# --------------------------------------------------------------------------------- the timing
class _Clock:
    """A fake clock that each call of a timed function advances by that function's cost."""

    def __init__(self):
        self.t = 0.0
        self.log: list[str] = []

    def fn(self, name, cost, fail_at=None):
        def call():
            self.log.append(name)
            if fail_at is not None and self.log.count(name) == fail_at:
                raise RuntimeError(f"{name} broke")
            self.t += cost

        return call

    def __call__(self):
        return self.t


def test_measure_rounds_alternates_and_records_round_sizes():
    clock = _Clock()
    fns = [clock.fn("A", 0.010), clock.fn("B", 0.020), clock.fn("C", 0.005, fail_at=4)]
    recs = measure_rounds(fns, rounds=3, warmups=[1, 0, 2], iters=2, min_iters=1, clock=clock)
    # warm-ups once, then A A B B C C per round; C fails in round 1's second timed call
    assert clock.log == ["A", "C", "C", "A", "A", "B", "B", "C", "C"] + ["A", "A", "B", "B"] * 2
    a, b, c = recs
    assert a.round_sizes == b.round_sizes == [2, 2, 2] and a.iters == 6
    assert a.median_ms == pytest.approx(10.0) and b.median_ms == pytest.approx(20.0)
    assert isinstance(c, RuntimeError) and "C broke" in str(c)


def test_time_budget_applies_per_round():
    clock = _Clock()
    (rec,) = measure_rounds(
        [clock.fn("A", 0.3)], rounds=2, iters=10, min_iters=2, time_budget_s=0.5, clock=clock
    )
    assert rec.round_sizes == [2, 2] and rec.times_ms == pytest.approx([300.0] * 4)


# ------------------------------------------------------------------------------------ the runner
def test_interleaved_run_times_the_models_of_one_resolution_in_alternating_rounds(tmp_path, monkeypatch):
    log: list[str] = []
    real = runner._cost_model  # the one place the runner builds a cost case's model

    def logged(case):
        model, name = real(case), case.model
        # real forwards only: a row's efficiency may count FLOPs under fake tensors after timing
        model.register_forward_pre_hook(
            lambda m, args: None if isinstance(args[0], FakeTensor) else log.append(name[:3])
        )
        return model

    monkeypatch.setattr(runner, "_cost_model", logged)
    rd = RunDir(tmp_path / "run")
    runner.run_suite(_suite(), rd)
    rows = rd.rows()
    assert [(r["model"][:3], r["resolution"][0]) for r in rows] == [
        ("pvt", 64), ("pac", 64), ("pvt", 96), ("pac", 96),
    ]  # fmt: skip
    # the last forwards of the run: the 96 group's three rounds, two iterations per model each
    assert log[-12:] == ["pvt", "pvt", "pac", "pac"] * 3
    for r in rows:
        assert r["status"] == "ok" and r["params"] > 1e6
        assert r["latency_round_sizes"] == [2, 2, 2]
        _check_stats(r)


def test_a_model_failing_in_the_rounds_becomes_an_error_row_and_the_others_go_on(tmp_path, monkeypatch):
    real = runner._cost_model

    def flaky(case):
        model = real(case)
        if case.model.startswith("pacavit") and tuple(case.resolution) == (96, 96):
            calls = []

            def hook(m, args):
                calls.append(1)
                if len(calls) > 2:  # fine while built and warmed up, then breaks in round 1
                    raise torch.OutOfMemoryError("out of memory")

            model.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(runner, "_cost_model", flaky)
    rd = RunDir(tmp_path / "run")
    runner.run_suite(_suite(SUITE.replace("metrics: [params, latency]", "metrics: [latency]")), rd)
    rows = {(r["model"][:3], r["resolution"][0]): r for r in rd.rows()}
    assert rows[("pac", 96)]["status"] == "oom" and rows[("pac", 96)].get("latency_ms_median") is None
    assert rows[("pvt", 96)]["status"] == "ok" and rows[("pvt", 96)]["latency_round_sizes"] == [2, 2, 2]


# a fresh interpreter per run (~8 s of torch import, model build, FLOP count and GEMM calibration
# in the worker): slow, like test_runner's one case alone in a worker; .ci/run runs both
@pytest.mark.slow
@pytest.mark.parametrize("interleave", [False, True])
def test_isolated_worker_rows_keep_samples_and_rounds(tmp_path, interleave):
    text = SUITE.replace("resolutions: [64, 96]", "resolutions: [64]")
    if not interleave:
        text = text.replace("models: [pvt_v2_b0, pacavit_tiny_p2cconv_100_0]", "models: [pvt_v2_b0]")
        text = text.replace(", rounds: 3, interleave: true", "")
    rd = RunDir(tmp_path / "run")
    runner.run_suite(_suite(text), rd, isolate=True)
    rows = rd.rows()
    assert len(rows) == (2 if interleave else 1) and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert r["run_id"] == "run"
        assert r.get("latency_round_sizes") == ([2, 2, 2] if interleave else None)
        _check_stats(r)


@pytest.mark.slow  # the interleaved run above checks the same statistics of in-process rows
def test_in_process_rows_derive_their_statistics_from_the_samples(tmp_path):
    text = SUITE.replace(", rounds: 3, interleave: true", "").replace("iters: 2", "iters: 7")
    rd = RunDir(tmp_path / "run")
    runner.run_suite(_suite(text.replace("resolutions: [64, 96]", "resolutions: [64]")), rd)
    for r in rd.rows():
        assert r["latency_iters"] == 7
        _check_stats(r)


# ------------------------------------------------------------------------------- the report
def _rows_with_rounds(seed=0):
    """Two models at three sizes, timed in 4 interleaved rounds of 3 with a drift per round:
    model b costs 0.8× model a, and both grow as tokens^1.5."""
    rng = np.random.default_rng(seed)
    rows = []
    for res in (64, 128, 256):
        drift = rng.uniform(0.7, 1.6, 4)
        for model, factor in (("a_model", 1.0), ("b_model", 0.8)):
            base = factor * ((res // 4) ** 2) ** 1.5 / 1e3
            s = [round(float(base * d * x), 4) for d in drift for x in rng.lognormal(0, 0.02, 3)]
            rows.append({
                "model": model, "task": "cost", "resolution": [res, res], "batch_size": 1,
                "dtype": "fp32", "device": "cpu", "status": "ok", "latency_ms_samples": s,
                "latency_ms_median": float(np.median(s)), "latency_round_sizes": [3, 3, 3, 3],
            })  # fmt: skip
    return rows


def test_report_shows_each_latency_ratio_with_its_interval_and_the_exponent_interval():
    import pandas as pd

    from pacabench.analysis.stats import exponent_ci, round_ratio_ci
    from pacabench.reports.sections import render_markdown, report_sections

    rows = _rows_with_rounds()
    df = pd.DataFrame(rows)
    secs = {s.title: s.table for s in report_sections(df, reference="a_model")}
    rel = secs["Latency, median relative to a_model (ratio [95% interval])"]
    by = {(r["model"], r["resolution"][0]): r for r in rows}
    for res in (64, 128, 256):
        b, a = by[("b_model", res)], by[("a_model", res)]
        want = round_ratio_ci(b["latency_ms_samples"], a["latency_ms_samples"], [3] * 4, [3] * 4)
        assert rel.loc["b_model", str(res)] == want.format(2)
        assert want.low <= 0.8 <= want.high  # the planted ratio, despite the drift between rounds
    assert rel.loc["a_model", "64"] == 1.0
    scaling = next(t for title, t in secs.items() if title.startswith("Complexity scaling"))
    toks = [(r // 4) ** 2 for r in (64, 128, 256)]
    ci = exponent_ci(toks, [by[("b_model", r)]["latency_ms_samples"] for r in (64, 128, 256)], [[3] * 4] * 3)
    assert scaling.loc["b_model", "latency_exp 95% CI"] == f"[{ci.low:.2f}, {ci.high:.2f}]"
    assert scaling.loc["b_model", "latency_exp"] == pytest.approx(ci.slope, abs=1e-3)
    assert "| b_model | 0.8" in render_markdown(df, reference="a_model")


def test_report_without_samples_keeps_plain_ratios():
    import pandas as pd

    from pacabench.reports.sections import report_sections

    rows = [{k: v for k, v in r.items() if k not in ("latency_ms_samples", "latency_round_sizes")}
            for r in _rows_with_rounds()]  # fmt: skip
    secs = {s.title: s.table for s in report_sections(pd.DataFrame(rows), reference="a_model")}
    rel = secs["Latency, median relative to a_model"]
    assert isinstance(rel.loc["b_model", "64"], float)
    scaling = next(t for title, t in secs.items() if title.startswith("Complexity scaling"))
    assert "latency_exp 95% CI" not in scaling.columns


@pytest.mark.slow  # a real run; the intervals: the synthetic rows above, `report --reference`: test_golden
def test_cli_report_of_an_interleaved_run_shows_paca_over_swin_with_its_interval(tmp_path, capsys):
    """A real interleaved run (PaCa-T and Swin-T at 64², 3 rounds): ``pacabench report RUN
    --reference swin_tiny_patch4_window7_224`` shows PaCa-T ÷ Swin-T as "ratio [low, high]",
    the same numbers round_ratio_ci gives on the rows, and the exponent table has its interval
    column only when there are two sizes (here one: absent)."""
    import re

    from pacabench.analysis.stats import round_ratio_ci
    from pacabench.cli import main

    text = SUITE.replace("pvt_v2_b0", "swin_tiny_patch4_window7_224").replace("[64, 96]", "[64]")
    rd = RunDir(tmp_path / "run")
    runner.run_suite(_suite(text), rd)
    paca, swin = sorted(rd.rows(), key=lambda r: r["model"])
    assert main(["report", str(rd.path), "--reference", "swin_tiny_patch4_window7_224"]) == 0
    out = capsys.readouterr().out
    ci = round_ratio_ci(
        paca["latency_ms_samples"],
        swin["latency_ms_samples"],
        paca["latency_round_sizes"],
        swin["latency_round_sizes"],
    )
    section = out.split("Latency, median relative to swin_tiny_patch4_window7_224 (ratio [95% interval])")[1]
    line = next(ln for ln in section.splitlines() if ln.startswith("| pacavit_tiny_p2cconv_100_0"))
    assert re.search(r"\| \d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\] \|$", line) and ci.format(2) in line
    assert "latency_exp 95% CI" not in out
