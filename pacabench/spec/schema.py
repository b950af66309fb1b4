"""What a suite file may say, key by key, and the parser that checks it.

``SETTINGS`` lists the top-level keys in the order they are checked: each names the reader that
validates its value and returns what the ``Suite`` field of the same name holds. A new suite
setting = a ``Suite`` field (``later(default)``, so older digests stay) + one ``Setting`` here
(+ a ``Case`` field of the same name if every cost case carries it). Every problem is one line
``file:line: message`` (``SuiteError``), the line taken from ``pacabench.spec.located``.
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import PacabenchError
from .cases import LATENCY_COMPILE_MODES, LATENCY_KEYS, LATENCY_MODES, ModelEntry, Suite, field_default
from .catalog import HEADS, ResolutionError, UnknownModelError, get_spec, to_hw
from .dtypes import DTYPES  # amp: fp16 on CUDA, bf16 on a CPU (the row records which)
from .executor import parse_executor_block
from .located import Located, SuiteError
from .metrics import COST_MEASURES, MEASURES, TASKS
from .sizes import parse_memory

__all__ = [
    "Setting",
    "SETTINGS",
    "TOP_KEYS",
    "SuiteParser",
    "METRICS",
    "DTYPES",
    "EVAL_OPTIONS",
    "MODEL_KEY_DOCS",
    "CAPACITY_KEY_DOCS",
    "LATENCY_KEY_DOCS",
    "EVAL_OPTION_DOCS",
]

METRICS = MEASURES  # params, flops, latency, memory, then the accuracy tasks (pacabench.spec.metrics)
DEVICES = ("auto", "cpu", "cuda")
COUNTERS = ("fvcore", "torch", "both")  # the FLOP counters (pacabench.measure.flops_torch.count_flops_as)
MODES = ("inference", "train")
CAPACITY_KEYS = {"memory", "limit"}
MAX_NAME = 100  # the suite name names a folder
MODEL_KEYS = {"name", "checkpoint", "resolutions", "batch_sizes", "clusters", "label", "kwargs", "head"}
EVAL_KEYS = set(TASKS)

Reader = Callable[["SuiteParser", Any, tuple], Any]


class _SuiteDefault:
    """``Setting.absent`` not given: a key missing from the file reads as the ``Suite`` field's default."""

    def __repr__(self) -> str:
        return "<the Suite field's default>"


_SUITE_DEFAULT = _SuiteDefault()


@dataclass(frozen=True)
class Setting:
    """One top-level key: ``read(parser, value, path)`` checks the value the file gives (``absent``
    when the key is not there; by default the ``Suite`` field's default) and returns the field's value.

    ``doc`` (one line), ``json`` (the JSON Schema of the value: what ``read`` accepts, as far as a
    schema can say) and ``example`` (a YAML value) are what the suite reference page and
    ``pacabench schema`` show (``pacabench.spec.suite_schema``); tests/test_docs.py checks that
    every key has them and that the schema and the parser agree."""

    key: str
    read: Reader
    absent: Any = _SUITE_DEFAULT
    doc: str = ""
    json: dict = field(default_factory=dict, hash=False, compare=False)
    example: str = ""

    def default(self) -> Any:
        """The value read when the file does not have the key (a fresh copy)."""
        if self.absent is _SUITE_DEFAULT:
            return field_default(_SUITE_FIELDS[self.key])
        return copy.deepcopy(self.absent)


class SuiteParser:
    """Checks one suite's data, key by key; ``fail`` names the file and line of the bad key."""

    def __init__(self, data: Any, loc: Located, filename: str, base_dir: str | os.PathLike | None = None):
        self.data, self.loc, self.filename = data, loc, filename
        self.base_dir = base_dir
        self.values: dict[str, Any] = {}  # the settings read so far (a later one may depend on them)

    def fail(self, path: tuple, msg: str):
        raise SuiteError(f"{self.filename}:{self.loc.line(path)}: {msg}")

    def suite(self, text: str) -> Suite:
        if not isinstance(self.data, dict):
            self.fail((), "a suite must be a mapping of keys (models, resolutions, ...)")
        for k in self.data:
            if k not in TOP_KEYS:
                near = difflib.get_close_matches(k, sorted(TOP_KEYS), n=1)
                self.fail((k,), f"unknown key '{k}'" + (f" (did you mean '{near[0]}'?)" if near else ""))
        for s in SETTINGS:
            self.values[s.key] = s.read(self, self.data.get(s.key, s.default()), (s.key,))
        return Suite(path=self.filename, source_text=text, **self.values)

    # --- readers of one setting: (value, path) -> the Suite's value ---------------------------

    def name(self, value, path) -> str:
        name = value or Path(self.filename).stem
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            self.fail(path, f"name must be letters, digits, '-' or '_', got {name!r}"[:200])
        if len(name) > MAX_NAME:
            self.fail(path, f"name is {len(name)} characters long; at most {MAX_NAME} (a folder name)")
        if name == "baselines":
            self.fail(
                path, "the suite name 'baselines' is reserved (results/baselines holds committed baselines)"
            )
        return name

    def description(self, value, path) -> str:
        return str(value or "")

    def boolean(self, value, path) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"{path[-1]} must be true or false, got {value!r}")
        return value

    def threads(self, value, path) -> int | None:
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            self.fail(path, f"threads must be a positive int or null, got {value!r}")
        return value

    def executor(self, value, path):
        return parse_executor_block(value, self.fail)

    def modes(self, value, path) -> list[str]:
        if not isinstance(value, list) or not value or len(set(map(str, value))) != len(value):
            self.fail(
                path,
                f"modes must be a non-empty list of {', '.join(MODES)} (no repeats), got {value!r}"[:200],
            )
        for i, mode in enumerate(value):
            if mode not in MODES:
                self.fail(path + (i,), f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if self.data.get("grad_checkpointing") and "train" not in value:
            self.fail(("grad_checkpointing",), "grad_checkpointing needs 'train' in modes")
        return list(value)

    def capacity(self, cap, path) -> dict:
        """The ``capacity`` block: ``memory`` (a size such as 4GiB; bytes stored), ``limit``."""
        if cap is None:
            if "capacity" in self.values["metrics"]:
                self.fail(("metrics",), "metric 'capacity' needs a budget: capacity: {memory: 4GiB}")
            return {}
        if not isinstance(cap, dict) or "memory" not in cap:
            self.fail(path, "capacity must be a mapping with 'memory: <size>' (e.g. 4GiB)")
        for k, v in cap.items():
            if k not in CAPACITY_KEYS:
                self.fail(
                    path + (k,), f"unknown capacity key '{k}' (allowed: {', '.join(sorted(CAPACITY_KEYS))})"
                )
            if k == "limit" and not _is_int(v, 64):
                self.fail(path + (k,), f"capacity.limit must be an int >= 64 (pixels), got {v!r}")
        try:
            memory = parse_memory(str(cap["memory"]))
        except PacabenchError as e:
            self.fail(path + ("memory",), f"capacity.{e}")
        return {"memory": memory, **({"limit": cap["limit"]} if "limit" in cap else {})}

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

    def batch_sizes(self, value, path) -> list[int] | dict[str, list[int]]:
        """A list, or per device: ``{cpu: [8], cuda: [64, 128]}`` (a reduced CPU protocol)."""
        if not isinstance(value, dict):
            return self.pos_ints(value, path, "batch_sizes")
        for k in value:
            if k not in ("cpu", "cuda"):
                self.fail(path + (k,), f"batch_sizes per device: cpu and cuda only, got '{k}'")
        if set(value) != {"cpu", "cuda"}:
            self.fail(path, "batch_sizes per device needs both cpu and cuda")
        return {k: self.pos_ints(v, path + (k,), f"batch_sizes.{k}") for k, v in value.items()}

    def pos_ints(self, value, path, what) -> list[int]:
        if not isinstance(value, list) or not value:
            self.fail(path, f"{what} must be a non-empty list of positive ints")
        for i, v in enumerate(value):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                self.fail(path + (i,), f"{what} must be positive ints, got {v!r}")
        return list(value)

    def dtypes(self, value, path) -> list[str]:
        dtypes = [value] if isinstance(value, str) else value
        if not isinstance(dtypes, list) or not dtypes:
            self.fail(path, f"dtypes must be a non-empty list of {', '.join(DTYPES)}, got {dtypes!r}"[:200])
        for i, d in enumerate(dtypes):
            if d not in DTYPES:
                self.fail(path + (i,), f"dtype must be one of {', '.join(DTYPES)}, got {d!r}")
        return list(dtypes)

    def metrics(self, value, path) -> list[str]:
        if not isinstance(value, list) or not value:
            self.fail(path, "metrics must be a non-empty list")
        for i, mt in enumerate(value):
            if mt not in METRICS:
                near = difflib.get_close_matches(str(mt), METRICS, n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                self.fail(path + (i,), f"unknown metric {mt!r}" + hint)
        return list(value)

    def latency(self, value, path) -> dict:
        latency = value or {}
        if not isinstance(latency, dict):
            self.fail(path, "latency must be a mapping")
        self.check_latency(latency, path, True)
        modes = {latency.get("mode", "eager")} | {(latency.get(d) or {}).get("mode") for d in ("cpu", "cuda")}
        if self.data.get("compile") and modes - {None, "eager"}:
            self.fail(
                ("compile",),
                "compile: true compiles the model for every measure; with a latency mode other than eager "
                "set one of them (latency: {mode: compiled, compile_mode: ...} times a compiled forward)",
            )
        return latency

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
            if k in ("interleave", "retry_unstable"):
                if not isinstance(v, bool):
                    self.fail(path + (k,), f"latency {k} must be true or false, got {v!r}")
            elif k in ("mode", "compile_mode"):
                allowed = LATENCY_MODES if k == "mode" else LATENCY_COMPILE_MODES
                if v not in allowed:
                    self.fail(
                        path + (k,), f"latency {k} must be one of {', '.join(allowed)}, got {v!r}"[:200]
                    )
            elif k == "time_budget_s":
                if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0):
                    self.fail(path + (k,), f"time_budget_s must be a positive number or null, got {v!r}")
            elif not isinstance(v, int) or isinstance(v, bool) or v < (0 if k == "warmup" else 1):
                kind = "non-negative" if k == "warmup" else "positive"
                self.fail(path + (k,), f"latency {k} must be a {kind} int, got {v!r}")

    # --- models -----------------------------------------------------------------------------

    def models(self, raw, path) -> list[ModelEntry]:
        if not isinstance(raw, list) or not raw:
            self.fail(path, "models must be a non-empty list of model names")
        return [self.model(m, path + (i,)) for i, m in enumerate(raw)]

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

    # --- eval -------------------------------------------------------------------------------

    def eval(self, value, path) -> dict[str, dict]:
        ev = value or {}
        if not isinstance(ev, dict):
            self.fail(path, "eval must be a mapping of task -> settings")
        for k, v in ev.items():
            self.eval_task(k, v, path + (k,))
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

    def eval_task(self, k: str, v: Any, path: tuple) -> None:
        """One ``eval.<task>`` block: its options are the keyword arguments of ``pacabench.eval.<task>``."""
        if k not in EVAL_KEYS:
            self.fail(path, f"unknown eval task '{k}' (allowed: {', '.join(sorted(EVAL_KEYS))})")
        if not isinstance(v, dict) or "data" not in v:
            self.fail(path, f"eval.{k} needs at least 'data: DIR'")
        if k == "coco" and "ann" not in v:
            self.fail(path, "eval.coco needs 'ann: FILE' (the annotations json)")
        allowed = {**EVAL_OPTIONS["*"], **EVAL_OPTIONS[k]}
        for opt, val in v.items():
            if opt not in allowed:
                self.fail(
                    path + (opt,), f"unknown eval.{k} option '{opt}' (allowed: {', '.join(sorted(allowed))})"
                )
            kind = allowed[opt]
            if not (val is None and opt in NULLABLE_OPTIONS) and not _OPTION_CHECKS[kind](val):
                self.fail(path + (opt,), f"eval.{k}.{opt} must be {kind}, got {val!r}"[:300])


def one_of(options: tuple[str, ...], cut: int | None = None) -> Reader:
    """A reader of a setting that is one of ``options`` (the message cut at ``cut`` characters)."""

    def read(p: SuiteParser, value: Any, path: tuple) -> Any:
        if value not in options:
            p.fail(path, f"{path[-1]} must be one of {', '.join(options)}, got {value!r}"[:cut])
        return value

    return read


_POS_INT = {"type": "integer", "minimum": 1}
_BOOL = {"type": "boolean"}
_HW = {"anyOf": [{"type": "integer", "minimum": 32}, {"type": "array", "prefixItems": [{"type": "integer",
       "minimum": 32}] * 2, "minItems": 2, "maxItems": 2}]}  # fmt: skip
_POS_INTS = {"type": "array", "minItems": 1, "items": _POS_INT}

# The suite's top-level keys, in the order they are checked (the first problem is the one reported).
# fmt: off
SETTINGS: tuple[Setting, ...] = (
    Setting("name", SuiteParser.name, None,
            "The suite's name: names its results folder (results/<name>/<run>); default: the file's stem.",
            {"type": ["string", "null"], "pattern": "^[-_]*[A-Za-z0-9][A-Za-z0-9_-]*$", "maxLength": MAX_NAME,
             "not": {"const": "baselines"}}, "resolution_scaling"),
    Setting("description", SuiteParser.description, "",
            "Free text for the reader (kept in the run folder's suite.yaml); never part of the digest.",
            {}, "PaCa-ViT vs Swin vs PVTv2 at 224-1024 px"),
    Setting("models", SuiteParser.models, None,
            "The models to measure: names (ours, any timm architecture, or a module:function factory) or "
            "mappings with per-model settings (see the model keys).",
            {"type": "array", "minItems": 1, "items": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/model"}]}},
            "[pacavit_tiny_p2cconv_100_0, {name: swin_tiny_patch4_window7_224, checkpoint: ckpt/swin_t.pth}]"),
    Setting("resolutions", SuiteParser.resolutions, [224],
            "Input sizes: an int R (R x R) or [h, w]; every side at least 32 px. One case per size.",
            {"type": "array", "minItems": 1, "items": _HW}, "[224, 512, [512, 1024]]"),
    Setting("batch_sizes", SuiteParser.batch_sizes, [1],
            "Batch sizes, one case each; or per device, {cpu: [...], cuda: [...]}, for a reduced CPU protocol.",
            {"anyOf": [_POS_INTS, {"type": "object", "properties": {"cpu": _POS_INTS, "cuda": _POS_INTS},
                                   "required": ["cpu", "cuda"], "additionalProperties": False}]},
            "{cpu: [1], cuda: [1, 64]}"),
    Setting("dtypes", SuiteParser.dtypes, ["fp32"],
            "Precisions, one case each: fp32, fp16 or bf16 (autocast; weights stay fp32), or amp (fp16 on "
            "CUDA, bf16 on a CPU: the row records which).",
            {"anyOf": [{"enum": list(DTYPES)}, {"type": "array", "minItems": 1, "items": {"enum": list(DTYPES)}}]},
            "[fp32, amp]"),
    Setting("device", one_of(DEVICES), "auto",
            "Where the cases run: cpu, cuda, or auto (cuda when torch sees a GPU); `run --device` overrides.",
            {"enum": list(DEVICES)}, "cuda"),
    Setting("threads", SuiteParser.threads, None,
            "torch.set_num_threads for every case on a CPU; null keeps torch's default (all cores).",
            {"anyOf": [_POS_INT, {"type": "null"}]}, "4"),
    Setting("metrics", SuiteParser.metrics, list(COST_MEASURES),
            "What to measure: params, flops, latency, memory (the default), capacity (needs a capacity "
            "block), and accuracy tasks imagenet, ade20k, coco (each needs its eval block).",
            {"type": "array", "minItems": 1, "items": {"enum": list(METRICS)}}, "[params, flops, latency]"),
    Setting("latency", SuiteParser.latency, {},
            "How latency is timed (warm-up, iterations, budget, rounds); `cpu:` / `cuda:` sub-blocks "
            "override keys on that device.",
            {"$ref": "#/$defs/latency"}, "{warmup: 3, iters: 20, cuda: {warmup: 10, iters: 50}}"),
    Setting("eval", SuiteParser.eval, {},
            "Accuracy evaluation per task (imagenet, ade20k, coco): data folder and options; the task "
            "runs when `metrics` names it (or when metrics names no cost measurement).",
            {"$ref": "#/$defs/eval"}, "{imagenet: {data: /data/imagenet/val, batch_size: 128}}"),
    Setting("counter", one_of(COUNTERS, cut=200), doc=
            "FLOP counter of the flops metric: fvcore (gflops), torch (FlopCounterMode: gflops_torch) or "
            "both (and counter_diff_pct). Default fvcore.",
            json={"enum": list(COUNTERS)}, example="both"),
    Setting("modes", SuiteParser.modes, doc=
            "inference (a forward) and/or train (forward, loss, backward, AdamW step: the train_* columns). "
            "Default [inference].",
            json={"type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": list(MODES)}},
            example="[inference, train]"),
    Setting("capacity", SuiteParser.capacity, None,
            "The budget of metric capacity: the largest resolution whose step fits `memory` (e.g. 4GiB), "
            "searched up to `limit` px.",
            {"$ref": "#/$defs/capacity"}, "{memory: 4GiB, limit: 2048}"),
    Setting("channels_last", SuiteParser.boolean, False,
            "Run the model and its input in channels_last memory format (NHWC kernels on a GPU). Default false.",
            _BOOL, "true"),
    Setting("compile", SuiteParser.boolean, False,
            "torch.compile the model before timing (compile time is not timed). Default false.", _BOOL, "true"),
    Setting("isolate", SuiteParser.boolean, doc=
            "Run each case in a fresh Python process, so one model's allocator state or a crash cannot "
            "touch the next. Default false.", json=_BOOL, example="true"),
    Setting("executor", SuiteParser.executor, None,
            "Where the cases run: in this process, local subprocesses, or SLURM jobs via submitit "
            "(see the executor keys); `run --executor` overrides. Not part of the digest.",
            {"$ref": "#/$defs/executor"}, "{kind: slurm, partition: gpu, gpus_per_node: 1, timeout_min: 30}"),
    Setting("grad_checkpointing", SuiteParser.boolean, doc=
            "Train mode with activation checkpointing (needs train in `modes`). Default false.",
            json=_BOOL, example="true"),
    Setting("batch_decay", SuiteParser.boolean, doc=
            "A case that runs out of memory retries at smaller batches (timm's decay_batch_step); the row "
            "records batch_size_used. Default false.", json=_BOOL, example="true"),
)
# fmt: on
TOP_KEYS = {s.key for s in SETTINGS}

# One line per nested key (the suite reference and the JSON Schema's descriptions; tests/test_docs.py
# checks each table covers its keys). The executor block's are pacabench.spec.executor.EXECUTOR_DOCS.
MODEL_KEY_DOCS: dict[str, str] = {
    "name": "The model: one of ours, any timm architecture (name or name.tag), or module:function / file.py:function.",
    "checkpoint": "Weights to load (the authors' or timm's file; keys remapped); relative to the suite file.",
    "resolutions": "This model's input sizes instead of the suite's.",
    "batch_sizes": "This model's batch sizes instead of the suite's (a plain list).",
    "clusters": "PaCa-ViT: the clusters per stage, passed to the model as kwargs.clusters.",
    "label": "A note for the reader (a string): accepted and checked, not used; rows and reports show the name.",
    "kwargs": "Keyword arguments for the model builder (timm.create_model or the factory), e.g. {drop_path_rate: 0}.",
    "head": "Segmentation head for ade20k cases: paca or upernet (else eval.ade20k.head).",
}
CAPACITY_KEY_DOCS: dict[str, str] = {
    "memory": "The memory budget: a size such as 4GiB, 512MiB, 24GB (stored in bytes).",
    "limit": "The largest resolution searched, in px (>= 64); the row says capacity_capped when reached.",
}
LATENCY_KEY_DOCS: dict[str, str] = {
    "warmup": "Untimed forwards before timing (>= 0; on a GPU followed by a synchronize). Default 3.",
    "iters": "Timed forwards (per round with `rounds`), unless the time budget ends them. Default 20.",
    "min_iters": "Timed forwards made even when the time budget is spent. Default 3.",
    "time_budget_s": "Stop timing after this many seconds (once min_iters are done); null: no budget. Default null.",
    "rounds": "Split the timing into R rounds (iters, min_iters, time_budget_s per round). Default 1.",
    "interleave": "With rounds: the cases of one resolution alternate round by round in one process, so a "
    "slow spell hits every model alike. Default false.",
    "mode": "How the forward is timed: eager (as written), cuda_graph (captured once, replayed: no launch "
    "cost; CUDA only, skipped elsewhere) or compiled (torch.compile, first call untimed). Default eager.",
    "compile_mode": "torch.compile's mode for `mode: compiled`: default, reduce-overhead, "
    "max-autotune-no-cudagraphs or max-autotune. Default default.",
    "retry_unstable": "Time a case once more when its samples drift or split into modes (latency_unstable); "
    "the retry's row is kept and says latency_retried. Default false.",
}
EVAL_OPTION_DOCS: dict[str, str] = {
    "data": "The data set folder (ImageNet val, ADE20k root, COCO images) on the machine that runs the case.",
    "checkpoints": "model name -> weights file, for models without their own `checkpoint`.",
    "img_size": "Input size (an int or [h, w]); default the task's (imagenet 224, ade20k 512, coco 800).",
    "workers": "DataLoader worker processes (>= 0); default: the evaluation's own choice.",
    "limit": "Evaluate only the first N images (sorted): a quick check, not a score to publish.",
    "num_classes": "Classes of the head (imagenet 1000, ade20k 150, coco 80 by default).",
    "save_predictions": "Write the predictions here (ImageNet: a file, ADE20k: one PNG per image, COCO: a json).",
    "batch_size": "ImageNet: images per batch. Default 64.",
    "labels": "ImageNet: a label file (`relative/path label_index` per line) for a flat folder of images.",
    "crop_pct": "ImageNet: centre-crop fraction of the resize (timm's crop_pct); default the model's config.",
    "interpolation": "ImageNet: resize interpolation (bicubic, bilinear, ...); default the model's config.",
    "skip_bad": "Count an unreadable image as skipped instead of failing the case. Default false.",
    "channels_last": "Evaluate in channels_last memory format. Default false.",
    "head": "ADE20k: the segmentation head, paca or upernet.",
    "mode": "ADE20k: whole-image inference or slide (crop_size windows every stride px). Default whole.",
    "clusters": "ADE20k: PaCa-ViT clusters per stage of the dense-task backbone.",
    "per_class": "ADE20k: per-class IoU/accuracy CSV; a suite run writes it into the run folder as "
    "per_class_iou_<case>.csv whatever the value.",
    "scale": "ADE20k: the keep-ratio test resize [w, h]. Default [2048, 512]; null: the original size.",
    "crop_size": "ADE20k slide mode: window size in px. Default 512.",
    "stride": "ADE20k slide mode: window step in px. Default 341.",
    "split": "ADE20k: the split folder. Default validation.",
    "ann": "COCO: the instances annotations json (e.g. instances_val2017.json). Required.",
    "min_size": "COCO: test-time short side in px. Default 800.",
    "max_size": "COCO: test-time long-side cap in px. Default 1333.",
    "max_proposals": "COCO: RPN proposals kept per image. Default 1000.",
    "max_detections": "COCO: detections kept per image. Default 100.",
    "seed": "COCO: seeds the random weights built when no checkpoint is given (every rank alike). Default 0.",
}


_SUITE_FIELDS = {f.name: f for f in fields(Suite)}


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
