"""Output paths checked before any work: a file or folder a command will write must be writable.

``check_output_path`` creates nothing; it refuses, with one ``UsageError`` line, a path whose
parent is a file, a folder where a file is expected (or a file where a folder is), and a place
without write permission. Commands call it before they measure or evaluate anything, so a bad
``-o`` costs nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError

__all__ = ["check_output_path", "write_atomic"]


def check_output_path(path: str | os.PathLike, kind: str = "file", what: str = "output") -> Path:
    """``path`` as a Path when a ``kind`` ('file' or 'dir') can be written there, else UsageError."""
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    p = Path(path).expanduser()
    if str(path) == "":
        raise UsageError(f"{what}: empty path")
    if p.exists():
        if kind == "file" and p.is_dir():
            raise UsageError(f"{what} {p} is a folder, a file is expected")
        if kind == "dir" and not p.is_dir():
            raise UsageError(f"{what} {p} is not a folder")
        if not os.access(p, os.W_OK | (os.X_OK if kind == "dir" else 0)):
            raise UsageError(f"{what} {p}: permission denied")
        return p
    parent = _nearest_existing(p)
    if not parent.is_dir():
        raise UsageError(f"{what} {p}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {p}: no permission to write in {parent}")
    return p


def _nearest_existing(p: Path) -> Path:
    """The closest ancestor of ``p`` that exists (a file or a folder; '.' at worst)."""
    for parent in p.absolute().parents:
        if parent.exists():
            return parent
    return Path(".")


class OutputWriteError(UsageError):
    """An output file could not be written after the work was done: ``result`` holds what was
    measured, so the caller can show it before the one error line."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temp file beside ``path``, fsync it, then ``os.replace``: a reader
    sees the whole old file or the whole new one, never a part."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)
    return p
