"""The run folder ``results/<suite>/<run-id>/``: what makes a folder one run, in one place.

A new run folder holds ``suite.yaml`` (the suite file as run), ``suite.json`` (``SUITE_RECORD``:
the suite's name, digest, metrics and the file they come from), ``environment.json`` (machine and
library versions) and an empty ``rows.jsonl``; ``pacabench.run`` and ``pacabench run`` make it the
same way (``create_run``), so a later resume checks the same record.

Resuming (``find_run``, then ``prepare_resume`` under the folder's ``RunDir.lock``) sets a torn
last row aside, refuses a run of another suite, and refuses a changed suite unless allowed (then it
is recorded as ``suite.N.yaml`` and the metrics it adds are measured for the finished cases).
On an executor, ``cases_to_submit`` picks what a resume submits again: cases without a row or
with an ``error`` row, not those still queued.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import platform
import subprocess
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import PacabenchError, UsageError
from ..spec.casekey import CaseKey
from .progress import Progress
from .results import Row, check_name, read_run_rows, row_key

__all__ = [
    "RunDir",
    "RunWriteError",
    "RunLockedError",
    "SUITE_RECORD",
    "ENVIRONMENT",
    "new_run_dir",
    "latest_run",
    "environment_record",
    "check_device",
    "create_run",
    "find_run",
    "prepare_resume",
    "recorded_suite",
    "cases_to_submit",
    "cases_to_refill",
]

SUITE_RECORD = "suite.json"  # {name, digest, metrics, file}: the suite the run measures now
ENVIRONMENT = "environment.json"


class RunWriteError(PacabenchError):
    """rows.jsonl could not be written (disk full, file size limit, ...): the run stops there."""


class RunLockedError(PacabenchError):
    """Another process is writing this run folder."""


class RunDir:
    """A run folder: rows.jsonl, suite.yaml (copy), environment.json."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def rows_path(self) -> Path:
        return self.path / "rows.jsonl"

    @property
    def torn_path(self) -> Path:
        return self.path / "rows.jsonl.torn"

    def append(self, row: Row | dict[str, Any]) -> None:
        """Append one row and fsync it: an interrupted run loses nothing already written.

        A failed write (disk full, file size limit) is cut back to the rows before it and raised
        as ``RunWriteError``: every earlier row stays readable."""
        d = row.to_dict() if isinstance(row, Row) else row
        self.path.mkdir(parents=True, exist_ok=True)
        size = self.rows_path.stat().st_size if self.rows_path.exists() else 0
        try:
            with open(self.rows_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(d, sort_keys=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            with contextlib.suppress(OSError):
                os.truncate(self.rows_path, size)
            reason = os.strerror(e.errno) if e.errno else str(e)
            raise RunWriteError(
                f"cannot write {self.rows_path}: {reason}; the run stops here, "
                f"the {len(self.rows())} rows before are kept"
            ) from None

    def replace_rows(self, rows: list[dict[str, Any]], replaced: list[dict[str, Any]]) -> None:
        """Rewrite rows.jsonl atomically (temp file, fsync, rename); the superseded rows are
        appended to ``rows.replaced.jsonl`` first, so nothing measured is ever lost."""
        for name, payload in (("rows.replaced.jsonl", replaced), ("rows.jsonl.tmp", rows)):
            mode = "a" if name == "rows.replaced.jsonl" else "w"
            try:
                with open(self.path / name, mode, encoding="utf-8") as f:
                    f.writelines(json.dumps(r) + "\n" for r in payload)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                raise RunWriteError(
                    f"cannot write {self.path / name}: {os.strerror(e.errno or errno.EIO)}"
                ) from None
        os.replace(self.path / "rows.jsonl.tmp", self.rows_path)

    def rows(self) -> list[dict[str, Any]]:
        """The rows of rows.jsonl (a line that is not a usable row is a one-line ``UsageError``)."""
        return read_run_rows(self.rows_path) if self.rows_path.exists() else []

    def done_keys(self) -> set[CaseKey]:
        return {row_key(r).requested() for r in self.rows()}

    def repair_torn_tail(self) -> str | None:
        """Move an unterminated or unparsable last line of rows.jsonl (a run killed mid-write,
        a full disk) to ``rows.jsonl.torn`` (appended, never deleted) so that the next row starts
        on a line of its own and the case is measured again. Returns a one-line note, or None."""
        if not self.rows_path.is_file():
            return None
        data = self.rows_path.read_bytes()
        body = data.rstrip(b"\n")
        start = body.rfind(b"\n") + 1
        last = body[start:]
        if not last.strip():
            return None
        try:
            ok = isinstance(json.loads(last), dict) and data.endswith(b"\n")
        except ValueError:
            ok = False
        if ok:
            return None
        with open(self.torn_path, "ab") as f:
            f.write(last + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.truncate(self.rows_path, start)
        return (
            f"{self.rows_path}: torn last line ({len(last)} bytes) moved to {self.torn_path}; "
            "that case is measured again"
        )

    @contextlib.contextmanager
    def lock(self):
        """Exclusive lock on the run folder for the whole run (``flock`` on ``.lock``)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLockedError(
                    f"{self.path} is being written by another pacabench run; wait for it to finish"
                ) from None
            try:
                yield self
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def new_run_dir(results_root: str | os.PathLike, suite_name: str, run_id: str | None = None) -> RunDir:
    """A new run folder ``results_root/suite/run_id`` (``run_id-2``, ... when taken)."""
    if run_id is None:
        run_id = datetime.now().strftime("%Y%m%d-%H%M%S")
    check_name(run_id, "--run-id")
    base = Path(results_root) / suite_name
    path = base / run_id
    n = 1
    try:
        while path.exists():
            n += 1
            path = base / f"{run_id}-{n}"
        path.mkdir(parents=True)
    except OSError as e:
        raise UsageError(f"cannot create run folder {path}: {os.strerror(e.errno or errno.EIO)}") from None
    return RunDir(path)


def latest_run(results_root: str | os.PathLike, suite_name: str | None = None) -> Path | None:
    """Most recently modified run folder holding rows.jsonl (optionally of one suite)."""
    root = Path(results_root)
    if not root.exists():
        return None
    pattern = f"{suite_name}/*/rows.jsonl" if suite_name else "*/*/rows.jsonl"
    cands = [p.parent for p in root.glob(pattern) if p.parent.parent.name != "baselines"]
    if not cands:
        return None
    return max(cands, key=lambda p: p.joinpath("rows.jsonl").stat().st_mtime)


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def environment_record(collect_env: bool = False) -> dict[str, Any]:
    """The machine and library versions a run was measured with; ``collect_env``: with
    ``torch.utils.collect_env``'s report (seconds: once per run)."""
    import torch

    try:
        import timm

        timm_v = timm.__version__
    except Exception:  # noqa: BLE001
        timm_v = None
    try:
        import fvcore

        fv = getattr(fvcore, "__version__", None)
    except Exception:  # noqa: BLE001
        fv = None
    from .. import __version__

    cuda = torch.cuda.is_available()
    return {
        "pacabench_version": __version__,
        "pacabench_commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "timm": timm_v,
        "fvcore": fv,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": cuda,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
        "cuda_version": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **({"collect_env": _collect_env()} if collect_env else {}),
    }


def _collect_env() -> str | None:
    from ..measure.kernels import collect_env_text

    return collect_env_text()


# ------------------------------------------------------------------------------- one run's folder
def check_device(device: str, override: str | None = None) -> None:
    """Refuse a device this machine cannot run before any folder is made: ``override`` (the
    caller's ``device``) must be auto, cpu or cuda, and cuda needs CUDA here."""
    if override is not None and override not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got '{override}'")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError(
                "device cuda requested but CUDA is not available on this machine (use --device auto)"
            )


def _record_suite(suite, rd: RunDir, yaml_name: str) -> None:
    """The suite file as ``yaml_name`` and ``SUITE_RECORD`` pointing at it."""
    (rd.path / yaml_name).write_text(suite.source_text, encoding="utf-8")
    record = {"name": suite.name, "digest": suite.digest(), "metrics": list(suite.metrics), "file": yaml_name}
    (rd.path / SUITE_RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")


def create_run(
    suite, results_dir: str | os.PathLike, run_id: str | None = None, progress: Progress | None = None
) -> RunDir:
    """A new run folder of ``suite`` under ``results_dir`` (``run_id``, or a timestamp; ``-2``,
    ... when taken): the suite file and its record, the environment, an empty rows.jsonl."""
    progress = progress or Progress()
    rd = new_run_dir(results_dir, suite.name, run_id)
    if run_id is not None and rd.path.name != run_id:
        progress.emit("note", f"run id '{run_id}' is taken; writing to '{rd.path.name}'")
    _record_suite(suite, rd, "suite.yaml")
    (rd.path / ENVIRONMENT).write_text(
        json.dumps(environment_record(collect_env=True), indent=2), encoding="utf-8"
    )
    rd.rows_path.touch()
    progress.emit("folder", rd.path)
    return rd


def find_run(suite, results_dir: str | os.PathLike, resume_from: str | os.PathLike | None = None) -> RunDir:
    """The run folder to resume: ``resume_from``, or the latest run of ``suite`` under
    ``results_dir`` (``UsageError`` when there is none)."""
    if resume_from is None:
        path = latest_run(results_dir, suite.name)
        if path is None:
            raise UsageError(f"nothing to resume: no run of suite '{suite.name}' under {results_dir}")
    else:
        path = Path(resume_from)
        if not (path / "rows.jsonl").exists() and not (path / "suite.yaml").exists():
            raise UsageError(f"nothing to resume at {path} (no rows.jsonl)")
    return RunDir(path)


def prepare_resume(
    suite, rd: RunDir, allow_changed: bool = False, progress: Progress | None = None
) -> frozenset[str]:
    """Under the run's lock: set a torn last row aside, check that ``suite`` is the one the run
    measures (else refuse, or with ``allow_changed`` record it as ``suite.N.yaml``); returns the
    metrics added since, to measure for the finished cases."""
    progress = progress or Progress()
    note = rd.repair_torn_tail()
    if note:
        progress.emit("warning", note)
    names = {r.get("suite") for r in rd.rows()} - {None, ""}
    path = rd.path / SUITE_RECORD
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    old_name = old["name"] if old else (names.pop() if len(names) == 1 else suite.name)
    if old_name != suite.name:
        raise UsageError(f"{rd.path} is a run of suite '{old_name}', not '{suite.name}'")
    if old is None or old["digest"] == suite.digest():
        return frozenset()
    if not allow_changed:
        raise UsageError(
            f"{rd.path}: the suite changed since this run began (compare with {rd.path / old['file']}); "
            "pass --allow-changed-suite to measure what is missing, or start a new run"
        )
    n = 2
    while (rd.path / f"suite.{n}.yaml").exists():
        n += 1
    _record_suite(suite, rd, f"suite.{n}.yaml")
    progress.emit(
        "info", f"suite changed: recorded as {rd.path / f'suite.{n}.yaml'}; measuring what is missing"
    )
    return frozenset(suite.metrics) - frozenset(old["metrics"])


def recorded_suite(rd: RunDir):
    """The suite a run folder measures now: the file its ``SUITE_RECORD`` names (``suite.yaml``
    for older runs, or an unreadable record), loaded; None when the folder holds no such file."""
    from ..spec.suite import load_suite

    name = "suite.yaml"
    try:
        record = json.loads((rd.path / SUITE_RECORD).read_text(encoding="utf-8"))
        if isinstance(record, dict) and isinstance(record.get("file"), str):
            name = record["file"]
    except (OSError, ValueError):
        pass
    path = rd.path / Path(name).name  # the record names a file of the run folder, nothing else
    return load_suite(path) if path.is_file() else None


def cases_to_submit(cases: list, rows: list[dict[str, Any]], queued: set[str]) -> list:
    """The cases an executor run submits: those without a row or with an ``error`` row, and
    whose job (by case-key stem) is not still pending or running (``queued``). A row's case is
    the one the suite asked for (``CaseKey.requested``: a batch-decayed row finishes its case)."""
    done = {row_key(r).requested(): r.get("status") for r in rows}
    return [c for c in cases if done.get(c.key, "error") == "error" and c.key.file_stem() not in queued]


def cases_to_refill(
    cases: list, rows: list[dict[str, Any]], refill: frozenset[str], queued: set[str]
) -> list[tuple[Any, dict[str, Any]]]:
    """(case narrowed to the metrics to measure, its row) for each finished ``ok`` case that asks
    for a metric of ``refill`` (added by a changed suite) which a resumed run measures again."""
    from ..spec.metrics import REFILL

    done = {row_key(r).requested(): r for r in rows}
    out = []
    for c in cases:
        row = done.get(c.key)
        if row is None or row.get("status") != "ok" or c.key.file_stem() in queued:
            continue
        metrics = tuple(m for m in c.metrics if m in refill and m in REFILL)
        if metrics:
            out.append((replace(c, metrics=metrics), row))
    return out
