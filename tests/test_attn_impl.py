"""``attn_impl``: every family computes the same function with its attention fused (SDPA, the
default) or materialised (explicit: the authors' PaCa-ViT/PVT code, timm's unfused path)."""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from pacabench.models import create_model, set_attn_impl
from pacabench.runs.runner import run_case
from pacabench.spec.suite import Case, LatencySettings


class _SoftmaxShapes(TorchFunctionMode):
    """Records the output shape of every softmax called under it."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "__name__", "") == "softmax" and isinstance(out, torch.Tensor):
            self.shapes.append(tuple(out.shape))
        return out


# PaCa-ViT in float64 is the slowest (25 s on a loaded 2-core CPU): slow here, its fused == explicit
# is test_paca_vit's test_fast_path_equals_explicit_reference[TINY] in the default tier
MODELS = [
    pytest.param("pacavit_tiny_p2cconv_100_0", marks=pytest.mark.slow),
    "pvt_tiny",
    "swin_tiny_patch4_window7_224",
    "pvt_v2_b0",
]


@pytest.mark.parametrize("name", MODELS)
def test_explicit_attention_equals_fused(name):
    torch.manual_seed(0)
    fused = create_model(name, img_size=64).double()
    explicit = create_model(name, img_size=64, attn_impl="explicit").double()
    explicit.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        a, b = fused(x), explicit(x)
    assert torch.allclose(a, b, atol=1e-10, rtol=1e-10)
    # every attention module was switched (and can be switched back)
    assert set_attn_impl(explicit, "sdpa") == set_attn_impl(fused, "sdpa") > 0


def test_explicit_attention_materialises_the_map():
    """PVT-Tiny at 128², stage 1: N = 32² tokens, M = 4² keys (R = 8), one head: the explicit
    path allocates the B×1×N×M map, which the fused path never holds."""
    name = "pvt_tiny"
    seen = {}
    for impl in ("sdpa", "explicit"):
        m = create_model(name, img_size=128, attn_impl=impl)
        with torch.no_grad(), _SoftmaxShapes() as mode:
            m(torch.randn(1, 3, 128, 128))
        seen[impl] = mode.shapes
    assert seen["sdpa"] == []
    assert (1, 1, 32 * 32, 4 * 4) in seen["explicit"]


def test_bad_attn_impl():
    with pytest.raises(ValueError, match="attn_impl"):
        create_model("pvt_tiny", attn_impl="flash")


def test_row_records_which_implementation_ran():
    case = Case(
        suite="t",
        model="pvt_tiny",
        resolution=(64, 64),
        batch_size=1,
        dtype="fp32",
        device="cpu",
        channels_last=False,
        compile=False,
        metrics=("params",),
        latency=LatencySettings(),
        kwargs={"attn_impl": "explicit"},
    )
    row = run_case(case)
    assert row.status == "ok" and row.attn_impl == "explicit" and row.kwargs == {"attn_impl": "explicit"}
    plain = run_case(Case(**{**case.__dict__, "kwargs": {}}))
    assert plain.attn_impl == "sdpa" and plain.kwargs is None
