"""Merge the row files of a run's jobs into ``rows.jsonl``, in suite order; ``status`` per case.

How a job that left no row file stands is the executor's to say (a SLURM queue, a process): the
callers pass ``states``, a function of the submissions (``kinds.job_states`` asks the executor
that ran each job)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...spec.casekey import CaseKey
from ..folder import RunDir
from ..results import Row, row_key
from .jobstate import JobState, Submission, load_submissions, suite_order
from .rowfiles import load_row_file, retire_row_file, row_file, rows_dir, write_row_file

__all__ = ["collect_rows", "run_status", "RunStatus", "failure_row", "States"]

# the state of each job (by case stem) among the submissions given, for jobs with no row file
States = Callable[[list[Submission]], dict[str, JobState]]


def failure_row(
    sub: Submission, state: JobState, run_id: str, problem: str | None = None, base: dict | None = None
) -> dict[str, Any]:
    """The row of a case whose job ended without writing one (timed out, cancelled, killed), or
    whose row file is not its row (``problem``). A job that measured added metrics for a finished
    case (``sub.refill``) fails into that case's row ``base``: its measurements are kept."""
    from ...spec.suite import Case

    reason = state.reason + (f" ({problem})" if problem else "")
    if sub.refill and base is not None:
        return dict(base) | {"status": state.status or "error", "error": f"{', '.join(sub.refill)}: {reason}"}
    key = Case.from_dict(sub.case).key
    row = Row(**key.row_fields(), suite=sub.case["suite"], case_id=str(key), run_id=run_id)
    row.status, row.error = state.status or "error", reason
    row.executor = sub.executor
    for k, v in state.provenance.items():
        setattr(row, k, v)
    return row.to_dict()


def _row_files(rd: RunDir, subs: list[Submission]) -> dict[str, tuple[dict | None, str | None]]:
    """Each submission's row file: (row, None), (None, None) when there is none, (None, why) when
    it is not that case's row (``rowfiles.load_row_file``)."""
    rows_dir(rd.path)
    return {s.stem: load_row_file(row_file(rd.path, s.stem), s.stem) for s in subs}


def _available(
    rd: RunDir, subs: list[Submission], states: States, have: dict[CaseKey, dict]
) -> list[tuple[Submission, dict]]:
    """The rows ready to merge, in suite order: row files, and failure rows (written as row files,
    so a second collect finds the same) for jobs that ended without a usable one; a row file that
    is not its case's row is set aside (``rows/replaced/``) first, never deleted."""
    from ...spec.suite import Case

    files = _row_files(rd, subs)
    missing = [s for s in subs if files[s.stem][0] is None]
    known = states(missing) if missing else {}
    out = []
    for s in subs:
        d, problem = files[s.stem]
        js = known.get(s.stem)
        if d is None and js is not None and js.state == "ended":
            path = row_file(rd.path, s.stem)
            if problem:
                retire_row_file(path)
            base = have.get(Case.from_dict(s.case).key) if s.refill else None
            d = failure_row(s, js, rd.path.name, problem, base)
            write_row_file(path, d)
        if d is not None:
            out.append((s, d))
    return out


def collect_rows(
    rd: RunDir,
    states: States,
    subs: list[Submission] | None = None,
    note: Callable[[str], None] | None = None,
) -> list[dict]:
    """Merge finished cases into ``rows.jsonl`` (the caller holds the run's lock); ``subs``: the
    run's submissions (default: all of ``jobs.json``); ``states``: how their jobs stand. A torn
    last line of rows.jsonl is set aside first (``RunDir.repair_torn_tail``; ``note`` is told).
    A case not in rows.jsonl is appended; an ``error`` row is replaced by a newer row of a
    resubmitted case, a finished case's row by the one its refill job merged (the old one kept in
    rows.replaced.jsonl); a row already there is left alone, so collecting twice changes nothing.
    Returns the rows added or replaced."""
    torn = rd.repair_torn_tail()
    if torn and note is not None:
        note(torn)
    subs = load_submissions(rd.path) if subs is None else subs
    current = rd.rows()
    have = {row_key(r).requested(): r for r in current}  # a case's last row counts
    new, appended = [], []
    for s, d in _available(rd, subs, states, have):
        key = row_key(d).requested()
        old = have.get(key)
        if old is None:
            rd.append(d)
            appended.append(d)
        elif old == d or (old.get("status") != "error" and not s.refill):
            continue
        have[key] = d
        new.append(d)
    if new:
        _reorder(rd, current + appended, list(have.values()))
    return new


def _reorder(rd: RunDir, written: list[dict], kept: list[dict]) -> None:
    """Rewrite rows.jsonl as ``kept`` in suite order when it differs from what is ``written``
    there; every row written but not kept (replaced, or a duplicate of a case) goes to
    rows.replaced.jsonl."""
    order = suite_order(rd.path)
    ranked = sorted(kept, key=lambda r: order.get(row_key(r).requested().file_stem(), -1))  # stable
    if ranked != written:
        ids = {id(r) for r in kept}
        rd.replace_rows(ranked, [r for r in written if id(r) not in ids])


@dataclass
class RunStatus:
    counts: dict[str, int] = field(default_factory=dict)  # pending / running / done / failed / missing
    cases: list[tuple[str, str, str]] = field(default_factory=list)  # (case, state, detail)
    eta_s: float | None = None


def _row_state(d: dict) -> tuple[str, str]:
    state = "done" if d.get("status") in ("ok", "skipped") else "failed"
    return state, str(d.get("status", "")) + (f": {d['error']}" if d.get("error") else "")


def run_status(run_path: Path, states: States, parallel: int = 1, cases: list | None = None) -> RunStatus:
    """Per case of the suite (``cases``, in suite order; then any other case submitted): done
    (ok/skipped row), failed (error/oom row, or its job ended without a usable row file), pending
    or running, or missing (no row and no job: a resume submits it); ``parallel``: jobs at once,
    for the ETA. A case counts once however many rows or submissions it has."""
    from ...spec.suite import Case

    rd = RunDir(run_path)
    subs = {s.stem: s for s in load_submissions(run_path)}
    files = _row_files(rd, list(subs.values()))
    rows = {row_key(r).requested().file_stem(): r for r in rd.rows()}
    known = states([s for s in subs.values() if files[s.stem][0] is None]) if subs else {}
    labels = {c.key.file_stem(): c.describe() for c in cases or []}
    for stem, s in subs.items():
        labels.setdefault(stem, Case.from_dict(s.case).describe())
    st, walls = RunStatus(), []
    for stem, label in labels.items():
        d, problem = files.get(stem, (None, None))
        js = known.get(stem)
        if d is not None:
            state, detail = _row_state(d)
            walls += [d["job_end"] - d["job_start"]] if d.get("job_end") and d.get("job_start") else []
        elif js is not None and js.state not in ("ended", "unknown"):
            state, detail = js.state, js.reason
        elif stem in rows and (js is None or rows[stem].get("status") in ("ok", "skipped")):
            state, detail = _row_state(rows[stem])
        elif js is not None:
            state = "failed" if js.state == "ended" else js.state
            detail = js.reason + (f" ({problem})" if problem else "")
        else:
            state, detail = "missing", "no row and no job (a resume submits it)"
        st.counts[state] = st.counts.get(state, 0) + 1
        st.cases.append((label, state, detail))
    left = st.counts.get("pending", 0) + st.counts.get("running", 0)
    if walls and left:
        st.eta_s = sum(walls) / len(walls) * left / max(1, parallel)
    return st
