"""The command line: JSON outputs, and bad input → one line + exit code 2."""

import json

import pytest

from pacabench.cli import main

FAST_SUITE = """\
name: clitest
models: [pvt_v2_b0]
resolutions: [64]
device: cpu
metrics: [params, flops, latency]
latency: {warmup: 0, iters: 2, min_iters: 1}
"""


def test_flops_json(capsys):
    assert main(["flops", "pvt_v2_b1", "--resolution", "512", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["gflops"] == pytest.approx(12.76, rel=0.01)
    assert d["params"] == 14_009_000
    assert "uncounted_ops" in d and "aten::gelu" in d["uncounted_ops"]


def test_flops_no_attention_is_lower(capsys):
    main(["flops", "pvt_v2_b1", "-r", "224", "--json", "--no-attention"])
    d = json.loads(capsys.readouterr().out)
    assert d["gflops"] == pytest.approx(2.044, rel=0.01)


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["flops", "pvt_v2_b11"], "did you mean 'pvt_v2_b1'"),
        (["flops", "pvt_v2_b1", "-r", "abc"], "resolution must be"),
        (["flops", "pvt_v2_b1", "-r", "16"], "too small"),
        (["run", "nope.yaml"], "no such suite file"),
        (["report", "no/such/run"], "no such run"),
        (["models", "--family", "cnn"], "unknown family"),
    ],
)
def test_bad_input_one_line_exit_2(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert fragment in err


def test_bad_suite_file_reports_line(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("models: [pvt_v2_b0]\nresolutions: [224]\nbatch_size: [1]\n")
    assert main(["run", str(p)]) == 2
    err = capsys.readouterr().err
    assert f"{p}:3: unknown key 'batch_size' (did you mean 'batch_sizes'?)" in err


def test_run_then_report(tmp_path, capsys):
    p = tmp_path / "s.yaml"
    p.write_text(FAST_SUITE)
    res = tmp_path / "results"
    assert main(["run", str(p), "--results-dir", str(res), "--no-progress", "--run-id", "r1"]) == 0
    out = capsys.readouterr().out
    assert "GFLOPs" in out and "pvt_v2_b0" in out
    run = res / "clitest" / "r1"
    assert (run / "rows.jsonl").exists() and (run / "suite.yaml").read_text() == FAST_SUITE
    env = json.loads((run / "environment.json").read_text())
    assert env["torch"] and "pacabench_commit" in env
    assert main(["report", "--results-dir", str(res), "--format", "csv"]) == 0
    csv = capsys.readouterr().out
    assert csv.splitlines()[0].startswith("model,") and "pvt_v2_b0" in csv
    # resume of a finished run does nothing and keeps the rows
    assert main(["run", str(p), "--results-dir", str(res), "--no-progress", "--resume", "--no-report"]) == 0
    assert len((run / "rows.jsonl").read_text().splitlines()) == 1
    assert main(["report", str(run), "--reference", "swin_tiny_patch4_window7_224"]) == 2


def test_models_json(capsys):
    assert main(["models", "--json", "--family", "pvt_v2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by = {r["name"]: r for r in rows}
    assert by["pvt_v2_b1"]["params"] == 14_009_000 and by["pvt_v2_b1"]["family"] == "pvt_v2"
