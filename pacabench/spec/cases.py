"""The validated ``Suite``, its digest, and the ``Case`` list it expands to (one case = one row).

A setting of the suite is a ``Suite`` field; a ``Case`` field of the same name is copied from the
suite into every cost case (``Suite._cases``), and a field declared with ``later(...)`` is left
out of the digest while it holds its default, so suites written before it keep their digest.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Any

from .casekey import CaseKey, checkpoint_digest, latency_mode_text
from .catalog import to_hw
from .dtypes import AMP  # dtype amp: fp16 on CUDA, bf16 on a CPU (the row records which)
from .executor import ExecutorConfig
from .located import SuiteError
from .metrics import COST_MEASURES, OPTIONAL_COST_MEASURES, TASKS
from .sizes import hw_text

__all__ = [
    "Suite",
    "ModelEntry",
    "LatencySettings",
    "LATENCY_MODES",
    "LATENCY_COMPILE_MODES",
    "Case",
    "later",
    "field_default",
    "MAX_CASES",
    "AMP",
]

MAX_CASES = 5000  # a suite expanding past this is refused unless --max-cases allows it
_DIGEST = "digest"  # field metadata: "never" (how, not what) or "unless_default" (added later)


def later(default: Any = MISSING, *, default_factory: Any = MISSING) -> Any:
    """A ``Suite`` setting added after the first digests were written: at its default it is left
    out of the digest, so the run folders of older suites still resume."""
    return field(default=default, default_factory=default_factory, metadata={_DIGEST: "unless_default"})


def _not_digested(**kwargs: Any) -> Any:
    """A ``Suite`` field that says where or how, not what is measured: never in the digest."""
    return field(metadata={_DIGEST: "never"}, **kwargs)


def field_default(f: Field) -> Any:
    """A dataclass field's default (a fresh one from its factory); MISSING when it has none."""
    return f.default_factory() if f.default_factory is not MISSING else f.default


@dataclass(frozen=True)
class LatencySettings:
    """The latency block's keys (the suite's ``latency:`` may set exactly these, per device too)."""

    warmup: int = 3
    iters: int = 20
    min_iters: int = 3
    time_budget_s: float | None = None
    rounds: int = 1  # timing split into R rounds (iters, min_iters, time_budget_s: per round)
    interleave: bool = False  # the cases of one resolution alternate round by round (one process)
    # How the timed forward runs (pacabench.measure.modes): eager (the model as written), cuda_graph
    # (captured once, replayed: no launch cost), compiled (torch.compile with ``compile_mode``).
    mode: str = "eager"
    compile_mode: str = "default"  # torch.compile's mode for ``mode: compiled`` (LATENCY_COMPILE_MODES)
    retry_unstable: bool = False  # a case whose samples drift or split into modes is timed once more


LATENCY_MODES = ("eager", "cuda_graph", "compiled")
LATENCY_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune")


LATENCY_KEYS = {f.name for f in fields(LatencySettings)}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    checkpoint: str | None = None
    resolutions: tuple[tuple[int, int], ...] | None = None  # overrides the suite's
    batch_sizes: tuple[int, ...] | None = None
    kwargs: dict = field(default_factory=dict, hash=False, compare=False)
    head: str | None = None


@dataclass(frozen=True)
class Case:
    """One unit of work = one row: model × resolution × batch × dtype × device (× task)."""

    suite: str
    model: str
    resolution: tuple[int, int]
    batch_size: int
    dtype: str
    device: str  # resolved: cpu | cuda
    channels_last: bool
    compile: bool
    metrics: tuple[str, ...]
    latency: LatencySettings
    threads: int | None = None
    checkpoint: str | None = None
    kwargs: dict = field(default_factory=dict, hash=False, compare=False)
    task: str = "cost"  # cost | imagenet | ade20k | coco
    eval_config: dict = field(default_factory=dict, hash=False, compare=False)
    head: str | None = None
    counter: str = "fvcore"  # FLOP counter: fvcore | torch | both
    mode: str = "inference"  # inference | train
    grad_checkpointing: bool = False
    capacity: dict = field(default_factory=dict, hash=False, compare=False)  # {memory: bytes, limit}
    batch_decay: bool = False  # out of memory: retry at smaller batches (timm's decay_batch_step)

    @property
    def key(self) -> CaseKey:
        """This case's identity (the same as that of the row it produces)."""
        lat = {"latency_mode": self.latency_mode, "latency_compile_mode": self.latency.compile_mode}
        return CaseKey.from_row(
            {**self.to_dict(), **lat, "checkpoint_sha": checkpoint_digest(self.checkpoint)}
        )

    @property
    def latency_mode(self) -> str:
        """The latency mode this case's timing runs in: the suite's for an inference cost case that
        times forwards, else eager (a training step, an evaluation or a case without latency)."""
        timed = self.task == "cost" and self.mode == "inference" and "latency" in self.metrics
        return self.latency.mode if timed else "eager"

    def describe(self) -> str:
        extra = " cl" if self.channels_last else ""
        extra += " compile" if self.compile else ""
        if self.latency_mode != "eager":
            extra += f" {latency_mode_text(self.latency_mode, self.latency.compile_mode)}"
        if self.mode != "inference":
            extra += f" {self.mode}" + (" gc" if self.grad_checkpointing else "")
        task = "" if self.task == "cost" else f"[{self.task}] "
        return f"{task}{self.model} {hw_text(self.resolution)} b{self.batch_size} {self.dtype}{extra}"

    def to_dict(self) -> dict:
        """Every field, in declaration order, as JSON data (what a job file and a row record)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(
            resolution=list(self.resolution), metrics=list(self.metrics), latency=vars(self.latency).copy()
        )
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Case:
        d = dict(d)
        d["resolution"] = tuple(d["resolution"])
        d["metrics"] = tuple(d["metrics"])
        d["latency"] = LatencySettings(**d["latency"])
        return cls(**d)


@dataclass
class Suite:
    """A validated suite (``pacabench.spec.schema`` reads each setting from the file)."""

    name: str
    path: str | None = _not_digested()
    description: str = _not_digested()
    models: list[ModelEntry]
    resolutions: list[tuple[int, int]]
    batch_sizes: list[int] | dict[str, list[int]]  # a mapping: per device ({cpu: [...], cuda: [...]})
    dtypes: list[str]
    device: str
    channels_last: bool
    compile: bool
    threads: int | None
    metrics: list[str]
    latency: dict[str, Any]
    eval: dict[str, dict]
    isolate: bool = False
    source_text: str = _not_digested(default="")
    counter: str = later("fvcore")  # FLOP counter of the flops metric
    executor: ExecutorConfig = _not_digested(default_factory=ExecutorConfig)  # how, not what
    modes: list[str] = later(default_factory=lambda: ["inference"])
    grad_checkpointing: bool = later(False)
    capacity: dict = later(default_factory=dict)
    batch_decay: bool = later(False)

    def _batch_sizes(self, device: str) -> list[int]:
        return self.batch_sizes[device] if isinstance(self.batch_sizes, dict) else self.batch_sizes

    def latency_for(self, device: str) -> LatencySettings:
        base = {k: v for k, v in self.latency.items() if k in LATENCY_KEYS}
        base.update(self.latency.get(device, {}) or {})
        return LatencySettings(**base)

    def resolved_device(self, override: str | None = None) -> str:
        dev = override or self.device
        if dev == "auto":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        return dev

    def digest(self) -> str:
        """SHA-256 of the normalised suite (what it measures, not how the file is written): a run
        folder stores it, and resume refuses a suite whose digest differs."""
        d = asdict(self)
        for f in fields(self):
            kind = f.metadata.get(_DIGEST)
            if kind == "never" or (kind == "unless_default" and d[f.name] == field_default(f)):
                d.pop(f.name)
        text = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def expand(self, device: str | None = None, max_cases: int | None = None) -> tuple[list[Case], int]:
        """The unique cases (first of each key kept) and how many duplicates were dropped;
        more than ``max_cases`` (default ``MAX_CASES``) unique cases raise ``SuiteError``."""
        unique: dict[CaseKey, Case] = {}
        all_cases = self._cases(device)
        for c in all_cases:
            unique.setdefault(c.key, c)
        limit = MAX_CASES if max_cases is None else max_cases
        if len(unique) > limit:
            raise SuiteError(
                f"{self.path or self.name}:1: the suite expands to {len(unique)} cases, more than {limit} "
                "(raise the limit with --max-cases N)"
            )
        return list(unique.values()), len(all_cases) - len(unique)

    def cases(self, device: str | None = None) -> list[Case]:
        """The unique cases, in a stable order: model, resolution, batch, dtype; then eval tasks."""
        return self.expand(device, max_cases=10**12)[0]

    def _cases(self, device: str | None = None) -> list[Case]:
        """Expand to cases (duplicates included), in order: model, resolution, batch, dtype; then eval tasks."""
        dev = self.resolved_device(device)
        lat = self.latency_for(dev)
        dtypes = list(dict.fromkeys(AMP.get(dev, "fp32") if d == "amp" else d for d in self.dtypes))
        out: list[Case] = []
        for m in self.models:
            out += self._cost_cases(m, dev, lat, dtypes)
            out += self._eval_cases(m, dev, lat, dtypes)
        return out

    def _cost_cases(self, m: ModelEntry, dev: str, lat: LatencySettings, dtypes: list[str]) -> list[Case]:
        """One model's cost cases: resolution × batch × dtype × mode, the first axis slowest."""
        cost_metrics = tuple(x for x in self.metrics if x in COST_MEASURES + OPTIONAL_COST_MEASURES)
        res_list = list(m.resolutions) if m.resolutions else self.resolutions
        bs_list = list(m.batch_sizes) if m.batch_sizes else self._batch_sizes(dev)
        shared = {name: getattr(self, name) for name in _SUITE_TO_CASE}  # the suite's per-case settings
        out = []
        for r, b, dt, mode in itertools.product(res_list, bs_list, dtypes, self.modes):
            # capacity is searched once per model × batch × dtype × mode, from the first resolution
            mts = tuple(x for x in cost_metrics if x != "capacity" or r == res_list[0])
            if not mts:
                continue
            case = {
                **shared,
                "device": dev, "metrics": mts, "latency": lat,
                "grad_checkpointing": self.grad_checkpointing and mode == "train",
                "capacity": dict(self.capacity) if "capacity" in mts else {},
            }  # fmt: skip
            out.append(
                Case(
                    **case, suite=self.name, model=m.name, resolution=r, batch_size=b, dtype=dt, mode=mode,
                    checkpoint=m.checkpoint, kwargs=dict(m.kwargs), head=m.head,
                )
            )  # fmt: skip
        return out

    def _eval_cases(self, m: ModelEntry, dev: str, lat: LatencySettings, dtypes: list[str]) -> list[Case]:
        """One model's accuracy cases, one per eval task (skipped when metrics name cost only)."""
        cost_metrics = [x for x in self.metrics if x in COST_MEASURES + OPTIONAL_COST_MEASURES]
        out = []
        for task, cfg in self.eval.items():
            if task not in self.metrics and cost_metrics:
                continue
            cfg = dict(cfg)
            ckpts = cfg.pop("checkpoints", {}) or {}
            res = cfg.get("img_size") or TASKS[task].resolution
            out.append(
                Case(
                    suite=self.name, model=m.name, resolution=to_hw(res) if not isinstance(res, tuple) else res,
                    batch_size=int(cfg.get("batch_size", TASKS[task].batch_size)), dtype=dtypes[0], device=dev,
                    channels_last=self.channels_last, compile=False, metrics=(task,), latency=lat,
                    threads=self.threads, checkpoint=m.checkpoint or ckpts.get(m.name), kwargs=dict(m.kwargs),
                    task=task, eval_config=cfg, head=m.head or cfg.get("head"),
                )
            )  # fmt: skip
        return out


# Case fields named like a Suite field: copied from the suite into each cost case
_SUITE_TO_CASE = tuple(f.name for f in fields(Case) if f.name in {g.name for g in fields(Suite)})
