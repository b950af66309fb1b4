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
    metrics: [params, flops, latency, memory]
    latency: {warmup: 2, iters: 10, min_iters: 3, time_budget_s: 5,
              cuda: {warmup: 10, iters: 50}}   # per-device overrides
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

from .casekey import CaseKey, checkpoint_digest
from .errors import PacabenchError
from .metrics import COST_MEASURES, MEASURES, TASKS
from .models import ResolutionError, UnknownModelError, get_spec, to_hw
from .models.segmentation import HEADS

__all__ = ["SuiteError", "Suite", "ModelEntry", "LatencySettings", "Case", "load_suite", "parse_suite"]

METRICS = MEASURES  # params, flops, latency, memory, then the accuracy tasks (pacabench.metrics)
DTYPES = ("fp32", "fp16", "bf16")
DEVICES = ("auto", "cpu", "cuda")
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
}
MODEL_KEYS = {"name", "checkpoint", "resolutions", "batch_sizes", "clusters", "label", "kwargs", "head"}
LATENCY_KEYS = {"warmup", "iters", "min_iters", "time_budget_s"}
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

    @property
    def key(self) -> CaseKey:
        """This case's identity (the same as that of the row it produces)."""
        return CaseKey.from_row({**self.to_dict(), "checkpoint_sha": checkpoint_digest(self.checkpoint)})

    def describe(self) -> str:
        extra = " cl" if self.channels_last else ""
        extra += " compile" if self.compile else ""
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
    batch_sizes: list[int]
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
        for k in ("path", "source_text", "description"):
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
        cost_metrics = tuple(m for m in self.metrics if m in COST_MEASURES)
        out: list[Case] = []
        for m in self.models:
            res_list = list(m.resolutions) if m.resolutions else self.resolutions
            bs_list = list(m.batch_sizes) if m.batch_sizes else self.batch_sizes
            if cost_metrics:
                for r in res_list:
                    for b in bs_list:
                        for dt in self.dtypes:
                            out.append(
                                Case(
                                    suite=self.name,
                                    model=m.name,
                                    resolution=r,
                                    batch_size=b,
                                    dtype=dt,
                                    device=dev,
                                    channels_last=self.channels_last,
                                    compile=self.compile,
                                    metrics=cost_metrics,
                                    latency=lat,
                                    threads=self.threads,
                                    checkpoint=m.checkpoint,
                                    kwargs=dict(m.kwargs),
                                    head=m.head,
                                )
                            )
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
                        dtype=self.dtypes[0],
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


# --------------------------------------------------------------------------------------------
# YAML with line numbers


class _Located:
    """Keeps the line of every mapping key / sequence item while building plain objects."""

    def __init__(self):
        self.lines: dict[tuple, int] = {}

    def build(self, node: yaml.Node, path: tuple = ()) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out = {}
            for k_node, v_node in node.value:
                key = k_node.value if isinstance(k_node, yaml.ScalarNode) else str(k_node.value)
                if key in out:
                    raise SuiteError(f"{{file}}:{k_node.start_mark.line + 1}: duplicate key '{key}'")
                out[key] = self.build(v_node, path + (key,))
                self.lines[path + (key,)] = k_node.start_mark.line + 1  # errors point at the key
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(v, path + (i,)) for i, v in enumerate(node.value)]
        return yaml.safe_load(yaml.serialize(node)) if node.tag != "tag:yaml.org,2002:str" else node.value

    def line(self, path: tuple) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)


def load_suite(path: str | os.PathLike) -> Suite:
    p = Path(path)
    if not p.exists():
        raise SuiteError(f"{p}: no such suite file")
    if p.is_dir():
        raise SuiteError(f"{p}: is a folder, not a suite file")
    return parse_suite(p.read_text(encoding="utf-8"), filename=str(p))


def parse_suite(text: str, filename: str = "<suite>") -> Suite:
    """Validate a suite's YAML text; the first problem raises ``SuiteError`` as ``file:line: message``."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SuiteError(f"{filename}:{line}: invalid YAML: {problem}") from None
    if node is None:
        raise SuiteError(f"{filename}:1: empty suite file")
    loc = _Located()
    try:
        data = loc.build(node)
    except SuiteError as e:
        raise SuiteError(str(e).replace("{file}", filename)) from None
    return _Parser(data, loc, filename).suite(text)


class _Parser:
    """Checks one suite's data, key by key; ``fail`` names the file and line of the bad key."""

    def __init__(self, data: Any, loc: _Located, filename: str):
        self.data, self.loc, self.filename = data, loc, filename

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
        bss = self.pos_ints(data.get("batch_sizes", [1]), ("batch_sizes",), "batch_sizes")
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
        )

    def name(self) -> str:
        name = self.data.get("name") or Path(self.filename).stem
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            self.fail(("name",), f"name must be letters, digits, '-' or '_', got {name!r}")
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
            try:
                out.append(to_hw(r))
            except ResolutionError as e:
                self.fail(path + (i,), f"bad resolution: {e}")
        return out

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
        if not isinstance(m, dict) or "name" not in m:
            self.fail(path, "each model is a name or a mapping with 'name'")
        for k in m:
            if k not in MODEL_KEYS:
                self.fail(path + (k,), f"unknown model key '{k}' (allowed: {', '.join(sorted(MODEL_KEYS))})")
        try:
            get_spec(m["name"])
        except UnknownModelError as e:
            self.fail(path + ("name",) if len(m) > 1 else path, str(e))
        if m.get("head") is not None and m["head"] not in HEADS:
            self.fail(path + ("head",), f"unknown head {m['head']!r} (choose from {', '.join(HEADS)})")
        kwargs = dict(m.get("kwargs") or {})
        if "clusters" in m:
            kwargs["clusters"] = m["clusters"]
        res = bss = None
        if "resolutions" in m:
            res = tuple(self.resolutions(m["resolutions"], path + ("resolutions",)))
        if "batch_sizes" in m:
            bss = tuple(self.pos_ints(m["batch_sizes"], path + ("batch_sizes",), "batch_sizes"))
        return ModelEntry(
            name=m["name"],
            checkpoint=m.get("checkpoint"),
            resolutions=res,
            batch_sizes=bss,
            kwargs=kwargs,
            head=m.get("head"),
        )

    def dtypes(self) -> list[str]:
        dtypes = self.data.get("dtypes", ["fp32"])
        if isinstance(dtypes, str):
            dtypes = [dtypes]
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
            if k == "time_budget_s":
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
        return ev
