"""benchmarks/gpu/run.sh --dry-run: the GPU proof script's every stage, on the CPU at tiny sizes,
so the script a GPU session runs cannot rot between the sessions that are lent one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pacabench.spec.suite import load_suite

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu" / "run.sh"


def test_the_gpu_suite_is_the_planned_grid():
    """512–2048², batch 1/8 (+64 at 512²), fp32/bf16, channels_last, PaCa/Swin/PVT/PVTv2 T and S."""
    suite = load_suite(REPO / "suites" / "high_resolution.yaml")
    cases = suite.cases("cuda")
    grid = {(c.model, c.resolution[0], c.batch_size, c.dtype) for c in cases}
    assert len(grid) == len(cases) == 8 * 4 * 2 * 2 + 8 * 2
    assert {c.resolution[0] for c in cases} == {512, 1024, 1536, 2048}
    assert {c.batch_size for c in cases} == {1, 8, 64}
    assert {c.resolution[0] for c in cases if c.batch_size == 64} == {512}
    assert all(c.channels_last and c.device == "cuda" and not c.compile for c in cases)
    assert {c.dtype for c in cases} == {"fp32", "bf16"}


@pytest.mark.slow
def test_dry_run_runs_every_stage(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, GPU_RUN_BUDGET_S="600")
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", str(out)], capture_output=True, text=True, timeout=900, env=env
    )
    log = (out / "run.log").read_text()
    assert proc.returncode == 0, log[-4000:]
    assert "failed stages: none" in log
    assert sorted(p.name for p in out.iterdir()) == [
        "gpu-results.tar.gz", "pytest-cuda.txt", "report.md", "run.log", "summary.md",
    ]  # fmt: skip
    with tarfile.open(out / "gpu-results.tar.gz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    (pack,) = (tmp_path / "x").iterdir()
    rows = [json.loads(ln) for ln in (pack / "run" / "rows.jsonl").read_text().splitlines()]
    # the dry suite: 8 models at 64², batch 1, plus the batch-64 entries at batch 2, fp32, CPU
    assert len(rows) == 16 and all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    assert {r["batch_size"] for r in rows} == {1, 2} and {r["device"] for r in rows} == {"cpu"}
    assert all(r["channels_last"] and r["threads"] == 1 for r in rows)
    assert all(len(r["latency_ms_samples"]) == r["latency_iters"] >= 2 for r in rows)
    for r in rows:  # the raw samples are the data the statistics come from
        s = sorted(r["latency_ms_samples"])
        assert r["latency_ms_min"] == pytest.approx(s[0], abs=1e-3)
    for f in (
        "report.md",
        "report.html",
        "summary.md",
        "pytest-cuda.txt",
        "env/packages.txt",
        "csv/rows.csv",
    ):
        assert (pack / f).is_file(), f
    assert list((pack / "plots").glob("*.png"))
    summary = (pack / "summary.md").read_text()
    assert re.search(
        r"PaCa-T ÷ Swin-T.*\n(.*\n)*\| b1 fp32 \| \d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\] \|", summary
    )
    assert "Peak memory at 64²" in summary
    # no CUDA here: the CUDA tests were collected and skipped, none failed
    assert re.search(r"\b\d+ skipped\b", (pack / "pytest-cuda.txt").read_text())
    # the latency modes stage: the modes suite under eager, cuda_graph (skipped on a CPU) and compiled
    runs = {p.name.rsplit("-", 1)[-1]: p for p in (pack / "modes" / "gpu_modes").iterdir()}
    assert set(runs) == {"eager", "cuda_graph", "compiled"}  # run ids <date>-<mode>
    modes_rows = {
        k: [json.loads(ln) for ln in (p / "rows.jsonl").read_text().splitlines()] for k, p in runs.items()
    }
    assert [r["status"] for r in modes_rows["eager"]] == ["ok"] * 4
    assert {(r["status"], r["error"]) for r in modes_rows["cuda_graph"]} == {
        ("skipped", "cuda_graph needs a CUDA device")
    }
    assert [(r["status"], r["latency_mode"]) for r in modes_rows["compiled"]] == [("ok", "compiled")]
    assert "**Latency modes**" in summary and "| PaCa-T | 64² | 1 |" in summary
