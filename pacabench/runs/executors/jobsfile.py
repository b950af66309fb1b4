"""``jobs.json``: the jobs a run submitted, one ``Submission`` per case and submission.

The file is read as untrusted input (a user may have edited it): anything that is not a list of
well-formed submissions is a one-line ``UsageError`` naming the entry, a case stem must be the
stem of the case recorded beside it (so a row file is never written outside ``rows/``), and a
job's log path is only followed inside the run folder (re-rooted there when the folder moved)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ...errors import UsageError
from .rowfiles import write_row_file

__all__ = ["Submission", "JOBS_FILE", "load_submissions", "record_submissions", "suite_order"]

JOBS_FILE = "jobs.json"
_KINDS = ("local", "slurm", "debug")  # the executors that submit jobs


@dataclass
class Submission:
    """One case submitted as one job (the latest submission of a case wins)."""

    stem: str
    case: dict[str, Any]
    job_id: str
    executor: str
    stderr: str
    submitted: float
    proc_start: int | None = None  # local jobs: the process's start (clock ticks since boot): who it is
    refill: list[str] = field(default_factory=list)  # metrics measured again for a finished case

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _raw(run_path: Path) -> list[Any]:
    """The entries of ``jobs.json`` ([] without the file); one line for a file that is not
    ``{"submissions": [...]}``."""
    path = run_path / JOBS_FILE
    if not path.exists() and not path.is_symlink():
        return []
    try:
        text = path.read_bytes().decode("utf-8")
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, not the run's list of jobs") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read: {getattr(e, 'strerror', None) or type(e).__name__}") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise UsageError(f"{path}: not JSON (edited or cut short?)") from None
    if not isinstance(data, dict) or not isinstance(data.get("submissions"), list):
        raise UsageError(f'{path}: must be a JSON object {{"submissions": [...]}}')
    return data["submissions"]


def load_submissions(run_path: Path) -> list[Submission]:
    """The run's submissions in suite order, the latest one per case (``UsageError`` naming the
    first entry that is not a well-formed submission)."""
    latest: dict[str, Submission] = {}
    for i, d in enumerate(_raw(run_path), 1):
        sub = _submission(run_path, d)
        if isinstance(sub, str):
            raise UsageError(f"{run_path / JOBS_FILE}: submission {i}: {sub}")
        latest.pop(sub.stem, None)
        latest[sub.stem] = sub
    return list(latest.values())


def suite_order(run_path: Path) -> dict[str, int]:
    """Case stem → position, by first submission (the suite's order; a resubmission keeps it)."""
    order: dict[str, int] = {}
    for d in _raw(run_path):
        if isinstance(d, dict) and isinstance(d.get("stem"), str):
            order.setdefault(d["stem"], len(order))
    return order


def record_submissions(run_path: Path, subs: list[Submission]) -> None:
    """Append submissions to ``jobs.json`` (rewritten atomically)."""
    write_row_file(run_path / JOBS_FILE, {"submissions": _raw(run_path) + [s.to_dict() for s in subs]})


_TYPES = {"stem": str, "case": dict, "job_id": str, "executor": str, "stderr": str}
_JSON_NAMES = {str: "string", dict: "object"}


def _submission(run_path: Path, d: Any) -> Submission | str:
    """The submission of one entry, or why it is not one."""
    if not isinstance(d, dict):
        return f"a JSON {type(d).__name__}, not an object"
    for k, kind in _TYPES.items():
        if not isinstance(d.get(k), kind):
            return f"'{k}' must be a JSON {_JSON_NAMES[kind]}, got {d.get(k)!r}"[:200]
    t = d.get("submitted")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
        return f"'submitted' must be a time in seconds, got {t!r}"[:200]
    ps = d.get("proc_start")
    if ps is not None and (isinstance(ps, bool) or not isinstance(ps, int)):
        return f"'proc_start' must be an int, got {ps!r}"[:200]
    refill = d.get("refill", [])
    if not isinstance(refill, list) or not all(isinstance(m, str) for m in refill):
        return f"'refill' must be a list of metric names, got {refill!r}"[:200]
    if d["executor"] not in _KINDS or not d["job_id"]:
        return f"'executor' must be one of {', '.join(_KINDS)} and 'job_id' not empty"
    problem = case_problem(d["case"], d["stem"])
    if problem:
        return problem
    known = {f.name for f in fields(Submission)}
    sub = Submission(**{k: v for k, v in d.items() if k in known})
    sub.stderr = _log_in_run(run_path, sub.stderr)
    return sub


def _same_case(stem: str, key_stem: str) -> bool:
    """The stem is the case's, up to the checkpoint's hash (a checkpoint file rewritten since)."""
    if stem == key_stem:
        return True
    drop = re.compile(r"@(?:[0-9a-f]{16}|none)(?=_|$)")
    return "@" in key_stem and drop.sub("@", stem) == drop.sub("@", key_stem)


def case_problem(case: dict[str, Any], stem: str) -> str | None:
    """Why ``case`` (``Case.to_dict()`` data from jobs.json) is not a case whose key stem is
    ``stem``, or None: the fields a failure row and ``status`` take from it must have their types."""
    from ...spec.suite import Case

    if not isinstance(case.get("metrics"), list) or not isinstance(case.get("resolution"), list):
        return "bad case: metrics and resolution must be lists"
    try:
        c = Case.from_dict(case)
        checks = {
            "suite, model, dtype, device, task, mode and counter must be strings": all(
                isinstance(v, str) and v
                for v in (c.suite, c.model, c.dtype, c.device, c.task, c.mode, c.counter)
            ),
            "resolution must be [h, w] of positive ints": len(c.resolution) == 2
            and all(type(v) is int and v > 0 for v in c.resolution),
            "batch_size must be a positive int": type(c.batch_size) is int and c.batch_size > 0,
            "head and checkpoint must be strings or null": all(
                v is None or (isinstance(v, str) and v) for v in (c.head, c.checkpoint)
            ),
            "channels_last, compile, grad_checkpointing must be true or false": all(
                isinstance(v, bool) for v in (c.channels_last, c.compile, c.grad_checkpointing)
            ),
            "metrics must be names, kwargs an object": all(isinstance(m, str) for m in c.metrics)
            and isinstance(c.kwargs, dict),
        }
        bad = next((what for what, ok in checks.items() if not ok), None)
        if bad:
            return f"bad case: {bad}"
        key_stem = c.key.file_stem()
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError, RecursionError) as e:
        return f"bad case ({type(e).__name__}: {' '.join(str(e).split())[:80]})"
    if not _same_case(stem, key_stem):
        return f"stem {stem[:100]!r} is not the stem of its case ({key_stem[:100]})"
    return None


def _log_in_run(run_path: Path, stderr: str) -> str:
    """A job's log path if it lies in the run folder (re-rooted at its ``submitit`` folder when the
    run folder was moved), else "": a path in jobs.json never makes pacabench read elsewhere."""
    if not stderr or "\0" in stderr:
        return ""
    run = run_path.resolve()

    def inside(p: Path) -> bool:
        try:
            real = p.resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a bad name
            return False
        return real != run and run in real.parents

    p = Path(stderr) if Path(stderr).is_absolute() else run / stderr
    if inside(p):
        return str(p)
    parts = p.parts
    if "submitit" in parts:
        i = len(parts) - 1 - parts[::-1].index("submitit")
        moved = run.joinpath(*parts[i:])
        if inside(moved):
            return str(moved)
    return ""
