"""The one-of-each helpers that replaced copies: the first line of an exception, HxW text, the
precision table and its torch dtypes, the out-of-memory check, the backbone-or-segmentor builder."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pacabench.analysis.stats import ExponentCI, RatioCI
from pacabench.errors import first_line
from pacabench.measure.capacity import search
from pacabench.measure.oom import is_oom
from pacabench.measure.precision import torch_dtype
from pacabench.spec.dtypes import AMP, DTYPES, TORCH_NAMES
from pacabench.spec.sizes import hw_text


def test_first_line_of_an_exception():
    assert first_line(ValueError("  bad value\n  at line 3\n")) == "bad value"
    assert first_line(RuntimeError("")) == "RuntimeError"
    assert first_line(MemoryError()) == "MemoryError"
    assert first_line(KeyError("k")) == "'k'"  # str() of a KeyError quotes the key


def test_hw_text_writes_both_sides():
    assert hw_text((512, 1024)) == "512x1024"
    assert hw_text([224, 224]) == "224x224"


def test_precision_table_maps_to_torch():
    assert {n: torch_dtype(n) for n in TORCH_NAMES} == {
        "fp32": torch.float32,
        "bf16": torch.bfloat16,
        "fp16": torch.float16,
    }
    assert set(DTYPES) == {*TORCH_NAMES, "amp"}
    assert AMP == {"cuda": "fp16", "cpu": "bf16"}
    with pytest.raises(KeyError):
        torch_dtype("fp64")


def test_precision_names_import_without_torch():
    code = "import sys, pacabench.spec.dtypes, pacabench.spec.sizes, pacabench.errors; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "exc,oom",
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (
            RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
            True,
        ),
        (MemoryError(), True),
        (RuntimeError("shape mismatch"), False),
        (ValueError("out of memory"), False),  # only an allocator's exception types count
    ],
)
def test_is_oom(exc, oom):
    assert is_oom(exc) is oom


def test_capacity_search_counts_a_cuda_oom_by_default():
    def probe(b):
        if b > 6:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return 1.0

    cap = search(probe, 1000.0, start=1, limit=64)
    assert cap.answer == 6 and cap.probe_at(7).status == "oom"
    assert cap.probe_at(7).error == "CUDA out of memory"


def test_interval_format_digits():
    assert RatioCI(0.5, 0.4, 0.6125, 0.95, 3, 3).format() == "0.500 [0.400, 0.613]"
    assert ExponentCI(1.234, 1.0, 1.5, 0.95).format() == "1.23 [1.00, 1.50]"
    assert ExponentCI(1.234, 1.0, 1.5, 0.95).format(3) == "1.234 [1.000, 1.500]"


def test_model_or_segmentor():
    from pacabench.models import create_model
    from pacabench.models.segmentation import create_model_or_segmentor, create_segmentor

    torch.manual_seed(0)
    bb = create_model_or_segmentor("pvt_v2_b0", img_size=64)
    assert list(bb.state_dict()) == list(create_model("pvt_v2_b0", img_size=64).state_dict())
    seg = create_model_or_segmentor("pvt_v2_b0", "upernet", img_size=64, clusters=None)
    ref = create_segmentor("pvt_v2_b0", "upernet", img_size=64)
    assert seg.name == ref.name and list(seg.state_dict()) == list(ref.state_dict())
