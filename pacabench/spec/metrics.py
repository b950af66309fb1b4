"""The metric table: every column a case can measure, declared once.

Suite validation, ``Row``, the runner, the report, the plots and ``compare`` all read this
table (the pattern of fvcore's op table: one dict, extended in one place). A ``Metric`` says
which suite measurement produces the column (``measure``: params, flops, latency, memory, or an
accuracy task), where the runner takes its value from (``source``: an attribute of that
measurement's record, or a function of it), how it is shown (title, unit, format, scale), what
kind it is (``exact``: deterministic, compared to a relative tolerance; ``noisy``: compared
against a tolerance band *and* its spread column; ``accuracy``: compared in points; ``info``:
recorded, never compared), and where it appears (its own report table, relative tables, the
scaling fit, a plot, the tidy CSV, compare).

The measurements themselves are declared in ``MEASURE_TABLE`` beside it (``Measure``: how a
suite asks for one, whether it is timed, whether a resumed run refills it); the suite's metric
names, the executors' timed set, the runner's refill set and compare's names and tolerances are
derived from the two tables. Accuracy tasks are declared in ``TASKS``: the evaluation that runs
them, their default input size and batch size, and the column their plot shows.

Adding a column of an existing measurement = one ``Metric`` entry (and its ``source``); adding a
measurement = a measure function + a ``Measure`` entry + its ``Metric`` entries + one line of the
runner's dispatch (``pacabench.runs.runner._MEASURES``). See the README's Development section.

This module imports nothing heavy: the CLI's ``--help`` reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "Metric",
    "Measure",
    "MeasureSets",
    "Task",
    "METRICS",
    "METRIC_DOCS",
    "MEASURE_TABLE",
    "TASKS",
    "COST_MEASURES",
    "OPTIONAL_COST_MEASURES",
    "MEASURES",
    "TIMED",
    "REFILL",
    "measure_sets",
    "metric",
    "metrics_of",
    "columns",
    "format_value",
]

KINDS = ("exact", "noisy", "accuracy", "info")
SUITE_ROLES = ("default", "optional", "mode")


def _on(value: float | dict[str, float] | None, device: str) -> float | None:
    """A per-device value on ``device``: a table falls back to its CPU entry, a number is every device's."""
    if isinstance(value, dict):
        return value.get(device, value.get("cpu"))
    return value


@dataclass(frozen=True)
class Metric:
    """One measured column of a row."""

    column: str
    measure: str  # the suite metric that produces it: params | flops | latency | memory | <task>
    kind: str  # exact | noisy | accuracy | info
    title: str = ""  # table and axis title, with the unit
    unit: str = ""  # compare shows values as "<value> <unit>"
    fmt: str = "{:.2f}"  # report cells
    type: Any = float  # the Row field's type (None allowed)
    source: str | Callable[[Any], Any] | None = None  # attribute of the measure's record, or f(record)
    scale: float = 1.0  # report cell = value × scale (params in millions)
    spread: str | None = None  # column holding this metric's spread (IQR): the noise compare allows
    samples: str | None = None  # column holding the raw data the statistic was derived from
    table: bool = False  # its own models × resolutions table in the report
    relative: bool = False  # a "relative to the reference model" table
    fit: str | None = None  # column of the scaling table: log-log slope against tokens
    plot: str | None = None  # file stem of its cost-vs-resolution plot
    plot_label: str = ""  # that plot's axis label (default: title)
    csv: bool = False  # a column of the tidy CSV export
    compare: bool = False  # compared by ``pacabench compare``
    compare_fmt: str = "{:.2f}"  # compare's value format (with scale)
    compare_scale: float = 1.0
    tolerance: float | dict[str, float] | None = None  # default: relative (exact, noisy) or points
    load_sensitive: bool = False  # a CPU regression on a busy machine is only "inconclusive"
    # with raw ``samples``: the least relative change of the median compare's samples test calls a change
    effect: float | dict[str, float] | None = None
    doc: str = ""  # one line for the glossary (docs/reference/metrics.md); default: METRIC_DOCS's entry

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.column}: kind must be one of {KINDS}, got {self.kind!r}")
        # compare reads these off the table and nowhere else: a compared metric must declare them
        if self.compare and self.tolerance is None:
            raise ValueError(f"metric {self.column}: a compared metric needs a tolerance")
        if self.compare and self.samples and self.effect is None:
            raise ValueError(f"metric {self.column}: a compared metric with samples needs an effect")

    def tolerance_on(self, device: str) -> float | None:
        """The declared tolerance on ``device`` (None: not compared)."""
        return _on(self.tolerance, device)

    def effect_on(self, device: str) -> float | None:
        """The declared minimum effect of the samples test on ``device`` (None: no samples)."""
        return _on(self.effect, device)


@dataclass(frozen=True)
class Measure:
    """One measurement the runner makes of a cost case; it fills the metrics whose ``measure`` names it.

    ``suite``: how a suite asks for it: ``default``, a name of its ``metrics:`` list and of the
    list's default; ``optional``, a name a suite must list to get (capacity); ``mode``, no name of
    its own: a suite mode runs it (``modes: [train]`` measures a training step for the timed names).
    ``timed``: it times forwards or reads the allocator's peak, so an executor runs a case asking
    for it alone, never packed with other cases. ``refill``: a finished case is measured again for
    it alone when a resumed run's suite adds it.
    """

    name: str
    suite: str
    timed: bool = False
    refill: bool = False
    doc: str = ""  # one line: what it measures and with which counter or timer (the docs' glossary)

    def __post_init__(self) -> None:
        if self.suite not in SUITE_ROLES:
            raise ValueError(f"measure {self.name}: suite must be one of {SUITE_ROLES}, got {self.suite!r}")


@dataclass(frozen=True)
class Task:
    """An accuracy task: its evaluation, default setting and plotted column."""

    name: str
    evaluate: str  # "module:function" taking (case) and returning a dict of row fields
    resolution: int  # default input size (suite ``eval.<task>.img_size`` overrides)
    batch_size: int  # default batch size (suite ``eval.<task>.batch_size`` overrides)
    plot_column: str  # accuracy axis of the accuracy-vs-latency plot
    plot_label: str
    # files the evaluation writes into the run folder: (its option, file name; {key} = case key)
    artifacts: tuple[tuple[str, str], ...] = field(default=())
    doc: str = ""  # one line: the data set, the protocol and the columns it fills (the docs' glossary)


def _round_samples(rec: Any) -> list[float]:
    return [round(t, 4) for t in rec.times_ms]


def _round_sizes(rec: Any) -> list[int] | None:
    return list(rec.round_sizes) or None


def _round_train_samples(rec: Any) -> list[float] | None:
    return None if rec.latency is None else _round_samples(rec.latency)


def _probes(rec: Any) -> list[list]:
    """[size, peak MiB or None, status] per probe of a capacity search."""
    return [[p.size, None if p.peak_mb is None else round(p.peak_mb, 1), p.status] for p in rec.probes]


_GFLOPS_TITLE = "GFLOPs (1 MAC = 1 FLOP, fvcore, batch 1, attention counted)"
_GFLOPS_TORCH_TITLE = "GFLOPs, torch counter (1 MAC = 1 FLOP, FlopCounterMode, batch 1)"
_LAT = {"measure": "latency", "fmt": "{:.2f}", "unit": "ms"}


def _acc(column: str, task: str, *, csv: bool = False) -> Metric:
    return Metric(column, task, "accuracy", fmt="{:.2f}", compare=True, tolerance=0.1, csv=csv)


# fmt: off
_TABLE: list[Metric] = [
    # --- cost: params, flops
    Metric("params", "params", "exact", "Params (M)", "M", "{:.3f}", int, scale=1e-6, table=True,
           csv=True, compare=True, compare_fmt="{:.4f}", compare_scale=1e-6, tolerance=1e-3),
    Metric("gflops", "flops", "exact", _GFLOPS_TITLE, "G", "{:.3f}", source="gflops", table=True,
           relative=True, fit="flops_exp", plot="gflops_vs_resolution",
           plot_label="GFLOPs (1 MAC = 1 FLOP, batch 1)", csv=True, compare=True, compare_fmt="{:.4f}",
           tolerance=1e-3),
    Metric("uncounted_ops", "flops", "info", type=dict, source="uncounted_ops"),
    Metric("uncounted_share", "flops", "info", source="uncounted_share"),
    # the second counter (suite ``counter: torch | both``; pacabench.measure.flops_torch)
    Metric("gflops_torch", "flops", "exact", _GFLOPS_TORCH_TITLE, "G", "{:.3f}", source="gflops_torch",
           table=True, relative=True, csv=True, compare=True, compare_fmt="{:.4f}", tolerance=1e-3),
    Metric("flops_counter", "flops", "info", type=str, source="counter"),
    Metric("flops_counter_diff_pct", "flops", "info", source="counter_diff_pct", csv=True),
    # --- cost: latency (statistics of latency_ms_samples, the raw per-iteration times)
    Metric("latency_ms_median", kind="noisy", title="Latency, median (ms per batch)", source="median_ms",
           spread="latency_ms_iqr", samples="latency_ms_samples", table=True, relative=True,
           fit="latency_exp", plot="latency_vs_resolution", csv=True, compare=True,
           tolerance={"cpu": 0.5, "cuda": 0.15}, effect={"cpu": 0.2, "cuda": 0.1}, load_sensitive=True,
           **_LAT),
    Metric("latency_ms_p90", kind="info", source="p90_ms", csv=True, **_LAT),
    Metric("latency_ms_iqr", kind="info", source="iqr_ms", csv=True, **_LAT),
    Metric("latency_ms_mean", kind="info", source="mean_ms", **_LAT),
    Metric("latency_ms_min", kind="info", source="min_ms", **_LAT),
    Metric("latency_iters", "latency", "info", type=int, source="iters"),
    Metric("latency_ms_samples", "latency", "info", type=list, source=_round_samples),
    # samples per round when timed in rounds (suite ``latency: {rounds: R, interleave: true}``)
    Metric("latency_round_sizes", "latency", "info", type=list, source=_round_sizes),
    Metric("throughput_img_s", "latency", "info", "Throughput (images/s)", "img/s", "{:.1f}",
           source="throughput_img_s", table=True, csv=True),
    Metric("timer", "latency", "info", type=str, source="timer"),
    Metric("loadavg_1m", "latency", "info", source="loadavg_1m"),  # the machine's load while timing
    # hardware efficiency (filled by the runner: GMACs × batch ÷ median latency, ÷ the run's GEMM rate)
    Metric("achieved_gflops_s", "latency", "noisy", "Achieved GFLOP/s (1 MAC = 1 FLOP)", "GFLOP/s",
           "{:.1f}", table=True, csv=True),
    Metric("efficiency", "latency", "noisy", "Efficiency (% of the run's GEMM rate)", "%", "{:.1f}",
           scale=100.0, table=True, csv=True),
    Metric("gemm_gflops_s", "latency", "info", unit="GFLOP/s"),  # the run's GEMM rate, device and dtype
    # which kernels ran (filled by the runner; pacabench.measure.kernels)
    Metric("sdpa_backend", "latency", "info", type=str),  # e.g. "flash×12" (per attention call)
    Metric("matmul_precision", "latency", "info", type=str),  # torch.get_float32_matmul_precision()
    Metric("tf32", "latency", "info", type=bool),  # torch.backends.cuda.matmul.allow_tf32
    Metric("cudnn_benchmark", "latency", "info", type=bool),
    Metric("deterministic", "latency", "info", type=bool),
    Metric("compile_mode", "latency", "info", type=str),  # eager | default (torch.compile)
    # GPU busy time (pacabench.measure.modes; None on a CPU: not measured there)
    # gpu_busy_ms: the GPU's own work per timed iteration: the union of kernel/memcpy intervals of a
    # torch.profiler trace over a few iterations after the timing
    Metric("gpu_busy_ms", "latency", "info", "GPU busy time (ms per batch)", "ms", "{:.2f}", csv=True),
    # gpu_busy_share: gpu_busy_ms ÷ the median latency (1: the GPU never waited for the host)
    Metric("gpu_busy_share", "latency", "info", "GPU busy share of the wall time", "", "{:.2f}", csv=True),
    # launch_bound: gpu_busy_share under LAUNCH_BOUND_SHARE (0.8): the latency measures kernel launches
    Metric("launch_bound", "latency", "info", type=bool, csv=True),
    # instability of the samples (pacabench.measure.stability): drift or modes within one case
    # latency_unstable: the samples drift (first half vs second half) or split into separated modes
    Metric("latency_unstable", "latency", "info", type=bool, csv=True),
    # latency_unstable_why: the evidence, e.g. "drift: median 6.8 ms first half vs 14.2 ms second half"
    Metric("latency_unstable_why", "latency", "info", type=str),
    # latency_retried: the case was unstable and timed once more (suite latency: {retry_unstable: true})
    Metric("latency_retried", "latency", "info", type=bool),
    # GPU telemetry over the timed loop (NVML, pacabench.measure.telemetry; None on a CPU: no RAPL read)
    # energy_mj_per_image: the NVML total-energy counter's difference over the timed loop ÷ images
    Metric("energy_mj_per_image", "latency", "noisy", "Energy per image (mJ, NVML, whole GPU)", "mJ",
           "{:.2f}", table=True, csv=True, compare=True, compare_fmt="{:.2f}", tolerance={"cpu": 0.2, "cuda": 0.2}),
    Metric("energy_window_s", "latency", "info", unit="s"),  # the timed loop the energy was read over
    Metric("gpu_sm_clock_mhz", "latency", "info", unit="MHz", fmt="{:.0f}"),  # median SM clock while timing
    Metric("gpu_mem_clock_mhz", "latency", "info", unit="MHz", fmt="{:.0f}"),  # median memory clock
    Metric("gpu_power_w", "latency", "info", unit="W", fmt="{:.0f}"),  # mean board power draw while timing
    Metric("gpu_power_limit_w", "latency", "info", unit="W", fmt="{:.0f}"),  # the enforced power limit
    Metric("gpu_temp_c", "latency", "info", unit="°C", fmt="{:.0f}"),  # the hottest GPU temperature seen
    Metric("gpu_throttle", "latency", "info", type=str),  # clock throttle reasons seen (none: "")
    # the allocator's peaks over the timed loop (a CUDA graph's private pool shows in reserved)
    Metric("latency_peak_alloc_mb", "latency", "info", unit="MiB", fmt="{:.1f}"),
    Metric("latency_peak_reserved_mb", "latency", "info", unit="MiB", fmt="{:.1f}"),
    # --- cost: memory
    Metric("peak_mem_mb", "memory", "noisy", "Peak memory (MiB)", "MiB", "{:.1f}", source="peak_mb",
           table=True, relative=True, fit="memory_exp", plot="memory_vs_resolution", csv=True,
           compare=True, compare_fmt="{:.1f}", tolerance={"cpu": 0.1, "cuda": 0.1}),
    Metric("peak_mem_reserved_mb", "memory", "info", source="reserved_mb"),
    Metric("mem_kind", "memory", "info", type=str, source="kind", csv=True),
    Metric("resident_mem_mb", "memory", "info", source="resident_mb"),
    # --- cost in train mode (suite ``modes: [train]``): one AdamW step, pacabench.measure.train
    Metric("train_ms_median", "train", "noisy", "Train step, median (ms per batch)", "ms", source="median_ms",
           spread="train_ms_iqr", samples="train_ms_samples", table=True, fit="train_latency_exp", csv=True,
           compare=True, tolerance={"cpu": 0.5, "cuda": 0.15}, effect={"cpu": 0.2, "cuda": 0.1},
           load_sensitive=True),
    Metric("train_ms_iqr", "train", "info", unit="ms", source="iqr_ms", csv=True),
    Metric("train_ms_p90", "train", "info", unit="ms", source="p90_ms"),
    Metric("train_ms_samples", "train", "info", type=list, source=_round_train_samples),
    Metric("train_img_s", "train", "info", "Train throughput (images/s)", "img/s", "{:.1f}",
           source="throughput_img_s", csv=True),
    Metric("train_peak_mb", "train", "noisy", "Train step peak memory (MiB)", "MiB", "{:.1f}", source="peak_mb",
           table=True, fit="train_memory_exp", csv=True, compare=True, compare_fmt="{:.1f}",
           tolerance={"cpu": 0.1, "cuda": 0.1}),
    Metric("train_state_mb", "train", "info", "Weights + grads + AdamW state (MiB)", "MiB", "{:.1f}",
           source="state_mb", csv=True),
    Metric("train_activation_mb", "train", "info", "Train activations (MiB)", "MiB", "{:.1f}",
           source="activation_mb", csv=True),
    Metric("train_mem_kind", "train", "info", type=str, source="mem_kind"),
    # --- capacity (suite ``metrics: [capacity]``): the largest resolution that fits, pacabench.measure.capacity
    Metric("capacity_resolution", "capacity", "info", "Largest resolution that fits", "px", "{:.0f}", int,
           source="answer", csv=True),
    Metric("capacity_peak_mb", "capacity", "info", "Peak at it (MiB)", "MiB", "{:.1f}", source="peak_mb"),
    Metric("capacity_budget_mb", "capacity", "info", "Budget (MiB)", "MiB", "{:.0f}", source="budget_mb"),
    Metric("capacity_capped", "capacity", "info", type=bool, source="capped"),
    Metric("capacity_probes", "capacity", "info", type=list, source=_probes),
    # --- accuracy
    _acc("top1", "imagenet", csv=True), _acc("top5", "imagenet", csv=True),
    _acc("miou", "ade20k", csv=True), _acc("macc", "ade20k"), _acc("aacc", "ade20k"),
    _acc("bbox_ap", "coco", csv=True), _acc("bbox_ap50", "coco"), _acc("bbox_ap75", "coco"),
    _acc("bbox_aps", "coco"), _acc("bbox_apm", "coco"), _acc("bbox_apl", "coco"),
    _acc("segm_ap", "coco", csv=True), _acc("segm_ap50", "coco"), _acc("segm_ap75", "coco"),
    _acc("segm_aps", "coco"), _acc("segm_apm", "coco"), _acc("segm_apl", "coco"),
    Metric("num_images", "accuracy", "info", type=int),
]

# the measurements, in the order of the suite's ``metrics:`` names (accuracy tasks: TASKS)
MEASURE_TABLE: dict[str, Measure] = {m.name: m for m in [
    Measure("params", "default",
            doc="Parameter count of the built model (every parameter tensor, shared ones once)."),
    Measure("flops", "default", refill=True,
            doc="Multiply-adds of one batch-1 eval forward, traced by fvcore and/or torch's FlopCounterMode "
                "(suite `counter`)."),
    Measure("latency", "default", timed=True, refill=True,
            doc="Warm-up, then timed forwards (CUDA events on a GPU, time.perf_counter on a CPU); "
                "robust statistics of the per-iteration times."),
    Measure("memory", "default", timed=True, refill=True,
            doc="Peak memory of one forward: the CUDA allocator's peak, or on a CPU the torch profiler's "
                "running peak plus the resident weights and input."),
    Measure("capacity", "optional",
            doc="The largest resolution whose step fits a memory budget (suite `capacity`), found by "
                "growing then bisecting; asked for by name only."),
    Measure("train", "mode", timed=True,
            doc="One training step (forward, loss, backward, AdamW): its latency and peak memory "
                "(suite `modes: [train]`)."),
]}

TASKS: dict[str, Task] = {t.name: t for t in [
    Task("imagenet", "pacabench.eval.imagenet:evaluate_case", 224, 64, "top1", "ImageNet top-1 accuracy (%)",
         doc="ImageNet-1k validation classification (resize, centre crop at crop_pct): top-1 and top-5 in %."),
    Task("ade20k", "pacabench.eval.ade20k:evaluate_case", 512, 1, "miou", "ADE20k mIoU (%)",
         artifacts=(("per_class", "per_class_iou_{key}.csv"),),
         doc="ADE20k validation semantic segmentation (PaCa or UperNet head, whole or slide inference): "
             "mIoU, mAcc, aAcc in %."),
    Task("coco", "pacabench.eval.coco:evaluate_case", 800, 1, "bbox_ap", "COCO box AP",
         doc="COCO val2017 detection and instance segmentation (pycocotools COCOeval): box and mask AP "
             "in points."),
]}
# fmt: on

# One line per column for the glossary (docs/reference/metrics.md): unit, how it is measured, which
# counter or timer, CPU vs GPU meaning. An entry's own ``doc=`` wins; tests/test_docs.py fails on a
# column with neither, and on a line here naming no column.
METRIC_DOCS: dict[str, str] = {
    "params": "Parameters of the built model at the case's size (model.parameters(), a shared tensor once); "
    "reported in millions.",
    "gflops": "GMACs of one batch-1 eval forward by fvcore's tracer, 1 multiply-add = 1 FLOP (the "
    "papers' convention), attention (SDPA) and other ops fvcore drops counted by our handles.",
    "uncounted_ops": "Ops the FLOP counter saw but left out (element-wise ops the convention skips: "
    "add, GELU, softmax, ...) -> number of calls.",
    "uncounted_share": "Upper bound on the share of the total the uncounted ops could add (one FLOP per "
    "output element), as a fraction.",
    "gflops_torch": "GMACs of one batch-1 eval forward by torch.utils.flop_counter.FlopCounterMode under "
    "fake tensors (suite `counter: torch` or `both`); same 1 MAC = 1 FLOP convention.",
    "flops_counter": "Which FLOP counter filled the row: fvcore, torch or both.",
    "flops_counter_diff_pct": "With `counter: both`: (fvcore - torch) / fvcore in %; fvcore counts "
    "normalisation, pooling and upsampling that torch's counter does not.",
    "latency_ms_median": "Median wall time of one forward of the whole batch, in ms: CUDA events around "
    "each iteration after a synchronised warm-up on a GPU, time.perf_counter on a CPU.",
    "latency_ms_p90": "90th percentile (linear interpolation) of the per-iteration forward times, in ms.",
    "latency_ms_iqr": "Interquartile range (p75 - p25) of the per-iteration forward times, in ms: the "
    "spread compare allows on top of the tolerance band.",
    "latency_ms_mean": "Mean of the per-iteration forward times, in ms (outliers pull it; prefer the median).",
    "latency_ms_min": "Fastest timed iteration, in ms: the least-disturbed forward on a shared machine.",
    "latency_iters": "Number of timed iterations (after warm-up); below `iters` when `time_budget_s` ran out.",
    "latency_ms_samples": "Every timed iteration's forward time in ms, rounded to 0.1 us: the raw data of "
    "the statistics and of compare's Mann-Whitney test.",
    "latency_round_sizes": "With `latency: {rounds: R}`: how many samples each round contributed, in order.",
    "throughput_img_s": "Images per second at the median latency: batch size / median seconds per batch.",
    "timer": "The clock that timed the iterations: cuda_event (GPU), perf_counter (CPU) or custom.",
    "loadavg_1m": "The machine's 1-minute load average when timing began (the highest over rounds): a "
    "busy CPU explains a slow row.",
    "achieved_gflops_s": "GMACs per image x batch / median latency in seconds: the multiply-add rate the "
    "forward reached (GFLOP/s with 1 MAC = 1 FLOP).",
    "efficiency": "achieved_gflops_s / gemm_gflops_s: the share of the run's measured GEMM rate on this "
    "device and dtype the forward reached, shown in %.",
    "gemm_gflops_s": "The run's ceiling: a large matmul's rate (GMAC/s) measured once per device and dtype "
    "at the start of the run.",
    "sdpa_backend": "Which scaled_dot_product_attention kernel each attention call used, e.g. flash×12 "
    "(flash_cpu on a CPU), read by running the eager forward once; none without SDPA.",
    "matmul_precision": "torch.get_float32_matmul_precision() while timing (highest, high or medium).",
    "tf32": "torch.backends.cuda.matmul.allow_tf32 while timing (TF32 matmuls on Ampere and later GPUs).",
    "cudnn_benchmark": "torch.backends.cudnn.benchmark while timing (cuDNN autotunes convolutions on a GPU).",
    "deterministic": "torch.are_deterministic_algorithms_enabled() while timing.",
    "compile_mode": "eager, or default when the suite's `compile: true` ran the model through torch.compile.",
    "peak_mem_mb": "Peak memory of one forward in MiB, weights and input included: CUDA "
    "max_memory_allocated; on a CPU the torch profiler's running peak plus the resident bytes.",
    "peak_mem_reserved_mb": "CUDA only: max_memory_reserved in MiB (the caching allocator's blocks, >= "
    "the allocated peak); null on a CPU.",
    "mem_kind": "How the memory peak was read: cuda_max_allocated or cpu_profiler_peak.",
    "resident_mem_mb": "The part of the peak already held before the forward (weights, buffers, input), in MiB.",
    "train_ms_median": "Median time of one training step (forward, loss, backward, AdamW step) in ms, "
    "timed like latency (CUDA events / perf_counter).",
    "train_ms_iqr": "Interquartile range of the training-step times, in ms.",
    "train_ms_p90": "90th percentile of the training-step times, in ms.",
    "train_ms_samples": "Every timed training step's time in ms: compare's samples test reads them.",
    "train_img_s": "Training images per second at the median step time.",
    "train_peak_mb": "Peak memory of a steady-state training step in MiB (gradients and AdamW moments "
    "exist): CUDA allocator peak, or the CPU profiler's peak plus resident bytes.",
    "train_state_mb": "Parameters + gradients + AdamW's two moments, in MiB, computed from the tensors.",
    "train_activation_mb": "Training peak - state - input, in MiB: what grows with the input and what "
    "gradient checkpointing trades for recomputation.",
    "train_mem_kind": "How the training peak was read: cuda_max_allocated or cpu_profiler_peak.",
    "capacity_resolution": "The largest square resolution (a multiple of 32 px) whose step stays within "
    "the suite's memory budget; null if not even the smallest fits.",
    "capacity_peak_mb": "Measured peak memory at capacity_resolution, in MiB.",
    "capacity_budget_mb": "The memory budget searched against (suite `capacity.memory`), in MiB.",
    "capacity_capped": "True when the answer reached the search's `limit`: the real capacity may be larger.",
    "capacity_probes": "Every size the capacity search tried: [size, peak MiB or null, status].",
    "top1": "ImageNet top-1 accuracy in % on the validation images evaluated.",
    "top5": "ImageNet top-5 accuracy in %.",
    "miou": "ADE20k mean intersection-over-union over the 150 classes, in %.",
    "macc": "ADE20k mean per-class pixel accuracy, in %.",
    "aacc": "ADE20k overall pixel accuracy (all pixels), in %.",
    "bbox_ap": "COCO box AP @[.50:.95] (pycocotools), in points.",
    "bbox_ap50": "COCO box AP at IoU 0.50, in points.",
    "bbox_ap75": "COCO box AP at IoU 0.75, in points.",
    "bbox_aps": "COCO box AP on small objects (area < 32²), in points.",
    "bbox_apm": "COCO box AP on medium objects (32² to 96²), in points.",
    "bbox_apl": "COCO box AP on large objects (area > 96²), in points.",
    "segm_ap": "COCO mask AP @[.50:.95] (pycocotools), in points.",
    "segm_ap50": "COCO mask AP at IoU 0.50, in points.",
    "segm_ap75": "COCO mask AP at IoU 0.75, in points.",
    "segm_aps": "COCO mask AP on small objects, in points.",
    "segm_apm": "COCO mask AP on medium objects, in points.",
    "segm_apl": "COCO mask AP on large objects, in points.",
    "num_images": "Images the accuracy evaluation scored (after `limit` and skipped unreadable files).",
    "gpu_busy_ms": "The GPU's own work per timed iteration, ms: the union of kernel, memcpy and memset "
    "intervals in a torch.profiler trace of a few iterations after the timing. GPU only (null on a CPU).",
    "gpu_busy_share": "gpu_busy_ms / median latency: 1 means the GPU never waited for the host. GPU only.",
    "launch_bound": "gpu_busy_share under 0.8 (LAUNCH_BOUND_SHARE): the latency mostly measures the host's "
    "kernel launches, not the model's GPU time; reports mark such cells with a dagger. GPU only.",
    "latency_unstable": "The timed samples drift (first half vs second half, Mann-Whitney p < 0.001 and "
    "medians >= 10% apart), split into separated modes, or spread wide (IQR >= 25% of the median).",
    "latency_unstable_why": "The evidence for latency_unstable, e.g. 'drift: median 6.88 ms first half vs "
    "15.7 ms second half'.",
    "latency_retried": "The case was unstable and timed once more (suite latency: {retry_unstable: true}); "
    "the row holds the retry.",
    "energy_mj_per_image": "GPU energy per image in millijoules: NVML's total-energy counter over the timed "
    "loop (extended untimed to >= 0.5 s) / images. Whole board; null on a CPU (no RAPL read here).",
    "energy_window_s": "Seconds of forward passes the energy counter was read over (>= 0.5 s on a GPU).",
    "gpu_sm_clock_mhz": "Median SM clock (MHz, NVML) while timing. GPU only.",
    "gpu_mem_clock_mhz": "Median memory clock (MHz, NVML) while timing. GPU only.",
    "gpu_power_w": "Mean board power draw (W, NVML) while timing. GPU only.",
    "gpu_power_limit_w": "The enforced power limit (W, NVML). GPU only.",
    "gpu_temp_c": "Hottest GPU temperature seen while timing (°C, NVML). GPU only.",
    "gpu_throttle": "Clock throttle reasons NVML reported while timing (empty: none). GPU only.",
    "latency_peak_alloc_mb": "CUDA allocator's peak allocated memory over the timed loop (MiB). GPU only.",
    "latency_peak_reserved_mb": "CUDA allocator's peak reserved memory over the timed loop (MiB; a CUDA "
    "graph's private pool shows here). GPU only.",
}

METRICS: dict[str, Metric] = {
    m.column: replace(m, doc=m.doc or METRIC_DOCS.get(m.column, "")) for m in _TABLE
}


@dataclass(frozen=True)
class MeasureSets:
    """What the suite, the executors and the runner read off the measure table."""

    cost: tuple[str, ...]  # the suite's default ``metrics``
    optional: tuple[str, ...]  # cost measurements a suite asks for by name only
    names: tuple[str, ...]  # every ``metrics:`` name, in order: cost, optional, accuracy tasks
    timed: frozenset[str]  # the ``metrics:`` names whose case an executor runs alone
    refill: frozenset[str]  # the ``metrics:`` names a resumed run measures again for a finished case


def measure_sets(measures: Iterable[Measure], tasks: Iterable[str]) -> MeasureSets:
    measures = list(measures)
    cost = tuple(m.name for m in measures if m.suite == "default")
    optional = tuple(m.name for m in measures if m.suite == "optional")
    named = [m for m in measures if m.suite != "mode"]  # a mode's measurement has no name in a suite
    return MeasureSets(
        cost=cost,
        optional=optional,
        names=cost + optional + tuple(tasks),
        timed=frozenset(m.name for m in named if m.timed),
        refill=frozenset(m.name for m in named if m.refill),
    )


_SETS = measure_sets(MEASURE_TABLE.values(), TASKS)
COST_MEASURES: tuple[str, ...] = _SETS.cost
OPTIONAL_COST_MEASURES: tuple[str, ...] = _SETS.optional
MEASURES: tuple[str, ...] = _SETS.names
TIMED: frozenset[str] = _SETS.timed
REFILL: frozenset[str] = _SETS.refill


def metric(column: str) -> Metric:
    return METRICS[column]


def metrics_of(measure: str) -> list[Metric]:
    """The columns one suite measurement fills, in table order."""
    return [m for m in METRICS.values() if m.measure == measure]


def columns(**flags: Any) -> list[str]:
    """Columns whose attributes equal ``flags``, e.g. ``columns(table=True)``, ``columns(kind="exact")``."""
    return [m.column for m in METRICS.values() if all(getattr(m, k) == v for k, v in flags.items())]


def format_value(v: Any, fmt: str = "{:.3f}", *, scale: float = 1.0, plain_ints: bool = False) -> str:
    """The one cell formatter: missing → '–', text as is, numbers × scale through ``fmt``.

    ``plain_ints``: integers are written as integers (the markdown report keeps counts plain).
    """
    import math

    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v)
    if plain_ints and _is_int(v):
        return str(int(v))
    try:
        return fmt.format(v * scale if scale != 1.0 else v)
    except (ValueError, TypeError):
        return str(v)


def _is_int(v: Any) -> bool:
    if isinstance(v, int):
        return True
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with torch and pandas
        return False
    return isinstance(v, np.integer)
