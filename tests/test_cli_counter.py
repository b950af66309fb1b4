"""The second FLOP counter, per-module costs, efficiency and kernel records, end to end:
``pacabench flops --counter/--by-module``, ``pacabench profile``, a suite's ``counter:``, the
runner's efficiency and kernel columns, the report's tables, the run's collect_env record."""

from __future__ import annotations

import json

import pytest
import torch

import pacabench.runs.runner as runner
from pacabench.cli import main
from pacabench.measure.flops import count_flops
from pacabench.measure.flops_torch import count_flops_torch
from pacabench.models import create_model
from pacabench.reports.sections import report_sections
from pacabench.runs.folder import RunDir
from pacabench.runs.results import load_run, read_rows
from pacabench.spec.suite import SuiteError, parse_suite
from tests.test_cli_bad_paths import one_error_line


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_flops_counter_both_records_the_gap_and_flags_past_one_percent(capsys):
    assert main(["flops", "pvt_v2_b0", "--counter", "both", "--json"]) == 0
    res = _json(capsys)
    model = create_model("pvt_v2_b0").eval()
    fv, tc = count_flops(model, (224, 224)), count_flops_torch(model, 224)
    assert res["counter"] == "both"
    assert res["gflops"] == pytest.approx(fv.gflops, rel=1e-12)
    assert res["gflops_torch"] == pytest.approx(tc.gflops, rel=1e-12)
    gap = res["counter_gap"]
    assert gap["diff_pct"] == pytest.approx(100 * (fv.gflops - tc.gflops) / fv.gflops)
    assert gap["explained_pct"] == pytest.approx(100 * fv.by_operator["layer_norm"] / fv.gflops)
    assert gap["flagged"] and gap["diff_pct"] > res["flag_pct"] == 1.0  # 1.04 %: PVTv2-b0's norms
    assert main(["flops", "pvt_v2_b0", "--counter", "both"]) == 0
    out = capsys.readouterr()
    assert "GFLOPs, torch counter" in out.out and "fvcore − torch" in out.out
    assert "differ by +1.04 %" in out.err


@pytest.mark.slow  # a real-tensor count at 1024² as the reference; --counter torch: by-module test below
def test_flops_counter_torch_counts_a_large_input_without_fvcore(capsys):
    assert main(["flops", "pacavit_tiny_p2cconv_100_0", "-r", "1024", "--counter", "torch", "--json"]) == 0
    res = _json(capsys)
    assert res["counter"] == "torch" and res["gflops"] is None and res["resolution"] == [1024, 1024]
    model = create_model("pacavit_tiny_p2cconv_100_0", img_size=1024).eval()
    assert res["gflops_torch"] == pytest.approx(count_flops_torch(model, 1024, fake=False).gflops, rel=1e-12)


def test_flops_by_module_table_and_json(capsys):
    assert main(["flops", "pvt_v2_b0", "-r", "64", "--by-module", "--depth", "1", "--json"]) == 0
    doc = _json(capsys)
    model = create_model("pvt_v2_b0", img_size=64).eval()
    names = [m["name"] for m in doc["modules"]]
    assert names == [""] + [n for n, _ in model.named_children()]
    whole = doc["modules"][0]
    assert whole["gflops"] == pytest.approx(count_flops(model, (64, 64)).gflops, rel=1e-12)
    assert whole["params"] == sum(p.numel() for p in model.parameters())
    stages = next(m for m in doc["modules"] if m["name"] == "stages")
    assert 0.5 < stages["share"] < 1.0
    assert main(["flops", "pvt_v2_b0", "-r", "64", "--by-module", "--counter", "torch", "--json"]) == 0
    tdoc = _json(capsys)
    assert tdoc["counter"] == "torch" and max(m["depth"] for m in tdoc["modules"]) == 2
    assert tdoc["modules"][0]["gflops"] == pytest.approx(count_flops_torch(model, 64).gflops, rel=1e-12)
    assert main(["flops", "pvt_v2_b0", "-r", "64", "--by-module", "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert "FLOPs per module" in out and "  stages.0 " in out and "patch_embed.proj" in out


def test_profile_times_every_module_in_scopes(capsys):
    assert main(["profile", "pvt_v2_b0", "-r", "64", "--depth", "1", "--iters", "2", "--json"]) == 0
    doc = _json(capsys)
    model = create_model("pvt_v2_b0", img_size=64)
    by_name = {m["name"]: m for m in doc["modules"]}
    assert set(by_name) >= {"", "patch_embed", "stages", "head"}
    assert {m["name"] for m in doc["modules"]} <= {""} | {n for n, _ in model.named_children()}
    whole = by_name[""]
    assert whole["calls"] == 1 and whole["share"] == 1.0 and whole["device_ms"] is None
    children = [m for m in doc["modules"] if m["depth"] == 1]
    # the children run inside the model's scope: their times add up to at most the whole
    assert 0 < sum(m["cpu_ms"] for m in children) <= whole["cpu_ms"] * 1.001
    assert by_name["stages"]["share"] > by_name["head"]["share"]
    assert main(["profile", "pvt_v2_b0", "-r", "64", "--iters", "1"]) == 0
    assert "time per module" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["flops", "pvt_v2_b0", "--counter", "ptflops"], "--counter must be one of fvcore, torch, both"),
        (["flops", "pvt_v2_b0", "--counter", "torch", "--detector"], "--detector needs --counter fvcore"),
        (["flops", "pvt_v2_b0", "--counter", "both", "--no-attention"], "--no-attention needs --counter"),
        (["flops", "pvt_v2_b0", "--by-module", "--counter", "both"], "--by-module counts a backbone"),
        (["flops", "pvt_v2_b0", "--by-module", "--depth", "-1"], "--depth must be >= 0"),
        (["profile", "pvt_v2_b0", "--iters", "0"], "--iters and --batch-size >= 1"),
        (["profile", "pvt_v2_b0", "--device", "tpu"], "--device must be cpu or cuda"),
        (["profile", "pvt_v2_b0", "-r", "99999"], "too large"),
        (["profile", "swin_tiny"], "did you mean"),
    ],
)
def test_bad_counter_options_are_one_line(argv, fragment, capsys):
    assert main(argv) == 2
    assert fragment in one_error_line(capsys)


SUITE = """\
name: eff
models: [pvt_v2_b0]
resolutions: [[64, 96]]
dtypes: [fp32, bf16]
device: cpu
counter: both
metrics: [params, flops, latency]
latency: {warmup: 0, iters: 2, min_iters: 1}
"""


@pytest.fixture(scope="module")
def eff_run(tmp_path_factory):
    calls = []

    def peak(device, dtype):
        calls.append((device, dtype))
        return 50.0 if dtype == "fp32" else 25.0

    mp = pytest.MonkeyPatch()
    mp.setattr(runner, "gemm_peak", peak)
    try:
        rd = RunDir(tmp_path_factory.mktemp("eff") / "run")
        runner.run_suite(parse_suite(SUITE, "eff.yaml"), rd)
    finally:
        mp.undo()
    return read_rows(rd.rows_path), calls, rd


def test_suite_counter_both_fills_both_columns(eff_run):
    rows, _, _ = eff_run
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    model = create_model("pvt_v2_b0", img_size=(64, 96)).eval()
    fv, tc = count_flops(model, (64, 96)).gflops, count_flops_torch(model, (64, 96)).gflops
    for r in rows:
        assert r["resolution"] == [64, 96] and r["flops_counter"] == "both"
        assert r["gflops"] == pytest.approx(fv, rel=1e-12)
        assert r["gflops_torch"] == pytest.approx(tc, rel=1e-12)
        diff = 100 * (r["gflops"] - r["gflops_torch"]) / r["gflops"]
        assert r["flops_counter_diff_pct"] == pytest.approx(diff) and 0 < diff < 2


def test_efficiency_is_achieved_over_one_gemm_peak_per_device_and_dtype(eff_run):
    rows, calls, _ = eff_run
    assert calls == [("cpu", "fp32"), ("cpu", "bf16")]  # once per (device, dtype), not per row
    for r in rows:
        achieved = r["gflops"] * r["batch_size"] / (r["latency_ms_median"] / 1000)
        assert r["achieved_gflops_s"] == pytest.approx(achieved, rel=1e-12)
        assert r["gemm_gflops_s"] == (50.0 if r["dtype"] == "fp32" else 25.0)
        assert r["efficiency"] == pytest.approx(achieved / r["gemm_gflops_s"], rel=1e-12)


def test_rows_record_which_kernels_ran(eff_run):
    rows, _, _ = eff_run
    n_sdpa = sum(1 for n, _ in create_model("pvt_v2_b0", img_size=64).named_modules() if n.endswith(".attn"))
    for r in rows:
        assert r["sdpa_backend"] == f"flash_cpu×{n_sdpa}" and n_sdpa == 8
        assert r["matmul_precision"] == torch.get_float32_matmul_precision()
        assert r["tf32"] is False and r["cudnn_benchmark"] is False and r["deterministic"] is False
        assert r["compile_mode"] == "eager"


def test_report_shows_efficiency_and_the_torch_count(eff_run):
    _, _, rd = eff_run
    titles = [s.title for s in report_sections(load_run(rd.path))]
    assert "Efficiency (% of the run's GEMM rate)" in titles
    assert "Achieved GFLOP/s (1 MAC = 1 FLOP)" in titles
    assert any(t.startswith("GFLOPs, torch counter") for t in titles)
    eff = next(s for s in report_sections(load_run(rd.path)) if s.title.startswith("Efficiency"))
    row = next(r for r in read_rows(rd.rows_path) if r["resolution"] == [64, 96] and r["dtype"] == "fp32")
    assert eff.table.loc[("pvt_v2_b0", "fp32"), "64x96"] == pytest.approx(100 * row["efficiency"])


def test_suite_counter_is_validated_and_the_default_keeps_old_digests():
    with pytest.raises(SuiteError, match=r"s.yaml:3: counter must be one of fvcore, torch, both"):
        parse_suite("models: [pvt_v2_b0]\nresolutions: [64]\ncounter: ptflops\n", "s.yaml")
    plain = parse_suite("models: [pvt_v2_b0]\nresolutions: [64]\n", "s.yaml")
    default = parse_suite("models: [pvt_v2_b0]\nresolutions: [64]\ncounter: fvcore\n", "s.yaml")
    torch_ = parse_suite("models: [pvt_v2_b0]\nresolutions: [64]\ncounter: torch\n", "s.yaml")
    assert plain.digest() == default.digest() != torch_.digest()
    assert [c.counter for c in torch_.cases()] == ["torch"]


def test_a_torch_counter_case_times_against_the_torch_count(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "gemm_peak", lambda device, dtype: 40.0)
    suite = parse_suite(SUITE.replace("counter: both", "counter: torch").replace("bf16", "fp16"), "e.yaml")
    case = next(c for c in suite.cases() if c.model == "pvt_v2_b0" and c.dtype == "fp32")
    row = runner.run_case(case)
    assert row.status == "ok" and row.gflops is None and row.flops_counter == "torch"
    assert row.achieved_gflops_s == pytest.approx(row.gflops_torch / (row.latency_ms_median / 1000))
    assert row.efficiency == pytest.approx(row.achieved_gflops_s / 40.0)


def test_collect_env_goes_into_the_run_environment(monkeypatch, tmp_path):
    from pacabench.measure.kernels import collect_env_text
    from pacabench.runs.folder import environment_record

    assert collect_env_text() is None  # PACABENCH_COLLECT_ENV=0 in the tests
    assert "collect_env" not in environment_record()
    monkeypatch.setenv("PACABENCH_COLLECT_ENV", "1")
    suite = tmp_path / "s.yaml"
    suite.write_text("name: env\nmodels: [pvt_v2_b0]\nresolutions: [64]\nmetrics: [params]\n")
    argv = [
        "run",
        str(suite),
        "--results-dir",
        str(tmp_path),
        "--run-id",
        "r",
        "--no-progress",
        "--no-report",
    ]
    assert main(argv) == 0
    env = json.loads((tmp_path / "env" / "r" / "environment.json").read_text())
    assert f"PyTorch version: {torch.__version__}" in env["collect_env"]
