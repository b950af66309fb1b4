"""The ``executor:`` block of a suite and its CLI overrides (no torch, no submitit import).

What each kind does is ``pacabench.runs.executors.kinds``'s (one class per kind)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["EXECUTORS", "ExecutorConfig", "parse_executor_block", "EXECUTOR_KEYS", "EXECUTOR_DOCS"]

EXECUTORS = ("inprocess", "local", "slurm", "debug")


def _pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _pos_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def _opt_str(v: Any) -> bool:
    return isinstance(v, str) and v != ""


# key -> (what it must be, check)
EXECUTOR_KEYS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "kind": (f"one of {', '.join(EXECUTORS)}", lambda v: v in EXECUTORS),
    "partition": ("a string", _opt_str),
    "gpus_per_node": ("a positive int", _pos_int),
    "cpus_per_task": ("a positive int", _pos_int),
    "mem_gb": ("a positive number", _pos_num),
    "timeout_min": ("a positive number of minutes", _pos_num),
    "array_parallelism": ("a positive int", _pos_int),
    "exclusive": ("true or false", lambda v: isinstance(v, bool)),
    "account": ("a string", _opt_str),
    "qos": ("a string", _opt_str),
    "constraint": ("a string", _opt_str),
    "setup": ("a list of shell lines", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
}

CLI_FLAGS = {"kind": "--executor", "array_parallelism": "--parallel"}  # the run options that override them

# One line per key: the suite reference page and the JSON Schema's descriptions (tests/test_docs.py
# fails on a key without one). The defaults are ExecutorConfig's.
EXECUTOR_DOCS: dict[str, str] = {
    "kind": "inprocess (this process, the default), local (one subprocess per case via submitit), slurm "
    "(a SLURM job array via submitit) or debug (submitit's in-process DebugExecutor, for tests).",
    "partition": "SLURM partition to submit to; default: the cluster's default.",
    "gpus_per_node": "GPUs per job (SLURM --gpus-per-node; local: the job sees that many of this "
    "process's GPUs, none when unset).",
    "cpus_per_task": "CPU cores per job (SLURM --cpus-per-task).",
    "mem_gb": "Memory per job in GB (SLURM --mem); default: the cluster's default.",
    "timeout_min": "Time limit of one job in minutes (SLURM --time; local jobs are killed past it). Default 60.",
    "array_parallelism": "At most this many jobs at once (SLURM array %N; local: params/FLOPs-only cases in "
    "parallel, timed ones always alone); `run --parallel` overrides.",
    "exclusive": "SLURM --exclusive: a node to itself, so a neighbour cannot disturb the timing. Default false.",
    "account": "SLURM account to charge.",
    "qos": "SLURM quality of service.",
    "constraint": "SLURM --constraint, e.g. a GPU type (a100).",
    "setup": "Shell lines run before each job (e.g. `module load cuda`, `source .venv/bin/activate`).",
}


@dataclass(frozen=True)
class ExecutorConfig:
    """How the cases of a run are executed; ``None`` means "the scheduler's default"."""

    kind: str = "inprocess"
    partition: str | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    timeout_min: float = 60.0
    array_parallelism: int | None = None
    exclusive: bool = False
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    setup: tuple[str, ...] = field(default_factory=tuple)

    def override(self, **kw: Any) -> ExecutorConfig:
        """A copy with the non-None values of ``kw`` (executor keys) applied; an unknown key or a
        bad value is a ``UsageError`` naming the run option that sets it."""
        from ..errors import UsageError

        kw = {k: v for k, v in kw.items() if v is not None}
        for k, v in kw.items():
            if k not in EXECUTOR_KEYS:
                raise UsageError(f"unknown executor key '{k}' ({', '.join(EXECUTOR_KEYS)})")
            what, ok = EXECUTOR_KEYS[k]
            if not ok(v):
                flag = CLI_FLAGS.get(k, "--" + k.replace("_", "-"))
                raise UsageError(f"{flag} must be {what}, got {v!r}")
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)
        }


def parse_executor_block(data: Any, fail: Callable[[tuple, str], None]) -> ExecutorConfig:
    """The suite's ``executor:`` mapping → ``ExecutorConfig``; ``fail(path, msg)`` reports a bad key
    (the suite parser's, so errors read ``file:line: message``)."""
    import difflib

    if data is None:
        return ExecutorConfig()
    if not isinstance(data, dict):
        fail(("executor",), "executor must be a mapping (kind, partition, gpus_per_node, ...)")
    for k, v in data.items():
        if k not in EXECUTOR_KEYS:
            near = difflib.get_close_matches(str(k), sorted(EXECUTOR_KEYS), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            fail(("executor", k), f"unknown executor key '{k}'{hint}")
        what, ok = EXECUTOR_KEYS[k]
        if not ok(v):
            fail(("executor", k), f"executor.{k} must be {what}, got {v!r}"[:200])
    d = dict(data)
    if "setup" in d:
        d["setup"] = tuple(d["setup"])
    return ExecutorConfig(**d)
