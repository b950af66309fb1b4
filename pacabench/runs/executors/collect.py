"""Merge the row files of a run's jobs into ``rows.jsonl``, in suite order; ``status`` per case.

How a job that left no row file stands is the executor's to say (a SLURM queue, a process): the
callers pass ``states``, a function of the submissions (``kinds.job_states`` asks the executor
that ran each job)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..folder import RunDir
from ..results import Row, row_key
from .jobstate import JobState, Submission, load_submissions, suite_order
from .rowfiles import read_row_file, row_file, write_row_file

__all__ = ["collect_rows", "run_status", "RunStatus", "failure_row", "States"]

# the state of each job (by case stem) among the submissions given, for jobs with no row file
States = Callable[[list[Submission]], dict[str, JobState]]


def failure_row(sub: Submission, state: JobState, run_id: str) -> dict[str, Any]:
    """The row of a case whose job ended without writing one (timed out, cancelled, killed)."""
    from ...spec.suite import Case

    key = Case.from_dict(sub.case).key
    row = Row(**key.row_fields(), suite=sub.case["suite"], case_id=str(key), run_id=run_id)
    row.status, row.error = state.status or "error", state.reason
    row.executor = sub.executor
    for k, v in state.provenance.items():
        setattr(row, k, v)
    return row.to_dict()


def _available(rd: RunDir, subs: list[Submission], states: States) -> list[dict]:
    """The rows ready to merge, in suite order: row files, and failure rows (written as row files,
    so a second collect finds the same) for jobs that ended without one."""
    rows, missing = [], [s for s in subs if not row_file(rd.path, s.stem).exists()]
    known = states(missing) if missing else {}
    for s in subs:
        path = row_file(rd.path, s.stem)
        d = read_row_file(path)
        if d is None and s.stem in known and known[s.stem].state == "ended":
            d = failure_row(s, known[s.stem], rd.path.name)
            write_row_file(path, d)
        if d is not None:
            rows.append(d)
    return rows


def collect_rows(rd: RunDir, states: States, subs: list[Submission] | None = None) -> list[dict]:
    """Merge finished cases into ``rows.jsonl`` (the caller holds the run's lock); ``subs``: the
    run's submissions (default: all of ``jobs.json``); ``states``: how their jobs stand. A case not in
    rows.jsonl is appended; an ``error`` row is replaced by a newer row of a resubmitted case (the
    old one kept in rows.replaced.jsonl); a row already there is left alone, so collecting twice
    changes nothing. Returns the rows added or replaced."""
    subs = load_submissions(rd.path) if subs is None else subs
    have = {row_key(r): r for r in rd.rows()}
    new, replaced = [], []
    for d in _available(rd, subs, states):
        key = row_key(d)
        old = have.get(key)
        if old is None:
            rd.append(d)
        elif old != d and old.get("status") == "error":
            replaced.append(old)
        else:
            continue
        have[key] = d
        new.append(d)
    if not new:
        return new
    rows, order = list(have.values()), suite_order(rd.path)
    ranked = sorted(rows, key=lambda r: order.get(row_key(r).file_stem(), -1))  # stable: others first
    if replaced or ranked != rows:
        rd.replace_rows(ranked, replaced)  # each case's row where the suite has it
    return new


@dataclass
class RunStatus:
    counts: dict[str, int] = field(default_factory=dict)  # pending / running / done / failed
    cases: list[tuple[str, str, str]] = field(default_factory=list)  # (case, state, detail)
    eta_s: float | None = None


def run_status(run_path: Path, states: States, parallel: int = 1) -> RunStatus:
    """Per case: done (ok/skipped row), failed (error/oom row or ended job), pending or running;
    ``parallel``: jobs at once, for the ETA."""
    from ...spec.suite import Case

    rd = RunDir(run_path)
    subs = load_submissions(run_path)
    missing = [s for s in subs if read_row_file(row_file(run_path, s.stem)) is None]
    known = states(missing) if missing else {}
    st, walls = RunStatus(), []
    for s in subs:
        d = read_row_file(row_file(rd.path, s.stem))
        if d is not None:
            state = "done" if d.get("status") in ("ok", "skipped") else "failed"
            detail = d.get("status", "") + (f": {d['error']}" if d.get("error") else "")
            walls += [d["job_end"] - d["job_start"]] if d.get("job_end") and d.get("job_start") else []
        else:
            js = known.get(s.stem, JobState("unknown"))
            state = "failed" if js.state == "ended" else js.state
            detail = js.reason
        st.counts[state] = st.counts.get(state, 0) + 1
        st.cases.append((Case.from_dict(s.case).describe(), state, detail))
    left = st.counts.get("pending", 0) + st.counts.get("running", 0)
    if walls and left:
        st.eta_s = sum(walls) / len(walls) * left / max(1, parallel)
    return st
