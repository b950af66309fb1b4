"""Latency modes (suite ``latency: {mode: eager | cuda_graph | compiled}``), on the CPU: parsing, case
keys and digests, the CLI override, and the rows a CPU run writes (``cuda_graph``: skipped;
``compiled``: timed after the compile). The GPU side is in tests/test_gpu_cuda.py (``-m cuda``)."""

from __future__ import annotations

import pytest
import torch

from pacabench.cli import main
from pacabench.errors import UsageError
from pacabench.measure import modes
from pacabench.runs.results import Row, row_key
from pacabench.runs.runner import run_case
from pacabench.spec.casekey import CaseKey
from pacabench.spec.suite import SuiteError, parse_suite, with_latency_mode
from tests.test_cli_bad_paths import one_error_line

BASE = (
    "name: m\nmodels: [pvt_v2_b0]\nresolutions: [64]\ndevice: cpu\nthreads: 1\nmetrics: [params, latency]\n"
)
TIMING = "warmup: 1, iters: 4, min_iters: 2"


def _suite(latency: str = ""):
    return parse_suite(BASE + (f"latency: {{{latency}}}\n" if latency else ""), "m.yaml")


def test_no_mode_keeps_keys_and_digest_and_names_the_mode_otherwise():
    plain, eager = _suite(TIMING), _suite(TIMING + ", mode: eager")
    graph, comp = (
        _suite(TIMING + ", mode: cuda_graph"),
        _suite(TIMING + ", mode: compiled, compile_mode: max-autotune"),
    )
    assert str(plain.cases()[0].key) == "cost|pvt_v2_b0|64x64|1|fp32|cpu|0|0"  # as before modes existed
    assert str(eager.cases()[0].key) == str(plain.cases()[0].key)
    assert str(graph.cases()[0].key) == "cost|pvt_v2_b0|64x64|1|fp32|cpu|0|0|lat=cuda_graph"
    assert str(comp.cases()[0].key) == "cost|pvt_v2_b0|64x64|1|fp32|cpu|0|0|lat=compiled(max-autotune)"
    assert len({plain.digest(), graph.digest(), comp.digest()}) == 3
    assert comp.cases()[0].key.label().endswith("compiled(max-autotune)")


def test_per_device_mode_and_the_mode_applies_to_timed_inference_cases_only():
    s = _suite("cuda: {mode: cuda_graph}, cpu: {mode: compiled}")
    assert s.cases("cuda")[0].latency_mode == "cuda_graph" and s.cases("cpu")[0].latency_mode == "compiled"
    no_latency = parse_suite(
        BASE.replace("[params, latency]", "[params]") + "latency: {mode: compiled}\n", "m.yaml"
    )
    assert no_latency.cases()[0].latency_mode == "eager" and "lat=" not in str(no_latency.cases()[0].key)


def test_a_row_and_its_case_share_the_key_and_old_rows_read_as_eager():
    case = _suite("mode: compiled, compile_mode: reduce-overhead").cases()[0]
    fields = case.key.row_fields()
    assert fields["latency_mode"] == "compiled" and fields["latency_compile_mode"] == "reduce-overhead"
    assert row_key(Row(**fields)) == case.key
    old = {"model": "pvt_v2_b0", "resolution": [64, 64], "device": "cpu"}  # a row from before modes
    assert CaseKey.from_row(old).latency_mode == "eager" and "lat=" not in str(CaseKey.from_row(old))
    # a compiled row without its compile mode is torch.compile's default
    assert CaseKey.from_row({**old, "latency_mode": "compiled"}).latency_compile_mode == "default"


@pytest.mark.parametrize(
    "latency,fragment",
    [
        ("mode: graph", "m.yaml:7: latency mode must be one of eager, cuda_graph, compiled, got 'graph'"),
        ("compile_mode: fast", "latency compile_mode must be one of default, reduce-overhead,"),
        ("cuda: {mode: 3}", "latency mode must be one of eager"),
        ("retry_unstable: 1", "latency retry_unstable must be true or false"),
    ],
)
def test_bad_mode_values_are_one_line_with_the_line(latency, fragment):
    with pytest.raises(SuiteError) as e:
        _suite(latency)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_compile_true_and_a_latency_mode_are_refused():
    with pytest.raises(SuiteError, match="compile: true compiles the model"):
        parse_suite(BASE + "compile: true\nlatency: {cuda: {mode: cuda_graph}}\n", "m.yaml")


def test_override_sets_every_device_and_eager_restores_the_digest():
    s = _suite(TIMING + ", cuda: {mode: compiled}")
    graph = with_latency_mode(s, "cuda_graph")
    assert graph.latency_for("cuda").mode == graph.latency_for("cpu").mode == "cuda_graph"
    plain = _suite(TIMING + ", cuda: {}")
    assert with_latency_mode(s, "eager").digest() == plain.digest()
    comp = with_latency_mode(_suite(TIMING), "compiled", "max-autotune-no-cudagraphs")
    assert comp.latency_for("cpu").compile_mode == "max-autotune-no-cudagraphs"
    with pytest.raises(UsageError, match="--latency-mode must be one of eager, cuda_graph, compiled"):
        with_latency_mode(s, "graphs")


def test_cli_refuses_a_bad_latency_mode(tmp_path, capsys):
    path = tmp_path / "m.yaml"
    path.write_text(BASE)
    assert main(["run", str(path), "--latency-mode", "fast", "--results-dir", str(tmp_path / "r")]) == 2
    assert "--latency-mode must be one of eager, cuda_graph, compiled, got 'fast'" in one_error_line(capsys)
    assert not (tmp_path / "r").exists()


def test_cuda_graph_on_a_cpu_is_a_skipped_row_saying_why():
    row = run_case(_suite(TIMING + ", mode: cuda_graph").cases()[0])
    assert row.status == "skipped" and row.error == "cuda_graph needs a CUDA device"
    assert row.latency_mode == "cuda_graph" and row.latency_ms_median is None
    assert row.params == sum(p.numel() for p in _model().parameters())  # the rest is still measured


def _model():
    from pacabench.models import create_model

    return create_model("pvt_v2_b0", img_size=64)


def test_a_compiler_that_fails_makes_a_skipped_row(monkeypatch):
    def broken(model, mode=None):
        raise RuntimeError("InductorError: CppCompileError: C++ compile error\nmore detail")

    monkeypatch.setattr(torch, "compile", broken)
    row = run_case(_suite(TIMING + ", mode: compiled").cases()[0])
    assert row.status == "skipped"
    assert (
        row.error
        == "torch.compile(mode=default) failed: RuntimeError: InductorError: CppCompileError: C++ compile error"
    )


def test_compiled_forward_compiles_before_timing(monkeypatch):
    """The compile happens in ``compiled_forward`` (its first call), never inside the timed loop."""
    calls = []

    def fake_compile(model, mode=None):
        calls.append(("compile", mode))
        return lambda x: calls.append("call") or model(x)

    monkeypatch.setattr(torch, "compile", fake_compile)
    lin = torch.nn.Linear(3, 2)
    fn = modes.compiled_forward(lin, lambda m: m(torch.ones(1, 3)), "max-autotune")
    assert calls == [("compile", "max-autotune"), "call"]  # compiled and run once, before any timing
    fn()
    assert calls[-1] == "call" and len(calls) == 3


@pytest.mark.slow
def test_compiled_mode_runs_on_the_cpu():
    """Inductor compiles pvt_v2_b0 at 64² on this CPU (about 2 minutes on 2 busy cores): an ok row,
    timed after the compile, agreeing with an eager row of the same model within a factor of 3."""
    row = run_case(_suite(TIMING + ", mode: compiled").cases()[0])
    assert row.status == "ok", row.error
    assert row.latency_mode == "compiled" and row.compile_mode == "default"
    assert row.latency_iters >= 2 and len(row.latency_ms_samples) == row.latency_iters
    eager = run_case(_suite(TIMING).cases()[0])
    assert 1 / 3 < row.latency_ms_median / eager.latency_ms_median < 3


def test_the_gpu_modes_suite_is_the_planned_grid():
    """Four tiny models × 512²/1024² × batch 1/8, fp32 on CUDA, unstable cases retried; the run
    script picks the mode, so the file itself is eager (its keys those of any eager run)."""
    from pathlib import Path

    from pacabench.spec.suite import load_suite

    suite = load_suite(Path(__file__).resolve().parent.parent / "suites" / "gpu_modes.yaml")
    cases = suite.cases("cuda")
    assert {c.model for c in cases} == {
        "pacavit_tiny_p2cconv_100_0", "swin_tiny_patch4_window7_224", "pvt_tiny", "pvt_v2_b1",
    }  # fmt: skip
    assert len(cases) == 4 * 2 * 2 and {c.resolution[0] for c in cases} == {512, 1024}
    assert {c.batch_size for c in cases} == {1, 8} and {c.dtype for c in cases} == {"fp32"}
    assert all(c.latency.retry_unstable and c.latency_mode == "eager" for c in cases)
    graph = with_latency_mode(suite, "cuda_graph").cases("cuda")
    assert all(str(c.key).endswith("|lat=cuda_graph") for c in graph)
