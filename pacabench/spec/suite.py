"""YAML suites → validated ``Suite`` → expanded ``Case`` list.

A suite file::

    name: resolution_scaling            # optional, defaults to the file name
    description: ...
    models:                             # names, or mappings with per-model settings
      - pacavit_tiny_p2cconv_100_0
      - {name: swin_tiny_patch4_window7_224, checkpoint: ckpt/swin_t.pth}
    resolutions: [224, 512, [512, 1024]]   # int or [h, w]
    batch_sizes: [1]
    dtypes: [fp32]                      # fp32 | fp16 | bf16 (autocast)
    device: auto                        # auto | cpu | cuda
    channels_last: false
    compile: false                      # torch.compile before timing
    threads: null                       # torch.set_num_threads on CPU
    metrics: [params, flops, latency, memory]   # + capacity (largest resolution that fits)
    modes: [inference]                  # inference | train (forward + backward + AdamW step)
    grad_checkpointing: false           # train mode: activation checkpointing
    capacity: {memory: 4GiB, limit: 2048}   # the budget of metric capacity (and its largest size)
    counter: fvcore                     # FLOP counter: fvcore | torch | both (gflops_torch beside gflops)
    latency: {warmup: 2, iters: 10, min_iters: 3, time_budget_s: 5,
              cuda: {warmup: 10, iters: 50}}   # per-device overrides
    # latency: {rounds: 3, interleave: true, ...}: the cases of one resolution timed side by side
    # in 3 alternating rounds (pacabench.runs.rounds); iters/min_iters/time_budget_s then per round
    # latency: {mode: cuda_graph}: eager | cuda_graph | compiled (+ compile_mode: max-autotune, ...),
    # retry_unstable: true (a case whose samples drift or split into modes is timed once more)
    eval: {imagenet: {data: /data/imagenet/val}}  # accuracy metrics (optional)

Every problem is reported as one line ``file:line: message`` (``SuiteError``). The pieces:
``located`` (the YAML, with the line of every value), ``schema`` (what each key may hold),
``cases`` (``Suite``, its digest and its ``Case`` list), ``catalog`` (the model names). None of
them imports torch: ``pacabench status`` and ``baseline`` read suites and stay light.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..errors import UsageError
from .cases import (
    AMP,
    LATENCY_COMPILE_MODES,
    LATENCY_MODES,
    MAX_CASES,
    Case,
    LatencySettings,
    ModelEntry,
    Suite,
)
from .located import MAX_SUITE_BYTES, SuiteError, decode, read_yaml
from .schema import DTYPES, METRICS, SuiteParser

__all__ = [
    "SuiteError",
    "Suite",
    "ModelEntry",
    "LatencySettings",
    "Case",
    "load_suite",
    "parse_suite",
    "with_latency_mode",
    "METRICS",
    "DTYPES",
    "AMP",
    "MAX_CASES",
]


def load_suite(path: str | os.PathLike) -> Suite:
    p = Path(path)
    try:
        if not p.exists():
            raise SuiteError(f"{p}: no such suite file")
        if p.is_dir():
            raise SuiteError(f"{p}: is a folder, not a suite file")
        if p.stat().st_size > MAX_SUITE_BYTES:
            raise SuiteError(f"{p}:1: suite file too large (over {MAX_SUITE_BYTES} bytes)")
        raw = p.read_bytes()
    except OSError as e:
        raise SuiteError(f"{p}: cannot read: {e.strerror or e}") from None
    return parse_suite(decode(raw, str(p)), filename=str(p), base_dir=p.parent)


def parse_suite(
    text: str | bytes, filename: str = "<suite>", base_dir: str | os.PathLike | None = None
) -> Suite:
    """Validate a suite's YAML text; the first problem raises ``SuiteError`` as ``file:line: message``.

    Relative ``checkpoint:`` paths resolve against ``base_dir`` (``load_suite``: the suite's folder).
    """
    if isinstance(text, bytes):
        text = decode(text, filename)
    data, loc = read_yaml(text, filename)
    return SuiteParser(data, loc, filename, base_dir).suite(text)


def with_latency_mode(suite: Suite, mode: str | None, compile_mode: str | None = None) -> Suite:
    """The suite with its latency mode overridden for every device (``pacabench run --latency-mode``).

    The mode is suite-wide so that every model of a comparison is timed the same way. ``eager``
    removes the mode keys instead of writing them, so a suite run eagerly keeps its digest; any
    other mode changes the digest (a different measurement: resuming needs the same override).
    """
    if mode is None and compile_mode is None:
        return suite
    if mode is not None and mode not in LATENCY_MODES:
        raise UsageError(f"--latency-mode must be one of {', '.join(LATENCY_MODES)}, got {mode!r}")
    if compile_mode is not None and compile_mode not in LATENCY_COMPILE_MODES:
        raise UsageError(
            f"--compile-mode must be one of {', '.join(LATENCY_COMPILE_MODES)}, got {compile_mode!r}"
        )
    lat = {k: (dict(v) if isinstance(v, dict) else v) for k, v in suite.latency.items()}
    for block in [lat] + [lat[d] for d in ("cpu", "cuda") if isinstance(lat.get(d), dict)]:
        if mode is not None:
            block.pop("mode", None)
        if compile_mode is not None:
            block.pop("compile_mode", None)
    if mode not in (None, "eager"):
        lat["mode"] = mode
    if compile_mode not in (None, "default"):
        lat["compile_mode"] = compile_mode
    if suite.compile and mode not in (None, "eager"):
        raise UsageError(
            f"{suite.path or suite.name}: compile: true cannot be combined with --latency-mode {mode}"
        )
    return dataclasses.replace(suite, latency=lat)
