"""The Python API: run a suite, load its rows, compare runs, render a report. The CLI wraps these.

::

    import pacabench

    r = pacabench.run("suites/smoke.yaml")  # a Run: r.path, r.rows(), r.frame()
    df = pacabench.load(r.path)  # a run folder, a rows.jsonl, or a list of row dicts
    cmp = pacabench.compare("results/baselines/smoke.jsonl", r.path)  # cmp.ok, cmp.regressions
    print(pacabench.report(r, format="markdown"))

Bad input raises ``pacabench.errors.PacabenchError`` (a ``ValueError``) with a one-line message,
before anything is measured or written. Importing this module loads no torch, timm or pandas:
each function imports what it needs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError

__all__ = ["Run", "run", "load", "compare", "report", "status", "collect"]


@dataclass
class Run:
    """A run folder and what made it (``pacabench.run``'s result; ``Run(path)`` opens any run folder).

    ``path``: the run folder (``results/<suite>/<run-id>``). ``suite``: the ``Suite`` it ran (None
    for ``Run(path)``). ``summary``: the runner's ``RunSummary`` of an in-process run (``.rows``
    measured now, ``.counts()`` by status, ``.skipped_done``, ``.wall_s``), None for an executor run.
    ``submissions``: the jobs an executor run submitted; ``detached``: True when ``run`` returned
    without waiting for them (``pacabench.status`` / ``pacabench.collect`` follow them).
    ``missing``: the case ids an executor run that waited still has no row for (none normally).
    """

    path: Path
    suite: Any = None
    summary: Any = None
    submissions: list = field(default_factory=list)
    detached: bool = False
    missing: list = field(default_factory=list)

    def __post_init__(self):
        self.path = Path(self.path)

    def rows(self) -> list[dict[str, Any]]:
        """The rows of ``rows.jsonl`` as dicts, one per case, in the order written."""
        from .runs.folder import RunDir

        return RunDir(self.path).rows()

    def frame(self):
        """The rows as a pandas DataFrame (what ``pacabench.load`` gives for the folder)."""
        return load(self.path)


def run(
    suite: str | os.PathLike | Any,
    *,
    results_dir: str | os.PathLike = "results",
    run_id: str | None = None,
    resume: bool = False,
    resume_from: str | os.PathLike | None = None,
    allow_changed_suite: bool = False,
    device: str | None = None,
    isolate: bool | None = None,
    executor: Any = None,
    detach: bool = False,
    max_cases: int | None = None,
    on_progress: Any = None,
    trust_code: bool = False,
    latency_mode: str | None = None,
    compile_mode: str | None = None,
) -> Run:
    """Measure a suite into a run folder (what ``pacabench run`` does) and return the ``Run``.

    The folder ``results_dir/<suite name>/<run_id>`` holds what the CLI writes (``suite.yaml``,
    ``suite.json`` with the suite's digest, ``environment.json``, ``rows.jsonl``: each row appended
    once measured) and is locked while the run writes. An interrupted run keeps its rows
    (SIGTERM raises ``runner.Terminated``, a KeyboardInterrupt); ``resume_from=path`` finishes it.

    Args:
        suite: a suite file (``"suites/smoke.yaml"``) or a loaded ``Suite``.
        results_dir: where run folders go. run_id: the new folder's name (default: a timestamp).
        resume: finish the latest run of this suite under ``results_dir``; resume_from: finish
            this run folder. It must be a run of this suite, unchanged (its digest) unless
            ``allow_changed_suite``: then the suite is recorded as ``suite.N.yaml`` and what it
            adds is measured (missing cases, and added metrics for the finished ones).
        device: override the suite's device (auto, cpu, cuda). isolate: each case in a fresh
            process (default: the suite's ``isolate``).
        executor: None (the suite's ``executor:`` block), a kind (``"inprocess"``, ``"local"``,
            ``"slurm"``, ``"debug"``) or a mapping of block keys (``{"kind": "slurm", "partition":
            "gpu"}``) overriding it, an ``ExecutorConfig`` or an ``Executor``
            (``pacabench.runs.executors.kinds``). detach: return once submitted (SLURM only).
        max_cases: allow a suite that expands to more than 5000 cases (up to this many).
        on_progress: hooks (``pacabench.runs.progress``): a ``Progress``, an object with
            ``on_<event>`` methods, or a callable ``fn(event, value)``.
        trust_code: run the suite's model factories (``module:function`` or ``file.py:function``
            entries import and call the user's code); without it such a suite is refused.
        latency_mode, compile_mode: the suite's latency mode for every device (``with_latency_mode``).

    Raises:
        PacabenchError: bad input, before any folder is made; ``RunLockedError``: another process
            writes the folder; ``RunWriteError``: rows.jsonl cannot be written.
    """
    from .runs.folder import prepare_resume
    from .runs.progress import as_progress
    from .runs.runner import sigterm_as_interrupt

    progress = as_progress(on_progress)
    suite = _latency_override(suite, latency_mode, compile_mode)
    s, ex = _checked(suite, device, max_cases, executor, detach, progress, trust_code)
    resuming = resume or resume_from is not None
    rd = _run_folder(s, results_dir, run_id, resuming, resume_from, progress)
    with rd.lock(), sigterm_as_interrupt():
        refill = prepare_resume(s, rd, allow_changed_suite, progress) if resuming else frozenset()
        kw = {"device": device, "max_cases": max_cases, "isolate": isolate, "detach": detach}
        out = ex.execute(s, rd, refill=refill, progress=progress, **kw)
    return Run(rd.path, s, out.summary, out.submissions, out.detached, out.missing)


def _latency_override(suite: Any, latency_mode: str | None, compile_mode: str | None) -> Any:
    """The suite (loaded if a path) with ``pacabench.spec.suite.with_latency_mode`` applied."""
    if latency_mode is None and compile_mode is None:
        return suite
    from .spec.suite import Suite, load_suite, with_latency_mode

    return with_latency_mode(
        suite if isinstance(suite, Suite) else load_suite(suite), latency_mode, compile_mode
    )


def _run_folder(s: Any, results_dir, run_id: str | None, resuming: bool, resume_from, progress):
    """The run folder: the one to resume, or a new one (suite record, environment)."""
    from .runs.folder import create_run, find_run

    if not resuming:
        return create_run(s, results_dir, run_id, progress)
    rd = find_run(s, results_dir, resume_from)
    progress.emit("resume", rd.path)
    return rd


def _check_trusted(s: Any, trust_code: bool) -> None:
    """A suite naming a model factory runs code when measured: only with ``trust_code``."""
    from .spec.catalog import is_factory

    code = [m.name for m in s.models if is_factory(m.name)]
    if code and not trust_code:
        raise UsageError(
            f"{s.path or s.name}: model '{code[0]}' is a factory (it runs code from the suite): "
            "pass --trust-code (trust_code=True) to run it"
        )


def _checked(
    suite: Any, device: str | None, max_cases: int | None, executor: Any, detach: bool, progress, trust_code
):
    """The suite, loaded and checked for this machine, size and its code (``trust_code``), and its
    executor (nothing written yet)."""
    from .runs.executors.kinds import executor_for
    from .runs.folder import check_device
    from .spec.suite import Suite, load_suite

    s = suite if isinstance(suite, Suite) else load_suite(suite)
    _check_trusted(s, trust_code)
    check_device(device or s.device, device)
    if max_cases is not None and max_cases < 1:
        raise UsageError(f"--max-cases must be a positive int, got {max_cases}")
    _, dups = s.expand(device, max_cases)  # too many cases: refused here
    if dups:
        progress.emit("warning", f"{dups} duplicate case(s) in {s.path or s.name} measured once")
    ex = executor_for(s.executor, executor)
    ex.check(detach)
    return s, ex


def load(run_or_rows: Any):
    """Rows as a pandas DataFrame, one row per case: every row column (None where a row lacks one)
    and ``res`` (``"HxW"``).

    Args:
        run_or_rows: a run folder, a ``rows.jsonl`` or baseline ``.jsonl`` file, a ``Run``, or a
            list of row dicts. Lines of a file that are not usable rows are skipped with a warning
            on stderr; a file with none left, or a list holding an unusable row, is a
            ``UsageError``.
    """
    from .runs.results import load_run, rows_frame

    if isinstance(run_or_rows, Run):
        run_or_rows = run_or_rows.path
    if isinstance(run_or_rows, (str, os.PathLike)):
        try:
            return load_run(run_or_rows)
        except FileNotFoundError as e:
            raise UsageError(str(e)) from None
    return rows_frame(list(run_or_rows))


def _rows_and_name(x: Any, default: str) -> tuple[list[dict[str, Any]], str]:
    """Rows of a path, a ``Run`` or a list of rows, and the name a comparison shows for them."""
    from .analysis.compare import check_rows, load_rows

    if isinstance(x, Run):
        x = x.path
    if isinstance(x, (str, os.PathLike)):
        return load_rows(x), str(x)
    return check_rows(list(x), default), default


def compare(
    baseline: Any,
    *runs: Any,
    metrics: str | Sequence[str] | None = None,
    tolerances: Any = None,
    fail_on_missing: bool = True,
    ignore_load: bool = False,
    results_dir: str | os.PathLike = "results",
):
    """Check runs against a baseline (what ``pacabench compare`` prints and exits with).

    Params and FLOPs must match to 0.1 %, accuracy within 0.1 points; latency is judged on its
    samples (Mann–Whitney U plus a minimum effect), memory and latency without samples against
    a relative tolerance beyond the runs' spread (``pacabench.analysis.compare``).

    Args:
        baseline: a committed baseline ``.jsonl``, a run folder, a rows file, a ``Run`` or a list
            of rows.
        runs: the runs to check, each like ``baseline``; none: the latest run of the baseline's
            suite under ``results_dir``. With several runs of the same cases a latency or memory
            regression must show in every one (best of N).
        metrics: names or comma lists: params, flops, latency, memory, accuracy, or row columns
            (default: every metric).
        tolerances: a ``Tolerances``, a mapping (``{"latency": 0.5, "accuracy": 0.2}``) or
            ``"NAME=VALUE"`` strings; a bare number sets latency and memory.
        fail_on_missing: a baseline case that no run has fails the comparison.
        ignore_load: judge CPU latency even when it was measured on a busy machine.

    Returns:
        ``pacabench.analysis.compare.Comparison``: ``.ok`` and ``.exit_code`` (0; 1 on a
        regression, a missing case or no case in common; 2 when cases lined up but no check ran,
        ``.note`` says why), ``.regressions``, ``.checks``, ``.to_dict()``;
        ``analysis.compare.render_comparison`` renders it as the CLI prints it.

    Raises:
        UsageError: a file or row that compare cannot read whole (a torn line, a mistyped field,
            a compared value that is not a finite number), an unknown metric or tolerance.
    """
    from .analysis.compare import Tolerances, compare_runs, parse_metrics, parse_tolerances

    cols = parse_metrics([metrics] if isinstance(metrics, str) else metrics)
    if isinstance(tolerances, Mapping):
        tolerances = [f"{k}={v}" for k, v in tolerances.items()]
    elif isinstance(tolerances, (str, int, float)):
        tolerances = [str(tolerances)]
    tol = tolerances if isinstance(tolerances, Tolerances) else parse_tolerances(tolerances)
    base_rows, base_name = _rows_and_name(baseline, "baseline")
    if not base_rows:
        raise UsageError(f"{base_name}: no rows")
    chosen = list(runs) or [_latest_for(base_rows, baseline, results_dir)]
    loaded = [_rows_and_name(r, f"run {i + 1}") for i, r in enumerate(chosen)]
    return compare_runs(
        base_rows, [rows for rows, _ in loaded], run_names=[name for _, name in loaded], metrics=cols,
        tolerances=tol, fail_on_missing=fail_on_missing, ignore_load=ignore_load, baseline_name=base_name,
    )  # fmt: skip


def _latest_for(base_rows: list[dict], baseline: Any, results_dir: str | os.PathLike) -> Path:
    """The latest run of the baseline's suite (its rows' suite, or the baseline file's name)."""
    from .analysis.compare import suite_of
    from .runs.folder import latest_run

    where = Path(baseline.path if isinstance(baseline, Run) else baseline) if _is_path(baseline) else Path()
    suite = suite_of(base_rows, where)
    if suite is not None:
        from .runs.results import check_name

        check_name(suite, "the baseline's suite name")  # a path component of --results-dir, no more
    path = latest_run(results_dir, suite)
    if path is None:
        at = f" for suite '{suite}'" if suite else ""
        raise UsageError(
            f"no run to compare under {results_dir}{at} (give RUN, or `pacabench run SUITE` first)"
        )
    return path


def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike, Run))


def report(
    run: Any,
    *,
    format: str = "markdown",
    reference: str | None = None,
    paper: bool = False,
    output: str | os.PathLike | None = None,
    title: str | None = None,
) -> str:
    """A run's tables as text (what ``pacabench report`` prints): per metric models ×
    resolutions, complexity scaling, cost relative to a reference model, unfinished cases,
    accuracy.

    Args:
        run: a run folder, a rows file, a ``Run``, a list of rows or a ``load`` DataFrame.
        format: ``"markdown"``, ``"csv"``, ``"html"`` (one self-contained page with the plots) or
            ``"latex"`` (booktabs tables); ``pacabench.reports.formats.RENDERERS``.
        reference: the model the relative-cost tables divide by (it must be in the run).
        paper: the paper's efficiency table instead (params/FLOPs at 224 beside the published
            numbers).
        output: also write the text to this file; csv without ``paper``: to this folder, one CSV
            per table (``rows.csv``, one per metric, ``scaling.csv``, the train vs inference,
            capacity and relative tables). Missing parent folders are created.
        title: the heading (default: the run's path; none for rows given as data).

    Returns:
        The text (csv written to a folder: the rows CSV).
    """
    from .reports.formats import RENDERERS, Report, render_paper_table

    if format not in RENDERERS:
        raise UsageError(f"unknown --format '{format}' ({', '.join(RENDERERS)})")
    df, where = _frame_and_name(run)
    if reference and not paper and reference not in set(df["model"]):
        raise UsageError(f"reference model '{reference}' is not in {where or 'the rows'}")
    if paper:
        title = title or (f"Efficiency at 224×224: ours ({where}) vs published" if where else None)
        text = render_paper_table(df, format, title=title)
        files = None
    else:
        rep = Report(df, reference=reference, title=title or where)
        text = RENDERERS[format].render(rep)
        files = RENDERERS[format].files(rep) if RENDERERS[format].files and output is not None else None
    if output is not None:
        _write_report(Path(output), text, files)
    return text


def _frame_and_name(run: Any) -> tuple[Any, str | None]:
    """The rows of ``run`` as a DataFrame, and its path when it is one."""
    import pandas as pd

    if isinstance(run, pd.DataFrame):
        return run, None
    path = run.path if isinstance(run, Run) else run if isinstance(run, (str, os.PathLike)) else None
    if path is not None and not Path(path).exists():
        raise UsageError(f"no such run: {path}")
    return load(run), (str(path) if path is not None else None)


def _write_report(output: Path, text: str, files: dict[str, str] | None) -> None:
    """The report into ``output``: a file, or with ``files`` a folder of them. Missing folders on
    the way are created, for every format alike (as ``-o`` of the CSV folder always did)."""
    from .paths import check_output_path

    check_output_path(output, "dir" if files is not None else "file", "--output")
    try:
        if files is None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
            return
        output.mkdir(parents=True, exist_ok=True)
        for name, body in files.items():
            (output / name).write_text(body, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {output}: {e.strerror or e}") from None


def _submitted_run(run: Any, *, in_process: bool = False):
    """The ``RunDir`` of a run submitted to an executor (``UsageError`` unless it has jobs.json);
    ``in_process``: also a run measured in-process (its rows.jsonl, no jobs)."""
    from .runs.executors.jobstate import JOBS_FILE
    from .runs.folder import RunDir

    path = Path(run.path if isinstance(run, Run) else run)
    if not path.is_dir():
        raise UsageError(f"{path}: not a run folder")
    if not (path / JOBS_FILE).exists():
        rows = path / "rows.jsonl"
        if in_process and rows.is_file():
            return RunDir(path)
        if rows.is_file():  # an in-process run: nothing to collect
            raise UsageError(
                f"{path}: measured in-process (no {JOBS_FILE}): its rows are in rows.jsonl already"
            )
        raise UsageError(f"{path}: no {JOBS_FILE} (a run made with --executor local or slurm has one)")
    return RunDir(path)


def status(run: Any):
    """Where each case of a run stands, without accounting: for a run submitted to an executor,
    from the row files, then the scheduler's queue, then the job's log; for a run measured
    in-process, from its rows (a case with none is missing: an interrupted run, ``--resume``).

    Args:
        run: the run folder (or ``Run``): made with a local, slurm or debug executor, or in-process.

    Returns:
        ``pacabench.runs.executors.collect.RunStatus``: ``.cases`` as (case, state, detail), one
        per case of the run's suite (then any other case submitted), with state done / failed /
        running / pending / unknown / missing (no row and no job yet), ``.counts`` per state, and
        ``.eta_s`` (from the finished jobs' durations and the suite's ``array_parallelism``; None
        when nothing is left or nothing finished yet).
    """
    from .runs.executors.collect import run_status
    from .runs.executors.jobstate import load_submissions
    from .runs.executors.kinds import executor_for, job_states
    from .runs.folder import recorded_suite

    rd = _submitted_run(run, in_process=True)
    suite = recorded_suite(rd)
    if suite is None:
        return run_status(rd.path, job_states)
    subs = load_submissions(rd.path)
    devices = {s.case["device"] for s in subs} or {r.get("device") for r in rd.rows() if r.get("device")}
    cases = suite.cases(devices.pop() if len(devices) == 1 else None)
    parallel = executor_for(suite.executor).parallelism()
    return run_status(rd.path, job_states, parallel=parallel, cases=cases)


def collect(run: Any) -> list[dict[str, Any]]:
    """Merge the finished jobs' rows of a submitted run into ``rows.jsonl``, in suite order, under
    the run's lock; a job that ended without a row becomes a failure row. A torn last line of
    rows.jsonl (a parent killed mid-write) is moved to ``rows.jsonl.torn`` first, with a warning
    on stderr. Collecting twice changes nothing.

    Returns:
        The rows added or replaced (an ``error`` row replaced by a resubmitted case's row).
    """
    import sys

    from .runs.executors.collect import collect_rows
    from .runs.executors.kinds import job_states

    rd = _submitted_run(run)
    with rd.lock():
        return collect_rows(
            rd, job_states, note=lambda text: sys.stderr.write(f"pacabench: warning: {text}\n")
        )
