"""One row file per case: ``rows/<case-key stem>.json`` in the run folder, written atomically."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ...paths import write_atomic
from ...spec.casekey import CaseKey

__all__ = ["ROWS_DIR", "row_file", "write_row_file", "read_row_file", "retire_row_file"]

ROWS_DIR = "rows"


def row_file(run_path: str | os.PathLike, key: CaseKey | str) -> Path:
    """``<run>/rows/<stem>.json`` of a case key (or of a key's ``file_stem()``)."""
    stem = key if isinstance(key, str) else key.file_stem()
    return Path(run_path) / ROWS_DIR / f"{stem}.json"


def write_row_file(path: Path, row: dict[str, Any]) -> None:
    """Temp file in the same folder, fsync, ``os.replace``: a reader sees the whole row or none."""
    write_atomic(path, json.dumps(row))


def read_row_file(path: Path) -> dict[str, Any] | None:
    """The row in ``path``; None when there is none (or it is not a JSON object)."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def retire_row_file(path: Path) -> None:
    """Move a case's row file aside before the case is resubmitted (kept under rows/replaced/)."""
    if path.exists():
        dest = path.parent / "replaced" / f"{path.stem}.{time.time_ns()}.json"
        dest.parent.mkdir(exist_ok=True)
        os.replace(path, dest)
