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
    eval: {imagenet: {data: /data/imagenet/val}}  # accuracy metrics (optional)

Every problem is reported as one line ``file:line: message`` (``SuiteError``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import PacabenchError
from ..models import ResolutionError, UnknownModelError, get_spec, to_hw
from ..models.segmentation import HEADS
from .casekey import CaseKey, checkpoint_digest
from .executor import ExecutorConfig, parse_executor_block
from .metrics import COST_MEASURES, MEASURES, OPTIONAL_COST_MEASURES, TASKS

__all__ = ["SuiteError", "Suite", "ModelEntry", "LatencySettings", "Case", "load_suite", "parse_suite"]

METRICS = MEASURES  # params, flops, latency, memory, then the accuracy tasks (pacabench.spec.metrics)
DTYPES = ("fp32", "fp16", "bf16", "amp")  # amp: fp16 on CUDA, bf16 on a CPU (the row records which)
AMP = {"cuda": "fp16", "cpu": "bf16"}
DEVICES = ("auto", "cpu", "cuda")
COUNTERS = ("fvcore", "torch", "both")  # the FLOP counters (pacabench.measure.flops_torch.count_flops_as)
TOP_KEYS = {
    "name",
    "description",
    "models",
    "resolutions",
    "batch_sizes",
    "dtypes",
    "device",
    "channels_last",
    "compile",
    "threads",
    "metrics",
    "latency",
    "eval",
    "isolate",
    "counter",
    "executor",
    "modes",
    "grad_checkpointing",
    "capacity",
    "batch_decay",
}
MODES = ("inference", "train")
CAPACITY_KEYS = {"memory", "limit"}
MAX_NAME = 100  # the suite name names a folder
MODEL_KEYS = {"name", "checkpoint", "resolutions", "batch_sizes", "clusters", "label", "kwargs", "head"}
LATENCY_KEYS = {"warmup", "iters", "min_iters", "time_budget_s", "rounds", "interleave"}
EVAL_KEYS = set(TASKS)
MAX_CASES = 5000  # a suite expanding past this is refused unless --max-cases allows it


class SuiteError(PacabenchError):
    """A suite file that does not validate: one line, with file and line number."""


@dataclass(frozen=True)
class LatencySettings:
    warmup: int = 3
    iters: int = 20
    min_iters: int = 3
    time_budget_s: float | None = None
    rounds: int = 1  # timing split into R rounds (iters, min_iters, time_budget_s: per round)
    interleave: bool = False  # the cases of one resolution alternate round by round (one process)


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
        return CaseKey.from_row({**self.to_dict(), "checkpoint_sha": checkpoint_digest(self.checkpoint)})

    def describe(self) -> str:
        extra = " cl" if self.channels_last else ""
        extra += " compile" if self.compile else ""
        if self.mode != "inference":
            extra += f" {self.mode}" + (" gc" if self.grad_checkpointing else "")
        task = "" if self.task == "cost" else f"[{self.task}] "
        return f"{task}{self.model} {self.resolution[0]}x{self.resolution[1]} b{self.batch_size} {self.dtype}{extra}"

    def to_dict(self) -> dict:
        return {
            "suite": self.suite,
            "model": self.model,
            "resolution": list(self.resolution),
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "device": self.device,
            "channels_last": self.channels_last,
            "compile": self.compile,
            "metrics": list(self.metrics),
            "latency": vars(self.latency).copy(),
            "threads": self.threads,
            "checkpoint": self.checkpoint,
            "kwargs": self.kwargs,
            "task": self.task,
            "eval_config": self.eval_config,
            "head": self.head,
            "counter": self.counter,
            "mode": self.mode,
            "grad_checkpointing": self.grad_checkpointing,
            "capacity": self.capacity,
            "batch_decay": self.batch_decay,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Case:
        d = dict(d)
        d["resolution"] = tuple(d["resolution"])
        d["metrics"] = tuple(d["metrics"])
        d["latency"] = LatencySettings(**d["latency"])
        return cls(**d)


@dataclass
class Suite:
    name: str
    path: str | None
    description: str
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
    source_text: str = ""
    counter: str = "fvcore"  # FLOP counter of the flops metric
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)  # how, not what: not in digest()
    modes: list[str] = field(default_factory=lambda: ["inference"])
    grad_checkpointing: bool = False
    capacity: dict = field(default_factory=dict)
    batch_decay: bool = False

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
        for k in ("path", "source_text", "description", "executor"):
            d.pop(k)
        for k, default in (
            ("counter", "fvcore"),
            ("modes", ["inference"]),
            ("grad_checkpointing", False),
            ("capacity", {}),
            ("batch_decay", False),
        ):
            if d[k] == default:  # suites written before these keys keep their digest
                d.pop(k)
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
        cost_metrics = tuple(m for m in self.metrics if m in COST_MEASURES + OPTIONAL_COST_MEASURES)
        out: list[Case] = []
        for m in self.models:
            res_list = list(m.resolutions) if m.resolutions else self.resolutions
            bs_list = list(m.batch_sizes) if m.batch_sizes else self._batch_sizes(dev)
            dtypes = list(dict.fromkeys(AMP.get(dev, "fp32") if d == "amp" else d for d in self.dtypes))
            for r, b, dt, mode in _product(res_list, bs_list, dtypes, self.modes):
                # capacity is searched once per model × batch × dtype × mode, from the first resolution
                mts = tuple(x for x in cost_metrics if x != "capacity" or r == res_list[0])
                if mts:
                    out.append(
                        Case(
                            suite=self.name, model=m.name, resolution=r, batch_size=b, dtype=dt,
                            device=dev, channels_last=self.channels_last, compile=self.compile,
                            metrics=mts, latency=lat, threads=self.threads, checkpoint=m.checkpoint,
                            kwargs=dict(m.kwargs), head=m.head, counter=self.counter, mode=mode,
                            grad_checkpointing=self.grad_checkpointing and mode == "train",
                            capacity=dict(self.capacity) if "capacity" in mts else {},
                            batch_decay=self.batch_decay,
                        )
                    )  # fmt: skip
            for task, cfg in self.eval.items():
                if task not in self.metrics and cost_metrics:
                    continue
                cfg = dict(cfg)
                ckpts = cfg.pop("checkpoints", {}) or {}
                ckpt = m.checkpoint or ckpts.get(m.name)
                res = cfg.get("img_size") or TASKS[task].resolution
                hw = to_hw(res) if not isinstance(res, tuple) else res
                out.append(
                    Case(
                        suite=self.name,
                        model=m.name,
                        resolution=hw,
                        batch_size=int(cfg.get("batch_size", TASKS[task].batch_size)),
                        dtype=dtypes[0],
                        device=dev,
                        channels_last=self.channels_last,
                        compile=False,
                        metrics=(task,),
                        latency=lat,
                        threads=self.threads,
                        checkpoint=ckpt,
                        kwargs=dict(m.kwargs),
                        task=task,
                        eval_config=cfg,
                        head=m.head or cfg.get("head"),
                    )
                )
        return out


def _product(*axes):
    """Every combination, the first axis slowest (resolution, batch, dtype, mode)."""
    import itertools

    return itertools.product(*axes)


# --------------------------------------------------------------------------------------------
# YAML with line numbers


MAX_SUITE_BYTES = 1 << 20  # a suite is a few hundred bytes; refuse a document past 1 MiB
MAX_NODES = 100_000  # built values, aliases expanded: bounds an alias bomb (billion laughs)
SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}


class _Located:
    """Keeps the line of every mapping key / sequence item while building plain objects.

    Only plain data is built: mappings, lists and str/int/float/bool/null scalars; any other tag
    (``!!python/...``, ``!foo``), an alias that contains itself, or an alias expansion past
    ``MAX_NODES`` values is refused as a ``SuiteError`` naming the line.
    """

    def __init__(self):
        self.lines: dict[tuple, int] = {}
        self.built = 0
        self.open: set[int] = set()  # ids of the collections being built (a cycle = recursive alias)
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: tuple = ()) -> Any:
        line = node.start_mark.line + 1
        self.lines[path] = line
        self.built += 1
        if self.built > MAX_NODES:
            raise SuiteError(f"{{file}}:{line}: suite too large: more than {MAX_NODES} values (alias bomb?)")
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, line)
        if id(node) in self.open:
            raise SuiteError(f"{{file}}:{line}: recursive alias (a value that contains itself)")
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            if node.tag != "tag:yaml.org,2002:seq":
                raise SuiteError(f"{{file}}:{line}: YAML tag {node.tag!r} is not allowed")
            return [self.build(v, path + (i,)) for i, v in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: tuple) -> dict:
        if node.tag != "tag:yaml.org,2002:map":
            raise SuiteError(f"{{file}}:{node.start_mark.line + 1}: YAML tag {node.tag!r} is not allowed")
        out = {}
        for k_node, v_node in node.value:
            if not isinstance(k_node, yaml.ScalarNode):
                raise SuiteError(f"{{file}}:{k_node.start_mark.line + 1}: a key must be a plain name")
            key = k_node.value
            if key in out:
                raise SuiteError(f"{{file}}:{k_node.start_mark.line + 1}: duplicate key '{key}'")
            out[key] = self.build(v_node, path + (key,))
            self.lines[path + (key,)] = k_node.start_mark.line + 1  # errors point at the key
        return out

    def scalar(self, node: yaml.ScalarNode, line: int) -> Any:
        if node.tag not in SCALAR_TAGS:
            raise SuiteError(f"{{file}}:{line}: YAML tag {node.tag!r} is not allowed (plain values only)")
        if node.tag in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp"):
            return node.value  # a date stays the text it was written as
        try:
            return self.constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):
            raise SuiteError(f"{{file}}:{line}: bad value {node.value[:40]!r} for {node.tag}") from None

    def line(self, path: tuple) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)


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
    return parse_suite(_decode(raw, str(p)), filename=str(p), base_dir=p.parent)


def _decode(raw: bytes, filename: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise SuiteError(f"{filename}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x})") from None


def parse_suite(
    text: str | bytes, filename: str = "<suite>", base_dir: str | os.PathLike | None = None
) -> Suite:
    """Validate a suite's YAML text; the first problem raises ``SuiteError`` as ``file:line: message``.

    Relative ``checkpoint:`` paths resolve against ``base_dir`` (``load_suite``: the suite's folder).
    """
    if isinstance(text, bytes):
        text = _decode(text, filename)
    if len(text) > MAX_SUITE_BYTES:
        raise SuiteError(f"{filename}:1: suite file too large (over {MAX_SUITE_BYTES} bytes)")
    loc = _Located()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            raise SuiteError("{file}:1: empty suite file")
        data = loc.build(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SuiteError(f"{filename}:{line}: invalid YAML: {problem}") from None
    except RecursionError:
        raise SuiteError(f"{filename}:1: invalid YAML: nested too deeply") from None
    except SuiteError as e:
        raise SuiteError(str(e).replace("{file}", filename)) from None
    return _Parser(data, loc, filename, base_dir).suite(text)


class _Parser:
    """Checks one suite's data, key by key; ``fail`` names the file and line of the bad key."""

    def __init__(self, data: Any, loc: _Located, filename: str, base_dir: str | os.PathLike | None = None):
        self.data, self.loc, self.filename = data, loc, filename
        self.base_dir = base_dir

    def fail(self, path: tuple, msg: str):
        raise SuiteError(f"{self.filename}:{self.loc.line(path)}: {msg}")

    def suite(self, text: str) -> Suite:
        data, fail = self.data, self.fail
        if not isinstance(data, dict):
            fail((), "a suite must be a mapping of keys (models, resolutions, ...)")
        for k in data:
            if k not in TOP_KEYS:
                near = difflib.get_close_matches(k, sorted(TOP_KEYS), n=1)
                fail((k,), f"unknown key '{k}'" + (f" (did you mean '{near[0]}'?)" if near else ""))
        name = self.name()
        models = self.models()
        res = self.resolutions(data.get("resolutions", [224]), ("resolutions",))
        bss = self.batch_sizes(data.get("batch_sizes", [1]))
        dtypes = self.dtypes()
        device = data.get("device", "auto")
        if device not in DEVICES:
            fail(("device",), f"device must be one of {', '.join(DEVICES)}, got {device!r}")
        threads = data.get("threads")
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            fail(("threads",), f"threads must be a positive int or null, got {threads!r}")
        metrics = self.metrics()
        latency = data.get("latency", {}) or {}
        if not isinstance(latency, dict):
            fail(("latency",), "latency must be a mapping")
        self.check_latency(latency, ("latency",), True)
        ev = self.eval()
        counter = data.get("counter", "fvcore")
        if counter not in COUNTERS:
            fail(("counter",), f"counter must be one of {', '.join(COUNTERS)}, got {counter!r}"[:200])
        modes, capacity = self.modes(), self.capacity(metrics)
        return Suite(
            name=name,
            path=self.filename,
            description=str(data.get("description", "") or ""),
            models=models,
            resolutions=res,
            batch_sizes=bss,
            dtypes=dtypes,
            device=device,
            channels_last=self.boolean("channels_last"),
            compile=self.boolean("compile"),
            threads=threads,
            metrics=metrics,
            latency=latency,
            eval=ev,
            isolate=self.boolean("isolate"),
            source_text=text,
            counter=counter,
            executor=parse_executor_block(data.get("executor"), fail),
            modes=modes,
            grad_checkpointing=self.boolean("grad_checkpointing"),
            capacity=capacity,
            batch_decay=self.boolean("batch_decay"),
        )

    def modes(self) -> list[str]:
        modes = self.data.get("modes", ["inference"])
        if not isinstance(modes, list) or not modes or len(set(map(str, modes))) != len(modes):
            self.fail(
                ("modes",),
                f"modes must be a non-empty list of {', '.join(MODES)} (no repeats), got {modes!r}"[:200],
            )
        for i, mode in enumerate(modes):
            if mode not in MODES:
                self.fail(("modes", i), f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if self.data.get("grad_checkpointing") and "train" not in modes:
            self.fail(("grad_checkpointing",), "grad_checkpointing needs 'train' in modes")
        return list(modes)

    def capacity(self, metrics: list[str]) -> dict:
        """The ``capacity`` block: ``memory`` (a size such as 4GiB; bytes stored), ``limit``."""
        from ..measure.capacity import parse_memory

        cap = self.data.get("capacity")
        if cap is None:
            if "capacity" in metrics:
                self.fail(("metrics",), "metric 'capacity' needs a budget: capacity: {memory: 4GiB}")
            return {}
        if not isinstance(cap, dict) or "memory" not in cap:
            self.fail(("capacity",), "capacity must be a mapping with 'memory: <size>' (e.g. 4GiB)")
        for k, v in cap.items():
            if k not in CAPACITY_KEYS:
                self.fail(
                    ("capacity", k),
                    f"unknown capacity key '{k}' (allowed: {', '.join(sorted(CAPACITY_KEYS))})",
                )
            if k == "limit" and not _is_int(v, 64):
                self.fail(("capacity", k), f"capacity.limit must be an int >= 64 (pixels), got {v!r}")
        try:
            memory = parse_memory(str(cap["memory"]))
        except PacabenchError as e:
            self.fail(("capacity", "memory"), f"capacity.{e}")
        return {"memory": memory, **({"limit": cap["limit"]} if "limit" in cap else {})}

    def name(self) -> str:
        name = self.data.get("name") or Path(self.filename).stem
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            self.fail(("name",), f"name must be letters, digits, '-' or '_', got {name!r}"[:200])
        if len(name) > MAX_NAME:
            self.fail(("name",), f"name is {len(name)} characters long; at most {MAX_NAME} (a folder name)")
        if name == "baselines":
            self.fail(
                ("name",),
                "the suite name 'baselines' is reserved (results/baselines holds committed baselines)",
            )
        return name

    def resolutions(self, value, path) -> list[tuple[int, int]]:
        if not isinstance(value, list) or not value:
            self.fail(path, "resolutions must be a non-empty list of ints or [h, w] pairs")
        out = []
        for i, r in enumerate(value):
            if not isinstance(r, (int, list)):
                self.fail(path + (i,), f"bad resolution: an int or [h, w] of ints, got {r!r}")
            try:
                out.append(to_hw(r))
            except ResolutionError as e:
                self.fail(path + (i,), f"bad resolution: {e}")
        return out

    def batch_sizes(self, value) -> list[int] | dict[str, list[int]]:
        """A list, or per device: ``{cpu: [8], cuda: [64, 128]}`` (a reduced CPU protocol)."""
        if not isinstance(value, dict):
            return self.pos_ints(value, ("batch_sizes",), "batch_sizes")
        for k in value:
            if k not in ("cpu", "cuda"):
                self.fail(("batch_sizes", k), f"batch_sizes per device: cpu and cuda only, got '{k}'")
        if set(value) != {"cpu", "cuda"}:
            self.fail(("batch_sizes",), "batch_sizes per device needs both cpu and cuda")
        return {k: self.pos_ints(v, ("batch_sizes", k), f"batch_sizes.{k}") for k, v in value.items()}

    def pos_ints(self, value, path, what) -> list[int]:
        if not isinstance(value, list) or not value:
            self.fail(path, f"{what} must be a non-empty list of positive ints")
        for i, v in enumerate(value):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                self.fail(path + (i,), f"{what} must be positive ints, got {v!r}")
        return list(value)

    def boolean(self, key, default=False) -> bool:
        v = self.data.get(key, default)
        if not isinstance(v, bool):
            self.fail((key,), f"{key} must be true or false, got {v!r}")
        return v

    def models(self) -> list[ModelEntry]:
        raw = self.data.get("models")
        if not isinstance(raw, list) or not raw:
            self.fail(("models",), "models must be a non-empty list of model names")
        return [self.model(m, ("models", i)) for i, m in enumerate(raw)]

    def model(self, m: Any, path: tuple) -> ModelEntry:
        if isinstance(m, str):
            m = {"name": m}
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            self.fail(path, "each model is a name or a mapping with 'name: <model name>'")
        for k in m:
            if k not in MODEL_KEYS:
                self.fail(path + (k,), f"unknown model key '{k}' (allowed: {', '.join(sorted(MODEL_KEYS))})")
        try:
            get_spec(m["name"])
        except UnknownModelError as e:
            self.fail(path + ("name",) if len(m) > 1 else path, str(e))
        kwargs = m.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            self.fail(
                path + ("kwargs",), f"kwargs must be a mapping of model arguments, got {kwargs!r}"[:200]
            )
        kwargs = dict(kwargs)
        for k in ("checkpoint", "head", "label"):
            if m.get(k) is not None and not isinstance(m[k], str):
                self.fail(path + (k,), f"{k} must be a string, got {m[k]!r}"[:200])
        if m.get("head") is not None and m["head"] not in HEADS:
            self.fail(path + ("head",), f"unknown head {m['head']!r} (choose from {', '.join(HEADS)})")
        if "clusters" in m:
            kwargs["clusters"] = m["clusters"]
        res = bss = None
        if "resolutions" in m:
            res = tuple(self.resolutions(m["resolutions"], path + ("resolutions",)))
        if "batch_sizes" in m:
            bss = tuple(self.pos_ints(m["batch_sizes"], path + ("batch_sizes",), "batch_sizes"))
        return ModelEntry(
            name=m["name"],
            checkpoint=self.checkpoint_path(m.get("checkpoint")),
            resolutions=res,
            batch_sizes=bss,
            kwargs=kwargs,
            head=m.get("head"),
        )

    def checkpoint_path(self, ckpt: str | None) -> str | None:
        """A relative checkpoint path read against the suite file's folder."""
        if not ckpt or self.base_dir is None or os.path.isabs(os.path.expanduser(ckpt)):
            return ckpt
        return os.path.normpath(os.path.join(self.base_dir, ckpt))

    def dtypes(self) -> list[str]:
        dtypes = self.data.get("dtypes", ["fp32"])
        if isinstance(dtypes, str):
            dtypes = [dtypes]
        if not isinstance(dtypes, list) or not dtypes:
            self.fail(
                ("dtypes",), f"dtypes must be a non-empty list of {', '.join(DTYPES)}, got {dtypes!r}"[:200]
            )
        for i, d in enumerate(dtypes):
            if d not in DTYPES:
                self.fail(("dtypes", i), f"dtype must be one of {', '.join(DTYPES)}, got {d!r}")
        return list(dtypes)

    def metrics(self) -> list[str]:
        metrics = self.data.get("metrics", list(COST_MEASURES))
        if not isinstance(metrics, list) or not metrics:
            self.fail(("metrics",), "metrics must be a non-empty list")
        for i, mt in enumerate(metrics):
            if mt not in METRICS:
                near = difflib.get_close_matches(str(mt), METRICS, n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                self.fail(("metrics", i), f"unknown metric {mt!r}" + hint)
        return list(metrics)

    def check_latency(self, d: dict, path: tuple, allow_devices: bool) -> None:
        for k, v in d.items():
            if allow_devices and k in ("cpu", "cuda"):
                if not isinstance(v, dict):
                    self.fail(path + (k,), f"latency.{k} must be a mapping")
                self.check_latency(v, path + (k,), False)
                continue
            if k not in LATENCY_KEYS:
                self.fail(
                    path + (k,),
                    f"unknown latency key '{k}' (allowed: {', '.join(sorted(LATENCY_KEYS))}, cpu, cuda)",
                )
            if k == "interleave":
                if not isinstance(v, bool):
                    self.fail(path + (k,), f"latency interleave must be true or false, got {v!r}")
            elif k == "time_budget_s":
                if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0):
                    self.fail(path + (k,), f"time_budget_s must be a positive number or null, got {v!r}")
            elif not isinstance(v, int) or isinstance(v, bool) or v < (0 if k == "warmup" else 1):
                kind = "non-negative" if k == "warmup" else "positive"
                self.fail(path + (k,), f"latency {k} must be a {kind} int, got {v!r}")

    def eval(self) -> dict[str, dict]:
        ev = self.data.get("eval", {}) or {}
        if not isinstance(ev, dict):
            self.fail(("eval",), "eval must be a mapping of task -> settings")
        for k, v in ev.items():
            if k not in EVAL_KEYS:
                self.fail(("eval", k), f"unknown eval task '{k}' (allowed: {', '.join(sorted(EVAL_KEYS))})")
            if not isinstance(v, dict) or "data" not in v:
                self.fail(("eval", k), f"eval.{k} needs at least 'data: DIR'")
            if k == "coco" and "ann" not in v:
                self.fail(("eval", k), "eval.coco needs 'ann: FILE' (the annotations json)")
            allowed = {**EVAL_OPTIONS["*"], **EVAL_OPTIONS[k]}
            for opt, val in v.items():
                if opt not in allowed:
                    self.fail(
                        ("eval", k, opt),
                        f"unknown eval.{k} option '{opt}' (allowed: {', '.join(sorted(allowed))})",
                    )
                kind = allowed[opt]
                if not (val is None and opt in NULLABLE_OPTIONS) and not _OPTION_CHECKS[kind](val):
                    self.fail(("eval", k, opt), f"eval.{k}.{opt} must be {kind}, got {val!r}"[:300])
        for mt in self.data.get("metrics") or []:
            if mt in TASKS and mt not in ev:
                self.fail(
                    ("metrics",),
                    f"metric '{mt}' needs an eval.{mt} block (e.g. eval: {{{mt}: {{data: DIR}}}})",
                )
        return {
            k: {**v, "checkpoints": {m: self.checkpoint_path(c) for m, c in v["checkpoints"].items()}}
            if v.get("checkpoints")
            else v
            for k, v in ev.items()
        }


def _is_int(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _is_hw(v: Any) -> bool:
    try:
        to_hw(v if isinstance(v, (int, list)) else None)
    except ResolutionError:
        return False
    return isinstance(v, (int, list))


_OPTION_CHECKS = {
    "a path": lambda v: isinstance(v, str) and v != "",
    "a string": lambda v: isinstance(v, str),
    "true or false": lambda v: isinstance(v, bool),
    "a positive int": lambda v: _is_int(v, 1),
    "a non-negative int": lambda v: _is_int(v, 0),
    "an int": lambda v: _is_int(v, -(2**63)),
    "a fraction in (0, 1]": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1,
    "an int or [h, w] of ints >= 32": _is_hw,
    "[w, h] of positive ints": lambda v: (
        isinstance(v, list) and len(v) == 2 and all(_is_int(x, 1) for x in v)
    ),
    "a list of positive ints": lambda v: isinstance(v, list) and all(_is_int(x, 1) for x in v),
    "a mapping of model -> path": lambda v: (
        isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
    ),
    "'whole' or 'slide'": lambda v: v in ("whole", "slide"),
}
# Options that may be null (the evaluation's own default is None).
NULLABLE_OPTIONS = {
    "checkpoints",
    "img_size",
    "limit",
    "labels",
    "crop_pct",
    "interpolation",
    "save_predictions",
}
NULLABLE_OPTIONS |= {"clusters", "per_class", "scale"}
# The options each eval.<task> block may set (the keyword arguments of pacabench.eval.<task>).
EVAL_OPTIONS: dict[str, dict[str, str]] = {
    "*": {
        "data": "a path",
        "checkpoints": "a mapping of model -> path",
        "img_size": "an int or [h, w] of ints >= 32",
        "workers": "a non-negative int",
        "limit": "a positive int",
        "num_classes": "a positive int",
        "save_predictions": "a path",
    },
    "imagenet": {
        "batch_size": "a positive int",
        "labels": "a path",
        "crop_pct": "a fraction in (0, 1]",
        "interpolation": "a string",
        "skip_bad": "true or false",
        "channels_last": "true or false",
    },
    "ade20k": {
        "head": "a string",
        "mode": "'whole' or 'slide'",
        "clusters": "a list of positive ints",
        "per_class": "a path",
        "scale": "[w, h] of positive ints",
        "crop_size": "a positive int",
        "stride": "a positive int",
        "split": "a string",
        "skip_bad": "true or false",
        "channels_last": "true or false",
    },
    "coco": {
        "ann": "a path",
        "min_size": "a positive int",
        "max_size": "a positive int",
        "max_proposals": "a positive int",
        "max_detections": "a positive int",
        "seed": "an int",
    },
}
