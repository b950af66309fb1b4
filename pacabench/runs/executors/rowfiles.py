"""One row file per case: ``rows/<case-key stem>.json`` in the run folder, written atomically."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ...paths import write_atomic
from ...spec.casekey import CaseKey

__all__ = [
    "ROWS_DIR",
    "row_file",
    "rows_dir",
    "write_row_file",
    "read_row_file",
    "load_row_file",
    "retire_row_file",
]

ROWS_DIR = "rows"


def row_file(run_path: str | os.PathLike, key: CaseKey | str) -> Path:
    """``<run>/rows/<stem>.json`` of a case key (or of a key's ``file_stem()``)."""
    stem = key if isinstance(key, str) else key.file_stem()
    return Path(run_path) / ROWS_DIR / f"{stem}.json"


def rows_dir(run_path: str | os.PathLike) -> Path:
    """``<run>/rows``; a file of that name (an edited run folder) is a one-line ``UsageError``."""
    path = Path(run_path) / ROWS_DIR
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: is a file; it must be the folder of the jobs' row files")
    return path


def write_row_file(path: Path, row: dict[str, Any]) -> None:
    """Temp file in the same folder, fsync, ``os.replace``: a reader sees the whole row or none."""
    write_atomic(path, json.dumps(row))


def read_row_file(path: Path) -> dict[str, Any] | None:
    """The row in ``path``; None when there is none (or it is not a JSON object)."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return d if isinstance(d, dict) else None


def load_row_file(path: Path, stem: str) -> tuple[dict[str, Any] | None, str | None]:
    """(row, None) for a usable row of the case ``stem`` names; (None, None) when there is no
    file; (None, why) for a file that is not that: unreadable, not JSON, not a usable row
    (``results.row_problem``), or a row of another case. Never raises."""
    from ..results import row_key, row_problem

    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None, None
    except OSError as e:
        return None, f"row file {path.name} cannot be read ({e.strerror or type(e).__name__})"
    try:
        d = json.loads(text)
    except (ValueError, RecursionError):
        return None, f"row file {path.name} is not JSON (truncated?)"
    problem = row_problem(d)
    if problem is None and row_key(d).requested().file_stem() != stem:
        problem = f"it holds the row of another case ({str(row_key(d))[:120]})"
    return (None, f"row file {path.name} is not this case's row: {problem}") if problem else (d, None)


def retire_row_file(path: Path) -> None:
    """Move a case's row file aside before the case is resubmitted (kept under rows/replaced/)."""
    if path.exists():
        dest = path.parent / "replaced" / f"{path.stem}.{time.time_ns()}.json"
        dest.parent.mkdir(exist_ok=True)
        os.replace(path, dest)
