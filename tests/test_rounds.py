"""Raw samples and interleaved rounds: suite option, grouping, round-robin timing, rows from
every path (in process, isolated worker), and the report's intervals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pacabench.runner as runner
from pacabench.measure.latency import measure_rounds
from pacabench.results import RunDir
from pacabench.rounds import interleave_groups
from pacabench.suite import SuiteError, parse_suite

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
    real = runner.create_model

    def logged(name, **kw):
        model = real(name, **kw)
        model.register_forward_pre_hook(lambda m, args: log.append(name[:3]))
        return model

    monkeypatch.setattr(runner, "create_model", logged)
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
    real = runner.create_model

    def flaky(name, **kw):
        model = real(name, **kw)
        if name.startswith("pacavit") and kw["img_size"] == (96, 96):
            calls = []

            def hook(m, args):
                calls.append(1)
                if len(calls) > 2:  # fine while built and warmed up, then breaks in round 1
                    raise torch.OutOfMemoryError("out of memory")

            model.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(runner, "create_model", flaky)
    rd = RunDir(tmp_path / "run")
    runner.run_suite(_suite(SUITE.replace("metrics: [params, latency]", "metrics: [latency]")), rd)
    rows = {(r["model"][:3], r["resolution"][0]): r for r in rd.rows()}
    assert rows[("pac", 96)]["status"] == "oom" and rows[("pac", 96)].get("latency_ms_median") is None
    assert rows[("pvt", 96)]["status"] == "ok" and rows[("pvt", 96)]["latency_round_sizes"] == [2, 2, 2]


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


def test_in_process_rows_derive_their_statistics_from_the_samples(tmp_path):
    text = SUITE.replace(", rounds: 3, interleave: true", "").replace("iters: 2", "iters: 7")
    rd = RunDir(tmp_path / "run")
    runner.run_suite(_suite(text.replace("resolutions: [64, 96]", "resolutions: [64]")), rd)
    for r in rd.rows():
        assert r["latency_iters"] == 7
        _check_stats(r)
