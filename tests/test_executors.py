"""Executors on submitit: the ``executor:`` block, DebugExecutor and LocalExecutor runs, collect,
status and resume (pacabench.runs.executors). The real-SLURM tests are in test_slurm.py."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pacabench.cli import main
from pacabench.runs.runner import run_case
from pacabench.spec.executor import ExecutorConfig
from pacabench.spec.suite import SuiteError, load_suite, parse_suite
from tests.test_reliability_run import _children

REPO = Path(__file__).resolve().parent.parent

FLOPS_SUITE = """\
name: exflops
models: [pvt_v2_b0]
resolutions: [64, [64, 96], [96, 64]]
device: cpu
metrics: [params, flops]
"""

TIMED_SUITE = """\
name: extimed
models: [pvt_v2_b0]
resolutions: [64, [64, 96]]
device: cpu
metrics: [params, latency]
latency: {warmup: 0, iters: 3, min_iters: 1}
"""

ONE_CASE = """\
name: exone
models: [pvt_v2_b0]
resolutions: [64]
device: cpu
metrics: [params]
"""


def _suite(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "rows.jsonl").read_text().splitlines() if line.strip()]


def _run(suite, tmp_path, run_id, *extra) -> Path:
    argv = ["run", str(suite), "--results-dir", str(tmp_path / "r"), "--run-id", run_id, "--no-report"]
    assert main([*argv, "--no-progress", *extra]) == 0
    return tmp_path / "r" / load_suite(suite).name / run_id


# --- the executor: block -------------------------------------------------------------------


def test_executor_block_parsed_and_not_in_digest():
    text = FLOPS_SUITE + (
        "executor:\n  kind: slurm\n  partition: gpu\n  gpus_per_node: 1\n  mem_gb: 32\n"
        "  timeout_min: 20\n  array_parallelism: 4\n  exclusive: true\n  setup: [module load cuda]\n"
    )
    s = parse_suite(text, "x.yaml")
    assert s.executor == ExecutorConfig(
        kind="slurm", partition="gpu", gpus_per_node=1, mem_gb=32, timeout_min=20,
        array_parallelism=4, exclusive=True, setup=("module load cuda",),
    )  # fmt: skip
    # how a suite runs is not what it measures: a run resumes under another executor block
    assert s.digest() == parse_suite(FLOPS_SUITE, "x.yaml").digest()
    assert parse_suite(FLOPS_SUITE, "x.yaml").executor.kind == "inprocess"


@pytest.mark.parametrize(
    "block,line,fragment",
    [
        ("executor:\n  partiton: gpu\n", 7, "did you mean 'partition'"),
        ("executor:\n  kind: gpu\n", 7, "executor.kind must be one of inprocess, local, slurm"),
        (
            "executor:\n  partition: gpu\n  gpus_per_node: 0\n",
            8,
            "executor.gpus_per_node must be a positive int",
        ),
        ("executor: [slurm]\n", 6, "executor must be a mapping"),
    ],
)
def test_executor_block_errors_name_file_and_line(block, line, fragment):
    with pytest.raises(SuiteError) as e:
        parse_suite(FLOPS_SUITE + block, "x.yaml")
    assert str(e.value).startswith(f"x.yaml:{line}: ")
    assert fragment in str(e.value)


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (["--executor", "cloud"], "--executor must be one of"),
        (["--executor", "local", "--detach"], "--detach needs --executor slurm"),
        (["--executor", "local", "--parallel", "0"], "--parallel must be a positive int"),
    ],
)
def test_bad_executor_options_are_one_line(tmp_path, capsys, extra, fragment):
    suite = _suite(tmp_path, ONE_CASE)
    assert main(["run", str(suite), "--results-dir", str(tmp_path / "r"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pacabench: error: ") and fragment in err[0]
    assert not (tmp_path / "r").exists()  # refused before a run folder is made


def test_slurm_without_sbatch_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch there
    suite = _suite(tmp_path, ONE_CASE + "executor: {kind: slurm, partition: gpu}\n")
    assert main(["run", str(suite), "--results-dir", str(tmp_path / "r")]) == 2
    assert "no sbatch on PATH" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_status_and_collect_refuse_a_folder_without_jobs(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert "no jobs.json" in capsys.readouterr().err
    assert main(["collect", str(tmp_path / "nope")]) == 2
    # an in-process run: nothing to collect (its status: tests/test_api.py)
    (tmp_path / "rows.jsonl").write_text("")
    assert main(["collect", str(tmp_path)]) == 2
    assert "measured in-process" in capsys.readouterr().err


# --- DebugExecutor: the job machinery in this process ----------------------------------------


def test_debug_executor_rows_equal_inprocess_and_collect_is_idempotent(tmp_path, capsys):
    suite = _suite(tmp_path, FLOPS_SUITE)
    run = _run(suite, tmp_path, "dbg", "--executor", "debug")
    rows = _rows(run)
    cases, _ = load_suite(suite).expand()
    assert [r["case_id"] for r in rows] == [str(c.key) for c in cases]  # suite order
    for case, row in zip(cases, rows):
        ref = run_case(case)  # the in-process measurement
        assert (row["params"], row["gflops"]) == (ref.params, ref.gflops)
        assert row["executor"] == "debug" and row["status"] == "ok"
        assert row["job_start"] <= row["job_end"]
        assert json.loads((run / "rows" / f"{case.key.file_stem()}.json").read_text()) == row
    before = (run / "rows.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["collect", str(run)]) == 0
    assert main(["collect", str(run)]) == 0
    assert "0 row(s) merged" in capsys.readouterr().err
    assert (run / "rows.jsonl").read_bytes() == before
    assert main(["status", str(run)]) == 0
    assert "3 cases: 3 done" in capsys.readouterr().out


def test_resume_submits_only_missing_and_failed_cases(tmp_path):
    suite = _suite(tmp_path, FLOPS_SUITE)
    run = _run(suite, tmp_path, "res", "--executor", "debug")
    rows = _rows(run)
    stems = [s["stem"] for s in json.loads((run / "jobs.json").read_text())["submissions"]]
    # case 0: lost (no row, no row file); case 2: failed (an error row); case 1: done
    (run / "rows" / f"{stems[0]}.json").unlink()
    rows[2] |= {"status": "error", "error": "job cancelled (scancel)", "gflops": None}
    (run / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[1:]))
    (run / "rows" / f"{stems[2]}.json").write_text(json.dumps(rows[2]))
    _run(suite, tmp_path, "res", "--executor", "debug", "--resume-from", str(run))
    subs = json.loads((run / "jobs.json").read_text())["submissions"]
    assert [s["stem"] for s in subs[3:]] == [stems[0], stems[2]]  # only those two resubmitted
    after = {r["case_id"]: r for r in _rows(run)}
    assert len(after) == 3 and all(r["status"] == "ok" and r["gflops"] for r in after.values())
    replaced = [json.loads(x) for x in (run / "rows.replaced.jsonl").read_text().splitlines()]
    # the failed row, and the row collect wrote for the lost job, are kept (nothing is lost)
    assert [r["error"] for r in replaced][1:] == ["job cancelled (scancel)"]
    assert replaced[0]["case_id"] == rows[0]["case_id"] and "ended without a row" in replaced[0]["error"]
    assert len(list((run / "rows" / "replaced").iterdir())) == 2  # their row files, set aside


# --- LocalExecutor: one process per case --------------------------------------------------------


@pytest.mark.slow
def test_local_timed_cases_never_overlap_and_import_the_snapshot(tmp_path):
    suite = _suite(tmp_path, TIMED_SUITE)
    run = _run(suite, tmp_path, "loc", "--executor", "local", "--parallel", "2")
    rows = _rows(run)
    assert [r["status"] for r in rows] == ["ok", "ok"] and all(r["latency_ms_median"] for r in rows)
    spans = sorted((r["job_start"], r["job_end"]) for r in rows)
    assert spans[0][1] <= spans[1][0]  # the second timed job began after the first ended
    commit = (run / "code" / "COMMIT").read_text().strip()
    assert commit and all(r["code_commit"] == commit for r in rows)  # imported from run/code
    assert all(r["executor"] == "local" and r["hostname"] for r in rows)


@pytest.mark.slow
def test_local_untimed_cases_do_run_in_parallel(tmp_path, monkeypatch):
    """The planted effect the test above relies on: without the timed-case rule, 2 jobs overlap."""
    monkeypatch.setenv("PACABENCH_JOB_DELAY_S", "4")
    suite = _suite(tmp_path, FLOPS_SUITE.replace("[64, [64, 96], [96, 64]]", "[64, [64, 96]]"))
    run = _run(suite, tmp_path, "par", "--executor", "local", "--parallel", "2")
    (a0, a1), (b0, b1) = sorted((r["job_start"], r["job_end"]) for r in _rows(run))
    assert b0 < a1  # overlapping


@pytest.mark.slow
def test_local_job_past_its_timeout_is_an_error_row(tmp_path, monkeypatch):
    monkeypatch.setenv("PACABENCH_JOB_DELAY_S", "120")
    suite = _suite(tmp_path, ONE_CASE)
    run = _run(suite, tmp_path, "to", "--executor", "local", "--timeout-min", "0.1")
    (row,) = _rows(run)
    assert row["status"] == "error" and "timed out" in row["error"]
    assert row["model"] == "pvt_v2_b0" and row["resolution"] == [64, 64] and row["executor"] == "local"


@pytest.mark.slow
def test_local_job_killed_with_sigkill_becomes_a_row(tmp_path):
    suite = _suite(tmp_path, ONE_CASE)
    env = dict(os.environ, PACABENCH_JOB_DELAY_S="120", PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "pacabench", "run", str(suite), "--results-dir", str(tmp_path / "r")]
    proc = subprocess.Popen([*argv, "--run-id", "k", "--executor", "local", "--no-report"], env=env)
    run = tmp_path / "r" / "exone" / "k"
    try:
        deadline, victims = time.time() + 120, []
        while not victims and time.time() < deadline:
            time.sleep(0.5)
            if (run / "jobs.json").exists():
                controller = int(json.loads((run / "jobs.json").read_text())["submissions"][0]["job_id"])
                victims = _children(controller)
        assert victims, "the job's process never appeared"
        for pid in victims:
            os.kill(pid, 9)
        assert proc.wait(timeout=180) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    (row,) = _rows(run)
    assert row["status"] == "error" and "ended without writing its row" in row["error"]


# --- job states without accounting (the scheduler's answers planted) ----------------------------


def _sub(tmp_path, job_id, log=None):
    from pacabench.runs.executors.jobstate import Submission

    cases, _ = load_suite(_suite(tmp_path, ONE_CASE)).expand()
    stderr = tmp_path / f"{job_id}.err"
    if log is not None:
        stderr.write_text(log)
    return Submission(cases[0].key.file_stem(), cases[0].to_dict(), job_id, "slurm", str(stderr), 0.0)


@pytest.mark.parametrize(
    "queue,log,state,status,fragment",
    [
        ({"7_0": ("PENDING", "JobArrayTaskLimit")}, None, "pending", None, "JobArrayTaskLimit"),
        ({"7_0": ("RUNNING", "None")}, None, "running", None, ""),
        ({"7_0": ("TIMEOUT", "None")}, None, "ended", "error", "SLURM TIMEOUT"),
        ({"7_0": ("OUT_OF_MEMORY", "None")}, None, "ended", "oom", "SLURM OUT_OF_MEMORY"),
        ({"7_0": ("CANCELLED", "None")}, None, "ended", "error", "SLURM CANCELLED"),
        # forgotten by slurmctld: the verdict SLURM wrote into the job's stderr
        ({}, "x\nslurmstepd: error: *** JOB 7 ON n1 CANCELLED AT 2026-01-01 DUE TO TIME LIMIT ***\n",
         "ended", "error", "timed out"),
        ({}, "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=7.0\n", "ended", "oom", "oom-kill"),
        ({}, "slurmstepd: error: *** JOB 7 ON n1 CANCELLED AT 2026-01-01 ***\n", "ended", "error", "scancel"),
        ({}, None, "ended", "error", "before it started"),
    ],
)  # fmt: skip
def test_slurm_states_from_squeue_then_the_log(tmp_path, monkeypatch, queue, log, state, status, fragment):
    from pacabench.runs.executors import collect, jobstate, kinds

    sub = _sub(tmp_path, "7_0", log)
    monkeypatch.setattr(jobstate, "_squeue", lambda ids: queue)
    js = kinds.job_states([sub])[sub.stem]
    assert (js.state, js.status) == (state, status) and fragment in js.reason
    if state == "ended":
        row = collect.failure_row(sub, js, "r1")
        assert (row["status"], row["slurm_job_id"], row["slurm_array_index"]) == (status, "7_0", 0)
        assert row["model"] == "pvt_v2_b0" and row["case_id"] == "cost|pvt_v2_b0|64x64|1|fp32|cpu|0|0"


@pytest.mark.slow
def test_local_eval_case_on_two_tasks_is_one_distributed_job(tmp_path):
    """``gpus_per_node: 2``: one job of two tasks (gloo on CPU, the torchrun code path); the
    reduced metrics equal the in-process evaluation's, and one row is written."""
    import timm
    import torch

    from tests.test_eval_imagenet import MODEL, NUM_CLASSES, make_imagefolder

    val = make_imagefolder(tmp_path / "val")
    torch.manual_seed(3)
    m = timm.create_model(MODEL, pretrained=False, num_classes=NUM_CLASSES).eval()
    with torch.no_grad():
        m.head.weight.mul_(50)
    torch.save(m.state_dict(), tmp_path / "w.pth")
    suite = _suite(
        tmp_path,
        f"name: accdist\nmodels: [{MODEL}]\ndevice: cpu\nmetrics: [imagenet]\n"
        f"eval:\n  imagenet: {{data: {val}, batch_size: 2, workers: 0, num_classes: {NUM_CLASSES}, "
        f"checkpoints: {{{MODEL}: {tmp_path / 'w.pth'}}}}}\n"
        "executor: {gpus_per_node: 2}\n",
    )
    run = _run(suite, tmp_path, "d", "--executor", "local")
    (row,) = _rows(run)
    assert row["status"] == "ok", row["error"]
    (case,) = load_suite(suite).expand()[0]
    ref = run_case(case)
    assert (row["top1"], row["top5"], row["num_images"]) == (ref.top1, ref.top5, ref.num_images) == (
        ref.top1, ref.top5, 9,
    )  # fmt: skip
    assert len(list((run / "rows").glob("*.json"))) == 1
    logs = sorted((run / "submitit").glob("*_log.out"))
    assert [f"rank {i} of 2" in p.read_text() for i, p in enumerate(logs)] == [True, True]
