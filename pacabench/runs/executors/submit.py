"""Submit a run's cases as submitit jobs and (unless detached) wait, merging rows as they come."""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ...spec.executor import ExecutorConfig
from ...spec.metrics import TIMED  # a timed case runs alone; params/FLOPs-only cases may share
from ..results import RunDir
from .collect import collect_rows
from .jobstate import JobState, Submission, record_submissions
from .rowfiles import retire_row_file, row_file
from .snapshot import importing_from, make_snapshot

__all__ = ["make_executor", "submit_cases", "is_timed", "POLL_S"]

POLL_S = 0.5


def is_timed(case) -> bool:
    return case.task != "cost" or bool(TIMED & set(case.metrics))


def make_executor(cfg: ExecutorConfig, folder: Path, array: bool = True):
    """The submitit executor for ``cfg.kind`` (the job logs go to ``folder``)."""
    import submitit

    if cfg.kind == "debug":
        return submitit.DebugExecutor(folder=folder)
    if cfg.kind == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=cfg.timeout_min, signal_delay_s=0, setup=list(cfg.setup))
        if cfg.gpus_per_node:  # one task per GPU: a distributed job (job._rank)
            ex.update_parameters(gpus_per_node=cfg.gpus_per_node, tasks_per_node=cfg.gpus_per_node)
        return ex
    ex = submitit.SlurmExecutor(folder=folder / "%j")
    params: dict[str, Any] = {"time": max(1, round(cfg.timeout_min)), "setup": list(cfg.setup)}
    params["signal_delay_s"] = min(90, max(10, int(cfg.timeout_min * 6)))
    for k in ("partition", "gpus_per_node", "cpus_per_task", "account", "qos", "constraint"):
        if getattr(cfg, k) is not None:
            params[k] = getattr(cfg, k)
    if cfg.gpus_per_node and cfg.gpus_per_node > 1:
        params["ntasks_per_node"] = cfg.gpus_per_node  # one task per GPU: a distributed job
    if cfg.mem_gb is not None:
        params["mem"] = f"{cfg.mem_gb:g}GB"
    if cfg.exclusive:
        params["exclusive"] = True
    params["array_parallelism"] = cfg.parallelism()
    ex.update_parameters(**params)
    return ex


def _submission(case, job, cfg: ExecutorConfig) -> Submission:
    return Submission(
        stem=case.key.file_stem(),
        case=case.to_dict(),
        job_id=str(job.job_id),
        executor=cfg.kind,
        stderr=str(job.paths.stderr),
        submitted=time.time(),
    )


def _args(case, rd: RunDir, cfg: ExecutorConfig) -> tuple:
    return (case.to_dict(), str(rd.path.resolve()), cfg.kind, rd.path.name)


def submit_cases(
    cases: list, rd: RunDir, cfg: ExecutorConfig, *, detach: bool = False,
    on_row: Callable[[dict], None] | None = None,
) -> list[Submission]:  # fmt: skip
    """Submit ``cases`` (their earlier row files set aside) and, unless ``detach``, wait for all of
    them, merging each row into rows.jsonl as it arrives (the caller holds the run's lock)."""
    from .job import run_job

    if detach and cfg.kind != "slurm":
        raise UsageError(
            f"--detach needs --executor slurm (the {cfg.kind} executor's jobs are children of this run)"
        )
    if not cases:
        return []
    for c in cases:
        retire_row_file(row_file(rd.path, c.key))
    snap = None if cfg.kind == "debug" else make_snapshot(rd.path)
    folder = rd.path / "submitit"
    with importing_from(snap):
        if cfg.kind == "slurm":
            ex = make_executor(cfg, folder)
            jobs = ex.map_array(run_job, *zip(*[_args(c, rd, cfg) for c in cases]))
            subs = [_submission(c, j, cfg) for c, j in zip(cases, jobs)]
            record_submissions(rd.path, subs)
            if not detach:
                _wait(rd, subs, {}, on_row)
            return subs
        return _throttled(cases, rd, cfg, run_job, on_row)


def _throttled(cases, rd: RunDir, cfg: ExecutorConfig, fn, on_row) -> list[Submission]:
    """Local/debug: submit in suite order, a timed case only when nothing else runs (and nothing
    beside it), untimed cases up to ``cfg.parallelism()`` at once. Rows are merged in suite order
    (a case's row waits for those before it)."""
    ex = make_executor(cfg, rd.path / "submitit")
    running: dict[str, Any] = {}  # stem -> job
    ended: dict[str, JobState] = {}
    subs: list[Submission] = []
    for case in cases:
        limit = 1 if is_timed(case) else cfg.parallelism()
        while running and (limit == 1 or len(running) >= limit or any(j.timed for j in running.values())):
            _poll(rd, subs, running, ended, cfg, on_row)
        job = ex.submit(fn, *_args(case, rd, cfg))
        job.timed = is_timed(case)
        sub = _submission(case, job, cfg)
        subs.append(sub)
        record_submissions(rd.path, [sub])
        running[sub.stem] = job
        if cfg.kind == "debug":
            with _closing_log_handlers():
                job.result()
    while running:
        _poll(rd, subs, running, ended, cfg, on_row)
    return subs


@contextlib.contextmanager
def _closing_log_handlers():
    """submitit's DebugJob adds two log FileHandlers to the root logger and removes them without
    closing them (a ResourceWarning per job): close what it removes."""
    root = logging.getLogger("")

    def remove(handler):
        logging.Logger.removeHandler(root, handler)
        handler.close()

    root.removeHandler = remove
    try:
        yield
    finally:
        del root.removeHandler


def _poll(rd: RunDir, subs: list[Submission], running: dict[str, Any], ended: dict, cfg, on_row) -> None:
    """Note what finished among ``running`` and merge the finished prefix of ``subs`` (sleeping
    ``POLL_S`` when nothing finished)."""
    finished = False
    for stem, job in list(running.items()):
        if job.done():
            del running[stem]
            sub = next((s for s in subs if s.stem == stem), None)
            ended[stem] = JobState("ended", "error", _local_reason(job, sub, cfg.timeout_min))
            finished = True
    if not finished:
        time.sleep(POLL_S)
        return
    prefix = list(itertools.takewhile(lambda s: s.stem in ended, subs))
    for d in collect_rows(rd, prefix, ended):
        if on_row is not None:
            on_row(d)


def _local_reason(job, sub: Submission | None, timeout_min: float) -> str:
    """Why a local job ended without a row: its time limit, or its process ended (killed, crashed)."""
    if sub is not None and time.time() - sub.submitted >= 60 * timeout_min * 0.95:
        return f"job timed out (time limit {60 * timeout_min:.0f} s)"
    try:
        exc = job.exception()
    except Exception as e:  # noqa: BLE001
        exc = e
    text = str(exc or "").strip().splitlines()
    crash = next((ln.strip() for ln in reversed(text) if "Error" in ln or "Killed" in ln), "")
    what = "killed?" if "has not produced any output" in str(exc) else "crashed"
    return (f"job process ended without writing its row ({what})" + (f": {crash}" if crash else ""))[:500]


def _wait(rd: RunDir, subs: list[Submission], states, on_row) -> None:
    """SLURM, attached: poll until every case has its row file (a job's or a failure row)."""
    while True:
        for d in collect_rows(rd, subs):
            if on_row is not None:
                on_row(d)
        if all(row_file(rd.path, s.stem).exists() for s in subs):
            return
        time.sleep(max(POLL_S, 2.0))
