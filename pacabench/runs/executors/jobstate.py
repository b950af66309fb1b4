"""Where each submitted case stands, without accounting (no ``sacct``): the row file, then the
scheduler's queue (``squeue -t all``, which lists finished jobs for ``MinJobAge``) or the job's
process (``procs``), then the job's stderr log (the reason SLURM wrote there: cancelled, time
limit, out of memory). The submissions themselves are ``jobsfile``'s."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

from .jobsfile import JOBS_FILE, Submission, load_submissions, record_submissions, suite_order
from .procs import is_job_process

__all__ = [
    "Submission",
    "JOBS_FILE",
    "load_submissions",
    "record_submissions",
    "slurm_states",
    "process_states",
    "JobState",
    "suite_order",
    "log_tail",
]

# squeue states of a job that has ended, and what its case becomes without a row file
ENDED = {
    "COMPLETED": "error",
    "FAILED": "error",
    "CANCELLED": "error",
    "TIMEOUT": "error",
    "OUT_OF_MEMORY": "oom",
    "NODE_FAIL": "error",
    "PREEMPTED": "error",
    "BOOT_FAIL": "error",
    "DEADLINE": "error",
}


@dataclass
class JobState:
    state: str  # pending | running | ended
    status: str | None = None  # for ended jobs: error | oom
    reason: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)  # row fields naming the job (SLURM ids)


def _squeue(job_ids: set[str]) -> dict[str, tuple[str, str]] | None:
    """{job id (``123_4`` for array tasks): (state, reason)} of the jobs SLURM still knows;
    None when squeue cannot be run."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    cmd = ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j", ",".join(arrays)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 and "Invalid job id" not in out.stderr:
        return None
    found = {}
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            found[parts[0]] = (parts[1], parts[2])
    return found


def log_tail(stderr: str, size: int = 64 * 1024) -> list[str] | None:
    """The last lines of a job's log (its last ``size`` bytes); None when there is no log."""
    if not stderr:
        return None
    try:
        with open(stderr, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            return f.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None


def _from_log(stderr: str) -> tuple[str, str]:
    """(status, reason) from the last lines of a job's stderr log (SLURM writes its verdict there)."""
    lines = log_tail(stderr)
    if lines is None:
        return "error", "job left the queue before it started (cancelled)"
    text = "\n".join(lines[-50:])
    if "DUE TO TIME LIMIT" in text or "timed-out" in text:
        return "error", "job timed out (time limit)"
    if "oom-kill" in text.lower() or "out of memory" in text.lower():
        return "oom", "job killed for memory (oom-kill)"
    if "CANCELLED" in text:
        return "error", "job cancelled (scancel)"
    last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
    return "error", ("job ended without a row" + (f": {last}" if last else ""))[:500]


def slurm_states(subs: list[Submission]) -> dict[str, JobState]:
    """Jobs of a SLURM array: the queue's state, else the verdict in the job's log; each with the
    job id and array index a failure row records."""
    queue = _squeue({s.job_id for s in subs})
    states = {}
    for s in subs:
        states[s.stem] = _slurm_state(s, queue)
        index = s.job_id.partition("_")[2]
        states[s.stem].provenance = {
            "slurm_job_id": s.job_id,
            "slurm_array_index": int(index) if index.isdigit() else None,
        }
    return states


def _slurm_state(s: Submission, queue: dict[str, tuple[str, str]] | None) -> JobState:
    """One array task's state: squeue's answer, or (forgotten by slurmctld) its log's verdict."""
    if queue is None:
        return JobState("unknown", reason="squeue failed")
    state, reason = queue.get(s.job_id, ("", ""))
    if state in ("PENDING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED"):
        return JobState("pending", reason=reason)
    if state in ("RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"):
        return JobState("running")
    if state in ENDED:
        why = f": {_from_log(s.stderr)[1]}" if state in ("COMPLETED", "FAILED") else ""
        reason = f"SLURM {state}{why}" + (f" ({reason})" if reason and reason != "None" else "")
        return JobState("ended", ENDED[state], reason)
    status, reason = _from_log(s.stderr)  # forgotten by slurmctld (older than MinJobAge)
    return JobState("ended", status, reason)


def process_states(subs: list[Submission]) -> dict[str, JobState]:
    """Jobs run as processes of this machine (local, debug; the job id is the pid): running while
    the process that was started for it lives (``procs.is_job_process``: a pid reused by another
    process is not the job), else ended (with the reason its log gives)."""
    states = {}
    for s in subs:
        if s.job_id.isdigit() and is_job_process(int(s.job_id), s.proc_start, s.submitted):
            states[s.stem] = JobState("running")
        else:
            states[s.stem] = JobState("ended", *_from_log(s.stderr))
    return states
