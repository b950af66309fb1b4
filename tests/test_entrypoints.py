"""The light entry points: ``pacabench --help``, ``python -m pacabench --help``, ``status``,
``compare``, ``report`` and ``baseline`` run without importing torch, timm or torchvision (each in
a fresh interpreter), and still do their job; ``eval`` still loads our models up front."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pacabench.__main__ import needs_models
from pacabench.runs.executors.jobstate import Submission, record_submissions
from pacabench.runs.executors.rowfiles import row_file, write_row_file
from pacabench.spec.suite import parse_suite

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_ROWS = ROOT / "tests" / "golden" / "rows.jsonl"
HEAVY = ("torch", "timm", "torchvision")
SUITE = (
    "name: light\nmodels: [pvt_v2_b0]\nresolutions: [64, [64, 96]]\ndevice: cpu\nmetrics: [params, flops]\n"
    "executor: {kind: local}\n"
)


def _env() -> dict[str, str]:
    """This checkout first on the path (not an installed copy), no environment probe."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "PACABENCH_COLLECT_ENV": "0", "MPLBACKEND": "Agg"}


def _main_without_torch(argv: list[str], stdin: str = "") -> subprocess.CompletedProcess:
    """``pacabench ARGV`` in a fresh interpreter, which fails if a heavy module got imported."""
    code = (
        "import sys\nfrom pacabench.cli import main\n"
        f"rc = main({argv!r})\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, f'imported {heavy}'\n"
        "sys.exit(rc)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], input=stdin, capture_output=True, text=True, env=_env(), cwd=ROOT
    )


def _imported(importtime_stderr: str) -> set[str]:
    """Module names in ``-X importtime`` output ("import time: self | cumulative | name")."""
    return {
        ln.rsplit("|", 1)[1].strip() for ln in importtime_stderr.splitlines() if ln.startswith("import time:")
    }


def _run_folder(tmp_path: Path) -> Path:
    """A submitted run of SUITE's two cases: the first has its row file, the second's job runs
    (its job id is this test's process, alive)."""
    run = tmp_path / "results" / "light" / "r1"
    (run / "rows").mkdir(parents=True)
    (run / "suite.yaml").write_text(SUITE)
    cases = parse_suite(SUITE, "light.yaml").cases("cpu")
    subs = [
        Submission(
            c.key.file_stem(), c.to_dict(), str(os.getpid()), "local", str(tmp_path / "x.err"), time.time()
        )
        for c in cases
    ]
    record_submissions(run, subs)
    row = {**cases[0].to_dict(), "status": "ok", "job_start": 100.0, "job_end": 160.0}  # that case's row
    write_row_file(row_file(run, subs[0].stem), row)
    return run


def test_help():
    p = _main_without_torch(["--help"])
    assert p.returncode == 0, p.stderr
    assert "Benchmark PaCa-ViT, Swin, PVT v1, PVTv2, any timm model" in p.stdout and "status" in p.stdout


def test_python_m_help():
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pacabench", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Usage: python -m pacabench" in p.stdout or "Usage: pacabench" in p.stdout
    imported = _imported(p.stderr)
    assert "pacabench.cli" in imported  # the importtime lines were read
    assert not imported & set(HEAVY)


def test_status(tmp_path):
    run = _run_folder(tmp_path)
    p = _main_without_torch(["status", str(run)])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["running", "pvt_v2_b0", "64x96", "b1", "fp32"]
    assert lines[-1] == "2 cases: 1 done, 1 running; eta 1.0 min"  # one 60 s case left, one at a time


def test_report(tmp_path):
    shutil.copy(GOLDEN_ROWS, tmp_path / "rows.jsonl")
    p = _main_without_torch(["report", str(tmp_path)])
    assert p.returncode == 0, p.stderr
    golden = (ROOT / "tests" / "golden" / "report.md").read_text(encoding="utf-8").splitlines()
    assert p.stdout.splitlines()[1:] == golden[1:]  # the first line is the title: the folder's path


def test_compare(tmp_path):
    shutil.copy(GOLDEN_ROWS, tmp_path / "rows.jsonl")
    p = _main_without_torch(["compare", str(GOLDEN_ROWS), str(tmp_path)])
    assert p.returncode == 0, p.stderr
    assert "**OK**: 11 cases compared" in p.stdout


def test_baseline_and_suite_import(tmp_path):
    shutil.copy(GOLDEN_ROWS, tmp_path / "rows.jsonl")
    suite = tmp_path / "smoke.yaml"
    suite.write_text((ROOT / "suites" / "smoke.yaml").read_text(encoding="utf-8"))
    out = tmp_path / "smoke.jsonl"
    p = _main_without_torch(
        ["baseline", "update", str(suite), "--run", str(tmp_path), "--yes", "-o", str(out)]
    )
    assert p.returncode == 0, p.stderr
    assert f"wrote {out} (9 rows from {tmp_path})" in p.stdout  # the 9 ok rows of 11
    assert len(out.read_text(encoding="utf-8").splitlines()) == 9
    h = _main_without_torch(["baseline", "--help"])
    assert h.returncode == 0 and "update" in h.stdout, h.stderr
    code = (
        f"import sys, pacabench.spec.suite\nprint([m for m in {HEAVY + ('pandas',)!r} if m in sys.modules])"
    )
    imp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), cwd=ROOT)
    assert imp.stdout.strip() == "[]", imp.stderr


def test_a_bad_suite_is_still_refused_by_a_light_command(tmp_path):
    """Model names are checked against the torch-free catalogue: same file:line error, exit 2."""
    suite = tmp_path / "smoke.yaml"
    suite.write_text("name: smoke\nmodels:\n  - pvt_v2_b0\n  - swin_tiny\n")
    p = _main_without_torch(["baseline", "update", str(suite), "--run", str(tmp_path)])
    assert p.returncode == 2
    assert p.stderr.strip() == (
        f"pacabench: error: {suite}:4: unknown model 'swin_tiny' (did you mean 'swin_tiny_patch4_window7_224'?)"
    )


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["eval", "imagenet", "--model", "x", "--data", "d"], True),
        (["eval", "imagenet", "--help"], False),
        (["eval", "-h"], False),
        (["status", "results/x/r1"], False),
        (["--help"], False),
        ([], False),
    ],
)
def test_only_eval_loads_the_models_up_front(argv, expected):
    assert needs_models(argv) is expected


@pytest.mark.slow  # a fresh interpreter that imports torch and the models (~8 s)
def test_python_m_eval_registers_our_models(tmp_path):
    """torchrun runs ``python -m pacabench eval ...`` on every rank: the models are imported
    (registered with timm) before the command runs, even when it then refuses its input."""
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pacabench", "eval", "imagenet", "--model", "pvt_v2_b0",
         "--data", str(tmp_path / "missing")],
        capture_output=True, text=True, env=_env(), cwd=ROOT,
    )  # fmt: skip
    assert p.returncode == 2
    assert "ImageNet folder not found" in p.stderr
    assert "pacabench.models" in _imported(p.stderr)  # (it imports our families' modules with importlib)


def test_catalogue_lists_what_the_model_modules_register():
    """The torch-free catalogue names exactly the models our modules register with timm."""
    import timm

    from pacabench.models import FAMILIES, paca_vit, pvt

    assert FAMILIES["paca_vit"].models == tuple(paca_vit.MODEL_NAMES)
    assert FAMILIES["pvt_v1"].models == tuple(pvt.MODEL_NAMES)
    for fam in FAMILIES.values():
        assert all(timm.is_model(n) for n in fam.models), fam.name
