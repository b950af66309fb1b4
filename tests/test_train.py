"""Train step: memory split, peak vs inference, gradient checkpointing (identical gradients)."""

from __future__ import annotations

import pytest
import torch

from pacabench.measure.memory import MB, measure_peak_memory, resident_bytes
from pacabench.measure.train import TrainStep, measure_train, set_grad_checkpointing, state_bytes, train_peak
from pacabench.models import create_model


def _n_param_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def test_train_peak_exceeds_inference_peak_and_state_split_is_exact():
    torch.manual_seed(0)
    model = create_model("pvt_v2_b0", img_size=64)
    x = torch.randn(2, 3, 64, 64)

    def forward():
        with torch.inference_mode():
            return model(x)

    inf = measure_peak_memory(forward, resident=resident_bytes(model, x))
    rec = measure_train(TrainStep(model, x), iters=2, min_iters=1, warmup=1)
    assert rec.peak_mb > inf.peak_mb
    # independent count: fp32 weights, one gradient each, AdamW's exp_avg + exp_avg_sq (+ a step scalar each)
    p_bytes = _n_param_bytes(model)
    n_params = len(list(model.parameters()))
    assert rec.grads_mb * MB == p_bytes
    assert rec.optimizer_mb * MB == 2 * p_bytes + n_params * 4
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert rec.params_mb * MB == p_bytes + buffers
    # the peak holds at least weights, gradients and moments; the rest is activations
    assert rec.peak_mb > rec.state_mb
    assert rec.activation_mb == pytest.approx(rec.peak_mb - rec.state_mb - rec.input_mb)
    assert rec.latency is not None and rec.latency.iters >= 1
    assert rec.throughput_img_s == pytest.approx(2 / (rec.median_ms / 1000.0))


def test_state_bytes_before_any_step_has_no_grads_or_moments():
    model = torch.nn.Linear(10, 4)
    opt = torch.optim.AdamW(model.parameters())
    st = state_bytes(model, opt)
    assert (st.params, st.grads, st.optimizer) == (44 * 4, 0, 0)


def test_fp16_step_uses_a_grad_scaler_and_bf16_does_not():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5))
    x = torch.randn(2, 3, 8, 8)
    assert TrainStep(model, x, dtype="fp16").scaler.is_enabled()
    step = TrainStep(model, x, dtype="bf16")
    assert not step.scaler.is_enabled()
    before = model[1].weight.detach().clone()
    step()
    assert not torch.equal(before, model[1].weight)  # the optimizer really stepped


# narrow versions of the two families (same code paths, a fraction of the weights): on a CPU the
# activations then dominate the step, as they do for the full models at detection sizes
SMALL = {
    "pacavit_tiny_p2cconv_100_0": dict(
        embed_dims=(16, 32, 64, 64), num_heads=(1, 2, 4, 4), clusters=(8, 8, 8, 0)
    ),
    "pvt_tiny": dict(embed_dims=(16, 32, 64, 64), num_heads=(1, 2, 4, 4)),
}


def _small(name: str, size: int, **kw) -> torch.nn.Module:
    return create_model(name, img_size=size, num_classes=10, drop_path_rate=0.0, **SMALL[name], **kw)


def _grads(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    out = model(x)
    loss = sum(t.pow(2).mean() for t in (out if isinstance(out, list) else [out]))
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", ["pacavit_tiny_p2cconv_100_0", "pvt_tiny"])
def test_grad_checkpointing_gives_identical_gradients_float64(name):
    torch.manual_seed(0)
    model = _small(name, 64).double().train()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    plain = _grads(model, x)
    set_grad_checkpointing(model, True)
    assert model.grad_checkpointing
    ckpt = _grads(model, x)
    assert plain.keys() == ckpt.keys() and len(plain) == len(list(model.parameters()))
    for n in plain:
        torch.testing.assert_close(ckpt[n], plain[n], rtol=1e-12, atol=1e-14, msg=n)


# PaCa-T's checkpointing: identical gradients above (default tier); its memory effect is slow
@pytest.mark.parametrize(
    "name", [pytest.param("pacavit_tiny_p2cconv_100_0", marks=pytest.mark.slow), "pvt_tiny"]
)
def test_grad_checkpointing_lowers_activation_memory(name):
    x = torch.randn(2, 3, 128, 128)

    def peak(enable: bool):
        torch.manual_seed(0)
        model = _small(name, 128)
        set_grad_checkpointing(model, enable)
        step = TrainStep(model, x)
        step()
        return train_peak(step)

    plain, ckpt = peak(False), peak(True)
    assert ckpt.grad_checkpointing and not plain.grad_checkpointing
    assert ckpt.state_mb == plain.state_mb
    assert ckpt.activation_mb < 0.7 * plain.activation_mb


def test_set_grad_checkpointing_refuses_a_model_without_it():
    with pytest.raises(ValueError, match="no set_grad_checkpointing"):
        set_grad_checkpointing(torch.nn.Linear(2, 2))


# --- suite axis, case key, runner -------------------------------------------------------------

SUITE = """
name: trainmode
models: [pvt_v2_b0]
resolutions: [64]
batch_sizes: [2]
device: cpu
metrics: [params, latency, memory]
modes: [inference, train]
latency: {warmup: 1, iters: 2, min_iters: 1}
"""


def test_modes_axis_keys_and_stability():
    from pacabench.spec.casekey import CaseKey
    from pacabench.spec.suite import load_suite, parse_suite

    cases = parse_suite(SUITE).cases()
    assert [c.mode for c in cases] == ["inference", "train"]
    assert cases[1].describe() == "pvt_v2_b0 64x64 b2 fp32 train"
    inf, train = (c.key for c in cases)
    assert inf != train
    # an inference key is what it was before modes existed: old rows and baselines still join
    assert str(inf) == "cost|pvt_v2_b0|64x64|2|fp32|cpu|0|0"
    assert CaseKey.from_row({"model": "pvt_v2_b0", "resolution": [64, 64], "batch_size": 2}) == inf
    assert str(train) == "cost|pvt_v2_b0|64x64|2|fp32|cpu|0|0|mode=train"
    gc = parse_suite(SUITE + "grad_checkpointing: true\n").cases()
    assert [c.grad_checkpointing for c in gc] == [False, True]
    assert str(gc[1].key).endswith("|mode=train+gc") and gc[0].key == inf
    # a suite without the new keys keeps its digest (runs started before can resume)
    digest = "02447e6444d62e6ea4eb11ec3bdf6daa483cfd90bed3f6eeee4373c8b425e6a5"
    assert load_suite("suites/smoke.yaml").digest() == digest


@pytest.mark.parametrize(
    ("extra", "line", "msg"),
    [
        ("modes: [fly]\n", 9, "mode must be one of inference, train"),
        ("modes: []\n", 9, "modes must be a non-empty list"),
        ("modes: [inference]\ngrad_checkpointing: true\n", 10, "grad_checkpointing needs 'train'"),
        ("capacity: {memory: lots}\n", 9, "memory must be a positive size"),
        ("capacity: {memory: 4GiB, limt: 4}\n", 9, "unknown capacity key 'limt'"),
    ],
)
def test_suite_refuses_bad_modes_and_capacity(extra, line, msg):
    from pacabench.spec.suite import SuiteError, parse_suite

    text = SUITE.replace("modes: [inference, train]\n", "")
    with pytest.raises(SuiteError) as e:
        parse_suite(text + extra, "s.yaml")
    assert str(e.value).startswith(f"s.yaml:{line}:") and msg in str(e.value)


def test_capacity_metric_needs_a_budget():
    from pacabench.spec.suite import SuiteError, parse_suite

    with pytest.raises(SuiteError, match="needs a budget"):
        parse_suite(SUITE.replace("metrics: [params, latency, memory]", "metrics: [capacity]"))


def test_run_case_train_row_beside_inference_row():
    from pacabench.runs.runner import run_case
    from pacabench.spec.suite import parse_suite

    inf_case, train_case = parse_suite(SUITE).cases()
    inf, train = run_case(inf_case), run_case(train_case)
    assert (inf.status, train.status) == ("ok", "ok"), (inf.error, train.error)
    assert (inf.mode, train.mode) == ("inference", "train")
    assert train.case_id.endswith("|mode=train")
    assert train.latency_ms_median is None and train.peak_mem_mb is None  # inference columns stay empty
    assert inf.train_ms_median is None and inf.train_peak_mb is None
    assert train.train_peak_mb > inf.peak_mem_mb
    assert train.train_ms_median > 0 and len(train.train_ms_samples) >= 1
    assert train.train_img_s == pytest.approx(2 / (train.train_ms_median / 1000))
    model = create_model("pvt_v2_b0", img_size=64)
    p_mb = _n_param_bytes(model) / MB
    # weights (+ buffers) + one gradient each + AdamW's two moments ≈ 4 × weights
    assert train.train_state_mb == pytest.approx(4 * p_mb, rel=0.01)
    assert train.train_activation_mb == pytest.approx(
        train.train_peak_mb - train.train_state_mb - 2 * 3 * 64 * 64 * 4 / MB
    )


@pytest.mark.slow  # a second real search; the default tier's is test_capacity's real CPU run
def test_run_case_capacity_metric():
    from pacabench.runs.runner import run_case
    from pacabench.spec.suite import parse_suite

    text = SUITE.replace("metrics: [params, latency, memory]", "metrics: [capacity]")
    text = text.replace(
        "modes: [inference, train]", "modes: [inference]\ncapacity: {memory: 20MiB, limit: 512}"
    )
    text = text.replace("resolutions: [64]", "resolutions: [64, 96]")
    (case,) = parse_suite(text).cases()  # once per model × batch × dtype × mode, from the first size
    assert case.resolution == (64, 64) and case.capacity == {"memory": 20 * 2**20, "limit": 512}
    row = run_case(case)
    assert row.status == "ok", row.error
    ans = row.capacity_resolution
    assert ans is not None and ans % 32 == 0 and 64 <= ans < 512
    assert row.capacity_peak_mb <= 20.0 and row.capacity_budget_mb == 20.0
    probes = {p[0]: p for p in row.capacity_probes}
    assert probes[ans][2] == "ok" and probes[ans + 32][2] in ("over", "oom")


def test_batch_decay_records_the_batch_used_and_never_joins_an_undecayed_row(monkeypatch):
    """A planted OOM above batch 24: batch 64 decays 64 → 48 → 32 → 24 (timm's steps)."""
    from dataclasses import replace

    from pacabench.runs import runner
    from pacabench.spec.casekey import CaseKey
    from pacabench.spec.suite import parse_suite

    tried = []

    def fake_once(case, state):
        tried.append(case.batch_size)
        row = runner._base_row(case)
        row.status = "oom" if case.batch_size > 24 else "ok"
        row.latency_ms_median = 1.0 * case.batch_size
        return row

    monkeypatch.setattr(runner, "_run_case_once", fake_once)
    text = SUITE.replace("batch_sizes: [2]", "batch_sizes: [64]").replace(
        "modes: [inference, train]", "batch_decay: true"
    )
    (case,) = parse_suite(text).cases()
    row = runner.run_case(case)
    assert tried == [64, 48, 32, 24]
    assert (row.status, row.batch_size, row.batch_size_used, row.batch_decay) == ("ok", 64, 24, True)
    key = CaseKey.from_row(row.to_dict())
    assert row.case_id == str(key) and row.case_id.endswith("|decayed=24")
    assert key != case.key and key.requested() == case.key  # resume: done; compare: no join
    undecayed = CaseKey.from_row({**row.to_dict(), "batch_size_used": 64})
    assert undecayed == case.key
    # nothing fits down to batch 1: an oom row, no batch recorded
    monkeypatch.setattr(runner, "_run_case_once", lambda c, s: _oom_row(runner._base_row(c)))
    row = runner.run_case(replace(case, batch_size=3))
    assert row.status == "oom" and row.batch_size_used is None and row.batch_size == 3


def _oom_row(row):
    row.status = "oom"
    return row


def test_resume_finds_a_decayed_case_done(tmp_path, monkeypatch):
    from pacabench.runs import runner
    from pacabench.runs.folder import RunDir
    from pacabench.spec.suite import parse_suite

    def fake_once(case, state):
        row = runner._base_row(case)
        row.status = "oom" if case.batch_size > 4 else "ok"
        return row

    monkeypatch.setattr(runner, "_run_case_once", fake_once)
    text = SUITE.replace("batch_sizes: [2]", "batch_sizes: [8]").replace(
        "modes: [inference, train]", "batch_decay: true"
    )
    suite = parse_suite(text)
    run_dir = RunDir(tmp_path / "run")
    run_dir.path.mkdir()
    first = runner.run_suite(suite, run_dir, isolate=False)
    assert [r.batch_size_used for r in first.rows] == [4]
    again = runner.run_suite(suite, run_dir, isolate=False)
    assert again.rows == [] and again.skipped_done == 1


def test_paper_throughput_suite_protocol_per_device():
    from pacabench.spec.suite import load_suite

    suite = load_suite("suites/paper_throughput.yaml")
    gpu, cpu = suite.cases("cuda"), suite.cases("cpu")
    assert {(c.batch_size, c.dtype) for c in gpu} == {(64, "fp16"), (128, "fp16")}
    assert {(c.batch_size, c.dtype) for c in cpu} == {(1, "bf16")}  # reduced on a CPU
    assert all(
        c.channels_last and c.batch_decay and c.mode == "inference" and c.resolution == (224, 224)
        for c in gpu + cpu
    )
    assert (gpu[0].latency.warmup, gpu[0].latency.iters) == (50, 30)
    assert (cpu[0].latency.warmup, cpu[0].latency.iters) == (1, 2)


@pytest.mark.parametrize(
    ("value", "msg"),
    [
        ("{cpu: [8]}", "needs both cpu and cuda"),
        ("{cpu: [8], tpu: [1]}", "cpu and cuda only"),
        ("{cpu: [0], cuda: [1]}", "batch_sizes.cpu must be positive"),
    ],
)
def test_per_device_batch_sizes_refused(value, msg):
    from pacabench.spec.suite import SuiteError, parse_suite

    with pytest.raises(SuiteError, match=msg):
        parse_suite(SUITE.replace("batch_sizes: [2]", f"batch_sizes: {value}"))


def test_report_sections_train_side_by_side_capacity_and_fits():
    import pandas as pd

    from pacabench.reports.sections import report_sections
    from pacabench.reports.train import CAPACITY_TITLE, TRAIN_TITLE

    base = {"task": "cost", "status": "ok", "batch_size": 1, "dtype": "fp32", "device": "cpu"}
    rows = []
    for r, scale in ((224, 1.0), (448, 4.0)):  # 4× the tokens
        res = [r, r]
        rows.append({**base, "model": "A", "resolution": res, "mode": "inference",
                     "latency_ms_median": 10.0 * scale, "peak_mem_mb": 50.0 * scale})  # fmt: skip
        rows.append({**base, "model": "A", "resolution": res, "mode": "train", "train_ms_median": 30.0 * scale,
                     "train_peak_mb": 100.0 + 200.0 * scale, "train_state_mb": 100.0,
                     "train_activation_mb": 200.0 * scale})  # fmt: skip
    rows.append({**base, "model": "A", "resolution": [64, 64], "mode": "train", "capacity_resolution": 1376,
                 "capacity_peak_mb": 4013.6, "capacity_budget_mb": 4096.0, "capacity_capped": False})  # fmt: skip
    secs = {s.title: s.table for s in report_sections(pd.DataFrame(rows))}
    tv = secs[TRAIN_TITLE]
    assert tv.loc[("A", "448"), "train / inference"] == pytest.approx(3.0)
    assert (
        tv.loc[("A", "224"), "activations"] == 200.0 and tv.loc[("A", "224"), "weights+grads+AdamW"] == 100.0
    )
    assert tv.loc[("A", "448"), "inference peak"] == 200.0
    cap = secs[CAPACITY_TITLE]
    assert cap.loc[("A", "train", 1, "fp32"), "largest resolution"] == 1376
    sc = next(t for k, t in secs.items() if k.startswith("Complexity scaling"))
    assert sc.loc[("A", "train"), "train_latency_exp"] == pytest.approx(1.0)  # 4× tokens, 4× time
    assert sc.loc[("A", "inference"), "latency_exp"] == pytest.approx(1.0)
