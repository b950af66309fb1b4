"""The JSON Schema (draft 2020-12) of a suite file, derived from the suite's own tables.

Editors read it (the ``# yaml-language-server: $schema=...`` line of every shipped suite) to
complete and check keys as one types; ``pacabench schema`` prints it. Every top-level key is a
``pacabench.spec.schema.SETTINGS`` entry (its ``json`` fragment and ``doc``); the nested blocks
come from the tables that declare their keys: ``MODEL_KEYS``, ``CAPACITY_KEYS``, ``LATENCY_KEYS``,
``EVAL_OPTIONS`` (whose kind texts map to fragments here) and ``EXECUTOR_KEYS``. Where the parser
refuses an unknown key the schema says ``additionalProperties: false``.

The parser stays the authority and its messages stay pacabench's own (``file:line: message``):
a schema cannot know which names timm registers or which files exist, so a suite the schema
accepts may still be refused; one the parser accepts always passes the schema
(tests/test_docs.py feeds both the shipped suites and generated ones). Torch-free.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from .cases import LATENCY_COMPILE_MODES, LATENCY_MODES
from .catalog import HEADS, model_names
from .executor import EXECUTOR_DOCS, EXECUTOR_KEYS, EXECUTORS
from .metrics import TASKS
from .schema import (
    CAPACITY_KEY_DOCS,
    EVAL_OPTION_DOCS,
    EVAL_OPTIONS,
    LATENCY_KEY_DOCS,
    MODEL_KEY_DOCS,
    NULLABLE_OPTIONS,
    SETTINGS,
)

__all__ = ["suite_schema", "schema_text", "SCHEMA_ID", "SCHEMA_FILE", "EVAL_KINDS", "EXECUTOR_KINDS"]

SCHEMA_ID = (
    "https://pacabench.invalid/suite.schema.json"  # a name, not a place: the file ships with the package
)
SCHEMA_FILE = "data/suite.schema.json"  # inside the package; suites/*.yaml point at it

_INT = {"type": "integer"}
_POS_INT = {"type": "integer", "minimum": 1}
_HW = {
    "anyOf": [
        {"type": "integer", "minimum": 32},
        {
            "type": "array",
            "prefixItems": [{"type": "integer", "minimum": 32}] * 2,
            "minItems": 2,
            "maxItems": 2,
        },
    ]
}

# eval.<task> option kinds (pacabench.spec.schema.EVAL_OPTIONS' texts) -> their JSON Schema
EVAL_KINDS: dict[str, dict] = {
    "a path": {"type": "string", "minLength": 1},
    "a string": {"type": "string"},
    "true or false": {"type": "boolean"},
    "a positive int": _POS_INT,
    "a non-negative int": {"type": "integer", "minimum": 0},
    "an int": _INT,
    "a fraction in (0, 1]": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "an int or [h, w] of ints >= 32": _HW,
    "[w, h] of positive ints": {"type": "array", "items": _POS_INT, "minItems": 2, "maxItems": 2},
    "a list of positive ints": {"type": "array", "items": _POS_INT},
    "a mapping of model -> path": {"type": "object", "additionalProperties": {"type": "string"}},
    "'whole' or 'slide'": {"enum": ["whole", "slide"]},
}
# executor key kinds (pacabench.spec.executor.EXECUTOR_KEYS' texts) -> their JSON Schema
EXECUTOR_KINDS: dict[str, dict] = {
    f"one of {', '.join(EXECUTORS)}": {"enum": list(EXECUTORS)},
    "a string": {"type": "string", "minLength": 1},
    "a positive int": _POS_INT,
    "a positive number": {"type": "number", "exclusiveMinimum": 0},
    "a positive number of minutes": {"type": "number", "exclusiveMinimum": 0},
    "true or false": {"type": "boolean"},
    "a list of shell lines": {"type": "array", "items": {"type": "string"}},
}
# the latency keys' values, as SuiteParser.check_latency checks them
_LATENCY_JSON: dict[str, dict] = {
    "warmup": {"type": "integer", "minimum": 0},
    "iters": _POS_INT,
    "min_iters": _POS_INT,
    "time_budget_s": {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}]},
    "rounds": _POS_INT,
    "interleave": {"type": "boolean"},
    "mode": {"enum": list(LATENCY_MODES)},
    "compile_mode": {"enum": list(LATENCY_COMPILE_MODES)},
    "retry_unstable": {"type": "boolean"},
}
# a memory size as pacabench.spec.sizes.parse_memory reads it (units in any case)
_MEMORY = {
    "anyOf": [
        {"type": "string", "pattern": r"^\s*[0-9]*\.?[0-9]+\s*([bB]|[kKmMgGtT][iI]?[bB]|[kKmMgG])?\s*$"},
        {"type": "number", "exclusiveMinimum": 0},
    ]
}


def _doc(fragment: dict, doc: str) -> dict:
    return {"description": doc, **fragment}


def _block(props: dict[str, dict], *, required: list[str] = (), nullable: bool = False) -> dict:
    """A mapping of these keys only (the parser refuses others); ``nullable``: null means "none"."""
    obj: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        obj["required"] = list(required)
    return {"anyOf": [obj, {"type": "null"}]} if nullable else obj


def _model() -> dict:
    docs = MODEL_KEY_DOCS
    props = {
        "name": {"type": "string", "examples": model_names()},
        "checkpoint": {"type": ["string", "null"]},
        "resolutions": {"type": "array", "minItems": 1, "items": _HW},
        "batch_sizes": {"type": "array", "minItems": 1, "items": _POS_INT},
        "clusters": {},
        "label": {"type": ["string", "null"]},
        "kwargs": {"type": ["object", "null"]},
        "head": {"enum": [*HEADS, None]},
    }
    return _block({k: _doc(v, docs[k]) for k, v in props.items()}, required=["name"])


def _latency() -> dict:
    keys = {k: _doc(v, LATENCY_KEY_DOCS[k]) for k, v in _LATENCY_JSON.items()}
    per_device = {"type": "object", "properties": keys, "additionalProperties": False}
    devices = {
        d: _doc(per_device, f"Latency keys that apply on {d} only (over the block's own).")
        for d in ("cpu", "cuda")
    }
    return _block({**keys, **devices}, nullable=True)


def _eval_task(task: str) -> dict:
    options = {**EVAL_OPTIONS["*"], **EVAL_OPTIONS[task]}
    props = {}
    for opt, kind in options.items():
        frag = EVAL_KINDS[kind]
        if opt in NULLABLE_OPTIONS:
            frag = {"anyOf": [frag, {"type": "null"}]}
        props[opt] = _doc(frag, EVAL_OPTION_DOCS[opt])
    required = ["data", "ann"] if task == "coco" else ["data"]
    return _doc(_block(props, required=required), TASKS[task].doc)


def _defs() -> dict[str, dict]:
    executor = {k: _doc(EXECUTOR_KINDS[what], EXECUTOR_DOCS[k]) for k, (what, _) in EXECUTOR_KEYS.items()}
    capacity = {
        "memory": _doc(_MEMORY, CAPACITY_KEY_DOCS["memory"]),
        "limit": _doc({"type": "integer", "minimum": 64}, CAPACITY_KEY_DOCS["limit"]),
    }
    return {
        "model": _model(),
        "latency": _latency(),
        "eval": _block({t: _eval_task(t) for t in TASKS}, nullable=True),
        "capacity": _block(capacity, required=["memory"], nullable=True),
        "executor": _block(executor, nullable=True),
    }


def _if_listed(metric: str, then: dict) -> dict:
    """``metrics`` naming ``metric`` requires ``then``."""
    listed = {"required": ["metrics"], "properties": {"metrics": {"contains": {"const": metric}}}}
    return {"if": listed, "then": then}


def _cross_checks() -> list[dict]:
    """What the parser checks across keys: an accuracy metric needs its eval block, capacity its
    budget, grad_checkpointing the train mode."""
    checks = [
        _if_listed(t, {"required": ["eval"], "properties": {"eval": {"type": "object", "required": [t]}}})
        for t in TASKS
    ]
    checks.append(
        _if_listed("capacity", {"required": ["capacity"], "properties": {"capacity": {"type": "object"}}})
    )
    checks.append(
        {
            "if": {"required": ["grad_checkpointing"], "properties": {"grad_checkpointing": {"const": True}}},
            "then": {"required": ["modes"], "properties": {"modes": {"contains": {"const": "train"}}}},
        }
    )
    return checks


def _json_default(value: Any) -> Any:
    """A setting's default as JSON data; None when it has none to show (null, or not JSON: the
    executor's config object)."""
    if isinstance(value, list):
        value = [list(v) if isinstance(v, tuple) else v for v in value]
    try:
        json.dumps(value)
    except TypeError:
        return None
    return value


def suite_schema() -> dict:
    """The suite file's JSON Schema (draft 2020-12)."""
    props = {}
    for s in SETTINGS:
        frag = _doc(s.json, s.doc)
        if s.example:
            frag["examples"] = [yaml.safe_load(s.example)]  # written as YAML in the table
        default = _json_default(s.default())
        if default is not None:
            frag["default"] = default
        props[s.key] = frag
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "pacabench suite",
        "description": "A pacabench benchmark suite (suites/*.yaml): models x resolutions x batch sizes x "
        "dtypes, what to measure and where. `pacabench schema` prints this; the parser has the last word.",
        "type": "object",
        "properties": props,
        "required": ["models"],
        "additionalProperties": False,
        "allOf": _cross_checks(),
        "$defs": _defs(),
    }


def schema_text() -> str:
    """The schema as ``pacabench schema`` prints it and the committed file holds it (the tables' order)."""
    return json.dumps(suite_schema(), indent=2, ensure_ascii=False) + "\n"
