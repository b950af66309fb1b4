"""The one identity of a case, used by resume, compare, baselines and merging.

A ``CaseKey`` holds everything that changes a measurement: task, model (+ segmentation head),
resolution, batch size, dtype, device, channels_last, compile, the checkpoint (path and a hash
of its content) and the model kwargs. It is built the same way from a suite's ``Case`` and from
a row on disk, so a run resumes and a baseline joins whatever machine or run wrote the rows.

Rows written before a field existed still load: a missing checkpoint hash or kwargs means
"none", so ``results/baselines/*.jsonl`` keep joining fresh runs.

Its text form (``str(key)``) is readable and stable, e.g. ``cost|pvt_v2_b0|64x64|1|fp32|cpu|0|0``,
with ``|ckpt=<path>@<hash>``, ``|kw=<json>``, ``|mode=train`` (``+gc``: gradient checkpointing) and
``|lat=cuda_graph`` / ``|lat=compiled(<compile mode>)`` appended only when set; rows store it as
``case_id``. A row without ``mode`` is an inference row, one without ``latency_mode`` an eager one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["CaseKey", "checkpoint_digest", "canonical_kwargs", "latency_mode_text"]

DIGEST_CHARS = 16


def canonical_kwargs(kwargs: dict[str, Any] | None) -> str:
    """Model kwargs as sorted compact JSON; '' for none."""
    return json.dumps(kwargs, sort_keys=True, separators=(",", ":"), default=str) if kwargs else ""


@functools.lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:DIGEST_CHARS]


def checkpoint_digest(path: str | os.PathLike | None) -> str | None:
    """First 16 hex digits of the SHA-256 of a checkpoint file; None without a readable file."""
    if not path:
        return None
    try:
        st = os.stat(path)
        return _digest(os.fspath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        return None


def _decayed(d: dict[str, Any]) -> int | None:
    """The batch a row ran at when batch decay made it smaller than the requested one."""
    used, asked = d.get("batch_size_used"), int(d.get("batch_size") or 1)
    return int(used) if used and int(used) != asked else None


def latency_mode_text(mode: str, compile_mode: str | None) -> str:
    """A latency mode as keys and labels write it: ``cuda_graph``, ``compiled(<compile mode>)``."""
    return mode + (f"({compile_mode})" if mode == "compiled" else "")


@dataclass(frozen=True)
class CaseKey:
    task: str
    model: str
    head: str | None
    resolution: tuple[int, ...]
    batch_size: int
    dtype: str
    device: str
    channels_last: bool
    compile: bool
    checkpoint: str | None = None
    checkpoint_sha: str | None = None
    kwargs: str = ""  # canonical JSON (canonical_kwargs)
    mode: str = "inference"  # inference | train (a train step: forward, backward, AdamW)
    grad_checkpointing: bool = False  # train mode with activation checkpointing
    batch_used: int | None = None  # batch decay: the smaller batch a case ran at after an OOM
    latency_mode: str = "eager"  # eager | cuda_graph | compiled (suite ``latency: {mode: ...}``)
    latency_compile_mode: str | None = None  # torch.compile's mode of a compiled row, else None

    @classmethod
    def from_row(cls, row: Any) -> CaseKey:
        """The key of a row (a dict or a ``Row``); fields an older row lacks default to "none"."""
        d = row if isinstance(row, dict) else row.to_dict()
        return cls(
            task=str(d.get("task") or "cost"),
            model=str(d.get("model", "")),
            head=d.get("head") or None,
            resolution=tuple(int(x) for x in (d.get("resolution") or [])),
            batch_size=int(d.get("batch_size") or 1),
            dtype=str(d.get("dtype") or "fp32"),
            device=str(d.get("device") or "cpu"),
            channels_last=bool(d.get("channels_last")),
            compile=bool(d.get("compile")),
            checkpoint=d.get("checkpoint") or None,
            checkpoint_sha=d.get("checkpoint_sha") or None,
            kwargs=canonical_kwargs(d.get("kwargs")),
            mode=str(d.get("mode") or "inference"),
            grad_checkpointing=bool(d.get("grad_checkpointing")),
            batch_used=_decayed(d),
            latency_mode=(lat := str(d.get("latency_mode") or "eager")),
            latency_compile_mode=(d.get("latency_compile_mode") or "default") if lat == "compiled" else None,
        )

    def requested(self) -> CaseKey:
        """The key of the case as the suite asked for it (a decayed row's batch forgotten): resume
        finds a decayed row's case done; compare never joins it with an undecayed row."""
        return replace(self, batch_used=None) if self.batch_used is not None else self

    def row_fields(self) -> dict[str, Any]:
        """The key's fields as a row stores them (resolution a list, kwargs a mapping or None)."""
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["resolution"] = list(self.resolution)
        d["kwargs"] = json.loads(self.kwargs) if self.kwargs else None
        d.pop("batch_used")  # rows store it as batch_size_used
        return d

    @property
    def model_label(self) -> str:
        return self.model + (f"+{self.head}" if self.head else "")

    def __str__(self) -> str:
        res = "x".join(map(str, self.resolution))
        parts = [self.task, self.model_label, res, str(self.batch_size), self.dtype, self.device]
        parts += [str(int(self.channels_last)), str(int(self.compile))]
        if self.checkpoint:
            parts.append(f"ckpt={self.checkpoint}@{self.checkpoint_sha or 'none'}")
        if self.kwargs:
            parts.append(f"kw={self.kwargs}")
        if self.mode != "inference":  # inference keys stay as they were before modes existed
            parts.append(f"mode={self.mode}" + ("+gc" if self.grad_checkpointing else ""))
        if self.batch_used is not None:
            parts.append(f"decayed={self.batch_used}")
        if self.latency_mode != "eager":  # eager keys stay as they were before latency modes existed
            parts.append(f"lat={latency_mode_text(self.latency_mode, self.latency_compile_mode)}")
        return "|".join(parts)

    def label(self) -> str:
        """Short human label: ``[imagenet] model+head 224 b64 fp32 cpu channels_last``."""
        res = self.resolution
        r = "x".join(map(str, res)) if res else "?"
        if len(res) == 2 and res[0] == res[1]:
            r = str(res[0])
        extra = (" channels_last" if self.channels_last else "") + (" compile" if self.compile else "")
        extra += (
            "" if self.mode == "inference" else f" {self.mode}" + (" gc" if self.grad_checkpointing else "")
        )
        extra += (
            ""
            if self.latency_mode == "eager"
            else f" {latency_mode_text(self.latency_mode, self.latency_compile_mode)}"
        )
        t = "" if self.task == "cost" else f"[{self.task}] "
        return f"{t}{self.model_label} {r} b{self.batch_size} {self.dtype} {self.device}{extra}"

    def file_stem(self) -> str:
        """A file-name-safe form (per-class IoU CSVs of a run)."""
        return str(self).replace("|", "_").replace("+", "-").replace("/", "-").replace("=", "-")
