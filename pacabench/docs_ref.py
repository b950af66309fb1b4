"""The reference pages of the documentation site, written from the code so they cannot drift.

``pages(cli)`` returns ``{"reference/suite.md": text, ...}``: the suite keys (``spec.schema``'s
``SETTINGS`` and nested key tables), the metric glossary (``spec.metrics``), the model families
(``spec.catalog``), the command line (the Typer app's command tree, handed in as ``cli`` so this
module needs neither typer nor the CLI package) and the row schema (``runs.results``). The mkdocs
hook docs/hooks/reference.py calls it at build time; tests/test_docs.py checks that the pages
name every key, metric, command and family. Torch-free: the docs build needs no torch.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import yaml

from .runs.results import ROW_FIELD_DOCS, Row
from .spec import catalog, executor, schema
from .spec.cases import LatencySettings
from .spec.metrics import MEASURE_TABLE, METRICS, TASKS, Metric
from .spec.suite_schema import suite_schema

__all__ = ["pages", "PAGES"]

PAGES = (
    "reference/suite.md",
    "reference/metrics.md",
    "reference/models.md",
    "reference/cli.md",
    "reference/rows.md",
)


def pages(cli: Any) -> dict[str, str]:
    """Every generated page; ``cli``: the root click command (``typer.main.get_command(app)``)."""
    return {
        "reference/suite.md": suite_page(),
        "reference/metrics.md": metrics_page(),
        "reference/models.md": models_page(),
        "reference/cli.md": cli_page(cli),
        "reference/rows.md": rows_page(),
    }


def _generated(source: str) -> str:
    return (
        f'!!! note "Generated"\n    This page is written from `{source}` when the site is built: '
        "edit the code, not the page.\n\n"
    )


def _md(text: Any) -> str:
    """Code text as markdown: ``<`` and ``>`` outside backtick spans escaped (``results/<suite>``
    would otherwise be read as an HTML tag and vanish)."""
    parts = str(text).split("`")
    for i in range(0, len(parts), 2):  # the even parts are outside code spans
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def _cell(text: Any) -> str:
    """Text for a markdown table cell: one line, pipes and tags escaped."""
    return _md(" ".join(str(text).split())).replace("|", "\\|")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _code(value: Any) -> str:
    """A value as YAML in code quotes (``[fp32]``, ``false``, ``''``); None → '–'."""
    if value is None:
        return "–"
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return f"`{text.removesuffix('...').strip()}`"


# --------------------------------------------------------------------------------- suite keys


def type_text(frag: dict) -> str:
    """A JSON Schema fragment in words: 'list of int ≥ 1', 'one of `cpu`, `cuda`', ..."""
    if "$ref" in frag:
        return "mapping (keys below)"
    if "enum" in frag:
        return "one of " + ", ".join(_code(v) if v is not None else "`null`" for v in frag["enum"])
    if "anyOf" in frag:
        return " or ".join(type_text(f) for f in frag["anyOf"])
    kind = frag.get("type")
    if isinstance(kind, list):
        return " or ".join(type_text({**frag, "type": k}) for k in kind)
    if kind == "array":
        if "prefixItems" in frag:
            return "[h, w] of " + type_text(frag["prefixItems"][0])
        size = "[w, h] of " if frag.get("minItems") == 2 == frag.get("maxItems") else "list of "
        item = type_text(frag.get("items", {}))
        return size + (f"({item})" if " or " in item else item)
    return _scalar_text(kind, frag)


def _scalar_text(kind: str | None, frag: dict) -> str:
    if kind in ("integer", "number"):
        word = "int" if kind == "integer" else "number"
        if "minimum" in frag:
            return f"{word} ≥ {frag['minimum']}"
        if "exclusiveMinimum" in frag:
            top = f" and ≤ {frag['maximum']}" if "maximum" in frag else ""
            return f"{word} > {frag['exclusiveMinimum']}{top}"
        return word
    if kind == "object":
        values = frag.get("additionalProperties")
        return f"mapping of name → {type_text(values)}" if isinstance(values, dict) else "mapping"
    if kind == "string":
        return "non-empty string" if frag.get("minLength") else "string"
    return {"boolean": "true or false", "null": "null", None: "any"}[kind]


def _setting_section(s: schema.Setting) -> str:
    default = s.default()
    shown = {"name": "the file's name", "models": "required"}.get(s.key) or _code(_plain(default))
    return (
        f"### `{s.key}`\n\n{_md(s.doc)}\n\n"
        f"- **Type:** {type_text(s.json)}\n- **Default:** {shown}\n\n"
        f"```yaml\n{s.key}: {s.example}\n```\n\n"
    )


def _plain(value: Any) -> Any:
    """A default as the file would write it (a dataclass as its dict, tuples as lists)."""
    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in value.to_dict().items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _nested(block: dict, defaults: dict[str, Any] | None = None) -> str:
    """A table of a nested block's keys (key, type, default, description) from its schema."""
    obj = next(f for f in block.get("anyOf", [block]) if f.get("type") == "object")
    required = set(obj.get("required", ()))
    rows = []
    for key, frag in obj["properties"].items():
        default = (defaults or {}).get(key, "required" if key in required else None)
        shown = "required" if default == "required" else _code(_plain(default))
        rows.append([f"`{key}`", type_text(frag), shown, frag.get("description", "")])
    return _table(["Key", "Type", "Default", "Description"], rows)


def suite_page() -> str:
    full = suite_schema()
    defs = full["$defs"]
    latency_defaults = {f.name: f.default for f in dataclasses.fields(LatencySettings)}
    exec_defaults = _plain(executor.ExecutorConfig())
    out = ["# Suite keys\n\n", _generated("pacabench/spec/schema.py")]
    out.append(
        "A suite is a YAML mapping of the keys below; any other key is refused with `file:line: message`. "
        "Editors can check a suite as you type: the shipped suites start with "
        "`# yaml-language-server: $schema=../pacabench/data/suite.schema.json` (`pacabench schema` "
        "prints the same JSON Schema). The schema cannot know every model name or file, so "
        "`pacabench run` still has the last word.\n\n## Top-level keys\n\n"
    )
    out += [_setting_section(s) for s in schema.SETTINGS]
    out.append("## Model entries (`models:`)\n\nA model is a name, or a mapping with these keys:\n\n")
    out.append(_nested(defs["model"]))
    out.append(
        "\n## `latency:`\n\nThe keys apply on every device; `cpu:` and `cuda:` sub-blocks override them there.\n\n"
    )
    out.append(_nested(defs["latency"], {**latency_defaults, "cpu": None, "cuda": None}))
    out.append("\n## `capacity:`\n\n" + _nested(defs["capacity"]))
    out.append("\n## `executor:`\n\n" + _nested(defs["executor"], exec_defaults))
    out.append("\n## `eval:`\n\nOne block per accuracy task; each block's options:\n\n")
    for task, block in defs["eval"]["anyOf"][0]["properties"].items():
        out.append(f"### `eval.{task}`\n\n{_md(TASKS[task].doc)}\n\n" + _nested(block) + "\n")
    return "".join(out)


# ----------------------------------------------------------------------------------- metrics


def _tolerance(m: Metric) -> str:
    if not m.compare:
        return "not compared"
    cpu, cuda = m.tolerance_on("cpu"), m.tolerance_on("cuda")
    if m.kind == "accuracy":
        return f"±{cpu:g} points"
    text = f"{cpu:.1%}" if cpu == cuda else f"CPU {cpu:.0%}, CUDA {cuda:.0%}"
    text = f"{text} relative" + (" + spread" if m.spread else "")
    if m.samples:
        text += f"; samples test: effect ≥ {m.effect_on('cpu'):.0%} CPU, {m.effect_on('cuda'):.0%} CUDA"
    return text


def metrics_page() -> str:
    out = ["---\nhide: [toc]\n---\n\n# Metric glossary\n\n", _generated("pacabench/spec/metrics.py")]
    out.append(
        "Every column a row can hold. **Kind**: `exact` (deterministic, compared to a relative "
        "tolerance), `noisy` (compared against a tolerance band *and* the two runs' spread; latency "
        "also by a Mann–Whitney test on the raw samples), `accuracy` (compared in points), `info` "
        "(recorded, never compared). `pacabench compare --tolerance` overrides the tolerances below.\n\n"
        "## Measurements\n\nWhat a suite's `metrics:` (and `modes:`) ask for; each fills the columns "
        "whose *measured by* names it.\n\n"
    )
    roles = {"default": "default metric", "optional": "named only", "mode": "`modes: [train]`"}
    rows = [
        [f"`{m.name}`", roles[m.suite], "yes" if m.timed else "no", m.doc] for m in MEASURE_TABLE.values()
    ]
    rows += [[f"`{t.name}`", "accuracy task", "no", t.doc] for t in TASKS.values()]
    out.append(_table(["Measurement", "How a suite asks", "Runs alone", "What it does"], rows))
    out.append("\n## Columns\n\n")
    rows = [
        [f"`{m.column}`", m.unit or "–", m.kind, f"`{m.measure}`", _tolerance(m), m.doc]
        for m in METRICS.values()
    ]
    out.append(_table(["Column", "Unit", "Kind", "Measured by", "Compare tolerance", "Description"], rows))
    return "".join(out)


# ------------------------------------------------------------------------------------ models


def _quirks(f: catalog.FamilySpec) -> list[str]:
    q = []
    if f.img_size_arg:
        q.append("built at the case's `img_size` (timm's builder takes it)")
    if f.nhwc_features:
        q.append("timm's stage maps are NHWC; made NCHW for every consumer")
    if f.checkpoint_filter:
        q.append(f"checkpoint keys remapped by `{f.checkpoint_filter}`")
    if f.downstream_clusters:
        q.append(f"dense-task backbone clusters per stage: {list(f.downstream_clusters)}")
    if f.segmentation_pad_to > 1:
        q.append(f"the segmentor pads inputs to a multiple of {f.segmentation_pad_to}")
    if f.timm_modules:
        q.append("other names of timm's " + ", ".join(f"`{m}`" for m in f.timm_modules) + " join the family")
    return q


def models_page() -> str:
    out = ["# Models\n\n", _generated("pacabench/spec/catalog.py")]
    out.append(
        "A suite's `models:` takes a name of the families below, any timm architecture, or your own "
        "factory. `pacabench models` lists them (`--all` adds timm's). Parameters are at the default "
        "size with 1000 classes. Segmentation heads (`head:`): "
        + ", ".join(f"`{h}`" for h in catalog.HEADS)
        + ".\n\n"
    )
    for f in catalog.FAMILIES.values():
        out.append(f"## `{f.name}`\n\n{_md(f.doc)}\n\n- **Source:** {f.source}\n")
        out += [f"- {q}\n" for q in _quirks(f)]
        rows = []
        for name in f.models:
            spec = catalog.get_spec(name)
            params = "–" if spec.params is None else f"{spec.params / 1e6:.2f} M"
            rows.append([f"`{name}`", params, spec.default_resolution])
        out.append("\n" + _table(["Name", "Params", "Default size (px)"], rows) + "\n")
    out.append(f"## Any timm model\n\n{_md(catalog.TIMM_DOC)}\n\n")
    out.append("```yaml\nmodels: [convnext_tiny, vit_small_patch16_224.augreg_in21k_ft_in1k]\n```\n\n")
    out.append(f"## Your own model (`{catalog.FACTORY}`)\n\n{_md(catalog.FACTORY_DOC)}\n\n")
    out.append("```yaml\nmodels: [mypkg.models:build_net, tools/net.py:make]\n```\n\n")
    out.append("`pacabench run` imports a factory only with `--trust-code`.\n")
    return "".join(out)


# ------------------------------------------------------------------------------------------ cli


def _param_row(p: Any) -> list[Any]:
    if p.param_type_name == "argument":
        name = f"`{p.name.upper()}`" + ("" if p.required else " (optional)")
    else:
        name = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
    kind = "flag" if getattr(p, "is_flag", False) else p.display_type(None).strip("<>")
    default = p.default
    shown = "required" if p.required else ("–" if default in (None, (), []) else f"`{default}`")
    return [name, kind, shown, getattr(p, "help", None) or ""]


def _commands(cmd: Any, path: str) -> list[tuple[str, Any]]:
    """(full name, command) of ``cmd`` and every command under it, depth first, in their order."""
    out = [(path, cmd)]
    for name, sub in getattr(cmd, "commands", {}).items():
        if not sub.hidden:
            out += _commands(sub, f"{path} {name}")
    return out


def _command_section(path: str, cmd: Any) -> str:
    level = "#" * min(2 + path.count(" ") - 1, 4) if " " in path else "##"
    text = f"{level} `{path}`\n\n{_md((cmd.help or '').strip())}\n\n"
    params = [p for p in cmd.params if not getattr(p, "hidden", False)]
    if params:
        text += _table(["Argument / option", "Type", "Default", "Help"], [_param_row(p) for p in params])
    subs = list(getattr(cmd, "commands", {}))
    if subs:
        text += "\nCommands: " + ", ".join(f"`{path} {s}`" for s in subs) + ".\n"
    return text + "\n"


def cli_page(cli: Any) -> str:
    out = ["# Command line\n\n", _generated("pacabench/cli/")]
    out.append(
        "Every command and option, with its `--help` text. Bad input is one line on stderr and exit "
        "code 2.\n\n"
        "**Shell completion.** `pacabench --install-completion` installs tab completion of commands "
        "and options for the current shell (bash, zsh, fish, PowerShell; restart the shell after); "
        "`pacabench --show-completion` prints the script to install it by hand.\n\n"
    )
    out += [_command_section(path, cmd) for path, cmd in _commands(cli, "pacabench")]
    return "".join(out)


# ------------------------------------------------------------------------------------------ rows


def _type_name(tp: Any) -> str:
    """``float | None`` → 'float or null'; ``list[int]`` → 'list'."""
    union = isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union
    args = typing.get_args(tp) if union else (tp,)
    names = [getattr(typing.get_origin(a) or a, "__name__", str(a)) for a in args if a is not type(None)]
    return " or ".join(names) + (" or null" if type(None) in args else "")


def rows_page() -> str:
    out = ["# Row schema\n\n", _generated("pacabench/runs/results.py")]
    out.append(
        "One JSON object per line of `results/<suite>/<run>/rows.jsonl`, one per case. A measurement "
        "not made is `null`. The measured columns are the metric table's ([glossary](metrics.md)).\n\n"
    )
    groups: dict[str, list[list[Any]]] = {
        "Case identity": [],
        "Measurements": [],
        "Context and provenance": [],
    }
    seen_metric = False
    for f in dataclasses.fields(Row):
        metric = METRICS.get(f.name)
        seen_metric |= metric is not None
        group = "Measurements" if metric else ("Context and provenance" if seen_metric else "Case identity")
        doc = metric.doc if metric else ROW_FIELD_DOCS.get(f.name, "")
        groups[group].append([f"`{f.name}`", _type_name(f.type), doc])
    for title, rows in groups.items():
        out.append(f"## {title}\n\n" + _table(["Field", "Type", "Description"], rows) + "\n")
    return "".join(out)
