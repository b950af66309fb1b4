"""Which process a local job is: a pid alone is not an identity (the kernel hands it out again
once the job is gone), so a job's process is the one with its pid that started when the job was
submitted (``/proc/PID/stat``'s start time, recorded at submission; for older records, a start
no later than the submission)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

__all__ = ["proc_start", "is_job_process", "kill_job_process"]

_SLACK_S = 2.0  # /proc/stat's boot time is whole seconds


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of a live pid; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        fields = text.rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def proc_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot), None where it cannot be read."""
    st = _stat(pid)
    return st[1] if st else None


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text(encoding="utf-8").splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def is_job_process(pid: int, started: int | None, submitted: float) -> bool:
    """Whether the job submitted at ``submitted`` (unix time) whose process had pid ``pid`` and
    start time ``started`` (None: not recorded) still runs."""
    if pid <= 0:
        return False
    if not Path("/proc/self/stat").exists():  # no procfs: all that can be asked is whether pid exists
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    st = _stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    if started is not None:
        return st[1] == started
    boot = _boot_time()
    if boot is None:
        return True
    return boot + st[1] / os.sysconf("SC_CLK_TCK") <= submitted + _SLACK_S


def kill_job_process(pid: int, started: int | None, submitted: float, sig: int = signal.SIGKILL) -> bool:
    """Signal a local job's process and everything it started (its process group, when it leads
    one), if it is still that job's; True when a signal was sent."""
    if not is_job_process(pid, started, submitted):
        return False
    with contextlib.suppress(OSError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
        return True
    return False
