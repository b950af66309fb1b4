"""Runner: rows written one by one, resume without duplicates, failing cases become rows."""

import json

import pytest
import torch

import pacabench.runs.runner as runner
from pacabench.runs.folder import RunDir
from pacabench.runs.results import load_run, read_rows
from pacabench.spec.suite import parse_suite

SUITE = """\
name: tiny
models: [pvt_v2_b0, swin_tiny_patch4_window7_224]
resolutions: [64, [64, 96]]
device: cpu
metrics: [params, flops, latency, memory]
latency: {warmup: 0, iters: 2, min_iters: 1}
"""

DETERMINISTIC = (
    "case_id",
    "model",
    "resolution",
    "batch_size",
    "dtype",
    "device",
    "status",
    "params",
    "gflops",
    "uncounted_ops",
    "peak_mem_mb",
)


def _strip(rows):
    return [{k: r[k] for k in DETERMINISTIC} for r in rows]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    suite = parse_suite(SUITE, "tiny.yaml")
    rd = RunDir(tmp_path_factory.mktemp("full") / "run")
    summary = runner.run_suite(suite, rd)
    return suite, rd, summary


def test_rows_have_measurements(full_run):
    suite, rd, summary = full_run
    rows = read_rows(rd.rows_path)
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert r["params"] > 1e6 and r["gflops"] > 0
        assert r["latency_ms_median"] > 0 and r["latency_ms_iqr"] >= 0 and r["throughput_img_s"] > 0
        assert r["peak_mem_mb"] > r["params"] * 4 / 2**20  # at least the weights
        assert r["mem_kind"] == "cpu_profiler_peak" and r["timer"] == "perf_counter"
        assert r["tokens"] == (r["resolution"][0] // 4) * (r["resolution"][1] // 4)
        assert r["threads"] >= 1 and r["torch_version"]
    df = load_run(rd.path)
    assert len(df) == 4 and set(df["res"]) == {"64x64", "64x96"}


@pytest.mark.slow  # the default tier's interrupt-and-resume: test_api's interrupted Python run
def test_interrupted_run_resumes_to_the_same_rows(full_run, tmp_path):
    suite, rd_full, _ = full_run
    rd = RunDir(tmp_path / "run")
    calls = {"n": 0}

    def dies_after_two(case):
        if calls["n"] == 2:
            raise KeyboardInterrupt
        calls["n"] += 1
        return runner.run_case(case)

    with pytest.raises(KeyboardInterrupt):
        runner.run_suite(suite, rd, case_fn=dies_after_two)
    assert len(rd.rows()) == 2  # what was measured is kept
    # a torn last line (killed mid-write) is tolerated
    with open(rd.rows_path, "a") as f:
        f.write('{"model": "half')
    rows_before = rd.rows()
    assert len(rows_before) == 2
    # rewrite without the torn line, as resume would see a clean file after a crash fix-up
    rd.rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows_before))

    seen = []
    summary = runner.run_suite(suite, rd, case_fn=lambda c: seen.append(c) or runner.run_case(c))
    assert summary.skipped_done == 2 and len(seen) == 2  # nothing redone
    rows = rd.rows()
    assert len(rows) == 4 and len({r["case_id"] for r in rows}) == 4  # nothing duplicated
    assert _strip(rows) == _strip(read_rows(rd_full.rows_path))
    # a third call has nothing to do
    assert runner.run_suite(suite, rd).rows == []


def test_oom_and_error_become_rows_and_the_suite_goes_on(tmp_path, monkeypatch):
    suite = parse_suite(SUITE, "tiny.yaml")
    real = runner._run_cost

    def flaky(case, row, state):
        if case.model == "swin_tiny_patch4_window7_224" and case.resolution == (64, 96):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if case.model == "pvt_v2_b0" and case.resolution == (64, 96):
            raise ValueError("something broke\nsecond line")
        return real(case, row, state)

    monkeypatch.setattr(runner, "_run_cost", flaky)
    rd = RunDir(tmp_path / "run")
    runner.run_suite(suite, rd)
    rows = {(r["model"], tuple(r["resolution"])): r for r in rd.rows()}
    assert len(rows) == 4
    oom = rows[("swin_tiny_patch4_window7_224", (64, 96))]
    assert oom["status"] == "oom" and "out of memory" in oom["error"]
    err = rows[("pvt_v2_b0", (64, 96))]
    assert err["status"] == "error" and err["error"] == "ValueError: something broke"
    assert rows[("pvt_v2_b0", (64, 64))]["status"] == "ok"
    assert rows[("swin_tiny_patch4_window7_224", (64, 64))]["status"] == "ok"


def test_cpu_allocator_failure_is_oom():
    assert runner.is_oom(
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
    )
    assert runner.is_oom(MemoryError())
    assert not runner.is_oom(RuntimeError("shape mismatch"))


@pytest.mark.slow  # a fresh interpreter; an isolated run in the default tier: test_rounds' worker group
def test_isolated_case_runs_in_a_subprocess(tmp_path):
    suite = parse_suite(
        SUITE.replace("[pvt_v2_b0, swin_tiny_patch4_window7_224]", "[pvt_v2_b0]").replace(
            "[64, [64, 96]]", "[64]"
        ),
        "tiny.yaml",
    )
    rd = RunDir(tmp_path / "run")
    runner.run_suite(suite, rd, isolate=True)
    (row,) = rd.rows()
    assert row["status"] == "ok" and row["gflops"] > 0 and row["run_id"] == "run"
