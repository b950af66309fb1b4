"""The executors, one class per ``executor.kind``: where the cases of a run are measured.

``Executor.execute(suite, run_dir, ...)`` measures what a run folder still needs; it is all
``pacabench.run`` calls once the folder is ready and locked. ``executor_for`` gives the executor of
a suite's ``executor:`` block (parsed by ``pacabench.spec.executor``) with a caller's choice applied.

- ``InProcess`` (the default): ``runner.run_suite`` in this process.
- ``Local``: each case one job of submitit's ``LocalExecutor`` (its own process). Timed cases
  (latency, memory, accuracy) run one at a time, params/FLOPs-only cases up to
  ``array_parallelism`` at once; the parent waits, merging rows as they arrive.
- ``Debug`` (tests): submitit's ``DebugExecutor``, the same job function run in this process.
- ``Slurm``: the cases as one job array; ``array_parallelism`` caps the tasks (GPUs) in use at
  once. ``detach`` returns after submission (``pacabench status`` / ``collect`` follow the run).
  Options go to submitit's ``AutoExecutor`` under its generic names (timeout_min, mem_gb,
  gpus_per_node, cpus_per_task, tasks_per_node), which submitit maps to sbatch's.

A submitted case's job re-creates it from ``Case.to_dict()`` data, runs ``runner.run_case`` and
writes its row to ``rows/<case-key stem>.json`` (``job.run_job``); ``collect`` merges those files
into rows.jsonl. How a job that left no row file stands is the executor's to say
(``job_states``: SLURM's queue, or the job's process).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from ...errors import PacabenchError, UsageError
from ...spec.executor import ExecutorConfig
from ...spec.metrics import TIMED  # a timed case runs alone; params/FLOPs-only cases may share
from ..folder import RunDir, cases_to_refill, cases_to_submit
from ..progress import Progress
from .collect import collect_rows
from .job import run_job
from .jobstate import (
    JobState,
    Submission,
    load_submissions,
    log_tail,
    process_states,
    record_submissions,
    slurm_states,
)
from .procs import kill_job_process, proc_start
from .rowfiles import retire_row_file, row_file, rows_dir
from .snapshot import importing_from, make_snapshot

__all__ = [
    "Executor",
    "InProcess",
    "SubmititExecutor",
    "Local",
    "Debug",
    "Slurm",
    "EXECUTOR_CLASSES",
    "Outcome",
    "executor_for",
    "executor_class",
    "job_states",
    "is_timed",
    "POLL_S",
]

POLL_S = 0.5


def is_timed(case) -> bool:
    return case.task != "cost" or bool(TIMED & set(case.metrics))


@dataclass
class Outcome:
    """What ``Executor.execute`` leaves: the runner's summary (in process), or the jobs submitted
    (and whether the caller returned without waiting for them)."""

    summary: Any = None  # runner.RunSummary
    submissions: list[Submission] = field(default_factory=list)
    detached: bool = False
    missing: list[str] = field(default_factory=list)  # cases left without a row (executor runs)


class Executor:
    """Where the cases of a run are measured; one subclass per ``executor.kind``."""

    kind: ClassVar[str] = ""
    detachable: ClassVar[bool] = False  # may return once the jobs are submitted
    default_parallelism: ClassVar[int] = 1  # untimed jobs at once without array_parallelism

    def __init__(self, config: ExecutorConfig | None = None):
        self.config = replace(config if config is not None else ExecutorConfig(), kind=self.kind)

    def check(self, detach: bool = False) -> None:
        """Refuse (``UsageError``) what this executor cannot do here, before a run folder is made."""
        if detach and not self.detachable:
            kinds = ", ".join(k for k, c in EXECUTOR_CLASSES.items() if c.detachable)
            raise UsageError(f"--detach needs --executor {kinds}, not {self.kind}")

    def parallelism(self) -> int:
        """How many untimed jobs may run at once."""
        return self.config.array_parallelism or self.default_parallelism

    def execute(
        self, suite, rd: RunDir, *, device: str | None = None, max_cases: int | None = None,
        isolate: bool | None = None, refill: frozenset[str] = frozenset(), detach: bool = False,
        progress: Progress | None = None,
    ) -> Outcome:  # fmt: skip
        """Measure the cases of ``suite`` that ``rd`` still needs (the caller holds its lock).
        ``refill``: metrics added by a changed suite, measured again for finished cases."""
        raise NotImplementedError


class InProcess(Executor):
    """``runner.run_suite`` in this process (``isolate``: each case in a fresh interpreter)."""

    kind = "inprocess"

    def execute(
        self, suite, rd: RunDir, *, device: str | None = None, max_cases: int | None = None,
        isolate: bool | None = None, refill: frozenset[str] = frozenset(), detach: bool = False,
        progress: Progress | None = None,
    ) -> Outcome:  # fmt: skip
        from ..runner import run_suite

        emit = (progress or Progress()).emit
        settle_earlier(rd, self.config.timeout_min, emit)  # local jobs of an earlier executor run
        summary = run_suite(
            suite, rd, device=device, isolate=isolate, max_cases=max_cases, refill=refill,
            on_start=lambda todo: emit("start", todo), on_case=lambda case: emit("case", case),
            on_row=lambda row: emit("row", row.to_dict()),
        )  # fmt: skip
        return Outcome(summary=summary)


class SubmititExecutor(Executor):
    """Each case one submitit job (``job.run_job``) that writes the case's row file; ``collect``
    merges the row files into rows.jsonl. The jobs import pacabench from a copy of the package
    made at submission (``snapshot``), so editing the checkout meanwhile changes nothing."""

    snapshot: ClassVar[bool] = True
    waits_for_earlier: ClassVar[bool] = False  # earlier jobs of the run share this machine's CPUs/GPUs

    @staticmethod
    def job_states(subs: list[Submission]) -> dict[str, JobState]:
        """How jobs of this executor that left no row file stand (by case stem)."""
        return process_states(subs)

    def make(self, folder: Path):
        """The submitit executor, its logs under ``folder``."""
        raise NotImplementedError

    def execute(
        self, suite, rd: RunDir, *, device: str | None = None, max_cases: int | None = None,
        isolate: bool | None = None, refill: frozenset[str] = frozenset(), detach: bool = False,
        progress: Progress | None = None,
    ) -> Outcome:  # fmt: skip
        """Submit what is missing or failed (``folder.cases_to_submit``), and the metrics ``refill``
        adds for finished cases (``folder.cases_to_refill``: a job measures them and merges its
        row), not what is still queued; wait unless ``detach``. ``isolate`` does not apply: each
        job is a process of its own. Jobs of an earlier submission still running on this machine
        are waited for first (``waits_for_earlier``: a timed case runs alone)."""
        emit = (progress or Progress()).emit
        cases, _ = suite.expand(device, max_cases)
        collect_rows(rd, job_states, note=lambda text: emit("warning", text))
        earlier = self._earlier(rd, detach, emit)
        queued = {s.stem for s in earlier}
        rows = rd.rows()
        bases = {c.key.file_stem(): (c, row) for c, row in cases_to_refill(cases, rows, refill, queued)}
        todo = cases_to_submit(cases, rows, queued)
        stems = {c.key.file_stem() for c in todo} | set(bases)
        plan = [bases.get(c.key.file_stem(), (c, None)) for c in cases if c.key.file_stem() in stems]
        emit(
            "info",
            f"{self.kind}: submitting {len(todo)} of {len(cases)} case(s)"
            + (f", {len(bases)} finished to measure {', '.join(sorted(refill))} for" if bases else "")
            + (f" ({len(queued)} still queued)" if queued else ""),
        )
        emit("submit", [c for c, _ in plan])
        subs = self.submit_plan(plan, rd, detach=detach, on_row=lambda d: emit("row", d))
        if not detach and earlier:
            self._wait_rows(rd, earlier, lambda d: emit("row", d))
        missing = [] if detach else [str(c.key) for c in cases if c.key not in rd.done_keys()]
        if missing:
            emit(
                "warning",
                f"{len(missing)} case(s) have no row yet (first: {missing[0]}); "
                f"see pacabench status {rd.path}, then pacabench collect or --resume-from",
            )
        return Outcome(submissions=subs, detached=detach, missing=missing)

    def _earlier(self, rd: RunDir, detach: bool, emit) -> list[Submission]:
        """The run's jobs of earlier submissions still pending or running (not submitted again);
        with ``waits_for_earlier`` those of this machine are waited for first."""
        return settle_earlier(rd, self.config.timeout_min, emit, wait=self.waits_for_earlier and not detach)

    def _wait_rows(self, rd: RunDir, subs: list[Submission], on_row) -> None:
        """Poll until each of ``subs`` (jobs of an earlier submission) has its row file."""
        while True:
            for d in collect_rows(rd, job_states, subs):
                on_row(d)
            if all(row_file(rd.path, s.stem).exists() for s in subs):
                return
            time.sleep(max(POLL_S, 2.0))

    def submit(
        self, cases: list, rd: RunDir, *, detach: bool = False, on_row: Callable[[dict], None] | None = None
    ) -> list[Submission]:
        """Submit ``cases`` (their earlier row files set aside) and, unless ``detach``, wait for all
        of them, merging each row into rows.jsonl as it arrives (the caller holds the run's lock)."""
        return self.submit_plan([(c, None) for c in cases], rd, detach=detach, on_row=on_row)

    def submit_plan(
        self, plan: list[tuple[Any, dict | None]], rd: RunDir, *, detach: bool = False,
        on_row: Callable[[dict], None] | None = None,
    ) -> list[Submission]:  # fmt: skip
        """``submit`` for (case, base) pairs: a case with its finished row ``base`` is measured for
        its (narrowed) metrics and the job writes ``base`` with them merged in."""
        self.check(detach)
        if not plan:
            return []
        rows_dir(rd.path)
        for c, _ in plan:
            retire_row_file(row_file(rd.path, c.key))
        snap = make_snapshot(rd.path) if self.snapshot else None
        with importing_from(snap):
            return self._launch(plan, rd, detach, on_row or (lambda d: None))

    def _launch(self, plan: list, rd: RunDir, detach: bool, on_row) -> list[Submission]:
        """Submit in suite order, a timed case only when nothing else runs (and nothing beside it),
        untimed cases up to ``parallelism()`` at once. Rows are merged in suite order (a case's row
        waits for those before it). Interrupted (Ctrl-C, SIGTERM), the running jobs are stopped
        (``_stop``) and the rows that finished merged before the interrupt goes on."""
        ex = self.make(rd.path / "submitit")
        running: dict[str, Any] = {}  # stem -> job
        ended: dict[str, JobState] = {}
        subs: list[Submission] = []
        try:
            for case, base in plan:
                limit = 1 if is_timed(case) else self.parallelism()
                while running and (
                    limit == 1 or len(running) >= limit or any(j.timed for j in running.values())
                ):
                    self._poll(rd, subs, running, ended, on_row)
                job = ex.submit(run_job, *self._args(case, rd, base))
                job.timed = is_timed(case)
                sub = self._submission(case, job, base)
                subs.append(sub)
                record_submissions(rd.path, [sub])
                running[sub.stem] = job
                self._submitted(job)
            while running:
                self._poll(rd, subs, running, ended, on_row)
        except BaseException:
            self._stop(running, subs)
            with contextlib.suppress(Exception):
                collect_rows(rd, lambda missing: ended, [s for s in subs if s.stem in ended])
            raise
        return subs

    def _stop(self, running: dict[str, Any], subs: list[Submission]) -> None:
        """Stop the jobs still running when the parent is interrupted (local: they are its children)."""

    def _submitted(self, job) -> None:
        """Called once a job is submitted (the debug executor runs it there and then)."""

    def _args(self, case, rd: RunDir, base: dict | None = None) -> tuple:
        return (case.to_dict(), str(rd.path.resolve()), self.kind, rd.path.name, base)

    def _submission(self, case, job, base: dict | None = None) -> Submission:
        pid = str(job.job_id)
        return Submission(
            stem=case.key.file_stem(),
            case=case.to_dict(),
            job_id=pid,
            executor=self.kind,
            stderr=str(job.paths.stderr),
            submitted=time.time(),
            proc_start=proc_start(int(pid)) if self.kind == "local" and pid.isdigit() else None,
            refill=list(case.metrics) if base is not None else [],
        )

    def _poll(self, rd: RunDir, subs: list[Submission], running: dict[str, Any], ended: dict, on_row) -> None:
        """Note what finished among ``running`` and merge the finished prefix of ``subs`` (sleeping
        ``POLL_S`` when nothing finished)."""
        finished = False
        for stem, job in list(running.items()):
            sub = next((s for s in subs if s.stem == stem), None)
            self._watch(job, sub)
            if job.done():
                del running[stem]
                ended[stem] = JobState("ended", "error", _ended_reason(job, sub, self.config.timeout_min))
                finished = True
        if not finished:
            time.sleep(POLL_S)
            return
        prefix = list(itertools.takewhile(lambda s: s.stem in ended, subs))
        for d in collect_rows(rd, lambda missing: ended, prefix):
            on_row(d)

    def _watch(self, job, sub: Submission | None) -> None:
        """Enforce what the scheduler does not (local: the time limit of a job's setup lines)."""


def settle_earlier(rd: RunDir, timeout_min: float, emit, wait: bool = True) -> list[Submission]:
    """The run's jobs of earlier submissions still pending or running. With ``wait``, those that
    run on this machine (local jobs, left running by a parent killed with SIGKILL) are waited for
    first, a timed case must not be measured beside them, and the rows they leave are merged; the
    others are returned (still queued)."""
    subs = load_submissions(rd.path)
    states = job_states(subs) if subs else {}
    earlier = [s for s in subs if states[s.stem].state in ("pending", "running")]
    here = [s for s in earlier if s.executor == "local"]
    if here and wait:
        pids = ", ".join(s.job_id for s in here[:5]) + (", ..." if len(here) > 5 else "")
        emit(
            "info",
            f"waiting for {len(here)} job(s) of an earlier submission of this run, still running "
            f"(pid {pids}): a timed case must run alone. Ctrl-C to stop waiting",
        )
        _wait_local(here, timeout_min)
        collect_rows(rd, job_states)
        earlier = [s for s in earlier if s not in here]
    return earlier


GRACE_S = 15.0  # past its time limit, a local job whose controller has not ended it is killed


def _past_limit(sub: Submission, timeout_min: float) -> bool:
    return time.time() - sub.submitted > 60 * timeout_min + GRACE_S


def _wait_local(subs: list[Submission], timeout_min: float) -> None:
    """Until none of ``subs`` (local jobs) runs; one past its time limit is killed."""
    while True:
        live = [s for s in subs if process_states([s])[s.stem].state == "running"]
        if not live:
            return
        for s in live:
            if _past_limit(s, timeout_min):
                kill_job_process(int(s.job_id), s.proc_start, s.submitted)
        time.sleep(POLL_S)


def _ended_reason(job, sub: Submission | None, timeout_min: float) -> str:
    """Why a local job ended without a row: its time limit, or its process ended (killed, crashed;
    the last line of its log says what a failing ``setup`` line printed)."""
    if sub is not None and time.time() - sub.submitted >= 60 * timeout_min * 0.95:
        return f"job timed out (time limit {60 * timeout_min:.0f} s)"
    try:
        exc = job.exception()
    except Exception as e:  # noqa: BLE001
        exc = e
    if "has not produced any output" in str(exc):  # no result: killed, or a setup line failed
        what, lines = "killed?", (log_tail(sub.stderr) if sub is not None else None) or []
    else:
        what = "crashed"
        lines = [ln for ln in str(exc or "").splitlines() if "Error" in ln or "Killed" in ln]
    detail = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
    return (f"job process ended without writing its row ({what})" + (f": {detail}" if detail else ""))[:500]


class Local(SubmititExecutor):
    """Each case a process of this machine (``localjobs.LocalJobs``, on submitit's
    ``LocalExecutor``); the parent waits, and stops its jobs when it is interrupted."""

    kind = "local"
    waits_for_earlier = True

    def make(self, folder: Path):
        from .localjobs import LocalJobs

        cfg = self.config
        ex = LocalJobs(folder=folder)
        ex.update_parameters(timeout_min=cfg.timeout_min, signal_delay_s=0, setup=list(cfg.setup))
        if cfg.gpus_per_node:  # one task per GPU: a distributed job (job._rank)
            ex.update_parameters(gpus_per_node=cfg.gpus_per_node, tasks_per_node=cfg.gpus_per_node)
        return ex

    def _watch(self, job, sub: Submission | None) -> None:
        """A job past its time limit (a ``setup`` line hanging, before the controller's clock
        starts) is killed with everything it started."""
        if sub is not None and _past_limit(sub, self.config.timeout_min):
            kill_job_process(int(sub.job_id), sub.proc_start, sub.submitted)

    def _stop(self, running: dict[str, Any], subs: list[Submission]) -> None:
        """SIGTERM each running job's process group, SIGKILL what is left after a few seconds."""
        mine = [s for s in subs if s.stem in running]
        for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
            for s in mine:
                kill_job_process(int(s.job_id), s.proc_start, s.submitted, sig)
            deadline = time.time() + wait_s
            while time.time() < deadline and not all(j.done() for j in running.values()):
                time.sleep(0.1)
        for job in running.values():
            job.done()  # reaps the process


class Debug(SubmititExecutor):
    """Tests: submitit's ``DebugExecutor`` runs each job in this process when it is submitted
    (no snapshot: the checkout is what runs)."""

    kind = "debug"
    snapshot = False

    def make(self, folder: Path):
        import submitit

        return submitit.DebugExecutor(folder=folder)

    def _submitted(self, job) -> None:
        with _closing_log_handlers():
            job.result()


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


class Slurm(SubmititExecutor):
    """The cases as one SLURM job array; may return once submitted (``detach``)."""

    kind = "slurm"
    detachable = True
    default_parallelism = 256
    job_states = staticmethod(slurm_states)

    def check(self, detach: bool = False) -> None:
        super().check(detach)
        if shutil.which("sbatch") is None:
            raise UsageError(
                "--executor slurm: no sbatch on PATH (no SLURM here); use --executor inprocess or local"
            )

    def make(self, folder: Path):
        """An ``AutoExecutor`` on SLURM: submitit maps the generic names to sbatch's (timeout_min →
        time, mem_gb → mem, tasks_per_node → ntasks_per_node); the rest are ``slurm_`` options."""
        import submitit

        cfg, gpus = self.config, self.config.gpus_per_node
        ex = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
        ex.update_parameters(
            timeout_min=max(1, round(cfg.timeout_min)),  # whole minutes for AutoExecutor
            mem_gb=cfg.mem_gb,
            cpus_per_task=cfg.cpus_per_task,
            gpus_per_node=gpus,
            tasks_per_node=gpus if gpus and gpus > 1 else None,  # one task per GPU: a distributed job
            slurm_partition=cfg.partition,
            slurm_account=cfg.account,
            slurm_qos=cfg.qos,
            slurm_constraint=cfg.constraint,
            slurm_exclusive=cfg.exclusive or None,
            slurm_array_parallelism=self.parallelism(),
            slurm_signal_delay_s=min(90, max(10, int(cfg.timeout_min * 6))),
            slurm_setup=list(cfg.setup),
        )
        return ex

    def _launch(self, plan: list, rd: RunDir, detach: bool, on_row) -> list[Submission]:
        """One job array; unless ``detach``, poll until every case has its row file (a job's or a
        failure row)."""
        try:
            ex = self.make(rd.path / "submitit")
        except RuntimeError as e:  # submitit: "Could not detect srun"
            raise SubmitError(f"--executor slurm: submitit cannot use SLURM here: {e}") from None
        jobs = _submit_array(ex, [self._args(c, rd, base) for c, base in plan])
        subs = [self._submission(c, j, base) for (c, base), j in zip(plan, jobs)]
        record_submissions(rd.path, subs)
        if not detach:
            self._wait_rows(rd, subs, on_row)
        return subs


class SubmitError(PacabenchError):
    """The scheduler refused the jobs (sbatch failed: no controller, a bad partition, ...)."""


def _submit_array(ex, args: list[tuple]) -> list:
    """``map_array`` of ``run_job``; sbatch's refusal is a one-line ``SubmitError`` with its reason
    (submitit prints sbatch's stderr and raises a long error: both are caught here)."""
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return ex.map_array(run_job, *zip(*args))
    except (FailedJobError, FailedSubmissionError, OSError, subprocess.SubprocessError) as e:
        text = f"{e}\n{err.getvalue()}"
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        why = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else type(e).__name__)
        raise SubmitError(f"--executor slurm: sbatch could not submit the jobs: {why[:300]}") from None


EXECUTOR_CLASSES: dict[str, type[Executor]] = {c.kind: c for c in (InProcess, Local, Slurm, Debug)}


def executor_class(kind: str) -> type[Executor]:
    """The class of an executor kind (``UsageError`` for an unknown one)."""
    try:
        return EXECUTOR_CLASSES[kind]
    except KeyError:
        raise UsageError(f"unknown executor '{kind}' ({', '.join(EXECUTOR_CLASSES)})") from None


def executor_for(
    config: ExecutorConfig, choice: str | Mapping[str, Any] | ExecutorConfig | Executor | None = None
) -> Executor:
    """The executor of ``config`` (a suite's ``executor:`` block) with ``choice`` applied: None keeps
    it; a kind (``"local"``) or a mapping of block keys (``{"kind": "slurm", "partition": "gpu"}``)
    overrides those keys (a bad value is a ``UsageError``); an ``ExecutorConfig`` or an ``Executor``
    is used instead."""
    if isinstance(choice, Executor):
        return choice
    if isinstance(choice, ExecutorConfig):
        config = choice
    elif isinstance(choice, str):
        config = config.override(kind=choice)
    elif isinstance(choice, Mapping):
        config = config.override(**choice)
    elif choice is not None:
        raise TypeError(
            f"executor must be a kind, a mapping, an ExecutorConfig or an Executor, got {choice!r}"
        )
    return executor_class(config.kind)(config)


def job_states(subs: list[Submission]) -> dict[str, JobState]:
    """How each submission's job stands (by case stem), asked of the executor that submitted it
    (a resumed run may hold the jobs of several)."""
    groups: dict[type, list[Submission]] = {}
    for s in subs:
        groups.setdefault(executor_class(s.executor), []).append(s)
    states: dict[str, JobState] = {}
    for cls, group in groups.items():
        states.update(cls.job_states(group))
    return states
