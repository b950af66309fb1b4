"""Tidy result rows: one JSON object per line in ``results/<suite>/<run-id>/rows.jsonl``.

One row = one case (``pacabench.spec.casekey.CaseKey``): model × resolution × batch size × dtype ×
device (× task for accuracy rows).
Rows are appended and flushed one at a time, so an interrupted run keeps everything already
measured; ``--resume`` reads them back and skips finished cases.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import platform
import re
import subprocess
import sys
import types
import typing
from dataclasses import asdict, field, fields, make_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import PacabenchError, UsageError
from ..spec.casekey import CaseKey
from ..spec.metrics import METRICS

__all__ = [
    "Row",
    "ROW_FIELDS",
    "RunDir",
    "new_run_dir",
    "latest_run",
    "read_rows",
    "scan_rows",
    "load_run",
    "environment_record",
    "row_key",
    "check_name",
    "RunWriteError",
    "RunLockedError",
]

_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class RunWriteError(PacabenchError):
    """rows.jsonl could not be written (disk full, file size limit, ...): the run stops there."""


class RunLockedError(PacabenchError):
    """Another process is writing this run folder."""


def check_name(name: str, what: str) -> str:
    """A run id or baseline name: one path component of letters, digits, '-', '_', '.'."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise UsageError(
            f"{what} must be one name of letters, digits, '-', '_' or '.' (not '.' or '..'), got {name!r}"
        )
    return name


def _row_fields() -> list[tuple[str, Any, Any]]:
    """Identity fields, then one field per entry of the metric table, then context."""
    identity = [
        ("suite", str, ""),
        ("run_id", str, ""),
        ("case_id", str, ""),  # str(CaseKey): written for readers; the key is rebuilt from the fields
        ("model", str, ""),
        ("head", str | None, None),  # segmentation head (ade20k rows), else None
        ("family", str, ""),
        ("task", str, "cost"),  # cost | imagenet | ade20k | coco
        ("resolution", list[int], field(default_factory=list)),  # [h, w]
        ("tokens", int | None, None),  # stage-1 tokens at stride 4: (h/4)·(w/4)
        ("batch_size", int, 1),
        ("dtype", str, "fp32"),
        ("device", str, "cpu"),  # cpu | cuda
        ("device_name", str, ""),
        ("channels_last", bool, False),
        ("compile", bool, False),
        ("checkpoint", str | None, None),
        ("checkpoint_sha", str | None, None),  # first 16 hex digits of the file's SHA-256
        ("kwargs", dict | None, None),  # model kwargs (e.g. clusters) when the suite sets any
        (
            "attn_impl",
            str,
            "sdpa",
        ),  # sdpa (fused, ours) | explicit (attention map materialised, as the authors')
        ("mode", str, "inference"),  # inference | train (pacabench.measure.train)
        ("grad_checkpointing", bool, False),  # train mode with activation checkpointing
        ("batch_decay", bool, False),  # a case that runs out of memory retries at smaller batches
        ("batch_size_used", int | None, None),  # with batch_decay: the batch it ran at
        ("status", str, "ok"),  # ok | oom | error | skipped
        ("error", str | None, None),
    ]
    measured = [(m.column, m.type | None, None) for m in METRICS.values()]
    context = [
        ("threads", int | None, None),
        ("torch_version", str, ""),
        ("timm_version", str, ""),
        ("timestamp", str, ""),
        ("wall_s", float | None, None),
    ]
    # where the case ran (pacabench.runs.executors fills them; empty for rows written in-process)
    provenance = [
        ("executor", str, ""),  # inprocess | local | slurm | debug
        ("slurm_job_id", str | None, None),
        ("slurm_array_index", int | None, None),
        ("hostname", str | None, None),
        ("gpu_name", str | None, None),
        ("gpu_uuid", str | None, None),
        ("cuda_visible_devices", str | None, None),
        ("code_commit", str | None, None),  # git commit of the code snapshot the job imported
        ("job_start", float | None, None),  # unix time the job began / ended the case
        ("job_end", float | None, None),
    ]
    return identity + measured + context + provenance


def _to_dict(self) -> dict[str, Any]:
    return asdict(self)


@classmethod
def _from_dict(cls, d: dict[str, Any]):
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in known})


Row = make_dataclass(
    "Row",
    _row_fields(),
    namespace={"to_dict": _to_dict, "from_dict": _from_dict, "__module__": __name__},
)
Row.__doc__ = """One measured case. Missing measurements are None (written as JSON null).

Fields: the case's identity, one per entry of ``pacabench.spec.metrics.METRICS`` (so a metric added
there is a column here), and the context it was measured in."""

ROW_FIELDS = [f.name for f in fields(Row)]


def row_key(row: dict[str, Any] | Any) -> CaseKey:
    """The case key of a row (see ``pacabench.spec.casekey``)."""
    return CaseKey.from_row(row)


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
        return read_rows(self.rows_path) if self.rows_path.exists() else []

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


def _allowed(tp: Any) -> tuple[type, ...]:
    """The JSON types a row field may hold (None always: a missing measurement)."""
    union = isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union
    kinds = {typing.get_origin(a) or a for a in (typing.get_args(tp) if union else (tp,))} | {type(None)}
    if kinds & {int, float}:
        kinds |= {int, float}
    return tuple(kinds)


_FIELD_TYPES = {f.name: _allowed(f.type) for f in fields(Row)}


def _row_problem(d: Any) -> str | None:
    """Why a parsed line is not a usable row, or None."""
    if not isinstance(d, dict):
        return f"a JSON {type(d).__name__}, not an object"
    if not isinstance(d.get("model"), str) or not d["model"]:
        return "no model name"
    res = d.get("resolution")
    if not isinstance(res, list) or len(res) != 2 or not all(type(v) is int for v in res):
        return f"resolution must be [h, w] of ints, got {res!r}"[:80]
    for k, v in d.items():
        kinds = _FIELD_TYPES.get(k)
        if kinds is not None and not isinstance(v, kinds):
            return f"{k} is a {type(v).__name__}"
    return None


def scan_rows(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """(usable rows, [(line number, problem)]) of a rows.jsonl file; a read error is a ``UsageError``."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, not a rows file") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror or e}") from None
    rows, bad = [], []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            bad.append((i, "not JSON" + (" (torn last line)" if i == len(lines) else "")))
            continue
        problem = _row_problem(d)
        if problem:
            bad.append((i, problem))
        else:
            rows.append(d)
    return rows, bad


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows from a rows.jsonl file; a torn last line (killed mid-write) is ignored, any other
    line that is not a JSON object is a ``UsageError`` naming it (``load_run`` skips such lines)."""
    out = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                continue  # interrupted while writing the last row
            raise UsageError(f"{path}:{i + 1}: not a JSON row") from None
        if not isinstance(d, dict):
            raise UsageError(f"{path}:{i + 1}: not a JSON row (a {type(d).__name__})")
        out.append(d)
    return out


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


def load_run(path: str | os.PathLike):
    """A run folder, a rows.jsonl or a baseline .jsonl file → pandas DataFrame (one row per case).

    Lines that are not usable rows are left out with one warning line on stderr naming them;
    a file with no usable row left is a ``UsageError``.
    """
    import pandas as pd

    p = Path(path)
    if p.is_dir():
        p = p / "rows.jsonl"
    if not p.exists():
        raise FileNotFoundError(f"no rows at {p}")
    rows, bad = scan_rows(p)
    if bad:
        where = ", ".join(str(i) for i, _ in bad[:10]) + (", ..." if len(bad) > 10 else "")
        what = f"{len(bad)} malformed line(s) ({where}; line {bad[0][0]}: {bad[0][1]})"
        if not rows:
            raise UsageError(f"{p}: no usable rows: {what}")
        sys.stderr.write(f"pacabench: warning: {p}: skipped {what}\n")
    df = pd.DataFrame(rows, columns=None)
    missing = [c for c in ROW_FIELDS if c not in df.columns]
    if missing:  # one concat, not one insert per column (pandas warns past ~100 inserts)
        df = pd.concat([df, pd.DataFrame(None, index=df.index, columns=missing, dtype=object)], axis=1)
    if len(df):
        df["res"] = df["resolution"].map(lambda r: "x".join(map(str, r)) if r else "")
    else:
        df["res"] = []
    return df
