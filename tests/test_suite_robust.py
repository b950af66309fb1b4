"""Bad suite files: one ``SuiteError`` naming file and line, never another exception (issue 11)."""

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacabench.spec.suite import SuiteError, load_suite, parse_suite
from tests._tier import examples

LOCATED = re.compile(r"^bad\.yaml:\d+: \S")
BASE = "models: [pvt_v2_b0]\ndevice: cpu\n"


def _refused(text, line=None, fragment=""):
    with pytest.raises(SuiteError) as e:
        parse_suite(text, "bad.yaml")
    msg = str(e.value)
    assert LOCATED.match(msg) and "\n" not in msg, msg
    if line is not None:
        assert msg.startswith(f"bad.yaml:{line}:"), msg
    assert fragment in msg, msg
    return msg


@pytest.mark.parametrize(
    "text,line,fragment",
    [
        (BASE + "resolutions: [224.5]\n", 3, "bad resolution"),
        (BASE + "resolutions: [[224, 224.0]]\n", 3, "bad resolution"),
        (BASE + "dtypes: 5\n", 3, "dtypes must be a non-empty list"),
        (BASE + "dtypes: []\n", 3, "dtypes must be a non-empty list"),
        ("models: [{name: 5}]\n", 1, "name: <model name>"),
        ("models:\n  - {name: pvt_v2_b0, kwargs: 5}\n", 2, "kwargs must be a mapping"),
        ("models:\n  - {name: pvt_v2_b0, checkpoint: [a]}\n", 2, "checkpoint must be a string"),
        (BASE + "name: " + "a" * 300 + "\n", 3, "at most 100"),
        (BASE + "description: !!python/name:os.system\n", 3, "not allowed"),
        (BASE + "description: !foo bar\n", 3, "'!foo' is not allowed"),
        (BASE + "latency: !!python/object:dict {}\n", 3, "not allowed"),
        ("a: &x [*x]\n", 1, "recursive alias"),
        (BASE + "batch_sizes: !!int abc\n", 3, "bad value"),
        (BASE + "metrics: [imagenet]\n", 3, "needs an eval.imagenet block"),
        (
            BASE + "metrics: [params]\neval: {imagenet: {data: /d, batch_size: x}}\n",
            4,
            "batch_size must be a positive",
        ),
        (BASE + "eval: {imagenet: {data: /d, bogus: 1}}\n", 3, "unknown eval.imagenet option 'bogus'"),
        (BASE + "eval:\n  ade20k:\n    data: /d\n    scale: 0\n", 6, "scale must be"),
        (BASE + "eval: {coco: {data: /d}}\n", 3, "needs 'ann"),
        (BASE + "eval: {coco: {data: /d, ann: a.json, min_size: 0}}\n", 3, "min_size must be a positive int"),
    ],
)
def test_bad_suite_is_one_located_line(text, line, fragment):
    _refused(text, line, fragment)


def test_alias_bomb_refused_quickly():
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    text = "\n".join(lines) + "\n"
    assert len(text) < 1000
    t0 = time.process_time()
    _refused(text, fragment="suite too large")
    assert time.process_time() - t0 < 5  # CPU time, generous: the old loader ran for minutes


def test_non_utf8_file_names_its_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_bytes(b"models: [pvt_v2_b0]\ndescription: caf\xe9\n")
    with pytest.raises(SuiteError, match=r"bad\.yaml:2: not UTF-8 text \(byte 0xe9\)"):
        load_suite(p)


def test_suite_file_name_too_long_is_one_line(tmp_path):
    with pytest.raises(SuiteError, match="cannot read|no such suite file"):
        load_suite(tmp_path / ("x" * 300 + ".yaml"))


def test_eval_block_validated_at_load_before_any_run_folder(tmp_path, capsys):
    from pacabench.cli import main

    p = tmp_path / "s.yaml"
    p.write_text(BASE + "metrics: [imagenet]\neval: {imagenet: {data: /d, workers: -1}}\n")
    assert main(["run", str(p), "--results-dir", str(tmp_path / "res"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"pacabench: error: {p}:4: eval.imagenet.workers must be a non-negative int, got -1"
    assert not (tmp_path / "res").exists()


def test_relative_checkpoint_resolves_against_the_suite_folder(tmp_path):
    (tmp_path / "suites").mkdir()
    p = tmp_path / "suites" / "s.yaml"
    p.write_text(
        "models:\n  - {name: pvt_v2_b0, checkpoint: ckpt/w.pth}\n  - {name: pvt_v2_b1, checkpoint: /abs/w.pth}\n"
        "device: cpu\neval: {imagenet: {data: /d, checkpoints: {pvt_v2_b0: ../c.pth}}}\n"
    )
    s = load_suite(p)
    assert s.models[0].checkpoint == str(tmp_path / "suites" / "ckpt" / "w.pth")
    assert s.models[1].checkpoint == "/abs/w.pth"
    assert s.eval["imagenet"]["checkpoints"] == {"pvt_v2_b0": str(tmp_path / "c.pth")}
    # parse_suite without a folder keeps the text as written
    assert parse_suite(p.read_text(), "s.yaml").models[0].checkpoint == "ckpt/w.pth"


def test_good_eval_block_still_loads():
    s = parse_suite(
        BASE + "metrics: [imagenet, ade20k]\neval:\n  imagenet: {data: /d, batch_size: 4, crop_pct: 0.875}\n"
        "  ade20k: {data: /a, scale: [2048, 512], mode: slide, head: upernet}\n",
        "ok.yaml",
    )
    assert s.eval["imagenet"]["crop_pct"] == 0.875 and s.eval["ade20k"]["mode"] == "slide"
    s = parse_suite(BASE + "eval: {imagenet: {data: /d, limit: null, checkpoints: null}}\n", "ok.yaml")
    assert s.eval["imagenet"] == {"data": "/d", "limit": None, "checkpoints": None}
    _refused(
        BASE + "eval: {imagenet: {data: /d, batch_size: null}}\n", 3, "batch_size must be a positive int"
    )


def _check_fuzz(data):
    try:
        parse_suite(data, "bad.yaml")
    except SuiteError as e:
        assert LOCATED.match(str(e)) and "\n" not in str(e), str(e)


YAMLISH = st.text(
    alphabet=st.sampled_from(list("models:[]{},-&*!| \n\t'\"#@%`?>0123456789abcxyz_.")), max_size=200
)
FRAGMENTS = st.lists(
    st.sampled_from(
        [
            "models:",
            " [pvt_v2_b0]",
            "\n",
            "resolutions:",
            " 224",
            " [224, 256]",
            " &a",
            " *a",
            " !!python/tuple",
            " !x",
            "eval:",
            " {imagenet: {data: d}}",
            "dtypes:",
            " []",
            " 5",
            "- ",
            "  ",
            "metrics:",
            " [imagenet]",
            "kwargs:",
            " {clusters: 2}",
            ":",
            ",",
            "{",
            "[",
            "]",
            "}",
            "\t",
            "\xe9",
            "\x00",
            "~",
            " null",
            " 1.5",
        ]
    ),
    max_size=30,
).map("".join)


@pytest.mark.slow  # 200 examples; the located bad suites above are the default tier's
@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(YAMLISH, FRAGMENTS, st.text(max_size=100)))
def test_fuzz_suite_text(text):
    _check_fuzz(text)


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=100))
def test_fuzz_suite_bytes(data):
    _check_fuzz(data)
