"""The documentation generated from the code (issue 23): every suite key, metric, measurement,
task, model family, row field, CLI command and option has its one line of text; the suite
JSON Schema and the parser agree (shipped suites, generated suites, fuzz); the reference pages
name everything they document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.main import get_command

from pacabench.cli import app, main
from pacabench.docs_ref import PAGES, _commands, pages, type_text
from pacabench.runs.results import ROW_FIELD_DOCS, ROW_FIELDS
from pacabench.spec import catalog, executor, schema, suite_schema
from pacabench.spec.cases import LATENCY_KEYS
from pacabench.spec.metrics import MEASURE_TABLE, METRIC_DOCS, METRICS, TASKS
from pacabench.spec.suite import SuiteError, parse_suite
from tests._tier import examples
from tests.test_suite_robust import FRAGMENTS, YAMLISH

ROOT = Path(__file__).resolve().parent.parent
SUITES = sorted((ROOT / "suites").glob("*.yaml"))
SCHEMA = suite_schema.suite_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
CLI = get_command(app)


# ------------------------------------------------------------------ (a) every item has its text


def _empty(table: dict[str, str]) -> list[str]:
    return [k for k, v in table.items() if not (isinstance(v, str) and v.strip())]


def test_every_suite_key_has_a_description_schema_and_example():
    assert [s.key for s in schema.SETTINGS if not s.doc.strip() or not s.example.strip()] == []
    # every value but free text has a type; the example is valid YAML of that type
    assert [s.key for s in schema.SETTINGS if not s.json and s.key != "description"] == []
    for s in schema.SETTINGS:
        sub = {"$defs": SCHEMA["$defs"], **s.json}
        assert list(jsonschema.Draft202012Validator(sub).iter_errors(yaml.safe_load(s.example))) == [], s.key


def test_every_nested_key_has_a_description():
    assert set(schema.MODEL_KEY_DOCS) == schema.MODEL_KEYS
    assert set(schema.CAPACITY_KEY_DOCS) == schema.CAPACITY_KEYS
    assert set(schema.LATENCY_KEY_DOCS) == LATENCY_KEYS
    assert set(executor.EXECUTOR_DOCS) == set(executor.EXECUTOR_KEYS)
    options = {o for opts in schema.EVAL_OPTIONS.values() for o in opts}
    assert set(schema.EVAL_OPTION_DOCS) == options
    for table in (
        schema.MODEL_KEY_DOCS,
        schema.CAPACITY_KEY_DOCS,
        schema.LATENCY_KEY_DOCS,
        executor.EXECUTOR_DOCS,
        schema.EVAL_OPTION_DOCS,
    ):
        assert _empty(table) == []


def test_every_value_kind_has_a_json_schema():
    """A kind text the parser checks (eval options, executor keys) that the schema cannot say fails here."""
    kinds = {k for opts in schema.EVAL_OPTIONS.values() for k in opts.values()}
    assert kinds <= set(suite_schema.EVAL_KINDS)
    assert {what for what, _ in executor.EXECUTOR_KEYS.values()} <= set(suite_schema.EXECUTOR_KINDS)
    assert set(suite_schema._LATENCY_JSON) == LATENCY_KEYS


def test_every_metric_measure_and_task_has_a_description():
    assert [c for c, m in METRICS.items() if not m.doc.strip()] == []
    assert set(METRIC_DOCS) <= set(METRICS), "a description of a column the table no longer has"
    assert [n for n, m in MEASURE_TABLE.items() if not m.doc.strip()] == []
    assert [n for n, t in TASKS.items() if not t.doc.strip()] == []


def test_every_family_and_row_field_has_a_description():
    assert [n for n, f in catalog.FAMILIES.items() if not f.doc.strip()] == []
    assert catalog.TIMM_DOC.strip() and catalog.FACTORY_DOC.strip()
    undocumented = [f for f in ROW_FIELDS if f not in METRICS and not ROW_FIELD_DOCS.get(f, "").strip()]
    assert undocumented == []
    assert set(ROW_FIELD_DOCS) <= set(ROW_FIELDS)


def test_every_command_and_option_has_help():
    missing = []
    for path, cmd in _commands(CLI, "pacabench"):
        if not (cmd.help or "").strip():
            missing.append(path)
        missing += [f"{path} {p.name}" for p in cmd.params if not (getattr(p, "help", None) or "").strip()]
    assert missing == []


def test_shell_completion_is_offered_and_completes(monkeypatch, capsys):
    assert {"install_completion", "show_completion"} <= {p.name for p in CLI.params}
    assert main(["--show-completion", "bash"]) == 0
    assert "_PACABENCH_COMPLETE=complete_bash" in capsys.readouterr().out
    # what the installed script asks: the words typed so far -> the candidates
    monkeypatch.setenv("_PACABENCH_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "pacabench run --res")
    monkeypatch.setenv("COMP_CWORD", "2")
    assert main([]) == 0
    assert capsys.readouterr().out.split() == ["--resume", "--resume-from", "--results-dir"]


# ------------------------------------------------------------- (b) the schema and the parser agree


def test_committed_schema_is_the_generated_one():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    committed = (ROOT / "pacabench" / suite_schema.SCHEMA_FILE).read_text(encoding="utf-8")
    assert committed == suite_schema.schema_text(), (
        "run `pacabench schema -o pacabench/data/suite.schema.json`"
    )


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.name)
def test_shipped_suite_points_at_the_schema_validates_and_parses(path):
    text = path.read_text(encoding="utf-8")
    first = text.splitlines()[0]
    assert first == "# yaml-language-server: $schema=../pacabench/data/suite.schema.json"
    assert (path.parent / first.split("=", 1)[1]).resolve() == ROOT / "pacabench" / suite_schema.SCHEMA_FILE
    assert list(VALIDATOR.iter_errors(yaml.safe_load(text))) == []
    parse_suite(text, path.name)


def _parses(data: dict) -> bool:
    try:
        parse_suite(yaml.safe_dump(data, sort_keys=False), "gen.yaml")
    except SuiteError:
        return False
    return True


def _valid(data) -> bool:
    return VALIDATOR.is_valid(data)


# valid values of each key (the parser's rules, written independently of both tables)
_RES = st.one_of(st.integers(32, 2048), st.lists(st.integers(32, 2048), min_size=2, max_size=2))
_POS = st.integers(1, 512)
_POS_LIST = st.lists(_POS, min_size=1, max_size=3)
_NAMES = st.sampled_from(catalog.model_names())
_MODEL = st.one_of(
    _NAMES,
    st.fixed_dictionaries(
        {"name": _NAMES},
        optional={
            "checkpoint": st.sampled_from(["ckpt/w.pth", None]),
            "resolutions": st.lists(_RES, min_size=1, max_size=2),
            "batch_sizes": _POS_LIST,
            "head": st.sampled_from([*catalog.HEADS, None]),
            "kwargs": st.sampled_from([{}, {"drop_path_rate": 0.0}, None]),
            "label": st.text(max_size=5),
            "clusters": st.sampled_from([[2, 2, 2, 0], 49]),
        },
    ),
)
_KIND_VALUES = {
    "a path": st.sampled_from(["/data/x", "rel/dir"]),
    "a string": st.sampled_from(["", "bicubic", "paca"]),
    "true or false": st.booleans(),
    "a positive int": _POS,
    "a non-negative int": st.integers(0, 8),
    "an int": st.integers(-5, 5),
    "a fraction in (0, 1]": st.floats(0.01, 1.0),
    "an int or [h, w] of ints >= 32": _RES,
    "[w, h] of positive ints": st.lists(_POS, min_size=2, max_size=2),
    "a list of positive ints": st.lists(_POS, max_size=4),
    "a mapping of model -> path": st.dictionaries(_NAMES, st.just("w.pth"), max_size=2),
    "'whole' or 'slide'": st.sampled_from(["whole", "slide"]),
}


@st.composite
def _eval_block(draw, task: str) -> dict:
    options = {**schema.EVAL_OPTIONS["*"], **schema.EVAL_OPTIONS[task]}
    block = {"data": "/data/" + task, **({"ann": "a.json"} if task == "coco" else {})}
    for opt in draw(st.lists(st.sampled_from(sorted(options)), max_size=4, unique=True)):
        block[opt] = draw(_KIND_VALUES[options[opt]])
    return block


_LAT = st.fixed_dictionaries(
    {},
    optional={
        "warmup": st.integers(0, 5),
        "iters": _POS,
        "min_iters": _POS,
        "time_budget_s": st.one_of(st.none(), st.floats(0.1, 10)),
        "rounds": st.integers(1, 4),
        "interleave": st.booleans(),
    },
)
_EXECUTOR = st.fixed_dictionaries(
    {"kind": st.sampled_from(executor.EXECUTORS)},
    optional={
        "partition": st.just("gpu"),
        "gpus_per_node": _POS,
        "mem_gb": st.floats(0.5, 64),
        "timeout_min": st.integers(1, 600),
        "exclusive": st.booleans(),
        "setup": st.lists(st.just("module load cuda"), max_size=2),
    },
)


@st.composite
def valid_suites(draw) -> dict:
    """A suite the parser must accept: each key's value drawn from its rules, the cross-key rules kept."""
    metrics = draw(st.lists(st.sampled_from(list(schema.METRICS)), min_size=1, max_size=4, unique=True))
    d: dict = {"models": draw(st.lists(_MODEL, min_size=1, max_size=3)), "metrics": metrics}
    optional = {
        "name": st.from_regex(r"[a-z][a-z0-9_-]{0,15}", fullmatch=True),
        "description": st.text(max_size=10),
        "resolutions": st.lists(_RES, min_size=1, max_size=3),
        "batch_sizes": st.one_of(_POS_LIST, st.fixed_dictionaries({"cpu": _POS_LIST, "cuda": _POS_LIST})),
        "dtypes": st.one_of(
            st.sampled_from(schema.DTYPES), st.lists(st.sampled_from(schema.DTYPES), min_size=1)
        ),
        "device": st.sampled_from(schema.DEVICES),
        "threads": st.one_of(st.none(), _POS),
        "latency": st.one_of(st.none(), _LAT, _LAT.map(lambda d: {**d, "cuda": {"iters": 50}})),
        "counter": st.sampled_from(schema.COUNTERS),
        "modes": st.lists(st.sampled_from(schema.MODES), min_size=1, max_size=2, unique=True),
        "channels_last": st.booleans(),
        "compile": st.booleans(),
        "isolate": st.booleans(),
        "batch_decay": st.booleans(),
        "executor": st.one_of(st.none(), _EXECUTOR),
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), max_size=8, unique=True)):
        d[key] = draw(optional[key])
    tasks = [t for t in metrics if t in TASKS] + draw(st.lists(st.sampled_from(sorted(TASKS)), max_size=1))
    if tasks:
        d["eval"] = {t: draw(_eval_block(t)) for t in tasks}
    if "capacity" in metrics or draw(st.booleans()):
        d["capacity"] = {"memory": draw(st.sampled_from(["4GiB", "512MiB", "24GB", "1.5g", 10**9]))}
    if draw(st.booleans()):
        d["grad_checkpointing"] = True
        d["modes"] = ["inference", "train"]
    return d


# one wrong value per key: the parser refuses each, and so must the schema
WRONG = {
    "name": "bad name!",
    "models": [],
    "resolutions": ["224"],
    "batch_sizes": [0],
    "dtypes": ["fp64"],
    "device": "tpu",
    "threads": 0,
    "metrics": ["speed"],
    "latency": {"iters": 0},
    "eval": {"imagenet": {}},
    "counter": "ptflops",
    "modes": [],
    "capacity": {"limit": 64},
    "channels_last": "yes",
    "compile": 1,
    "isolate": None,
    "executor": {"kind": "k8s"},
    "grad_checkpointing": "no",
    "batch_decay": [],
}


def test_every_key_has_a_wrong_value_here():
    assert set(WRONG) == schema.TOP_KEYS - {"description"}  # free text: any value reads as text


@settings(max_examples=examples(50), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_suites())
def test_generated_suites_pass_both(data):
    assert _parses(data), data
    assert _valid(data), [e.message for e in VALIDATOR.iter_errors(data)]


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_suites(), st.sampled_from(sorted(WRONG) + ["<unknown key>", "<nested unknown key>"]))
def test_broken_suites_fail_both(data, what):
    if what == "<unknown key>":
        data["bogus_key"] = 1
    elif what == "<nested unknown key>":
        data["latency"] = {"iterations": 5}
    else:
        data[what] = WRONG[what]
    assert not _parses(data), data
    assert not _valid(data), data


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(YAMLISH, FRAGMENTS))
def test_fuzzed_text_the_parser_accepts_passes_the_schema(text):
    """The fuzz of tests/test_suite_robust.py: whatever the parser accepts, the schema accepts."""
    try:
        parse_suite(text, "fuzz.yaml")
    except SuiteError:
        return
    assert _valid(yaml.safe_load(text)), text


def test_schema_command_prints_the_schema_without_torch(tmp_path):
    code = (
        "import sys\nfrom pacabench.cli import main\nrc = main(['schema'])\n"
        "assert 'torch' not in sys.modules and 'timm' not in sys.modules\nsys.exit(rc)\n"
    )
    env = {"PYTHONPATH": str(ROOT), "PACABENCH_COLLECT_ENV": "0", "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == SCHEMA
    out = tmp_path / "s.json"
    assert main(["schema", "-o", str(out)]) == 0
    assert out.read_text() == suite_schema.schema_text()
    assert main(["schema", "-o", str(tmp_path / "no" / "such" / "dir.json")]) == 2


# ----------------------------------------------------------- (c) the pages name what they document


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return pages(CLI)


def test_pages_are_the_listed_ones(generated):
    assert tuple(generated) == PAGES
    for text in generated.values():  # an optional front matter, then the title
        body = text.split("---\n", 2)[2] if text.startswith("---\n") else text
        assert body.lstrip("\n").startswith("# "), text[:80]


def test_suite_page_names_every_key(generated):
    page = generated["reference/suite.md"]
    nested = [
        *schema.MODEL_KEYS,
        *schema.CAPACITY_KEYS,
        *LATENCY_KEYS,
        *executor.EXECUTOR_KEYS,
        *(o for opts in schema.EVAL_OPTIONS.values() for o in opts),
    ]
    assert [k for k in schema.TOP_KEYS if f"### `{k}`" not in page] == []
    assert [k for k in nested if f"| `{k}` |" not in page] == []
    assert [t for t in TASKS if f"### `eval.{t}`" not in page] == []


def test_metrics_page_names_every_column_and_measurement(generated):
    page = generated["reference/metrics.md"]
    assert [c for c in METRICS if f"| `{c}` |" not in page] == []
    assert [m for m in [*MEASURE_TABLE, *TASKS] if f"| `{m}` |" not in page] == []
    # a compared column shows its declared tolerance (median latency: 50 % on a CPU, 15 % on CUDA)
    line = next(ln for ln in page.splitlines() if ln.startswith("| `latency_ms_median` |"))
    assert "CPU 50%, CUDA 15% relative + spread" in line


def test_models_page_names_every_family_and_model(generated):
    page = generated["reference/models.md"]
    assert [f for f in catalog.FAMILIES if f"## `{f}`" not in page] == []
    assert [n for n in catalog.model_names() if f"| `{n}` |" not in page] == []
    assert "| `swin_tiny_patch4_window7_224` | 28.29 M | 224 |" in page  # PARAMS: 28,288,354


def test_cli_page_names_every_command_and_option(generated):
    page = generated["reference/cli.md"]
    for path, cmd in _commands(CLI, "pacabench"):
        assert f"`{path}`" in page, path
        for p in cmd.params:
            shown = f"`{p.name.upper()}`" if p.param_type_name == "argument" else f"`{p.opts[0]}`"
            assert shown in page, (path, p.name)
    assert "--install-completion" in page and "pacabench schema" in page


def test_rows_page_names_every_field(generated):
    page = generated["reference/rows.md"]
    assert [f for f in ROW_FIELDS if f"| `{f}` |" not in page] == []
    assert "results/&lt;suite&gt;/&lt;run_id&gt;" in page  # tags escaped, not swallowed as HTML


def test_type_text():
    assert type_text(SCHEMA["properties"]["resolutions"]) == "list of (int ≥ 32 or [h, w] of int ≥ 32)"
    assert type_text({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]}) == "int ≥ 1 or null"
    assert type_text({"enum": ["cpu", "cuda"]}) == "one of `cpu`, `cuda`"


def test_defaults_in_the_schema_are_the_parsers():
    """Each top-level default the schema shows is what the parser reads for a missing key."""
    base = parse_suite("models: [pvt_v2_b0]\n", "d.yaml")
    for key, frag in SCHEMA["properties"].items():
        if "default" in frag and key != "resolutions":
            assert frag["default"] == getattr(base, key), key
    assert base.resolutions == [(224, 224)] and SCHEMA["properties"]["resolutions"]["default"] == [224]
