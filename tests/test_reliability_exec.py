"""Issue 21, the run-folder and executor side: collect, status and --resume-from on hostile run
folders (torn rows.jsonl, edited row files and jobs.json, mistyped rows, reused pids) and the
local executor's jobs (Ctrl-C, SIGTERM, setup lines, CUDA_VISIBLE_DEVICES). Each test failed on
the code before its fix. Fast ones use the debug executor (the job machinery in this process) on
one FLOPs/params case at 64 px; the local-executor ones are marked slow."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacabench.cli import main
from pacabench.errors import PacabenchError
from pacabench.runs.folder import RunDir
from pacabench.runs.runner import run_case
from pacabench.spec.metrics import metrics_of
from pacabench.spec.suite import load_suite
from tests._tier import examples
from tests.test_executors import FLOPS_SUITE, ONE_CASE, TIMED_SUITE, _rows, _suite
from tests.test_reliability_run import _alive

REPO = Path(__file__).resolve().parent.parent


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pacabench: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _jobs(run: Path) -> list[dict]:
    return json.loads((run / "jobs.json").read_text())["submissions"]


def _write_jobs(run: Path, subs: list[dict]) -> None:
    (run / "jobs.json").write_text(json.dumps({"submissions": subs}))


def _write_rows(run: Path, rows: list[dict]) -> None:
    (run / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _lines_ok(run: Path) -> list[dict]:
    """Every line of rows.jsonl is a JSON object (what the next collect or resume reads)."""
    return [json.loads(x) for x in (run / "rows.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def debug_runs(tmp_path_factory):
    """Debug-executor runs made once (3 params cases, and one); tests work on copies."""
    base = tmp_path_factory.mktemp("runs")
    made = {}
    for name, text in (("three", FLOPS_SUITE.replace("[params, flops]", "[params]")), ("one", ONE_CASE)):
        suite = _suite(base, text, f"{name}.yaml")
        argv = ["run", str(suite), "--results-dir", str(base / "r"), "--run-id", name]
        assert main([*argv, "--no-report", "--no-progress", "--executor", "debug"]) == 0
        made[name] = base / "r" / load_suite(suite).name / name
    return made


def _copy(debug_runs, which: str, tmp_path: Path) -> Path:
    src = debug_runs[which]
    dest = tmp_path / "r" / src.parent.name / src.name
    shutil.copytree(src, dest)
    return dest


def _resume(run: Path, *extra: str) -> int:
    argv = ["run", str(run / "suite.yaml"), "--resume-from", str(run), "--no-report", "--no-progress"]
    return main([*argv, "--executor", "debug", *extra])


# ------------------------------------------------------------------ 1. collect and a torn tail
def test_collect_sets_a_torn_tail_aside_before_appending(debug_runs, tmp_path, capsys):
    run = _copy(debug_runs, "three", tmp_path)
    rows = _rows(run)
    first = json.dumps(rows[0]) + "\n"
    fragment = json.dumps(rows[1])[:40]
    (run / "rows.jsonl").write_text(first + fragment)  # the parent killed while appending row 2
    assert main(["collect", str(run)]) == 0
    assert "torn last line" in capsys.readouterr().err
    assert [r["case_id"] for r in _lines_ok(run)] == [r["case_id"] for r in rows]
    assert (run / "rows.jsonl.torn").read_text() == fragment + "\n"  # set aside, not lost
    before = (run / "rows.jsonl").read_bytes()
    assert main(["collect", str(run)]) == 0 and _resume(run) == 0  # both read it back
    assert (run / "rows.jsonl").read_bytes() == before and len(_jobs(run)) == 3


# ------------------------------------------------------------------ 2. batch-decayed rows
def test_resume_does_not_resubmit_a_batch_decayed_case(debug_runs, tmp_path):
    run = _copy(debug_runs, "one", tmp_path)
    (row,) = _rows(run)
    # the case asked for batch 2 and ran at 1 after running out of memory (batch_decay)
    (run / "suite.yaml").write_text(ONE_CASE + "batch_sizes: [2]\nbatch_decay: true\n")
    rec = json.loads((run / "suite.json").read_text())
    rec["digest"] = load_suite(run / "suite.yaml").digest()
    (run / "suite.json").write_text(json.dumps(rec))
    (case,) = load_suite(run / "suite.yaml").cases()
    row |= {"batch_size": 2, "batch_decay": True, "batch_size_used": 1}
    row["case_id"] = str(case.key) + "|decayed=1"
    _write_rows(run, [row])
    for sub in _jobs(run):
        (run / "rows" / f"{sub['stem']}.json").unlink()
    (run / "rows" / f"{case.key.file_stem()}.json").write_text(json.dumps(row))
    _write_jobs(run, [])
    assert _resume(run) == 0
    assert _jobs(run) == [] and _rows(run) == [row]  # done: nothing submitted, nothing added


# ------------------------------------------------------------------ 3, 22. row files checked
def _stems(run: Path) -> list[str]:
    return [s["stem"] for s in _jobs(run)]


@pytest.mark.parametrize(
    "content",
    ["foreign", "other-case", "mistyped", "truncated", "folder"],
)
def test_a_row_file_that_is_not_its_cases_row_is_not_merged(debug_runs, tmp_path, capsys, content):
    run = _copy(debug_runs, "three", tmp_path)
    rows, stems = _rows(run), _stems(run)
    path = run / "rows" / f"{stems[1]}.json"
    if content == "folder":
        path.unlink()
        path.mkdir()
    else:
        text = {
            "foreign": json.dumps({"foo": 1}),
            "other-case": json.dumps(rows[2] | {"run_id": "elsewhere"}),
            "mistyped": json.dumps(rows[1] | {"batch_size": "x"}),
            "truncated": json.dumps(rows[1])[:60],
        }[content]
        path.write_text(text)
    _write_rows(run, [rows[0], rows[2]])  # case 1 not merged yet
    assert main(["status", str(run), "--all"]) == 0
    before = capsys.readouterr().out
    assert "3 cases: 2 done, 1 failed" in before  # status and collect agree: failed
    assert main(["collect", str(run)]) == 0
    after = _lines_ok(run)
    assert sorted(r["case_id"] for r in after) == sorted(r["case_id"] for r in rows)  # once each
    (failed,) = [r for r in after if r["case_id"] == rows[1]["case_id"]]
    assert failed["status"] == "error" and f"row file {stems[1]}.json" in failed["error"]
    assert [r for r in after if r["case_id"] != rows[1]["case_id"]] == [rows[0], rows[2]]
    if content != "folder":  # the bad file kept aside, never deleted
        (kept,) = (run / "rows" / "replaced").glob(f"{stems[1]}.*.json")
        assert kept.read_text() == text
    capsys.readouterr()
    assert main(["status", str(run)]) == 0
    assert "3 cases: 2 done, 1 failed" in capsys.readouterr().out


# ------------------------------------------------------------------ 4. jobs.json paths
def test_a_stem_in_jobs_json_cannot_leave_the_run_folder(debug_runs, tmp_path, capsys):
    run = _copy(debug_runs, "one", tmp_path)
    subs = _jobs(run)
    (run / "rows" / f"{subs[0]['stem']}.json").unlink()
    _write_rows(run, [])
    subs[0]["stem"] = "../../../ESCAPE"
    _write_jobs(run, subs)
    for cmd in ("collect", "status"):
        assert main([cmd, str(run)]) == 2
        assert "is not the stem of its case" in _one_line(capsys.readouterr().err)
    assert not list(tmp_path.rglob("ESCAPE*")) and (run / "rows.jsonl").read_text() == ""


@pytest.mark.parametrize("where", ["outside", "symlink"])
def test_a_log_path_in_jobs_json_is_not_read_outside_the_run_folder(debug_runs, tmp_path, where):
    run = _copy(debug_runs, "one", tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:SECRET-LINE\n")
    subs = _jobs(run)
    (run / "rows" / f"{subs[0]['stem']}.json").unlink()
    _write_rows(run, [])
    if where == "symlink":
        (run / "submitit" / "evil.err").symlink_to(secret)
        subs[0]["stderr"] = str(run / "submitit" / "evil.err")
    else:
        subs[0]["stderr"] = str(secret)
    _write_jobs(run, subs)
    assert main(["collect", str(run)]) == 0
    (row,) = _rows(run)
    assert row["status"] == "error" and "SECRET" not in row["error"]


def test_a_log_of_a_moved_run_folder_is_still_read(debug_runs, tmp_path):
    run = _copy(debug_runs, "one", tmp_path)
    subs = _jobs(run)
    (run / "rows" / f"{subs[0]['stem']}.json").unlink()
    _write_rows(run, [])
    log = run / "submitit" / "moved_0_log.err"
    log.write_text("slurmstepd: error: *** JOB 7 ON n1 CANCELLED AT 2026-01-01 DUE TO TIME LIMIT ***\n")
    subs[0]["stderr"] = "/somewhere/else/r/exone/one/submitit/moved_0_log.err"  # the folder as submitted
    _write_jobs(run, subs)
    assert main(["collect", str(run)]) == 0
    assert "timed out" in _rows(run)[0]["error"]


# ------------------------------------------------------------------ 5. refill on an executor
def test_a_refill_job_row_replaces_the_finished_row_and_a_failed_one_keeps_it(debug_runs, tmp_path):
    """What an executor's refill job leaves (a row file: the finished row with the added metric
    merged in) replaces the finished row on collect; a refill job that ended without a row marks
    the finished row failed, keeping what it measured."""
    from pacabench.runs.folder import cases_to_refill

    run = _copy(debug_runs, "one", tmp_path)
    (old,) = _rows(run)
    more = load_suite(_suite(tmp_path, ONE_CASE.replace("[params]", "[params, flops, latency]"), "m.yaml"))
    ((case, base),) = cases_to_refill(more.cases(), [old], frozenset({"flops", "latency"}), set())
    assert base == old and case.metrics == ("flops", "latency")  # params is not measured again
    assert cases_to_refill(more.cases(), [old], frozenset({"flops"}), {case.key.file_stem()}) == []
    assert cases_to_refill(more.cases(), [old | {"status": "error"}], frozenset({"flops"}), set()) == []
    sub = _jobs(run)[0] | {"refill": ["flops", "latency"], "job_id": "DEBUG_2"}
    _write_jobs(run, [_jobs(run)[0], sub])
    merged = old | {"gflops": 0.04, "latency_ms_median": 1.5}
    (run / "rows" / f"{sub['stem']}.json").write_text(json.dumps(merged))
    assert main(["collect", str(run)]) == 0
    assert _rows(run) == [merged]
    assert [json.loads(x) for x in (run / "rows.replaced.jsonl").read_text().splitlines()] == [old]
    assert main(["collect", str(run)]) == 0 and _rows(run) == [merged]  # twice: nothing changes
    (run / "rows" / f"{sub['stem']}.json").unlink()  # a refill job killed before its row
    assert main(["collect", str(run)]) == 0
    (row,) = _rows(run)
    assert row["status"] == "error" and row["error"].startswith("flops, latency: job")
    assert {k: v for k, v in row.items() if k not in ("status", "error")} == {
        k: v for k, v in merged.items() if k not in ("status", "error")
    }


@pytest.mark.slow
def test_allow_changed_suite_measures_added_metrics_on_an_executor(debug_runs, tmp_path, capsys):
    run = _copy(debug_runs, "one", tmp_path)
    (old,) = _rows(run)
    assert old["gflops"] is None
    suite = _suite(tmp_path, ONE_CASE.replace("[params]", "[params, flops]"), "more.yaml")
    argv = ["run", str(suite), "--resume-from", str(run), "--allow-changed-suite", "--no-report"]
    assert main([*argv, "--no-progress", "--executor", "debug"]) == 0
    (row,) = _rows(run)
    (case,) = load_suite(suite).cases()
    assert row["gflops"] == run_case(case).gflops > 0  # measured by the job
    flops = {c.column for c in metrics_of("flops")}
    assert {k: v for k, v in row.items() if k not in flops} == {
        k: v for k, v in old.items() if k not in flops
    }
    assert [json.loads(x) for x in (run / "rows.replaced.jsonl").read_text().splitlines()] == [old]
    assert _jobs(run)[-1]["refill"] == ["flops"]
    # the run now measures the new suite: nothing left to do
    capsys.readouterr()
    assert main([*argv, "--no-progress", "--executor", "debug"]) == 0
    assert "submitting 0 of 1" in capsys.readouterr().err and _rows(run) == [row]


# ------------------------------------------------------------------ 7, 29. status counts cases
def test_status_counts_every_case_of_the_suite_once(debug_runs, tmp_path, capsys):
    run = _copy(debug_runs, "three", tmp_path)
    rows, subs = _rows(run), _jobs(run)
    _write_jobs(run, subs[:1])  # one case submitted so far
    for s in subs[1:]:
        (run / "rows" / f"{s['stem']}.json").unlink()
    _write_rows(run, [rows[0], rows[0]])  # and its row written twice
    assert main(["status", str(run), "--all"]) == 0
    out = capsys.readouterr().out
    assert "3 cases: 1 done, 2 missing" in out and out.count("missing ") == 2
    assert main(["collect", str(run)]) == 0
    assert "(1 case(s) in all)" in capsys.readouterr().err


def test_resume_counts_a_duplicated_row_once(debug_runs, tmp_path, capsys):
    run = _copy(debug_runs, "three", tmp_path)
    rows = _rows(run)
    _write_rows(run, [*rows, rows[1]])
    assert _resume(run) == 0
    assert "3 rows (3 ok)" in capsys.readouterr().err and len(_jobs(run)) == 3


# ------------------------------------------------------------------ 8. a reused pid
def _sleeper():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_a_reused_pid_is_not_the_job(debug_runs, tmp_path, capsys):
    run = _copy(debug_runs, "one", tmp_path)
    subs = _jobs(run)
    (run / "rows" / f"{subs[0]['stem']}.json").unlink()
    _write_rows(run, [])
    subs[0] |= {"executor": "local", "submitted": time.time() - 60}
    other = _sleeper()  # a process that got the job's pid after the job ended
    try:
        subs[0]["job_id"] = str(other.pid)
        _write_jobs(run, subs)
        assert main(["status", str(run)]) == 0
        assert "1 cases: 1 failed" in capsys.readouterr().out
        assert _resume(run) == 0
        (row,) = _rows(run)
        assert row["status"] == "ok" and row["params"] > 3e6
        assert other.poll() is None  # not ours: left alone
    finally:
        other.kill()
        other.wait()


def test_an_executor_run_that_leaves_a_case_without_a_row_exits_1(debug_runs, tmp_path, capsys, monkeypatch):
    """The last guard: whatever kept a case from being submitted, a run that waited for its jobs
    and still lacks a row for a case says so and does not exit 0."""
    from pacabench.runs.executors import kinds

    run = _copy(debug_runs, "three", tmp_path)
    rows = _rows(run)
    _write_rows(run, rows[:2])
    _write_jobs(run, _jobs(run)[:2])
    monkeypatch.setattr(kinds, "cases_to_submit", lambda cases, rows, queued: [])
    assert _resume(run) == 1
    err = capsys.readouterr().err
    assert f"1 case(s) have no row yet (first: {rows[2]['case_id']})" in err and "Traceback" not in err


def test_a_job_process_is_known_by_its_start_time():
    from pacabench.runs.executors.procs import is_job_process, proc_start

    p = _sleeper()
    try:
        started = proc_start(p.pid)
        assert started is not None
        assert is_job_process(p.pid, started, time.time())
        assert not is_job_process(p.pid, started + 1, time.time())  # same pid, another process
        assert is_job_process(p.pid, None, time.time() + 1)  # no record: started before submission
        assert not is_job_process(p.pid, None, time.time() - 3600)  # started an hour after it
    finally:
        p.kill()
        p.wait()
    assert not is_job_process(p.pid, started, time.time())


# ------------------------------------------------------------------ 17. sbatch refuses
def test_sbatch_that_cannot_submit_is_one_line(tmp_path, capsys, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(
        "#!/bin/sh\necho 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2\n"
        "exit 1\n"
    )
    sbatch.chmod(0o755)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    suite = _suite(tmp_path, ONE_CASE + "executor: {kind: slurm, partition: nope}\n")
    argv = ["run", str(suite), "--results-dir", str(tmp_path / "r"), "--no-progress", "--no-report"]
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err.split("slurm: submitting 1 of 1 case(s)\n")[-1])
    assert "sbatch could not submit" in line and "Invalid partition name specified" in line


# ------------------------------------------------------------------ 18. edited jobs.json
def _valid_sub(debug_runs) -> dict:
    return _jobs(debug_runs["one"])[0]


EDITS = {
    "not-json": "{submissions: oops",
    "empty": "",
    "empty-object": "{}",
    "a-list": "[]",
    "submissions-not-list": '{"submissions": {"a": 1}}',
    "entry-not-object": '{"submissions": [5]}',
    "missing-field": "DROP:stem",
    "numeric-job-id": "SET:job_id=123",
    "bad-executor": 'SET:executor="cloud"',
    "case-batch-str": 'CASE:batch_size="x"',
    "case-resolution-str": 'CASE:resolution="ab"',
    "case-no-latency": "CASEDROP:latency",
    "case-not-object": "SET:case=[1, 2]",
    "submitted-str": 'SET:submitted="yesterday"',
    "stem-null-byte": 'SET:stem="a\\u0000b"',
}


def _edited(sub: dict, edit: str) -> str:
    kind, _, what = edit.partition(":")
    d = json.loads(json.dumps(sub))
    if kind == "DROP":
        d.pop(what)
    elif kind == "CASEDROP":
        d["case"].pop(what)
    elif kind in ("SET", "CASE"):
        k, _, v = what.partition("=")
        (d if kind == "SET" else d["case"])[k] = json.loads(v)
    else:
        return edit
    return json.dumps({"submissions": [d]})


@pytest.mark.parametrize("name", list(EDITS))
def test_an_edited_jobs_json_is_one_line_in_collect_and_status(debug_runs, tmp_path, capsys, name):
    run = _copy(debug_runs, "one", tmp_path)
    (run / "jobs.json").write_text(_edited(_valid_sub(debug_runs), EDITS[name]))
    rows_before = (run / "rows.jsonl").read_bytes()
    for cmd in ("collect", "status"):
        assert main([cmd, str(run)]) == 2, cmd
        assert "jobs.json" in _one_line(capsys.readouterr().err)
    assert _resume(run) == 2
    assert "jobs.json" in _one_line(capsys.readouterr().err.split("resuming")[-1].split("\n", 1)[-1])
    assert (run / "rows.jsonl").read_bytes() == rows_before


def test_jobs_json_as_a_folder_is_one_line(debug_runs, tmp_path, capsys):
    run = _copy(debug_runs, "one", tmp_path)
    (run / "jobs.json").unlink()
    (run / "jobs.json").mkdir()
    for cmd in ("collect", "status"):
        assert main([cmd, str(run)]) == 2
        assert "is a folder" in _one_line(capsys.readouterr().err)


JSONS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = ["stem", "case", "job_id", "executor", "stderr", "submitted", "proc_start", "refill"]
CASE_FIELDS = ["suite", "model", "resolution", "batch_size", "dtype", "device", "metrics", "latency", "head"]


@st.composite
def _jobs_files(draw, sub: dict):
    """Near-valid jobs.json texts (one field of a real submission or its case replaced by any
    JSON value, or dropped) and arbitrary JSON and bytes."""
    d = json.loads(json.dumps(sub))
    how = draw(st.sampled_from(["field", "case", "drop", "any", "bytes"]))
    if how == "bytes":
        return draw(st.binary(max_size=60))
    if how == "any":
        return json.dumps(draw(JSONS)).encode()
    if how == "drop":
        d.pop(draw(st.sampled_from(FIELDS[:6])))
    else:
        target = d if how == "field" else d["case"]
        target[draw(st.sampled_from(FIELDS if how == "field" else CASE_FIELDS))] = draw(JSONS)
    return json.dumps({"submissions": [d]}).encode()


def test_jobs_json_reader_gives_a_submission_or_one_line(debug_runs, tmp_path):
    from pacabench.runs.executors.collect import failure_row, run_status
    from pacabench.runs.executors.jobstate import JobState, load_submissions
    from pacabench.runs.executors.rowfiles import row_file
    from pacabench.runs.results import row_problem

    run = _copy(debug_runs, "one", tmp_path)
    sub = _valid_sub(debug_runs)

    @settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_jobs_files(sub))
    def check(data):
        (run / "jobs.json").write_bytes(data)
        try:
            subs = load_submissions(run)
            st_ = run_status(run, lambda ss: {s.stem: JobState("ended", "error", "gone") for s in ss})
        except PacabenchError as e:
            assert str(e).strip() and "\n" not in str(e).strip()
            return
        for s in subs:
            assert row_file(run, s.stem).parent == run / "rows"  # never outside
            assert row_problem(failure_row(s, JobState("ended", "error", "gone"), "one")) is None
            assert s.stderr == "" or Path(s.stderr).resolve().is_relative_to(run.resolve())
        assert sum(st_.counts.values()) == len(st_.cases) >= len(subs)

    check()


# ------------------------------------------------------------------ 19. mistyped rows
@pytest.mark.parametrize("edit", [{"resolution": "ab"}, {"batch_size": "x"}, {"batch_size_used": 1e400}])
def test_a_mistyped_row_is_one_line_in_collect_status_and_resume(debug_runs, tmp_path, capsys, edit):
    run = _copy(debug_runs, "three", tmp_path)
    rows = _rows(run)
    text = "".join(json.dumps(r) + "\n" for r in [rows[0], rows[1] | edit, rows[2]])
    (run / "rows.jsonl").write_text(text)
    for argv in (["collect", str(run)], ["status", str(run)]):
        assert main(argv) == 2
        assert "rows.jsonl:2: not a usable row" in _one_line(capsys.readouterr().err)
    assert _resume(run) == 2
    assert "rows.jsonl:2: not a usable row" in capsys.readouterr().err.strip().splitlines()[-1]
    assert (run / "rows.jsonl").read_text() == text  # nothing rewritten, nothing dropped


@pytest.mark.parametrize("which", ["rows-a-file", "rows.jsonl-a-folder"])
def test_rows_folder_a_file_or_rows_jsonl_a_folder_is_one_line(debug_runs, tmp_path, capsys, which):
    run = _copy(debug_runs, "one", tmp_path)
    if which == "rows-a-file":
        shutil.rmtree(run / "rows")
        (run / "rows").write_text("x")
    else:
        (run / "rows.jsonl").unlink()
        (run / "rows.jsonl").mkdir()
    for cmd in ("collect", "status"):
        assert main([cmd, str(run)]) == 2
        assert "is a f" in _one_line(capsys.readouterr().err)


ROW_VALUES = st.one_of(
    JSONS, st.sampled_from([1e400, -1e400, float("nan"), "ab", "x", [64], [64, "64"], True, 2.5, -1])
)


def test_rows_reader_gives_usable_rows_or_one_line(debug_runs, tmp_path):
    from pacabench.runs.results import row_key, row_problem

    run = _copy(debug_runs, "one", tmp_path)
    (good,) = _rows(run)
    rd = RunDir(run)
    keys = [k for k in good if not k.startswith("latency_")]

    @settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.sampled_from(keys), ROW_VALUES, st.sampled_from(["field", "line", "bytes"]), st.binary(max_size=40)
    )
    def check(key, value, how, raw):
        line = {"field": json.dumps(good | {key: value}), "line": json.dumps(value)}.get(how)
        rd.rows_path.write_bytes(json.dumps(good).encode() + b"\n" + (line.encode() if line else raw) + b"\n")
        try:
            rows = rd.rows()
        except PacabenchError as e:
            assert str(e).strip() and "\n" not in str(e).strip()
            return
        for r in rows:
            assert row_problem(r) is None
            row_key(r).requested().file_stem()

    check()


def test_row_file_reader_gives_its_row_or_a_reason(debug_runs, tmp_path):
    from pacabench.runs.executors.rowfiles import load_row_file
    from pacabench.runs.results import row_key, row_problem

    run = _copy(debug_runs, "one", tmp_path)
    (good,) = _rows(run)
    stem = _stems(run)[0]
    path = run / "rows" / f"{stem}.json"

    @settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(list(good)), ROW_VALUES, st.booleans(), st.binary(max_size=60))
    def check(key, value, as_bytes, raw):
        path.write_bytes(raw if as_bytes else json.dumps(good | {key: value}).encode())
        row, problem = load_row_file(path, stem)
        assert (row is None) != (problem is None)
        if row is not None:
            assert row_problem(row) is None and row_key(row).requested().file_stem() == stem

    check()
    path.write_text(json.dumps(good))
    assert load_row_file(path, stem) == (good, None)
    assert load_row_file(path, stem + "x")[1] is not None


# ------------------------------------------------------------------ 21. CUDA_VISIBLE_DEVICES
def test_local_job_environment_keeps_the_parents_gpus_unless_asked():
    from pacabench.runs.executors.localjobs import job_env

    def env(base, gpus):
        return job_env(base, command="c", tasks=1, timeout_min=1, gpus=gpus)

    assert "CUDA_VISIBLE_DEVICES" not in env({}, None)  # every GPU of the machine
    assert env({"CUDA_VISIBLE_DEVICES": "2,3"}, None)["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert env({"CUDA_VISIBLE_DEVICES": "2,3"}, 1)["CUDA_VISIBLE_DEVICES"] == "2"  # asked: the first
    assert env({}, 2)["CUDA_VISIBLE_DEVICES"] == "0,1"


# ------------------------------------------------------------------ local executor (slow)
def _cli(suite: Path, results: Path, run_id: str, *extra: str) -> list[str]:
    argv = [sys.executable, "-m", "pacabench", "run", str(suite), "--results-dir", str(results)]
    return [*argv, "--run-id", run_id, "--no-report", "--no-progress", "--executor", "local", *extra]


def _env(**kw) -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), **kw)


def _wait_for_job(run: Path, n: int = 1, timeout_s: float = 180) -> dict:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if (run / "jobs.json").exists():
            subs = _jobs(run)
            if len(subs) >= n and _alive(int(subs[n - 1]["job_id"])):
                return subs[n - 1]
        time.sleep(0.3)
    raise AssertionError("the job never started")


@pytest.mark.slow
def test_local_job_keeps_cuda_visible_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    suite = _suite(tmp_path, ONE_CASE)
    out = subprocess.run(_cli(suite, tmp_path / "r", "g"), env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    (row,) = _rows(tmp_path / "r" / "exone" / "g")
    assert row["status"] == "ok" and row["cuda_visible_devices"] == "5"  # not "": GPUs stay visible


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_a_local_run_stops_its_job_without_a_traceback(tmp_path, sig):
    suite = _suite(tmp_path, ONE_CASE)
    proc = subprocess.Popen(
        _cli(suite, tmp_path / "r", "i"), env=_env(PACABENCH_JOB_DELAY_S="120"), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run = tmp_path / "r" / "exone" / "i"
    try:
        job = int(_wait_for_job(run)["job_id"])
        os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)  # Ctrl-C: the group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    how = "interrupted" if sig == signal.SIGINT else "terminated"
    assert proc.returncode == (130 if sig == signal.SIGINT else 143)
    assert "Traceback" not in err and f"{how}: 0 rows kept in {run}; finish with: pacabench run" in err
    deadline = time.time() + 30
    while _alive(job) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(job)  # the job was stopped with its parent: nothing left to overlap a resume


@pytest.mark.slow
def test_resume_waits_for_an_orphaned_timed_job_before_measuring(tmp_path):
    """The parent SIGKILLed (no chance to stop its job): a resume waits for the job still running,
    merges its row, and only then measures the next timed case."""
    suite = _suite(tmp_path, TIMED_SUITE)
    run = tmp_path / "r" / "extimed" / "k"
    proc = subprocess.Popen(_cli(suite, tmp_path / "r", "k"), env=_env(PACABENCH_JOB_DELAY_S="6"))
    try:
        orphan = _wait_for_job(run)
        proc.kill()
        proc.wait()
        out = subprocess.run(
            _cli(suite, tmp_path / "r", "k", "--resume-from", str(run)), env=_env(), capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.returncode == 0, out.stderr
    assert "waiting for 1 job(s) of an earlier submission" in out.stderr
    rows = _rows(run)
    assert [r["status"] for r in rows] == ["ok", "ok"] and all(r["latency_ms_median"] for r in rows)
    first = next(r for r in rows if r["resolution"] == orphan["case"]["resolution"])
    assert first["job_start"] < first["job_end"]
    (second,) = [r for r in rows if r is not first]
    assert second["job_start"] >= first["job_end"]  # measured after the orphan ended, never beside it
    assert len(_jobs(run)) == 2  # the orphan's case was not submitted again


@pytest.mark.slow
def test_a_failing_setup_line_puts_its_message_in_the_row(tmp_path):
    suite = _suite(tmp_path, ONE_CASE + "executor: {setup: ['echo setup-went-wrong >&2; exit 3']}\n")
    out = subprocess.run(_cli(suite, tmp_path / "r", "s"), env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    (row,) = _rows(tmp_path / "r" / "exone" / "s")
    assert row["status"] == "error" and "setup-went-wrong" in row["error"]
    # into the job's log, not straight onto the parent's terminal: said once, in the row's line
    assert [ln for ln in out.stderr.splitlines() if "setup-went-wrong" in ln] == [
        f"  error: {row['case_id']} ({row['error']})"
    ]


@pytest.mark.slow
def test_a_hanging_setup_line_is_bounded_by_the_time_limit(tmp_path):
    suite = _suite(tmp_path, ONE_CASE + "executor: {setup: ['sleep 600'], timeout_min: 0.05}\n")
    out = subprocess.run(  # would hang for 10 minutes unless the parent enforces the limit
        _cli(suite, tmp_path / "r", "h"), env=_env(), capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr
    (row,) = _rows(tmp_path / "r" / "exone" / "h")
    assert row["status"] == "error" and "timed out" in row["error"]
