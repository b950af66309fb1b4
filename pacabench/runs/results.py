"""Tidy result rows: one JSON object per line in ``results/<suite>/<run-id>/rows.jsonl``.

One row = one case (``pacabench.spec.casekey.CaseKey``): model × resolution × batch size × dtype ×
device (× task for accuracy rows).
Rows are appended and flushed one at a time, so an interrupted run keeps everything already
measured; ``--resume`` reads them back and skips finished cases. The folder around the rows
(suite record, environment, lock, resume) is ``pacabench.runs.folder``'s.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import types
import typing
from dataclasses import asdict, field, fields, make_dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..spec.casekey import CaseKey
from ..spec.metrics import METRICS

__all__ = [
    "Row",
    "ROW_FIELDS",
    "ROW_FIELD_DOCS",
    "read_rows",
    "read_run_rows",
    "scan_rows",
    "load_run",
    "rows_frame",
    "row_key",
    "row_problem",
    "check_name",
]

_NAME = re.compile(r"[A-Za-z0-9_.-]+")


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
        ("latency_mode", str, "eager"),  # eager | cuda_graph | compiled (pacabench.measure.modes)
        ("latency_compile_mode", str | None, None),  # torch.compile's mode of a compiled row
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


# One line per field that is not a metric (a metric's is its ``Metric.doc``): the row schema page
# (docs/reference/rows.md); tests/test_docs.py fails on a field with neither.
ROW_FIELD_DOCS: dict[str, str] = {
    "suite": "The suite's name.",
    "run_id": "The run folder's name (results/<suite>/<run_id>).",
    "case_id": "The case key as text, for readers (the key itself is rebuilt from the fields).",
    "model": "The model name as the suite gives it.",
    "head": "Segmentation head of an ade20k row (paca or upernet), else null.",
    "family": "The model's family (swin, pvt_v2, paca_vit, pvt_v1, a timm module, or factory).",
    "task": "cost for a cost row, else the accuracy task (imagenet, ade20k, coco).",
    "resolution": "Input size [h, w] in px.",
    "tokens": "(h/4)·(w/4) for every model: the x axis of the scaling fits, proportional to the pixels "
    "(a stride-4 first stage's tokens; not a ViT/16's own count, and the fitted exponents do not depend on it).",
    "batch_size": "The batch size the case asked for.",
    "dtype": "Precision the case ran in (fp32, fp16, bf16; amp resolved to one of them).",
    "device": "cpu or cuda (auto resolved).",
    "device_name": "The CPU model or GPU name.",
    "channels_last": "Ran in channels_last memory format.",
    "compile": "Ran through torch.compile.",
    "checkpoint": "Weights file loaded, if any.",
    "checkpoint_sha": "First 16 hex digits of the checkpoint's SHA-256 (part of the case key).",
    "kwargs": "Model builder kwargs the suite set (e.g. clusters), else null.",
    "attn_impl": "Attention implementation: sdpa (fused, ours) or explicit (attention map materialised, as the authors').",
    "mode": "inference or train.",
    "grad_checkpointing": "Train mode with activation checkpointing.",
    "batch_decay": "The suite's batch_decay: out of memory retried at smaller batches.",
    "batch_size_used": "With batch_decay: the batch the case finally ran at.",
    "status": "ok, oom (out of memory), error (message in `error`) or skipped (a size the model refuses).",
    "error": "One-line reason of a non-ok status, else null.",
    "threads": "torch.get_num_threads() while measuring.",
    "torch_version": "torch.__version__ of the measuring process.",
    "timm_version": "timm.__version__ of the measuring process.",
    "timestamp": "When the row was written (ISO 8601, UTC).",
    "wall_s": "Seconds the whole case took (build, measurements, evaluation).",
    "executor": "The executor that ran the case: inprocess, local, slurm or debug.",
    "slurm_job_id": "SLURM job id (an array job's, with the index below).",
    "slurm_array_index": "SLURM array task index.",
    "hostname": "The machine that ran the job.",
    "gpu_name": "GPU name as the job saw it.",
    "gpu_uuid": "GPU UUID (which physical card).",
    "cuda_visible_devices": "CUDA_VISIBLE_DEVICES of the job.",
    "code_commit": "Git commit of the code snapshot the job imported.",
    "job_start": "Unix time the job began the case.",
    "job_end": "Unix time the job ended the case.",
    "latency_mode": "How the latency was timed: eager, cuda_graph (captured once, replayed) or compiled "
    "(torch.compile). Part of the case key when not eager.",
    "latency_compile_mode": "torch.compile's mode of a compiled row (default, reduce-overhead, "
    "max-autotune-no-cudagraphs, max-autotune); null otherwise.",
}


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


def _allowed(tp: Any) -> tuple[type, ...]:
    """The JSON types a row field may hold (None always: a missing measurement)."""
    union = isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union
    kinds = {typing.get_origin(a) or a for a in (typing.get_args(tp) if union else (tp,))} | {type(None)}
    if kinds & {int, float}:
        kinds |= {int, float}
    return tuple(kinds)


_FIELD_TYPES = {f.name: _allowed(f.type) for f in fields(Row)}


def row_problem(d: Any) -> str | None:
    """Why a parsed line is not a usable row (its case key cannot be built, a field has the wrong
    JSON type), or None."""
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
    for k in ("batch_size", "batch_size_used"):  # the key's ints: a float must be a whole number
        v = d.get(k)
        if isinstance(v, float) and not (math.isfinite(v) and v.is_integer()):
            return f"{k} is not a whole number ({v!r})"
    try:
        row_key(d)
    except (ValueError, TypeError, OverflowError, RecursionError) as e:
        return f"its case key cannot be built ({type(e).__name__})"
    return None


def _rows_file_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a rows file; a folder or an unreadable file is a one-line ``UsageError``."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, not a rows file") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror or e}") from None


def scan_rows(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """(usable rows, [(line number, problem)]) of a rows.jsonl file; a read error is a ``UsageError``."""
    lines = _rows_file_lines(path)
    rows, bad = [], []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            bad.append((i, "not JSON" + (" (torn last line)" if i == len(lines) else "")))
            continue
        problem = row_problem(d)
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
        except (json.JSONDecodeError, RecursionError):
            if i == len(lines) - 1:
                continue  # interrupted while writing the last row
            raise UsageError(f"{path}:{i + 1}: not a JSON row") from None
        if not isinstance(d, dict):
            raise UsageError(f"{path}:{i + 1}: not a JSON row (a {type(d).__name__})")
        out.append(d)
    return out


def read_run_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a run folder's rows.jsonl, each usable (``row_problem``): what resume,
    ``collect`` and ``status`` build case keys from. A torn last line is ignored (resume sets it
    aside); a line that is not a usable row, or a file that cannot be read, is a one-line
    ``UsageError`` naming the line: the user mends the file, nothing is dropped behind their back."""
    lines = _rows_file_lines(path)
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except (ValueError, RecursionError):
            if i == len(lines):
                continue  # interrupted while writing the last row
            raise UsageError(f"{path}:{i}: not a JSON row") from None
        problem = row_problem(d)
        if problem:
            raise UsageError(f"{path}:{i}: not a usable row: {problem} (mend or remove the line)")
        out.append(d)
    return out


def load_run(path: str | os.PathLike):
    """A run folder, a rows.jsonl or a baseline .jsonl file → pandas DataFrame (one row per case).

    Lines that are not usable rows are left out with one warning line on stderr naming them;
    a file with no usable row left is a ``UsageError``.
    """

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
    return rows_frame(rows)


def rows_frame(rows: list[dict[str, Any]]):
    """Rows (dicts) → the DataFrame ``load_run`` gives: every ``ROW_FIELDS`` column (None where a
    row lacks it) and ``res`` ("HxW"). A row that is not usable (``scan_rows``'s test) is a
    ``UsageError`` naming its index."""
    import pandas as pd

    for i, d in enumerate(rows):
        problem = row_problem(d)
        if problem:
            raise UsageError(f"row {i}: {problem}")
    df = pd.DataFrame(rows, columns=None)
    missing = [c for c in ROW_FIELDS if c not in df.columns]
    if missing:  # one concat, not one insert per column (pandas warns past ~100 inserts)
        df = pd.concat([df, pd.DataFrame(None, index=df.index, columns=missing, dtype=object)], axis=1)
    if len(df):
        df["res"] = df["resolution"].map(lambda r: "x".join(map(str, r)) if r else "")
    else:
        df["res"] = []
    return df
