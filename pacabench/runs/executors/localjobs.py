"""submitit's ``LocalExecutor``, each job started the way a benchmark needs (imports submitit).

submitit starts a local job's controller in the parent's process group, sets
``CUDA_VISIBLE_DEVICES`` to "" unless GPUs are requested, and runs the ``setup`` lines in a
shell whose output goes to the parent's terminal. Here a job:

- runs in a session of its own: Ctrl-C in the terminal reaches the parent alone, which stops
  its jobs itself (no controller traceback), and the job's whole process group can be killed;
- keeps the parent's ``CUDA_VISIBLE_DEVICES`` (all GPUs when unset) unless ``gpus_per_node``
  asks for some: then the first that many of those the parent sees;
- runs each ``setup`` line in its own shell (``exec``-ing the controller after them, so the job id
  stays the pid), their output appended to the job's log: a failing line's message ends up in
  the row's ``error``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from submitit.local.local import LocalExecutor, LocalJob

__all__ = ["LocalJobs", "job_env", "job_command"]


def job_env(
    base: Mapping[str, str], *, command: str, tasks: int, timeout_min: float, gpus: int | None
) -> dict[str, str]:
    """The environment of a job's controller (what submitit's reads, ``SUBMITIT_LOCAL_*``)."""
    env = dict(base)
    env.update(
        SUBMITIT_LOCAL_NTASKS=str(tasks),
        SUBMITIT_LOCAL_COMMAND=command,
        SUBMITIT_LOCAL_TIMEOUT_S=str(int(60 * timeout_min)),
        SUBMITIT_LOCAL_SIGNAL_DELAY_S="0",
        SUBMITIT_LOCAL_NODEID="0",
        SUBMITIT_LOCAL_JOB_NUM_NODES="1",
        SUBMITIT_STDERR_TO_STDOUT="",
        SUBMITIT_EXECUTOR="local",
        SUBMITIT_LOCAL_WITH_SHELL="",  # the controller is exec'ed: its own pid is the job id
    )
    if gpus:
        seen = [d.strip() for d in base.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        env["CUDA_VISIBLE_DEVICES"] = ",".join((seen or [str(i) for i in range(gpus)])[:gpus])
    return env


def job_command(folder: Path, setup: Sequence[str]) -> list[str]:
    """The argv that starts a job: the controller, after the ``setup`` lines (each in its own brace
    group, so a trailing comment cannot swallow the next; the first that fails ends the job with
    its status), whose stdout/stderr go to the job's task-0 logs (``$$``: the job id)."""
    controller = [sys.executable, "-m", "submitit.local._local", str(folder)]
    if not setup:
        return controller
    logs = shlex.quote(str(folder)) + '/"$$"_0_log'
    lines = [f"{{\n{line}\n}} >>{logs}.out 2>>{logs}.err || exit $?" for line in setup]
    return ["/bin/sh", "-c", "\n".join([*lines, "exec " + shlex.join(controller)])]


class LocalJobs(LocalExecutor):
    """``LocalExecutor`` whose jobs start as this module says."""

    def _submit_command(self, command: str) -> LocalJob:
        tasks = self.parameters.get("tasks_per_node", 1)
        env = job_env(
            os.environ, command=command, tasks=tasks, timeout_min=self.parameters.get("timeout_min", 2.0),
            gpus=self.parameters.get("gpus_per_node"),
        )  # fmt: skip
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            job_command(folder, self.parameters.get("setup", ())), env=env, start_new_session=True
        )
        return LocalJob(folder=folder, job_id=str(process.pid), process=process, tasks=list(range(tasks)))
