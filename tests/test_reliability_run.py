"""Issue 11, data integrity: nothing lost, nothing mixed on run, resume, lock and compare."""

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pacabench.runs.runner as runner
from pacabench.analysis.compare import compare_rows
from pacabench.cli import main
from pacabench.runs.folder import RunDir
from pacabench.runs.results import read_rows
from pacabench.spec.suite import load_suite, parse_suite

ROOT = Path(__file__).resolve().parent.parent

SUITE = """\
name: rel
models: [pvt_v2_b0]
resolutions: [64, 96]
device: cpu
metrics: [params]
"""


def _suite(tmp_path, text=SUITE, name="rel.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _run(tmp_path, suite, *extra):
    return main(
        ["run", str(suite), "--results-dir", str(tmp_path / "res"), "--no-progress", "--no-report", *extra]
    )


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("pacabench: error:")]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------------ 1. torn tail
def test_torn_tail_is_set_aside_and_the_case_measured_again(tmp_path, capsys):
    suite = _suite(tmp_path)
    assert _run(tmp_path, suite, "--run-id", "r") == 0
    rd = RunDir(tmp_path / "res" / "rel" / "r")
    data = rd.rows_path.read_bytes()
    torn = data[:-40]  # the last row cut mid-write, no newline
    rd.rows_path.write_bytes(torn)
    tail = torn[torn.rfind(b"\n") + 1 :]
    capsys.readouterr()
    assert _run(tmp_path, suite, "--resume-from", str(rd.path)) == 0
    assert "torn last line" in capsys.readouterr().err
    rows = read_rows(rd.rows_path)
    assert [r["resolution"] for r in rows] == [[64, 64], [96, 96]] and all(r["status"] == "ok" for r in rows)
    assert rd.torn_path.read_bytes() == tail + b"\n"  # kept, never deleted
    # a second resume finds nothing torn and nothing to do
    assert _run(tmp_path, suite, "--resume-from", str(rd.path)) == 0
    assert len(read_rows(rd.rows_path)) == 2


def _limit_file_size(n_bytes):
    def pre():
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))

    return pre


@pytest.mark.slow  # a second process under a file-size limit (~8 s)
def test_write_error_ends_the_run_with_one_line_and_keeps_earlier_rows(tmp_path):
    suite = _suite(tmp_path)
    assert _run(tmp_path, suite, "--run-id", "probe") == 0
    probe = RunDir(tmp_path / "res" / "rel" / "probe")
    row_bytes = len(probe.rows_path.read_bytes()) // 2
    env_bytes = (probe.path / "environment.json").stat().st_size
    assert env_bytes < row_bytes * 1.5  # the folder's other files fit under the limit
    proc = subprocess.run(
        [sys.executable, "-m", "pacabench", "run", str(suite), "--results-dir", str(tmp_path / "res"),
         "--run-id", "full", "--no-progress", "--no-report"],
        capture_output=True, text=True, cwd=ROOT, preexec_fn=_limit_file_size(int(row_bytes * 1.5)),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "File too large" in line and "the 1 rows before are kept" in line
    rows = read_rows(tmp_path / "res" / "rel" / "full" / "rows.jsonl")
    assert len(rows) == 1 and rows[0]["resolution"] == [64, 64]
    assert (tmp_path / "res" / "rel" / "full" / "rows.jsonl").read_bytes().endswith(b"\n")


# ------------------------------------------------------------------- 2. checkpoint / kwargs in the key
def test_entries_differing_only_by_kwargs_or_checkpoint_resume_and_compare_apart(tmp_path):
    import torch

    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    torch.save({"x": torch.zeros(1)}, a)
    torch.save({"x": torch.ones(1)}, b)
    text = SUITE.replace(
        "models: [pvt_v2_b0]",
        "models:\n  - {name: pvt_v2_b0, kwargs: {drop_path_rate: 0.0}}\n  - {name: pvt_v2_b0, kwargs: {drop_path_rate: 0.1}}",
    ).replace("[64, 96]", "[64]")
    suite = parse_suite(text, str(tmp_path / "rel.yaml"))
    assert len(suite.cases()) == 2 and len({c.key for c in suite.cases()}) == 2
    rd = RunDir(tmp_path / "run")
    calls = []

    def dies_after_one(case):
        if calls:
            raise KeyboardInterrupt
        calls.append(case)
        return runner.run_case(case)

    with pytest.raises(KeyboardInterrupt):
        runner.run_suite(suite, rd, case_fn=dies_after_one)
    assert len(rd.rows()) == 1
    summary = runner.run_suite(suite, rd)  # resume measures the other entry
    assert summary.skipped_done == 1 and len(summary.rows) == 1
    rows = rd.rows()
    assert sorted(r["kwargs"]["drop_path_rate"] for r in rows) == [0.0, 0.1]
    # compare joins each with its own: drop the second from the run → exactly one missing
    cmp = compare_rows(rows, rows[:1], fail_on_missing=True)
    assert cmp.compared_cases == 1 and len(cmp.missing) == 1 and cmp.exit_code == 1
    # checkpoint-only difference: two keys as well (path and content hash)
    ck = parse_suite(
        SUITE.replace("models: [pvt_v2_b0]", f"models:\n  - {{name: pvt_v2_b0, checkpoint: {a}}}\n"
                      f"  - {{name: pvt_v2_b0, checkpoint: {b}}}").replace("[64, 96]", "[64]"),
        "ck.yaml",
    )  # fmt: skip
    keys = [c.key for c in ck.cases()]
    assert len(set(keys)) == 2 and keys[0].checkpoint_sha != keys[1].checkpoint_sha


# --------------------------------------------------------------------------- 3. suite edited
def test_resume_with_an_edited_suite_is_refused_then_allowed(tmp_path, capsys):
    suite = _suite(tmp_path)
    assert _run(tmp_path, suite, "--run-id", "r") == 0
    rd = RunDir(tmp_path / "res" / "rel" / "r")
    assert json.loads((rd.path / "suite.json").read_text())["metrics"] == ["params"]
    suite.write_text(SUITE.replace("[params]", "[params, flops]"), encoding="utf-8")
    capsys.readouterr()
    assert _run(tmp_path, suite, "--resume-from", str(rd.path)) == 2
    assert "the suite changed" in _one_error_line(capsys.readouterr().err)
    assert all(r["gflops"] is None for r in rd.rows())
    # another suite's run folder: refused whatever the flag
    other = _suite(tmp_path, SUITE.replace("name: rel", "name: other"), "other.yaml")
    assert _run(tmp_path, other, "--resume-from", str(rd.path), "--allow-changed-suite") == 2
    assert "is a run of suite 'rel'" in _one_error_line(capsys.readouterr().err)
    # allowed: the added metric is measured for the finished cases, one row per case
    assert _run(tmp_path, suite, "--resume-from", str(rd.path), "--allow-changed-suite") == 0
    rows = rd.rows()
    assert len(rows) == 2 and all(r["gflops"] > 0 and r["params"] > 3e6 for r in rows)
    assert (rd.path / "suite.2.yaml").read_text() == suite.read_text()
    assert (rd.path / "suite.yaml").read_text() == SUITE  # the old suite kept beside the new
    assert len(read_rows(rd.path / "rows.replaced.jsonl")) == 2  # superseded rows kept
    # now the run measures the new suite: a plain resume has nothing to do
    assert _run(tmp_path, suite, "--resume-from", str(rd.path)) == 0
    assert len(rd.rows()) == 2


# ------------------------------------------------------------------ 4. run ids and names
@pytest.mark.parametrize("run_id", ["../../x", "<absolute>", "a/b/c", "", ".", ".."])
def test_bad_run_id_is_refused(tmp_path, capsys, run_id):
    absolute = tmp_path / "elsewhere" / "abs-run"  # under tmp_path: nothing outside the test is checked
    run_id = str(absolute) if run_id == "<absolute>" else run_id
    suite = _suite(tmp_path)
    assert _run(tmp_path, suite, "--run-id", run_id) == 2
    assert "--run-id must be one name" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "x").exists() and not absolute.exists()
    assert not list((tmp_path / "res").rglob("rows.jsonl")) if (tmp_path / "res").exists() else True


def test_taken_run_id_is_said_and_results_dir_a_file_refused(tmp_path, capsys):
    suite = _suite(tmp_path, SUITE.replace("[64, 96]", "[64]"))
    assert _run(tmp_path, suite, "--run-id", "r") == 0
    capsys.readouterr()
    assert _run(tmp_path, suite, "--run-id", "r") == 0
    assert "run id 'r' is taken; writing to 'r-2'" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert main(["run", str(suite), "--results-dir", str(tmp_path / "afile"), "--no-progress"]) == 2
    assert "cannot create run folder" in _one_error_line(capsys.readouterr().err)


def test_baseline_name_cannot_leave_the_baselines_folder(tmp_path, capsys):
    assert main(["baseline", "update", "../../../tmp/x", "--results-dir", str(tmp_path), "--yes"]) == 2
    assert "the suite name must be one name" in _one_error_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------- 5. lock
def test_a_second_writer_of_a_run_folder_is_refused(tmp_path, capsys):
    suite = _suite(tmp_path, SUITE.replace("[64, 96]", "[64]"))
    assert _run(tmp_path, suite, "--run-id", "r") == 0
    rd = RunDir(tmp_path / "res" / "rel" / "r")
    rows = rd.rows_path.read_bytes()
    capsys.readouterr()
    with rd.lock():  # the first writer holds the folder
        assert _run(tmp_path, suite, "--resume-from", str(rd.path)) == 2
        assert "being written by another pacabench run" in _one_error_line(capsys.readouterr().err)
    assert rd.rows_path.read_bytes() == rows
    assert _run(tmp_path, suite, "--resume-from", str(rd.path)) == 0  # released afterwards


# --------------------------------------------------------------------- 6. duplicates, max cases
def test_duplicate_entries_become_one_case_with_a_warning(tmp_path, capsys):
    text = SUITE.replace("[pvt_v2_b0]", "[pvt_v2_b0, pvt_v2_b0]").replace("[64, 96]", "[64, 64, [64, 64]]")
    suite = _suite(tmp_path, text)
    assert len(load_suite(suite).cases()) == 1
    assert _run(tmp_path, suite, "--run-id", "r") == 0
    assert "5 duplicate case(s)" in capsys.readouterr().err
    assert len(read_rows(tmp_path / "res" / "rel" / "r" / "rows.jsonl")) == 1


def test_a_suite_past_the_case_limit_is_refused_unless_allowed(tmp_path, capsys):
    text = SUITE.replace("[64, 96]", str(list(range(32, 32 + 8 * 100, 8)))).replace(
        "metrics: [params]", "metrics: [params]\nbatch_sizes: " + str(list(range(1, 61)))
    )
    suite = _suite(tmp_path, text)
    assert _run(tmp_path, suite) == 2
    assert "expands to 6000 cases, more than 5000" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "res").exists()  # refused before any folder is made
    small = _suite(tmp_path, SUITE, "small.yaml")
    assert _run(tmp_path, small, "--max-cases", "1") == 2
    assert "more than 1" in _one_error_line(capsys.readouterr().err)
    assert load_suite(suite).expand(max_cases=6000)[0][-1].batch_size == 60


# ----------------------------------------------------------------------- 10. SIGTERM, isolate
def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow  # three interpreters (the CLI and its workers); isolated workers: test_rounds (default)
def test_sigterm_on_an_isolated_run_kills_the_worker_and_keeps_rows(tmp_path):
    suite = _suite(tmp_path, SUITE.replace("[64, 96]", "[64, 96, 128, 160]"))
    run_dir = tmp_path / "res" / "rel" / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pacabench", "run", str(suite), "--results-dir", str(tmp_path / "res"),
         "--run-id", "r", "--isolate", "--no-progress", "--no-report"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    worker = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        rows = run_dir / "rows.jsonl"
        written = rows.exists() and rows.read_bytes().count(b"\n") >= 1
        kids = _children(proc.pid) if written else []
        if kids:
            worker = kids[0]  # the first row is written and the next worker is running
            break
        time.sleep(0.05)
    assert worker is not None, "the run never reached its second case"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in err
    assert "terminated" in err and "--resume-from" in err
    time.sleep(0.2)
    assert not _alive(worker)  # no orphan
    rows = read_rows(run_dir / "rows.jsonl")
    assert len(rows) >= 1 and all(r["status"] == "ok" for r in rows)


# ------------------------------------------------------------------------ 8. head on a cost case
def test_a_cost_case_with_a_head_measures_the_segmentor():
    from pacabench.measure.flops import count_params
    from pacabench.models import create_model
    from pacabench.models.segmentation import create_segmentor

    text = SUITE.replace("[pvt_v2_b0]", "[{name: pvt_v2_b0, head: upernet}, pvt_v2_b0]").replace(
        "[64, 96]", "[64]"
    )
    text = text.replace("[params]", "[params, flops]")
    seg_case, plain_case = parse_suite(text, "h.yaml").cases()
    seg, plain = runner.run_case(seg_case), runner.run_case(plain_case)
    assert seg.status == "ok" and seg.head == "upernet" and seg.case_id.startswith("cost|pvt_v2_b0+upernet|")
    expected = count_params(create_segmentor("pvt_v2_b0", "upernet", img_size=64, verbose=False))
    assert seg.params == expected and plain.params == count_params(create_model("pvt_v2_b0", img_size=64))
    assert seg.params > 5 * plain.params and seg.gflops > 5 * plain.gflops
    # the paper's PaCa-T + UperNet: ~41.6 M parameters
    paca = parse_suite(
        "models: [{name: pacavit_tiny_p2cconv_100_0, head: upernet}]\nresolutions: [64]\nmetrics: [params]\n"
        "device: cpu\n",
        "p.yaml",
    )
    assert runner.run_case(paca.cases()[0]).params / 1e6 == pytest.approx(41.6, abs=0.1)


def test_an_unknown_head_is_refused_at_load(tmp_path, capsys):
    suite = _suite(
        tmp_path, SUITE.replace("[pvt_v2_b0]", "\n  - pvt_v2_b1\n  - {name: pvt_v2_b0, head: bogus}")
    )
    assert _run(tmp_path, suite) == 2
    assert _one_error_line(capsys.readouterr().err).endswith(
        "rel.yaml:4: unknown head 'bogus' (choose from paca, upernet)"
    )
    assert not (tmp_path / "res").exists()


def test_baseline_update_to_a_bad_output_is_one_line_and_writes_nothing(tmp_path, capsys):
    suite = _suite(tmp_path, SUITE.replace("[64, 96]", "[64]"))
    assert _run(tmp_path, suite, "--run-id", "r") == 0
    (tmp_path / "afile").write_text("x")
    for bad in (tmp_path / "afile" / "b.jsonl", tmp_path):  # parent is a file; a folder, not a file
        capsys.readouterr()
        args = ["baseline", "update", "rel", "--results-dir", str(tmp_path / "res"), "-o", str(bad), "--yes"]
        assert main(args) == 2
        assert "--output" in _one_error_line(capsys.readouterr().err)
    assert (tmp_path / "afile").read_text() == "x"
