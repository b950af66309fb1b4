"""A copy of the ``pacabench`` package in the run folder, which the jobs import instead of the
checkout: editing the checkout after submitting does not change what the jobs run."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["make_snapshot", "snapshot_commit", "importing_from", "COMMIT_FILE"]

COMMIT_FILE = "COMMIT"


def _git_commit(src: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def make_snapshot(run_path: str | os.PathLike) -> Path:
    """Copy the package into ``<run>/code/pacabench`` (a fresh copy each submission, in
    ``code.N`` when ``code`` exists) with the checkout's git commit in ``code/COMMIT``.
    Returns the folder to put first on the jobs' ``PYTHONPATH``."""
    src = Path(__file__).resolve().parents[2]  # the pacabench package (this is runs/executors/snapshot.py)
    base = Path(run_path) / "code"
    dest, n = base, 1
    while dest.exists():
        n += 1
        dest = base.with_name(f"code.{n}")
    shutil.copytree(src, dest / "pacabench", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (dest / COMMIT_FILE).write_text((_git_commit(src.parent) or "") + "\n", encoding="utf-8")
    return dest


def snapshot_commit() -> str | None:
    """The commit recorded in the snapshot this process imported pacabench from (None when it
    runs from a checkout or an installed package)."""
    path = Path(__file__).resolve().parents[3] / COMMIT_FILE  # <snapshot>/COMMIT beside <snapshot>/pacabench
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


@contextlib.contextmanager
def importing_from(folder: Path | None):
    """Within the block, processes started from here import pacabench from ``folder`` first:
    it leads ``PYTHONPATH``, and ``PYTHONSAFEPATH=1`` (Python 3.11+) keeps ``python -m`` (how
    submitit starts a job) from putting the working directory, maybe a checkout, before it."""
    if folder is None:
        yield
        return
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "PYTHONSAFEPATH")}
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(folder)] + ([saved["PYTHONPATH"]] if saved["PYTHONPATH"] else [])
    )
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
