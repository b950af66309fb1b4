"""Per-module FLOPs and time: the parts add up to the whole."""

from __future__ import annotations

import pytest
import torch

from pacabench.measure.flops import count_flops
from pacabench.measure.modules import flops_by_module, time_by_module
from pacabench.models import create_model


# PaCa-T is slow here: the same sums over another family
@pytest.mark.parametrize(
    "name", ["pvt_tiny", pytest.param("pacavit_tiny_p2cconv_100_0", marks=pytest.mark.slow)]
)
def test_children_add_up_to_the_model(name):
    model = create_model(name, img_size=64)
    rows = flops_by_module(model, 64, depth=1)
    whole = rows[0]
    assert whole.name == "" and whole.depth == 0 and whole.share == 1.0
    assert whole.gflops == pytest.approx(count_flops(model, (64, 64)).gflops, rel=1e-12)
    assert whole.params == sum(p.numel() for p in model.parameters())
    children = [r for r in rows if r.depth == 1]
    # ops the model runs itself, outside any child (PVT: resizing its position embeddings), are
    # in the whole and no child: a small remainder, never a negative one
    rest = whole.gflops - sum(r.gflops for r in children)
    assert -1e-12 <= rest <= 1e-3 * whole.gflops
    own = sum(p.numel() for p in model.parameters(recurse=False))  # PVT: pos_embed, cls_token
    assert sum(r.params for r in children) + own == whole.params


def test_depth_two_splits_a_stage_into_its_blocks():
    """PVT-Tiny's stage-1 blocks (block1.0, block1.1) add up to block1, attention is counted."""
    model = create_model("pvt_tiny", img_size=128)
    rows = {r.name: r for r in flops_by_module(model, 128, depth=3)}
    blocks = [rows["block1.0"], rows["block1.1"]]
    assert sum(r.gflops for r in blocks) == pytest.approx(rows["block1"].gflops, rel=1e-9)
    attn, mlp = rows["block1.0.attn"], rows["block1.0.mlp"]
    assert attn.gflops > 0 and mlp.gflops > 0
    assert rows["block1.0"].gflops >= attn.gflops + mlp.gflops


def test_time_by_module_covers_every_child_once_per_forward():
    model = create_model("pvt_v2_b0", img_size=64).eval()
    times = time_by_module(model, torch.randn(1, 3, 64, 64), depth=1, iters=2)
    names = [t.name for t in times]
    assert names[0] == "" and set(names[1:]) <= {n for n, _ in model.named_children()}
    assert all(t.calls >= 1 and t.cpu_ms >= 0 and t.device_ms is None for t in times)
    whole, parts = times[0], times[1:]
    assert whole.calls == 1 and sum(t.cpu_ms for t in parts) <= whole.cpu_ms * 1.01
    with pytest.raises(ValueError):
        flops_by_module(model, 64, depth=-1)


def test_torch_counter_per_module_is_fvcore_without_its_norm_layers():
    """Module by module, torch's counter (fake tensors) reads fvcore's count less the
    normalisation ops fvcore counts inside that module (fvcore's by_module_and_operator)."""
    from pacabench.measure.flops import flop_count_analysis

    model = create_model("pvt_v2_b0", img_size=64).eval()
    tc = {r.name: r for r in flops_by_module(model, 64, depth=3, counter="torch")}
    fca = flop_count_analysis(model, (torch.zeros(1, 3, 64, 64),))
    with torch.no_grad():
        per = fca.by_module_and_operator()
    assert len(tc) > 10 and tc[""].share == 1.0
    for name, row in tc.items():
        ops = per.get(name, {})
        expect = (sum(ops.values()) - ops.get("layer_norm", 0) - ops.get("batch_norm", 0)) / 1e9
        assert row.gflops == pytest.approx(expect, rel=1e-9, abs=1e-15), name
    with pytest.raises(ValueError):
        flops_by_module(model, 64, counter="both")
