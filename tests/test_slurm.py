"""Against a real SLURM (the one-node cluster of tests/cluster/local-slurm.sh, started by .ci/run
and ``nox -s slurm``): submit, status, collect, scancel and resume. Skipped where ``sinfo``
finds no cluster."""

import json
import os
import shutil
import subprocess
import time
from functools import cache
from pathlib import Path

import pytest

from pacabench.cli import main
from pacabench.runs.runner import run_case
from pacabench.spec.suite import load_suite
from tests.test_executors import FLOPS_SUITE


@cache
def _cluster_up() -> bool:
    if os.environ.get("PACABENCH_SLURM") == "0" or shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "up" in out.stdout


# slow: real jobs through a scheduler. The cluster is looked for only when a test here runs (an
# installed `sinfo` with no controller takes ~10 s to give up: not at collection, not when deselected)
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _needs_cluster():
    if not _cluster_up():
        pytest.skip("no SLURM cluster (tests/cluster/local-slurm.sh start)")


SUITE = FLOPS_SUITE.replace("name: exflops", "name: slurmsmoke")  # the executor tests' FLOPs-only suite


def _rows(run: Path) -> dict[str, dict]:
    lines = (run / "rows.jsonl").read_text().splitlines()
    return {d["case_id"]: d for d in map(json.loads, filter(str.strip, lines))}


def _wait_done(run: Path, capsys, timeout_s: float = 600) -> str:
    """Poll ``pacabench status`` until nothing is pending or running; its last summary line."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        capsys.readouterr()
        assert main(["status", str(run)]) == 0
        last = capsys.readouterr().out.strip().splitlines()[-1]
        if "pending" not in last and "running" not in last:
            return last
        time.sleep(2)
    raise AssertionError(f"still not done after {timeout_s} s: {last}")


def _array_task(run: Path, index: int) -> str:
    return json.loads((run / "jobs.json").read_text())["submissions"][index]["job_id"]


def test_detached_array_status_collect_scancel_and_resume(tmp_path, capsys, monkeypatch):
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE)
    results = tmp_path / "r"
    monkeypatch.setenv("PACABENCH_JOB_DELAY_S", "3")  # keeps the later tasks pending a while
    argv = ["run", str(suite), "--results-dir", str(results), "--run-id", "a", "--no-report"]
    assert main([*argv, "--executor", "slurm", "--parallel", "1", "--detach"]) == 0
    run = results / "slurmsmoke" / "a"
    cancelled = _array_task(run, 2)
    assert cancelled.endswith("_2")  # one job array, task 2 = the third case
    subprocess.run(["scancel", cancelled], check=True, timeout=30)
    # --detach returned without holding the run's lock: collect can take it while jobs run
    assert main(["collect", str(run)]) == 0

    summary = _wait_done(run, capsys)
    assert summary == "3 cases: 2 done, 1 failed"
    assert main(["collect", str(run)]) == 0
    assert main(["collect", str(run)]) == 0  # idempotent
    rows = _rows(run)
    cases, _ = load_suite(suite).expand()
    assert list(rows) == [str(c.key) for c in cases]  # suite order
    bad = rows[str(cases[2].key)]
    assert bad["status"] == "error" and "cancel" in bad["error"].lower()
    assert bad["slurm_job_id"] == cancelled
    for i, case in enumerate(cases[:2]):
        row, ref = rows[str(case.key)], run_case(case)
        assert (row["params"], row["gflops"]) == (ref.params, ref.gflops)
        assert row["slurm_job_id"] == _array_task(run, i) and row["slurm_array_index"] == i
        assert (
            row["executor"] == "slurm" and row["code_commit"] == (run / "code" / "COMMIT").read_text().strip()
        )

    monkeypatch.setenv("PACABENCH_JOB_DELAY_S", "0")
    assert main([*argv, "--executor", "slurm", "--resume-from", str(run)]) == 0  # attached: waits
    subs = json.loads((run / "jobs.json").read_text())["submissions"]
    assert len(subs) == 4 and subs[3]["stem"] == cases[2].key.file_stem()  # only the failed case
    rows = _rows(run)
    assert all(r["status"] == "ok" for r in rows.values())
    ref = run_case(cases[2])
    assert (rows[str(cases[2].key)]["params"], rows[str(cases[2].key)]["gflops"]) == (ref.params, ref.gflops)
