"""compare / baseline: verdicts on constructed rows, exit codes through the CLI, baselines untouched by run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pacabench.analysis.compare import (
    VOLATILE_FIELDS,
    Tolerances,
    baseline_rows,
    compare_rows,
    join_key,
    parse_tolerances,
    render_comparison,
)
from pacabench.cli import main

REPO = Path(__file__).resolve().parent.parent


def row(model="pvt_v2_b0", res=(224, 224), **kw):
    d = {
        "suite": "t",
        "run_id": "r1",
        "case_id": f"cost|{model}|{res[0]}x{res[1]}|1|fp32|cpu|0|0",
        "model": model,
        "task": "cost",
        "resolution": list(res),
        "batch_size": 1,
        "dtype": "fp32",
        "device": "cpu",
        "channels_last": False,
        "compile": False,
        "status": "ok",
        "params": 3_666_760,
        "gflops": 0.572,
        "latency_ms_median": 10.0,
        "latency_ms_iqr": 0.5,
        "peak_mem_mb": 100.0,
        "timestamp": "2026-01-01T00:00:00+00:00",
    }
    d.update(kw)
    return d


def base_rows():
    return [
        row(),
        row(res=(512, 512), gflops=3.0, latency_ms_median=50.0),
        row("swin_tiny_patch4_window7_224"),
    ]


def write(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def verdicts(cmp, metric):
    return {c.case: c.verdict for c in cmp.checks if c.metric == metric}


# ---------------------------------------------------------------------------------- verdicts
def test_equal_rows_pass():
    cmp = compare_rows(base_rows(), base_rows())
    assert cmp.ok and cmp.exit_code == 0
    assert not cmp.regressions and not cmp.added and not cmp.missing
    assert cmp.compared_cases == 3
    assert set(cmp.counts()) == {"same", "within_noise"}


def test_join_ignores_case_id_run_id_and_timestamps():
    new = [dict(r, case_id="something else", run_id="r2", timestamp="later") for r in base_rows()]
    cmp = compare_rows(base_rows(), new)
    assert cmp.compared_cases == 3 and not cmp.added and not cmp.missing


def test_join_key_fields():
    a, b = row(), row(dtype="fp16")
    assert join_key(a) != join_key(b)
    assert join_key(a) == join_key(dict(a, case_id="x"))
    assert join_key(a) != join_key(row(batch_size=8))
    assert join_key(a) != join_key(row(device="cuda"))
    assert join_key(a) != join_key(row(task="imagenet"))


@pytest.mark.parametrize("factor,verdict", [(1.05, "regression"), (0.95, "regression"), (1.0005, "same")])
def test_exact_metrics_must_match_to_a_tenth_of_a_percent(factor, verdict):
    new = base_rows()
    new[0]["gflops"] *= factor
    cmp = compare_rows(base_rows(), new)
    assert verdicts(cmp, "gflops")["pvt_v2_b0 224 b1 fp32 cpu"] == verdict
    assert cmp.exit_code == (1 if verdict == "regression" else 0)


def test_params_change_is_a_regression():
    new = base_rows()
    new[2]["params"] += 10_000
    cmp = compare_rows(base_rows(), new)
    assert [c.metric for c in cmp.regressions] == ["params"]


def test_latency_regressed_beyond_noise():
    new = base_rows()
    new[0]["latency_ms_median"] = 20.0  # > 10 * 1.5 and excess 10 > IQRs 0.5 + 0.5
    cmp = compare_rows(base_rows(), new)
    assert [(c.metric, c.verdict) for c in cmp.regressions] == [("latency_ms_median", "regression")]
    assert cmp.exit_code == 1


def test_latency_within_tolerance_band():
    new = base_rows()
    new[0]["latency_ms_median"] = 14.0  # +40 %: inside the CPU default band of 50 %
    cmp = compare_rows(base_rows(), new)
    assert cmp.ok
    assert verdicts(cmp, "latency_ms_median")["pvt_v2_b0 224 b1 fp32 cpu"] == "within_noise"


def test_latency_beyond_band_but_within_measured_spread():
    base = base_rows()
    base[0]["latency_ms_iqr"] = 6.0
    new = base_rows()
    new[0]["latency_ms_median"], new[0]["latency_ms_iqr"] = 20.0, 6.0  # excess 10 < IQRs 12
    cmp = compare_rows(base, new)
    assert cmp.ok
    assert verdicts(cmp, "latency_ms_median")["pvt_v2_b0 224 b1 fp32 cpu"] == "within_noise"


def test_latency_tolerance_is_configurable_and_per_device():
    new = base_rows()
    new[0]["latency_ms_median"] = 14.0
    assert compare_rows(base_rows(), new, tolerances=parse_tolerances(["latency=0.2"])).exit_code == 1
    tol = Tolerances()
    assert tol.for_metric("latency_ms_median", "cpu") == 0.5
    assert tol.for_metric("latency_ms_median", "cuda") < 0.5
    # a bare number sets the noisy metrics
    t = parse_tolerances(["0.3"])
    assert t.for_metric("latency_ms_median", "cpu") == 0.3 and t.for_metric("peak_mem_mb", "cpu") == 0.3


def test_latency_on_a_busy_machine_is_inconclusive(capsys):
    new = base_rows()
    new[0].update(latency_ms_median=20.0, loadavg_1m=9.0, threads=2)  # load 9 on 2 threads
    cmp = compare_rows(base_rows(), new)
    assert cmp.ok and [c.verdict for c in cmp.checks if c.metric == "latency_ms_median"][0] == "inconclusive"
    assert "Inconclusive" in render_comparison(cmp)
    assert compare_rows(base_rows(), new, ignore_load=True).exit_code == 1
    new[0]["loadavg_1m"] = 2.0  # 2 threads busy with the benchmark itself: not "busy"
    assert compare_rows(base_rows(), new).exit_code == 1


def test_faster_is_improved_not_regression():
    new = base_rows()
    new[0]["latency_ms_median"] = 3.0
    cmp = compare_rows(base_rows(), new)
    assert cmp.ok and [c.metric for c in cmp.improvements] == ["latency_ms_median"]


@pytest.mark.parametrize("mem,verdict", [(120.0, "regression"), (105.0, "within_noise"), (80.0, "improved")])
def test_memory(mem, verdict):
    new = base_rows()
    new[0]["peak_mem_mb"] = mem
    cmp = compare_rows(base_rows(), new)
    assert verdicts(cmp, "peak_mem_mb")["pvt_v2_b0 224 b1 fp32 cpu"] == verdict


@pytest.mark.parametrize("top1,verdict", [(79.8, "regression"), (79.95, "same"), (80.5, "improved")])
def test_accuracy_absolute_tolerance(top1, verdict):
    b = [row(task="imagenet", top1=80.0, gflops=None, params=None, latency_ms_median=None, peak_mem_mb=None)]
    n = [dict(b[0], top1=top1)]
    cmp = compare_rows(b, n)
    (c,) = [c for c in cmp.checks if c.metric == "top1"]
    assert c.verdict == verdict
    assert cmp.exit_code == (1 if verdict == "regression" else 0)
    assert compare_rows(b, [dict(b[0], top1=79.8)], tolerances=parse_tolerances(["accuracy=0.5"])).ok


def test_status_ok_to_oom_is_a_regression():
    new = base_rows()
    new[1].update(status="oom", error="RuntimeError: out of memory", gflops=None, latency_ms_median=None)
    cmp = compare_rows(base_rows(), new)
    assert [(c.metric, c.new) for c in cmp.regressions] == [("status", "oom")]


def test_metric_missing_now_is_a_regression():
    new = base_rows()
    new[0]["gflops"] = None
    assert [c.metric for c in compare_rows(base_rows(), new).regressions] == ["gflops"]


def test_added_and_missing_are_listed():
    new = base_rows()[1:] + [row("pvt_v2_b1")]
    cmp = compare_rows(base_rows(), new)
    assert cmp.added == ["pvt_v2_b1 224 b1 fp32 cpu"]
    assert cmp.missing == ["pvt_v2_b0 224 b1 fp32 cpu"]
    assert cmp.exit_code == 0
    assert compare_rows(base_rows(), new, fail_on_missing=True).exit_code == 1
    text = render_comparison(cmp)
    assert "## Missing" in text and "## Added" in text and "pvt_v2_b1 224" in text


def test_metrics_selection():
    new = base_rows()
    new[0]["latency_ms_median"] = 100.0
    cmp = compare_rows(base_rows(), new, metrics=("params", "gflops"))
    assert cmp.ok and {c.metric for c in cmp.checks} == {"params", "gflops"}


# ------------------------------------------------------------------------------------- CLI
def test_cli_exit_codes(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", base_rows())
    same = write(tmp_path / "run_same" / "rows.jsonl", base_rows())
    worse_rows = base_rows()
    worse_rows[0]["gflops"] *= 1.05
    worse = write(tmp_path / "run_worse" / "rows.jsonl", worse_rows)
    noisy_rows = base_rows()
    noisy_rows[0]["latency_ms_median"] = 13.0
    noisy = write(tmp_path / "run_noisy" / "rows.jsonl", noisy_rows)

    assert main(["compare", str(base), str(same.parent)]) == 0
    assert "**OK**" in capsys.readouterr().out
    assert main(["compare", str(base), str(worse.parent)]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    assert main(["compare", str(base), str(noisy.parent)]) == 0
    assert main(["compare", str(base), str(noisy), "--tolerance", "latency=0.1"]) == 1
    assert main(["compare", str(base), str(noisy), "--metrics", "params,flops", "-t", "latency=0.1"]) == 0
    capsys.readouterr()
    assert main(["compare", str(base), str(worse.parent), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "regression" and data["regressions"][0]["metric"] == "gflops"


def test_cli_missing_rows_and_fail_on_missing(tmp_path):
    base = write(tmp_path / "base.jsonl", base_rows())
    partial = write(tmp_path / "run" / "rows.jsonl", base_rows()[:2])
    assert main(["compare", str(base), str(partial)]) == 1  # missing cases fail by default
    assert main(["compare", str(base), str(partial), "--fail-on-missing"]) == 1
    assert main(["compare", str(base), str(partial), "--allow-missing"]) == 0


def test_cli_compare_against_an_empty_run_fails(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", base_rows())
    empty = tmp_path / "run" / "rows.jsonl"
    empty.parent.mkdir()
    empty.write_text("", encoding="utf-8")
    assert main(["compare", str(base), str(empty.parent)]) == 1
    assert main(["compare", str(base), str(empty.parent), "--allow-missing"]) == 1
    out = capsys.readouterr().out
    assert "0 cases compared" in out and "nothing was compared" in out and "**OK**" not in out


def test_cli_bad_input_exits_2(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", base_rows())
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n{}\n", encoding="utf-8")
    assert main(["compare", str(tmp_path / "nope.jsonl"), str(base)]) == 2
    assert main(["compare", str(bad), str(base)]) == 2
    assert main(["compare", str(base), str(base), "--format", "yaml"]) == 2
    assert main(["compare", str(base), str(base), "--tolerance", "latency=fast"]) == 2
    assert main(["compare", str(base), str(base), "--metrics", "speed"]) == 2
    assert main(["compare", str(tmp_path), str(base)]) == 2  # a folder without rows.jsonl
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("pacabench: error:") == 6


def test_cli_default_run_is_latest_of_the_baselines_suite(tmp_path):
    results = tmp_path / "results"
    base = write(results / "baselines" / "t.jsonl", baseline_rows(base_rows()))
    write(results / "t" / "20260101-000000" / "rows.jsonl", base_rows())
    assert main(["compare", str(base), "--results-dir", str(results)]) == 0
    assert main(["compare", str(base), "--results-dir", str(tmp_path / "empty")]) == 2


# -------------------------------------------------------------------------------- baselines
def test_baseline_rows_keep_ok_and_strip_volatile_fields():
    rows = base_rows() + [row("pvt_v2_b1", status="oom", error="out of memory")]
    kept = baseline_rows(rows)
    assert [r["model"] for r in kept] == ["pvt_v2_b0", "pvt_v2_b0", "swin_tiny_patch4_window7_224"]
    assert not any(k in r for r in kept for k in VOLATILE_FIELDS)


def test_baseline_update_confirms_and_writes(tmp_path, monkeypatch, capsys):
    import typer

    results = tmp_path / "results"
    write(results / "t" / "20260101-000000" / "rows.jsonl", base_rows() + [row("pvt_v2_b1", status="error")])
    target = results / "baselines" / "t.jsonl"

    monkeypatch.setattr(typer, "confirm", lambda *a, **k: False)
    assert main(["baseline", "update", "t", "--results-dir", str(results)]) == 1
    assert not target.exists()

    assert main(["baseline", "update", "t", "--results-dir", str(results), "--yes"]) == 0
    kept = [json.loads(x) for x in target.read_text().splitlines()]
    assert len(kept) == 3 and all(r["status"] == "ok" for r in kept)
    assert not any(k in r for r in kept for k in VOLATILE_FIELDS)

    # a new run with a FLOPs change: the diff is shown before writing
    new = base_rows()
    new[0]["gflops"] *= 1.05
    run2 = write(results / "t" / "20260102-000000" / "rows.jsonl", new)
    capsys.readouterr()
    monkeypatch.setattr(typer, "confirm", lambda *a, **k: False)
    assert main(["baseline", "update", "t", "--results-dir", str(results), "--run", str(run2.parent)]) == 1
    shown = capsys.readouterr().out
    assert "REGRESSION" in shown and "gflops" in shown
    assert [json.loads(x) for x in target.read_text().splitlines()] == kept  # untouched

    assert (
        main(["baseline", "update", "t", "--results-dir", str(results), "--run", str(run2.parent), "-y"]) == 0
    )
    assert json.loads(target.read_text().splitlines()[0])["gflops"] == pytest.approx(0.572 * 1.05)


def test_baseline_update_without_a_run_exits_2(tmp_path):
    assert main(["baseline", "update", "nosuch", "--results-dir", str(tmp_path), "--yes"]) == 2


def test_committed_smoke_baseline_is_valid():
    path = REPO / "results" / "baselines" / "smoke.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert rows and all(r["status"] == "ok" and r["suite"] == "smoke" for r in rows)
    assert all(r["params"] and r["gflops"] for r in rows)
    assert not any(k in r for r in rows for k in VOLATILE_FIELDS)


# -------------------------------------------------------------------------- run vs baselines
@pytest.mark.slow
def test_run_never_touches_baselines(tmp_path):
    """Run the smoke suite into a results dir that holds a baseline: its bytes and mtime stay."""
    results = tmp_path / "results"
    baseline = results / "baselines" / "smoke.jsonl"
    baseline.parent.mkdir(parents=True)
    shutil.copy(REPO / "results" / "baselines" / "smoke.jsonl", baseline)
    old_time = 1_600_000_000
    os.utime(baseline, (old_time, old_time))
    before = baseline.read_bytes()
    listing = sorted(p.name for p in baseline.parent.iterdir())

    argv = [
        "run",
        str(REPO / "suites" / "smoke.yaml"),
        "--results-dir",
        str(results),
        "--no-progress",
        "--no-report",
    ]
    assert main(argv) == 0

    assert baseline.read_bytes() == before
    assert baseline.stat().st_mtime == old_time
    assert sorted(p.name for p in baseline.parent.iterdir()) == listing
    runs = list((results / "smoke").glob("*/rows.jsonl"))
    assert len(runs) == 1
    # and the run compares clean against the baseline it made (exact metrics identical)
    made = tmp_path / "made.jsonl"
    assert main(["baseline", "update", "smoke", "--results-dir", str(results), "-o", str(made), "--yes"]) == 0
    assert main(["compare", str(made), str(runs[0].parent)]) == 0
    assert main(["compare", str(baseline), str(runs[0].parent), "--metrics", "exact"]) == 0


def test_several_runs_best_of_n_for_noisy_metrics(tmp_path):
    from pacabench.analysis.compare import compare_runs

    slow = base_rows()
    slow[0]["latency_ms_median"] = 30.0
    assert compare_runs(base_rows(), [slow, base_rows()]).ok  # not reproduced: noise
    assert compare_runs(base_rows(), [slow, slow]).exit_code == 1  # reproduced
    heavier = base_rows()
    heavier[1]["gflops"] *= 1.05
    assert compare_runs(base_rows(), [base_rows(), heavier]).exit_code == 1  # exact: any run
    cmp = compare_runs(base_rows(), [base_rows()[:2], base_rows()[1:]])
    assert cmp.missing == [] and cmp.ok

    base = write(tmp_path / "base.jsonl", base_rows())
    r1 = write(tmp_path / "r1" / "rows.jsonl", slow)
    r2 = write(tmp_path / "r2" / "rows.jsonl", base_rows())
    assert main(["compare", str(base), str(r1.parent), str(r2.parent)]) == 0
    assert main(["compare", str(base), str(r1.parent), str(r1)]) == 1


# ------------------------------------------------------- latency from raw samples (Mann–Whitney)
def _sampled(factor=1.0, n=20, sigma=0.03, seed=0, **kw):
    rng = np.random.default_rng(seed)
    s = [round(float(x), 4) for x in 10.0 * factor * rng.lognormal(0.0, sigma, n)]
    return row(latency_ms_samples=s, latency_ms_median=float(np.median(s)), **kw)


@pytest.mark.parametrize(
    "factor,verdict",
    [(1.0, "no_regression"), (1.5, "regression"), (1.1, "no_regression"), (0.6, "faster")],
)
def test_latency_samples_verdicts(factor, verdict):
    """Planted effects on lognormal samples: 1.1× is significant but below the 20% minimum effect."""
    cmp = compare_rows([_sampled()], [_sampled(factor, seed=1)])
    (check,) = [c for c in cmp.checks if c.metric == "latency_ms_median"]
    assert check.verdict == verdict and "Mann–Whitney" in check.rule
    assert cmp.exit_code == (1 if verdict == "regression" else 0)
    assert check.change == pytest.approx(
        np.median(_sampled(factor, seed=1)["latency_ms_samples"]) / 10.0 - 1, abs=0.05
    )


def test_latency_samples_effect_threshold_follows_the_tolerance():
    base, new = [_sampled()], [_sampled(1.1, seed=1)]
    assert compare_rows(base, new, tolerances=parse_tolerances(["latency=0.05"])).exit_code == 1
    assert compare_rows(base, new, tolerances=parse_tolerances(["0.05"])).exit_code == 1
    assert Tolerances().min_effect("latency_ms_median", "cuda") == 0.1


def test_latency_samples_too_few_or_too_spread_is_inconclusive():
    few = compare_rows([_sampled(n=4)], [_sampled(2.0, n=4, seed=1)])
    (c,) = [c for c in few.checks if c.metric == "latency_ms_median"]
    assert c.verdict == "inconclusive" and "too few samples" in c.rule and few.exit_code == 0
    wild = compare_rows([_sampled(sigma=1.5, n=200)], [_sampled(3.0, sigma=1.5, n=200, seed=1)])
    (c,) = [c for c in wild.checks if c.metric == "latency_ms_median"]
    assert c.verdict == "inconclusive" and "spread" in c.rule and wild.exit_code == 0
    judged = compare_rows(
        [_sampled(sigma=1.5, n=200)], [_sampled(3.0, sigma=1.5, n=200, seed=1)], ignore_load=True
    )
    assert judged.exit_code == 1
    busy = compare_rows([_sampled()], [_sampled(1.5, seed=1, loadavg_1m=9.0, threads=2)])
    assert busy.exit_code == 0 and "busy" in busy.checks[-1].rule + "".join(c.rule for c in busy.checks)


def test_rows_without_samples_keep_the_band_rule():
    new = base_rows()
    new[0]["latency_ms_median"] = 20.0
    (c,) = [
        c for c in compare_rows(base_rows(), new).checks if c.metric == "latency_ms_median" and c.new == 20.0
    ]
    assert c.verdict == "regression" and "IQRs" in c.rule


TIMED = """\
name: timed
models: [pvt_v2_b0]
resolutions: [32]
device: cpu
threads: 1
metrics: [params, latency]
latency: {warmup: 3, iters: 30, min_iters: 30}
"""


def _timed_run(results: Path, run_id: str, monkeypatch, extra_s: float) -> Path:
    """Run TIMED with every forward of the model preceded by a sleep of ``extra_s``."""
    import time

    import pacabench.runs.runner as runner
    from pacabench.runs.folder import RunDir
    from pacabench.spec.suite import parse_suite

    real = getattr(runner._cost_model, "__wrapped__", runner._cost_model)  # not a previous run's patch

    def slowed(case):
        model = real(case)
        model.register_forward_pre_hook(lambda m, args: time.sleep(extra_s))
        return model

    slowed.__wrapped__ = real
    monkeypatch.setattr(runner, "_cost_model", slowed)
    rd = RunDir(results / "timed" / run_id)
    runner.run_suite(parse_suite(TIMED, "timed.yaml"), rd)
    return rd.path


def test_cli_run_against_itself_never_regresses_and_a_planted_30_percent_slowdown_fails(
    tmp_path, monkeypatch, capsys
):
    """Real timings: the model's forward (one thread) preceded by a 40 ms sleep (so the machine's
    load moves the test's own medians by far less than the 20% minimum effect), then by 40 ms +
    30% of the first run's median. ``--ignore-load``: the shared test machine is busy, the
    verdict is the point."""
    import torch

    threads = torch.get_num_threads()
    try:
        _planted_slowdown(tmp_path, monkeypatch, capsys)
    finally:
        torch.set_num_threads(threads)


def _planted_slowdown(tmp_path, monkeypatch, capsys):
    base = _timed_run(tmp_path, "base", monkeypatch, 0.04)
    assert main(["compare", str(base), str(base)]) == 0
    out = capsys.readouterr().out
    assert "**OK**" in out and "| regression |" not in out
    med = json.loads((base / "rows.jsonl").read_text().splitlines()[0])["latency_ms_median"]
    slow = _timed_run(tmp_path, "slow", monkeypatch, 0.04 + 0.3 * med / 1000.0)
    assert main(["compare", str(base), str(slow), "--ignore-load", "--format", "json"]) == 1
    res = json.loads(capsys.readouterr().out)
    (reg,) = res["regressions"]
    assert reg["metric"] == "latency_ms_median" and 0.2 < reg["change"] < 0.5
    # the same pair the other way round: faster, exit 0
    assert main(["compare", str(slow), str(base), "--ignore-load", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"].get("faster") == 1


def test_json_output_is_strict_json_when_a_change_is_unbounded():
    """A metric that was 0 in the baseline changes by an unbounded ratio: null in JSON (no Infinity)."""
    base = [row(gflops=0.0)]
    cmp = compare_rows(base, [row(gflops=0.5)])
    (check,) = [c for c in cmp.checks if c.metric == "gflops"]
    assert check.change == float("inf") and check.verdict == "regression"
    text = render_comparison(cmp, "json")
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    (out,) = [c for c in doc["checks"] if c["metric"] == "gflops"]
    assert out["change"] is None and out["new"] == 0.5
