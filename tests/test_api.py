"""The Python API (``pacabench.run``, ``load``, ``compare``, ``report``): the same run folder as
``pacabench run``, and the same outputs as the CLI for the same inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import pacabench
from pacabench.analysis.compare import render_comparison
from pacabench.cli import main
from pacabench.errors import UsageError
from pacabench.runs.executors.kinds import EXECUTOR_CLASSES, Slurm, executor_for
from pacabench.runs.results import ROW_FIELDS, read_rows
from pacabench.spec.executor import EXECUTORS, ExecutorConfig
from pacabench.spec.suite import load_suite
from tests.test_golden import ROWS, _changed_rows

REPO = Path(__file__).resolve().parent.parent

SUITE = """\
name: apitiny
models: [pvt_v2_b0]
resolutions: [64, [64, 96]]
device: cpu
metrics: [params, flops]
"""
PVT_V2_B0_PARAMS = 3_666_760  # timm's pvt_v2_b0 (the authors' 3.7 M)


def _suite(tmp_path: Path, text: str = SUITE) -> Path:
    p = tmp_path / "apitiny.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def _cli_run(suite: Path, results: Path, *extra: str) -> int:
    return main(["run", str(suite), "--results-dir", str(results), "--no-progress", "--no-report", *extra])


def test_import_pacabench_loads_no_torch_timm_or_pandas():
    code = (
        "import sys, pacabench\n"
        "assert not {'torch', 'timm', 'pandas'} & set(sys.modules), sorted(sys.modules)\n"
        "assert {'run', 'load', 'compare', 'report', 'Run'} <= set(dir(pacabench)) & set(pacabench.__all__)\n"
        "assert callable(pacabench.run) and 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(AttributeError):
        pacabench.no_such_name  # noqa: B018


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The tiny suite run once from Python (with every progress event recorded) and once by the CLI."""
    tmp = tmp_path_factory.mktemp("api")
    suite = _suite(tmp)
    events: list[tuple[str, object]] = []
    r = pacabench.run(
        suite, results_dir=tmp / "py", run_id="a", on_progress=lambda e, v: events.append((e, v))
    )
    assert _cli_run(suite, tmp / "cli", "--run-id", "a") == 0
    return suite, r, tmp / "cli" / "apitiny" / "a", events


def test_run_writes_the_folder_the_cli_writes(both):
    suite, r, cli, _ = both
    assert r.path == suite.parent / "py" / "apitiny" / "a"
    names = sorted(p.name for p in r.path.iterdir())
    assert names == sorted(p.name for p in cli.iterdir())
    assert names == [".lock", "environment.json", "rows.jsonl", "suite.json", "suite.yaml"]
    record = json.loads((r.path / "suite.json").read_text())
    assert record == json.loads((cli / "suite.json").read_text())
    assert record == {"name": "apitiny", "digest": load_suite(suite).digest(), "metrics": ["params", "flops"],
                      "file": "suite.yaml"}  # fmt: skip
    assert (r.path / "suite.yaml").read_text() == SUITE
    env_py, env_cli = (json.loads((p / "environment.json").read_text()) for p in (r.path, cli))
    assert env_py.keys() == env_cli.keys() and env_py["torch"] == env_cli["torch"]


def test_run_rows_and_frame(both):
    _, r, cli, _ = both
    rows = r.rows()
    assert [x["resolution"] for x in rows] == [[64, 64], [64, 96]]
    assert all(x["status"] == "ok" and x["params"] == PVT_V2_B0_PARAMS for x in rows)
    assert rows[1]["gflops"] > rows[0]["gflops"] > 0  # 1.5× the tokens
    cli_rows = read_rows(cli / "rows.jsonl")
    assert [(x["case_id"], x["params"], x["gflops"]) for x in rows] == [
        (x["case_id"], x["params"], x["gflops"]) for x in cli_rows
    ]
    df = r.frame()
    assert df.shape == (2, len(ROW_FIELDS) + 1)  # every row column, and res
    assert list(df["res"]) == ["64x64", "64x96"] and list(df["gflops"]) == [x["gflops"] for x in rows]
    assert r.summary.counts() == {"ok": 2} and r.summary.skipped_done == 0 and not r.detached


def test_progress_events_in_order(both):
    _, r, _, events = both
    kinds = [e for e, _ in events]
    assert kinds == ["folder", "start", "case", "row", "case", "row"]
    assert events[0][1] == r.path and [c.resolution for c in events[1][1]] == [(64, 64), (64, 96)]
    assert [v for e, v in events if e == "row"] == r.rows()


def test_resume_of_a_python_run_checks_the_suite_digest(tmp_path, capsys):
    suite = _suite(tmp_path, SUITE.replace("[params, flops]", "[params]"))
    r = pacabench.run(suite, results_dir=tmp_path / "res", run_id="r")
    suite.write_text(SUITE, encoding="utf-8")  # flops added since the run began
    capsys.readouterr()
    assert _cli_run(suite, tmp_path / "res", "--resume-from", str(r.path)) == 2
    assert "the suite changed since this run began" in capsys.readouterr().err
    with pytest.raises(UsageError, match="the suite changed"):
        pacabench.run(suite, resume_from=r.path)
    assert _cli_run(suite, tmp_path / "res", "--resume-from", str(r.path), "--allow-changed-suite") == 0
    assert (r.path / "suite.2.yaml").read_text() == SUITE
    rows = r.rows()
    assert len(rows) == 2 and all(x["gflops"] > 0 and x["params"] == PVT_V2_B0_PARAMS for x in rows)
    again = pacabench.run(suite, results_dir=tmp_path / "res", resume=True)  # the latest run, now current
    assert again.path == r.path and again.summary.skipped_done == 2 and again.summary.rows == []


def test_an_interrupted_python_run_keeps_its_rows_and_resumes(tmp_path):
    suite = _suite(tmp_path)

    class StopAfterOneRow:
        def on_row(self, row):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pacabench.run(suite, results_dir=tmp_path / "res", run_id="i", on_progress=StopAfterOneRow())
    path = tmp_path / "res" / "apitiny" / "i"
    assert [x["resolution"] for x in pacabench.Run(path).rows()] == [[64, 64]]
    st = pacabench.status(path)  # an in-process run's status: from its rows and its suite record
    assert [s for _, s, _ in st.cases] == ["done", "missing"] and st.counts == {"done": 1, "missing": 1}
    r = pacabench.run(suite, results_dir=tmp_path / "res", resume_from=path)
    assert [x["resolution"] for x in r.rows()] == [[64, 64], [64, 96]] and r.summary.skipped_done == 1
    assert pacabench.status(path).counts == {"done": 2}


def test_debug_executor_from_python(tmp_path):
    events: list[str] = []
    r = pacabench.run(
        _suite(tmp_path),
        results_dir=tmp_path / "res",
        executor="debug",
        on_progress=lambda e, v: events.append(e),
    )
    assert r.summary is None and len(r.submissions) == 2 and not r.detached
    assert [e for e in events if e in ("start", "submit", "row")] == ["submit", "row", "row"]
    rows = r.rows()
    assert [x["executor"] for x in rows] == ["debug", "debug"] and all(
        x["params"] == PVT_V2_B0_PARAMS for x in rows
    )
    assert pacabench.status(r).counts == {"done": 2}
    assert pacabench.collect(r.path) == []  # already merged
    with pytest.raises(UsageError, match="--detach needs --executor slurm, not debug"):
        pacabench.run(_suite(tmp_path), results_dir=tmp_path / "res", executor="debug", detach=True)


# --- load / compare / report: what the CLI prints for the same inputs -----------------------------


@pytest.fixture
def golden_run(tmp_path, monkeypatch) -> Path:
    """tests/golden/rows.jsonl as a run folder ``run`` in the current directory (as test_golden)."""
    monkeypatch.chdir(tmp_path)
    p = Path("run")
    p.mkdir()
    (p / "rows.jsonl").write_text(ROWS.read_text(encoding="utf-8"), encoding="utf-8")
    return p


def test_load_a_folder_a_file_or_rows(golden_run):
    rows = read_rows(ROWS)
    df = pacabench.load(golden_run)
    assert len(df) == len(rows) and list(df["model"]) == [r["model"] for r in rows]
    assert df.equals(pacabench.load(ROWS)) and df.equals(pacabench.load(rows))
    with pytest.raises(UsageError, match="no rows at"):
        pacabench.load(golden_run / "nope")
    with pytest.raises(UsageError, match="row 1: no model name"):
        pacabench.load([rows[0], {"resolution": [64, 64]}])


@pytest.mark.parametrize(
    "kw,args",
    [
        ({}, []),
        ({"reference": "swin_tiny_patch4_window7_224"}, ["--reference", "swin_tiny_patch4_window7_224"]),
        ({"format": "csv"}, ["--format", "csv"]),
        ({"format": "latex"}, ["--format", "latex"]),
        ({"paper": True}, ["--paper"]),
    ],
)
def test_report_equals_the_cli(golden_run, capsys, kw, args):
    text = pacabench.report(golden_run, **kw)
    assert main(["report", str(golden_run), *args]) == 0
    end = "\n" if kw.get("format", "markdown") == "markdown" and not kw.get("paper") else ""
    assert text + end == capsys.readouterr().out
    if not kw:
        assert text + "\n" == (ROWS.parent / "report.md").read_text(encoding="utf-8")  # the frozen output


def test_report_to_a_csv_folder_and_refusals(golden_run, tmp_path):
    pacabench.report(golden_run, format="csv", output=tmp_path / "csv")
    assert main(["report", str(golden_run), "--format", "csv", "-o", str(tmp_path / "csv_cli")]) == 0
    for p in sorted((tmp_path / "csv_cli").iterdir()):
        assert (tmp_path / "csv" / p.name).read_text() == p.read_text()
    with pytest.raises(UsageError, match="reference model 'nope' is not in run"):
        pacabench.report(golden_run, reference="nope")
    with pytest.raises(UsageError, match="unknown --format 'pdf'"):
        pacabench.report(golden_run, format="pdf")


@pytest.mark.parametrize("fmt", ["markdown", "json"])
def test_compare_equals_the_cli(tmp_path, capsys, fmt):
    new = tmp_path / "new.jsonl"
    new.write_text("".join(json.dumps(r) + "\n" for r in _changed_rows()), encoding="utf-8")
    cmp = pacabench.compare(ROWS, new, fail_on_missing=False)
    assert cmp.exit_code == 1 and {c.metric for c in cmp.regressions} >= {"gflops", "status"}
    assert main(["compare", str(ROWS), str(new), "--all", "--format", fmt, "--allow-missing"]) == 1
    assert render_comparison(cmp, fmt, show_all=True) == capsys.readouterr().out
    # rows given as data: the same verdicts under a default name
    from_rows = pacabench.compare(read_rows(ROWS), _changed_rows(), fail_on_missing=False)
    assert from_rows.run == "run 1" and [c.verdict for c in from_rows.checks] == [
        c.verdict for c in cmp.checks
    ]


def test_compare_options_as_python_values(tmp_path):
    rows = read_rows(ROWS)
    slower = [dict(r) for r in rows]
    slower[1]["latency_ms_median"] *= 1.3  # within a 0.5 tolerance, beyond a 0.2 one
    slower[1].pop("latency_ms_samples", None)
    strict = pacabench.compare(rows, slower, metrics="latency", tolerances={"latency": 0.2})
    loose = pacabench.compare(rows, slower, metrics=["latency"], tolerances="latency=0.5")
    assert [c.metric for c in strict.regressions] == ["latency_ms_median"] and loose.regressions == []
    with pytest.raises(UsageError, match="no run to compare under"):
        pacabench.compare(ROWS, results_dir=tmp_path)


# --- executors: one class per kind ----------------------------------------------------------------


def test_one_executor_class_per_kind_and_overrides():
    assert sorted(EXECUTOR_CLASSES) == sorted(EXECUTORS)
    base = ExecutorConfig(kind="slurm", partition="gpu", array_parallelism=None)
    ex = executor_for(base, {"kind": "local", "array_parallelism": 3})
    assert type(ex).__name__ == "Local" and ex.parallelism() == 3 and ex.config.partition == "gpu"
    assert executor_for(base).parallelism() == 256 and executor_for(base, "local").parallelism() == 1
    with pytest.raises(UsageError, match="--executor must be one of"):
        executor_for(base, "cloud")
    with pytest.raises(UsageError, match="unknown executor key 'partiton'"):
        executor_for(base, {"partiton": "gpu"})


def test_slurm_options_reach_sbatch_through_submitits_generic_names(tmp_path, monkeypatch):
    """submitit's own table maps timeout_min, mem_gb, tasks_per_node to sbatch's flags."""
    from submitit.slurm.slurm import _make_sbatch_string

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    cfg = ExecutorConfig(
        kind="slurm", partition="gpu", gpus_per_node=2, cpus_per_task=8, mem_gb=1.5, timeout_min=20.4,
        array_parallelism=4, exclusive=True, account="acc", qos="high", constraint="a100", setup=("module load cuda",),
    )  # fmt: skip
    params = Slurm(cfg).make(tmp_path / "submitit")._executor.parameters
    script = _make_sbatch_string(command="run", folder=tmp_path, map_count=6, **params)
    for line in (
        "--time=20", "--mem=1536MB", "--gpus-per-node=2", "--ntasks-per-node=2", "--cpus-per-task=8",
        "--partition=gpu", "--exclusive", "--account=acc", "--qos=high", "--constraint=a100",
        "--array=0-5%4", "--signal=USR2@90",
    ):  # fmt: skip
        assert f"#SBATCH {line}\n" in script, line
    assert "module load cuda" in script
