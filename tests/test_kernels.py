"""measure.kernels: which attention kernel ran, the numerics settings, the machine's GEMM rate."""

from __future__ import annotations

import pytest
import torch

from pacabench.measure.kernels import achieved_gmacs_per_s, gemm_rate, numerics, sdpa_backends
from pacabench.models import create_model

pytestmark = pytest.mark.real_gemm  # the calibration itself, not the conftest's 256³ stand-in


def _forward(model, res=64):
    x = torch.randn(1, 3, res, res)

    def fn():
        with torch.no_grad():
            return model(x)

    return fn


def test_every_attention_call_is_recorded_with_its_backend():
    """PVT-Tiny has 8 attention layers (depths 2-2-2-2), each one SDPA call; explicit: none."""
    fused = create_model("pvt_tiny", img_size=64)
    got = sdpa_backends(_forward(fused))
    assert sum(got.values()) == 8
    assert set(got) <= {"flash", "math"}  # CPU: the CPU flash kernel, or math for odd shapes
    explicit = create_model("pvt_tiny", img_size=64, attn_impl="explicit")
    assert sdpa_backends(_forward(explicit)) == {}


def test_the_dispatcher_choice_is_per_call():
    """On the CPU, values with another head size than the keys, or dropout, leave the flash
    kernel for the math path; plain attention takes flash. Each call is counted once."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    q, v6 = torch.randn(1, 2, 10, 8), torch.randn(1, 2, 10, 6)

    def calls():
        sdpa(q, q, q)
        sdpa(q, q, v6)
        sdpa(q, q, q, dropout_p=0.5)

    assert sdpa_backends(calls) == {"flash": 1, "math": 2}


def test_numerics_reports_the_current_settings():
    prev = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        assert numerics()["float32_matmul_precision"] == "high"
    finally:
        torch.set_float32_matmul_precision(prev)
    assert set(numerics()) >= {"cudnn_benchmark", "deterministic", "cuda_matmul_allow_tf32"}


def test_gemm_rate_is_n_cubed_over_the_median_time():
    rec = gemm_rate("cpu", "fp32", n=256, iters=5)
    assert rec.n == 256 and rec.device == "cpu"
    assert rec.gmacs_per_s == pytest.approx(256**3 / (rec.median_ms / 1000) / 1e9)
    assert achieved_gmacs_per_s(3.0, 8, 24.0) == pytest.approx(1000.0)
    with pytest.raises(ValueError):
        gemm_rate("cpu", "int8")
