from pathlib import Path

import pytest

from pacabench.spec.suite import SuiteError, load_suite, parse_suite

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
name: demo
models:
  - pvt_v2_b0
  - {name: swin_tiny_patch4_window7_224, resolutions: [224]}
resolutions: [224, [256, 320]]
batch_sizes: [1, 2]
dtypes: [fp32, bf16]
device: cpu
metrics: [params, flops]
latency: {warmup: 1, iters: 4, cuda: {iters: 40}}
"""


def test_good_suite_expands_to_cases():
    s = parse_suite(GOOD, "demo.yaml")
    cases = s.cases()
    # pvt: 2 res × 2 bs × 2 dtypes, swin: 1 res × 2 × 2
    assert len(cases) == 8 + 4
    assert cases[0].resolution == (224, 224) and cases[2].resolution == (224, 224)
    assert {c.resolution for c in cases if c.model == "pvt_v2_b0"} == {(224, 224), (256, 320)}
    assert len({c.key for c in cases}) == len(cases)
    assert s.latency_for("cpu").iters == 4
    assert s.latency_for("cuda").iters == 40 and s.latency_for("cuda").warmup == 1


@pytest.mark.parametrize(
    "text,line,fragment",
    [
        (
            "models: [pvt_v2_b0]\nresolutoins: [224]\n",
            2,
            "unknown key 'resolutoins' (did you mean 'resolutions'?)",
        ),
        (
            "models:\n  - pvt_v2_b0\n  - swin_tiny_patch4_window7\n",
            3,
            "did you mean 'swin_tiny_patch4_window7_224'",
        ),
        ("models: [pvt_v2_b0]\nresolutions:\n  - 224\n  - [224, 0]\n", 4, "bad resolution"),
        ("models: [pvt_v2_b0]\nresolutions: [224, -5]\n", 2, "too small"),
        ("models: [pvt_v2_b0]\nresolutions: [224, [1, 2, 3]]\n", 2, "[h, w]"),
        ("models: [pvt_v2_b0]\ndtypes: [fp64]\n", 2, "dtype must be one of"),
        ("models: [pvt_v2_b0]\ndevice: tpu\n", 2, "device must be"),
        ("models: [pvt_v2_b0]\nmetrics: [flop]\n", 2, "did you mean 'flops'"),
        ("models: [pvt_v2_b0]\nlatency: {iters: 0}\n", 2, "positive int"),
        ("models: [pvt_v2_b0]\nlatency:\n  cpu: {warmpu: 3}\n", 3, "unknown latency key"),
        ("models: []\n", 1, "non-empty list"),
        ("models: [pvt_v2_b0\n", 2, "invalid YAML"),
        ("- a\n- b\n", 1, "mapping"),
        ("models: [pvt_v2_b0]\nmodels: [pvt_v2_b1]\n", 2, "duplicate key"),
    ],
)
def test_bad_suites_give_one_line_with_file_and_line(text, line, fragment):
    with pytest.raises(SuiteError) as ei:
        parse_suite(text, "bad.yaml")
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(f"bad.yaml:{line}: "), msg
    assert fragment in msg


def test_shipped_suites_validate():
    for p in (ROOT / "suites").glob("*.yaml"):
        s = load_suite(p)
        assert s.cases(), p


def test_missing_file():
    with pytest.raises(SuiteError, match="no such suite file"):
        load_suite("does/not/exist.yaml")


def test_the_settings_table_is_the_suite_and_later_settings_keep_old_digests():
    """Each key a file may set is one Suite field; a setting the file leaves out holds the Suite's
    default, and a setting added later is left out of the digest at that default (the digests
    below were computed before the schema became a table)."""
    from dataclasses import fields

    from pacabench.spec.cases import Suite, field_default
    from pacabench.spec.schema import TOP_KEYS

    assert TOP_KEYS == {f.name for f in fields(Suite)} - {"path", "source_text"}
    bare = parse_suite("models: [pvt_v2_b0]\n", "x.yaml")
    later = [f for f in fields(Suite) if f.metadata.get("digest") == "unless_default"]
    assert {f.name for f in later} == {"counter", "modes", "grad_checkpointing", "capacity", "batch_decay"}
    assert all(getattr(bare, f.name) == field_default(f) for f in later)
    assert bare.digest() == "6b317b561693b3e5f209b4fc777349600bfda769e82047225bb467ba3d31a2ad"
    every = parse_suite(
        "models: [pvt_v2_b0]\nmetrics: [params, capacity]\ncounter: both\nmodes: [train]\n"
        "grad_checkpointing: true\ncapacity: {memory: 1GiB}\nbatch_decay: true\nexecutor: {kind: local}\n"
        "description: how, not what\n",
        "x.yaml",
    )
    assert every.digest() == "a21c879687d31d89f969fa0d23af4515bf5fb33fd4b84e1936bd9d5afb879e4f"
    assert every.cases("cpu")[0].batch_decay and every.cases("cpu")[0].counter == "both"  # copied to cases
