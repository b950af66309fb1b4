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


@pytest.mark.parametrize("name", ["pacavit_tiny_p2cconv_100_0", "pvt_tiny"])
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
