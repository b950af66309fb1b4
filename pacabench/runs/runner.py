"""Run a suite's cases, one row each, written as soon as it is measured.

- A case that runs out of memory becomes a row with status ``oom``; any other failure a row with
  status ``error`` and a one-line message; a size the architecture refuses, ``skipped``. The
  suite goes on.
- Each row is appended (and fsynced) before the next case starts: an interrupted run keeps all
  it measured, and ``resume`` skips the cases already in ``rows.jsonl``.
- ``isolate=True`` runs each case in a fresh Python process, so one model's allocator state or
  a hard crash cannot affect the next.
- Interleaved rounds (suite ``latency: {rounds: R, interleave: true}``, ``pacabench.runs.rounds``):
  the cases of one resolution are measured together in one process (one worker with
  ``isolate``) and their rows written when the group finishes: an interrupt loses at most the
  current group's partial rounds.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import torch

from ..measure.capacity import case_capacity
from ..measure.flops import count_params
from ..measure.flops_torch import count_flops_as
from ..measure.kernels import gemm_peak, kernel_record, row_efficiency
from ..measure.latency import measure_latency, measure_rounds
from ..measure.memory import measure_peak_memory, resident_bytes
from ..measure.modes import Unmeasurable, busy_columns, compiled_forward, cuda_graph_forward, gpu_busy_ms
from ..measure.oom import is_oom
from ..measure.precision import autocast
from ..measure.stability import Stability, assess
from ..measure.telemetry import ENERGY_MIN_S, gpu_window
from ..measure.train import train_case
from ..models import ResolutionError, get_spec
from ..spec.metrics import REFILL, TASKS, TIMED, metrics_of
from ..spec.sizes import tokens
from ..spec.suite import Case, Suite
from .folder import RunDir
from .results import Row, row_key
from .rounds import interleave_groups

__all__ = [
    "run_case",
    "run_suite",
    "merge_refill",
    "is_oom",
    "RunSummary",
    "RunState",
    "Terminated",
    "sigterm_as_interrupt",
]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C: an isolated worker is killed and waited for, rows are kept."""


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises ``Terminated`` (main thread only; elsewhere a no-op)."""

    def handler(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class RunState:
    """What one process carries from case to case of a run (no module globals).

    ``flops``: FLOPs do not depend on batch, dtype or device, so each (model, size, kwargs) is
    traced once per run. ``warm``: set once this process has run a forward pass.
    """

    flops: dict[tuple, tuple[float, dict, float]] = field(default_factory=dict)
    warm: bool = False
    gemm: dict[tuple[str, str], float] = field(default_factory=dict)  # (device, dtype) → GEMM GMAC/s


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")[:500]


@functools.cache
def _device_name(device: str) -> str:
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _base_row(case: Case) -> Row:
    import timm

    try:
        family = get_spec(case.model).family
    except Exception:  # noqa: BLE001
        family = ""
    key = case.key
    return Row(
        **key.row_fields(),
        suite=case.suite,
        case_id=str(key),
        family=family,
        tokens=tokens(case.resolution),
        device_name=_device_name(case.device),
        attn_impl=str(case.kwargs.get("attn_impl", "sdpa")),
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        timm_version=timm.__version__,
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def _fill(row: Row, measure: str, record: Any) -> None:
    """Copy a measurement's record into the row: one column per entry of the metric table."""
    for m in metrics_of(measure):
        if callable(m.source):
            setattr(row, m.column, m.source(record))
        elif m.source is not None:
            setattr(row, m.column, getattr(record, m.source))


def _cost_model(case: Case) -> torch.nn.Module:
    """The model a cost case measures: the backbone, or with a ``head`` the whole segmentor."""
    from ..models.segmentation import create_model_or_segmentor

    return create_model_or_segmentor(
        case.model,
        case.head,
        img_size=case.resolution,
        checkpoint=case.checkpoint,
        verbose=False,
        **case.kwargs,
    )


class _Bench:
    """A cost case being measured: its model, and, built when a measure first runs a forward, the
    input on the device and the forward as timed (FLOPs and capacity need neither)."""

    def __init__(self, case: Case, model: torch.nn.Module, state: RunState):
        self.case, self.model, self.state = case, model, state
        self.dev = torch.device(case.device)

    @functools.cached_property
    def inputs(self) -> tuple[torch.nn.Module, torch.Tensor, bool]:
        """(the model as run: compiled or eager, the input, whether it is the process's first forward)."""
        case = self.case
        self.model = self.model.to(self.dev)
        x = torch.randn(case.batch_size, 3, *case.resolution, device=self.dev)
        if case.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        first, self.state.warm = not self.state.warm, True
        return (torch.compile(self.model) if case.compile else self.model), x, first

    @property
    def forward(self) -> Callable[[], Any]:
        model, x, _ = self.inputs
        return functools.partial(_forward, model, x, self.case.dtype, self.dev)


@dataclass
class _Timing:
    """A case's latency, prepared (model built, kernels read) and not yet timed: ``_run_case_once``
    times it alone, ``_run_group`` side by side with the other cases of its group."""

    bench: _Bench
    forward: Callable[[], Any]
    warmup: int  # the warm-up calls still owed (``_warmup_left``)
    kernels: dict[str, Any]

    def finish(self, row: Row, rec: Any, extra: dict[str, Any] | None = None) -> None:
        """The latency columns, the kernel record, the hardware efficiency, the samples' stability,
        and on a GPU the busy time (a few more iterations under the profiler); then ``extra``
        (the telemetry and retry of a case timed alone)."""
        _fill(row, "latency", rec)
        for k, v in self.kernels.items():
            setattr(row, k, v)
        _efficiency(self.bench.case, self.bench.model, row, self.bench.state)
        _stability(row, assess(rec.times_ms))
        if self.bench.dev.type == "cuda":
            try:
                busy = gpu_busy_ms(self.forward, self.bench.dev)
            except Exception:  # noqa: BLE001 - a profiler that fails leaves the columns empty
                busy = None
            for k, v in busy_columns(busy, row.latency_ms_median).items():
                setattr(row, k, v)
        for k, v in (extra or {}).items():
            setattr(row, k, v)


# ------------------------------------------------------------------------------------- measures
def _flops(b: _Bench) -> Any:
    """FLOPs do not depend on batch, dtype or device: traced once per run per model, size, kwargs."""
    case = b.case
    key = (case.model, case.head, case.resolution, json.dumps(case.kwargs, sort_keys=True), case.counter)
    if key not in b.state.flops:
        b.state.flops[key] = count_flops_as(b.model, case.resolution, case.counter)
    return b.state.flops[key]


def _capacity(b: _Bench) -> Any:
    return case_capacity(b.case, is_oom)


def _memory(b: _Bench) -> Any:
    """The allocator's peak over one forward. It doubles as the first warm-up call of the timing
    (saves one forward per case, which matters at 1024² on a CPU); the peak does not depend on it."""
    forward = b.forward
    if b.case.compile:
        forward()  # compile outside the profiler
    _, x, _ = b.inputs
    return measure_peak_memory(forward, device=b.dev, resident=resident_bytes(b.model, x))


def _latency(b: _Bench) -> _Timing:
    """The timing, prepared. The SDPA backends are read on one forward of the eager model (not
    compiled: a TorchFunctionMode would break its graph); for an eager case it doubles as a warm-up.
    In the suite's latency mode ``cuda_graph`` or ``compiled`` the timed callable is built here (the
    capture or the compilation: not timed), and the suite's warm-up calls all run on it."""
    _, x, first = b.inputs
    kernels = kernel_record(
        functools.partial(_forward, b.model, x, b.case.dtype, b.dev), b.dev, b.case.compile
    )
    mode = b.case.latency_mode
    if mode == "eager":
        return _Timing(b, b.forward, _warmup_left(b.case, first), kernels)
    if mode == "cuda_graph":
        forward = cuda_graph_forward(b.model, x, b.case.dtype, b.dev)
    else:
        compile_mode = b.case.latency.compile_mode
        forward = compiled_forward(b.model, lambda m: _forward(m, x, b.case.dtype, b.dev), compile_mode)
        kernels["compile_mode"] = compile_mode
    return _Timing(b, forward, b.case.latency.warmup, kernels)


def _train(b: _Bench) -> Any:
    """One AdamW step, timed, with its peak memory: in train mode it stands for latency and memory."""
    model, x, first = b.inputs
    return train_case(model, x, b.case, first=first)


# A measure's function returns its record (``_fill`` copies it into the row through the metric
# table's ``source``), or, for latency, the timing still to run. In run order: the memory
# measure's forward counts as a warm-up of the latency timing that follows it.
_MEASURES: dict[str, Callable[[_Bench], Any]] = {
    "flops": _flops,
    "capacity": _capacity,
    "memory": _memory,
    "latency": _latency,
    "train": _train,
}
# what a record fills beyond its own columns: the train step's load average (a latency column)
_ALSO: dict[str, Callable[[Any], dict[str, Any]]] = {
    "train": lambda rec: {"loadavg_1m": rec.latency.loadavg_1m if rec.latency else None},
}


def _nothing(rec: Any) -> dict[str, Any]:
    return {}


def _plan(case: Case) -> list[str]:
    """The measures a cost case runs, in ``_MEASURES`` order: those its metrics name, except that
    in train mode one training step measures the timed ones (latency, memory) together."""
    names = [name for name in _MEASURES if name in case.metrics]
    if case.mode == "train" and TIMED & set(names):
        names = [name for name in names if name not in TIMED] + ["train"]
    return names


def _warmup_left(case: Case, first: bool) -> int:
    """The warm-up calls the timing still owes: one more for the first forward of a process (it
    pays one-off costs: library initialisation, kernel selection), one less for each forward
    already run, the memory measure's and (eager) the kernel read."""
    done = ("memory" in case.metrics) + (not case.compile)
    return max(0, case.latency.warmup + first - done)


def _run_cost(case: Case, row: Row, state: RunState) -> _Timing | None:
    """Measure a cost case into ``row``: params always, then each measure of ``_plan``. Returns
    the latency timing still to run, if any."""
    model = _cost_model(case)
    model.eval()
    row.params = count_params(model)
    if torch.device(case.device).type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device cuda requested but CUDA is not available")
        model = model.to(case.device)  # trace for FLOPs on the GPU too: 2048² on a CPU takes long
    bench, timing = _Bench(case, model, state), None
    for name in _plan(case):
        rec = _MEASURES[name](bench)
        if isinstance(rec, _Timing):
            timing = rec
            continue
        _fill(row, name, rec)
        for k, v in _ALSO.get(name, _nothing)(rec).items():
            setattr(row, k, v)
    return timing


def _timing_kw(case: Case) -> dict[str, Any]:
    lat = case.latency
    return dict(batch_size=case.batch_size, iters=lat.iters, min_iters=lat.min_iters,
                time_budget_s=lat.time_budget_s, device=torch.device(case.device))  # fmt: skip


def _stability(row: Row, verdict: Stability | None) -> None:
    row.latency_unstable = None if verdict is None else verdict.unstable
    row.latency_unstable_why = None if verdict is None else verdict.why


def _time_once(t: _Timing, warmup: int) -> tuple[Any, dict[str, Any]]:
    """One timing of a case alone, with the GPU telemetry of its timed loop (``gpu_window``; all
    None off CUDA). A loop shorter than ``ENERGY_MIN_S`` is extended inside the window by untimed
    calls of the same forward (the energy counter's resolution); energy per image = the window's
    energy ÷ ((timed + extra calls) × batch)."""
    case, got, extra = t.bench.case, [], [0]

    @contextlib.contextmanager
    def window():
        with gpu_window(t.bench.dev) as tel:
            got.append(tel)
            start = time.perf_counter()
            yield
            if t.bench.dev.type == "cuda":
                while time.perf_counter() - start < ENERGY_MIN_S:
                    t.forward()
                    torch.cuda.synchronize(t.bench.dev)
                    extra[0] += 1

    if case.latency.rounds == 1:
        rec = measure_latency(t.forward, warmup=warmup, around=window(), **_timing_kw(case))
    else:
        (rec,) = measure_rounds([t.forward], rounds=case.latency.rounds, warmups=[warmup],
                                around=window(), **_timing_kw(case))  # fmt: skip
    if isinstance(rec, Exception):
        raise rec
    return rec, got[0].columns((rec.iters + extra[0]) * case.batch_size) if got else {}


def _time_alone(t: _Timing) -> tuple[Any, dict[str, Any]]:
    """Time a case alone; with ``latency: {retry_unstable: true}`` a case whose samples drift or
    split into modes (``pacabench.measure.stability``) is timed once more and the retry is kept."""
    case = t.bench.case
    rec, extra = _time_once(t, t.warmup)
    verdict = assess(rec.times_ms)
    if verdict is not None and verdict.unstable and case.latency.retry_unstable:
        rec, extra = _time_once(t, case.latency.warmup)
        again = assess(rec.times_ms)
        if again is not None and not again.unstable:
            again = Stability(False, f"stable when retried; first try: {verdict.why}")
        extra = {**extra, "latency_retried": True, "latency_unstable": again and again.unstable,
                 "latency_unstable_why": again and again.why}  # fmt: skip
    return rec, extra


def _time_rounds(pending: list[tuple[Row, _Timing]]) -> None:
    """Time prepared cases side by side in alternating rounds and finish their rows; a case that
    fails in a round gets its status, the others go on."""
    case = pending[0][1].bench.case
    recs = measure_rounds(
        [t.forward for _, t in pending], rounds=case.latency.rounds,
        warmups=[t.warmup for _, t in pending], **_timing_kw(case),
    )  # fmt: skip
    for (row, timing), rec in zip(pending, recs):
        if not isinstance(rec, Exception):
            try:
                timing.finish(row, rec)  # latency columns, kernel record, efficiency
            except Exception as e:  # noqa: BLE001 - one failing case must not stop the group
                rec = e
        if isinstance(rec, Exception):
            row.status, row.error = ("oom" if is_oom(rec) else "error"), _one_line(rec)
        else:
            row.wall_s = (row.wall_s or 0.0) + sum(rec.times_ms) / 1000.0


def _forward(model: torch.nn.Module, x: torch.Tensor, dtype: str, dev: torch.device):
    """One forward of ``model`` (eager or compiled) as timed: inference mode, the case's autocast."""
    with torch.inference_mode(), autocast(dtype, dev):
        return model(x)


def _efficiency(case: Case, model: torch.nn.Module, row: Row, state: RunState) -> None:
    """achieved_gflops_s and efficiency of a timed row: GMACs from the row (or torch's counter)
    ÷ its median latency, against the GEMM rate measured once per run per (device, dtype)."""
    gmacs = row.gflops if row.gflops is not None else row.gflops_torch
    if gmacs is None:
        gmacs = count_flops_as(model, case.resolution, "torch").gflops_torch
    peak_key = (case.device, case.dtype)
    if peak_key not in state.gemm:
        state.gemm[peak_key] = gemm_peak(case.device, case.dtype)
    for k, v in row_efficiency(gmacs, case.batch_size, row.latency_ms_median, state.gemm[peak_key]).items():
        setattr(row, k, v)


def _run_eval(case: Case, row: Row) -> None:
    """Run the case's accuracy task (``pacabench.spec.metrics.TASKS``) and copy its numbers into the row."""
    module, _, fn = TASKS[case.task].evaluate.partition(":")
    res = getattr(importlib.import_module(module), fn)(case)
    for k, v in res.items():
        if hasattr(row, k) and k not in ("model", "task", "resolution"):
            setattr(row, k, v)


def run_case(case: Case, state: RunState | None = None) -> Row:
    """Measure one case in this process; never raises for a failing model (KeyboardInterrupt aside).

    ``state``: carried from case to case by ``run_suite`` (a fresh one when not given)."""
    state = state if state is not None else RunState()
    return _with_decay(case, lambda c: (_run_case_once(c, state), None))[0]


def _with_decay(case: Case, attempt: Callable[[Case], tuple[Row, Any]]) -> tuple[Row, Any]:
    """``attempt(case)``, and with ``case.batch_decay`` again at smaller batches while it runs out
    of memory (timm's ``decay_batch_step``: 128, 96, 64, 48, ...); the row keeps the requested
    batch and records ``batch_size_used`` (its key then says ``decayed=N``)."""
    row, extra = attempt(case)
    if not case.batch_decay:
        return row, extra
    from timm.utils import decay_batch_step

    batch = case.batch_size
    while row.status == "oom" and (batch := decay_batch_step(batch)) >= 1:
        row, extra = attempt(replace(case, batch_size=batch))
    row.batch_size, row.batch_size_used = case.batch_size, batch if row.status != "oom" else None
    row.batch_decay = True
    row.case_id = str(row_key(row))
    return row, extra


def _new_row(case: Case) -> Row:
    if case.threads:
        torch.set_num_threads(case.threads)
    return _base_row(case)


@contextlib.contextmanager
def _outcome(case: Case, row: Row):
    """The block measures ``row``: its status (``ok``; ``oom``, ``error`` or ``skipped`` with a
    one-line message: one failing case must not stop the suite) and wall time."""
    t0 = time.perf_counter()
    try:
        yield
        row.status = "ok"
    except KeyboardInterrupt:
        raise
    except (ResolutionError, Unmeasurable) as e:  # a size the model refuses; a mode it cannot run in
        row.status, row.error = "skipped", str(e)
    except BaseException as e:  # noqa: BLE001 - one failing case must not stop the suite
        if isinstance(e, SystemExit):
            row.status, row.error = "error", f"SystemExit: {e.code}"
        elif is_oom(e):
            row.status, row.error = "oom", _one_line(e)
        else:
            row.status, row.error = "error", _one_line(e)
    finally:
        if case.device == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()
    row.wall_s = time.perf_counter() - t0


def _run_case_once(case: Case, state: RunState) -> Row:
    row = _new_row(case)
    with _outcome(case, row):
        if case.task != "cost":
            _run_eval(case, row)
        elif (timing := _run_cost(case, row, state)) is not None:
            timing.finish(row, *_time_alone(timing))
    return row


def _prepare(case: Case, state: RunState) -> tuple[Row, _Timing | None]:
    """A case of an interleaved group, measured all but its timing."""
    row, timing = _new_row(case), None
    with _outcome(case, row):
        timing = _run_cost(case, row, state)
    return row, timing


def _run_group(cases: list[Case], state: RunState) -> list[Row]:
    """Interleaved rounds (``pacabench.runs.rounds``): build and measure every case of the group
    once (params, FLOPs, memory, warm-up), then time them all side by side. A case whose batch
    decayed (out of memory, ``batch_decay``) is timed in rounds of its own, at its batch."""
    prepared = [_with_decay(c, lambda c: _prepare(c, state)) for c in cases]
    by_batch: dict[int, list[tuple[Row, _Timing]]] = {}
    for row, timing in prepared:
        if timing is not None:
            by_batch.setdefault(timing.bench.case.batch_size, []).append((row, timing))
    for pending in by_batch.values():
        _time_rounds(pending)
    return [row for row, _ in prepared]


def _run_case_isolated(case: Case, timeout_s: float | None = None) -> Row:
    """Run a case in a fresh interpreter (``python -m pacabench.runs.runner``)."""
    return _run_isolated([case], timeout_s, group=False)[0]


def _run_isolated(cases: list[Case], timeout_s: float | None = None, group: bool = True) -> list[Row]:
    """Run cases in one fresh interpreter: one case, or (``group``) an interleaved group."""
    env = dict(os.environ)
    payload = [c.to_dict() for c in cases] if group else cases[0].to_dict()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pacabench.runs.runner"],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return [_failed_row(c, "error", f"timed out after {timeout_s:.0f} s") for c in cases]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and len(lines) >= len(cases):
        return [Row.from_dict(json.loads(ln)) for ln in lines[-len(cases) :]]
    err = (proc.stderr.strip().splitlines() or [""])[-1]
    if proc.returncode < 0:
        sig = -proc.returncode
        msg = f"worker killed by signal {sig}" + (" (likely out of memory)" if sig == 9 else "")
        return [_failed_row(c, "oom" if sig == 9 else "error", msg) for c in cases]
    return [_failed_row(c, "error", f"worker exited {proc.returncode}: {err}"[:500]) for c in cases]


def _failed_row(case: Case, status: str, error: str) -> Row:
    row = _base_row(case)
    row.status, row.error = status, error
    return row


class RunSummary:
    def __init__(self, run_dir: RunDir):
        self.run_dir = run_dir
        self.rows: list[Row] = []
        self.skipped_done = 0
        self.wall_s = 0.0

    def counts(self) -> dict[str, int]:
        c: dict[str, int] = {}
        for r in self.rows:
            c[r.status] = c.get(r.status, 0) + 1
        return c


def with_artifacts(case: Case, run_dir: RunDir) -> Case:
    """The case with its task's files (e.g. ADE20k's per-class IoU CSV) pointed into the run folder."""
    task = TASKS.get(case.task)
    if task is None or not task.artifacts:
        return case
    cfg = dict(case.eval_config)
    for option, pattern in task.artifacts:
        cfg[option] = str(run_dir.path / pattern.format(key=case.key.file_stem()))
    return replace(case, eval_config=cfg)


def run_suite(
    suite: Suite,
    run_dir: RunDir,
    *,
    device: str | None = None,
    isolate: bool | None = None,
    on_start: Callable[[list[Case]], None] | None = None,
    on_case: Callable[[Case], None] | None = None,
    on_row: Callable[[Row], None] | None = None,
    case_fn: Callable[[Case], Row] | None = None,
    max_cases: int | None = None,
    refill: frozenset[str] = frozenset(),
) -> RunSummary:
    """Run every case not already in ``run_dir`` (so a second call resumes).

    ``refill``: metrics added to the suite since the run began. A finished ok case that asks for
    one of them is measured again for those metrics only, and its row is updated in place (one
    row per case; the superseded row goes to ``rows.replaced.jsonl``).

    Progress is reported through the callbacks (the CLI draws its bar with them): ``on_start``
    with the cases to run, ``on_case`` before each, ``on_row`` after each row is written.
    """
    cases, _ = suite.expand(device, max_cases)
    done = {row_key(r).requested(): r for r in run_dir.rows()}
    todo = [c for c in cases if c.key not in done or _missing(c, done[c.key], refill)]
    summary = RunSummary(run_dir)
    summary.skipped_done = len(cases) - len(todo)
    fn, group_fn = _case_runners(suite.isolate if isolate is None else isolate, case_fn)
    on_case, on_row = on_case or (lambda case: None), on_row or (lambda row: None)
    t_start = time.perf_counter()
    if on_start is not None:
        on_start(todo)
    for group in interleave_groups(todo, done):
        for case in group:
            on_case(case)
        old = done.get(group[0].key) if len(group) == 1 else None
        if old is not None:  # a finished case: the metrics added since, written into its row
            row = _refill_row(group[0], old, _missing(group[0], old, refill), fn, run_dir)
            summary.rows.append(row)
            on_row(row)
            continue
        if len(group) > 1:  # timed side by side; rows written when the group finishes
            rows = group_fn([with_artifacts(c, run_dir) for c in group])
        else:
            rows = [fn(with_artifacts(group[0], run_dir))]
        for row in rows:
            row.run_id = run_dir.path.name
            run_dir.append(row)
            summary.rows.append(row)
            on_row(row)
    summary.wall_s = time.perf_counter() - t_start
    return summary


def _case_runners(isolate: bool, case_fn: Callable[[Case], Row] | None) -> tuple[Callable, Callable]:
    """How one case and one interleaved group are measured: in this process (one ``RunState``
    carried across the run), each in a fresh interpreter (``isolate``), or by ``case_fn`` (tests)."""
    if case_fn is not None:
        return case_fn, lambda group: [case_fn(c) for c in group]
    if isolate:
        return _run_case_isolated, _run_isolated
    state = RunState()
    return functools.partial(run_case, state=state), functools.partial(_run_group, state=state)


def _missing(case: Case, row: dict[str, Any], refill: frozenset[str]) -> tuple[str, ...]:
    """The metrics of ``refill`` this finished case asks for and its (ok) row lacks."""
    if row.get("status") != "ok":
        return ()
    return tuple(m for m in case.metrics if m in refill and m in REFILL)


def merge_refill(again: Case, old: dict[str, Any], new: Row) -> dict[str, Any]:
    """``old`` (a finished case's row) with the metrics ``again`` measured (``new``, its row)
    written in; a failure marks the row, naming those metrics (also an executor job's merge)."""
    merged = dict(old)
    for m in _plan(again):  # the measures run for them (in train mode: the train step)
        for col in metrics_of(m):
            merged[col.column] = getattr(new, col.column)
    if new.status != "ok":
        merged["status"], merged["error"] = new.status, f"{', '.join(again.metrics)}: {new.error}"
    return merged


def _refill_row(case: Case, old: dict[str, Any], metrics: tuple[str, ...], fn, run_dir: RunDir) -> Row:
    """Measure only ``metrics`` for a finished case and write them into its row."""
    again = replace(case, metrics=metrics)
    merged = merge_refill(again, old, fn(with_artifacts(again, run_dir)))
    rows = run_dir.rows()
    rows = [merged if row_key(r).requested() == case.key else r for r in rows]
    run_dir.replace_rows(rows, [old])
    return Row.from_dict(merged)


def _worker_main() -> int:
    """Entry point of an isolated case: case JSON on stdin, row JSON on stdout."""
    data = json.loads(sys.stdin.read())
    if isinstance(data, list):  # an interleaved group
        rows = _run_group([Case.from_dict(d) for d in data], RunState())
    else:
        rows = [run_case(Case.from_dict(data))]
    sys.stdout.write("".join("\n" + json.dumps(row.to_dict()) for row in rows) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    import pacabench.models  # noqa: F401 - registers our models with timm

    sys.exit(_worker_main())
