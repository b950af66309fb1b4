"""The CUDA paths, proven on a GPU: ``pytest -m cuda`` (every test here is skipped without one).

Each test compares against something independent of the code under test: torch.utils.benchmark's
timer, the bytes of a known allocation, the FLOPs traced on the CPU, the CPU evaluation of the
same data. ``benchmarks/gpu/run.sh`` runs them first on a lent GPU machine.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pacabench.measure.flops import count_flops
from pacabench.measure.latency import measure_latency
from pacabench.measure.memory import measure_peak_memory
from pacabench.models import create_model
from pacabench.runs.runner import run_case
from pacabench.spec.suite import Case, LatencySettings

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

MiB = 1 << 20
GiB = 1 << 30
REPO = Path(__file__).resolve().parent.parent


def _case(model: str, res: int, batch: int = 1, dtype: str = "fp32", **kw) -> Case:
    return Case(
        suite="cuda-test",
        model=model,
        resolution=(res, res),
        batch_size=batch,
        dtype=dtype,
        device="cuda",
        channels_last=kw.pop("channels_last", False),
        compile=False,
        metrics=kw.pop("metrics", ("params", "flops", "latency", "memory")),
        latency=LatencySettings(warmup=3, iters=20, min_iters=5, time_budget_s=2.0),
        **kw,
    )


@pytest.fixture(autouse=True)
def _release_cuda_memory():
    yield
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def test_cuda_event_latency_agrees_with_torch_utils_benchmark():
    """Our CUDA-event median is within 5% of torch.utils.benchmark's on the same model and input."""
    from torch.utils import benchmark

    model = create_model("swin_tiny_patch4_window7_224").cuda().eval()
    x = torch.randn(32, 3, 224, 224, device="cuda")

    def forward():
        with torch.inference_mode():
            return model(x)

    for _ in range(10):  # clocks up, kernels chosen
        forward()
    # interleave: ours, theirs, ours — a clock drift between them shows up in both of ours
    first = measure_latency(forward, batch_size=32, warmup=2, iters=60, device="cuda")
    timer = benchmark.Timer(stmt="forward()", globals={"forward": forward})
    theirs_ms = timer.blocked_autorange(min_run_time=2.0).median * 1000.0
    second = measure_latency(forward, batch_size=32, warmup=2, iters=60, device="cuda")
    assert first.timer == "cuda_event" and len(first.times_ms) == 60
    ours_ms = sorted([first.median_ms, second.median_ms])[0 if theirs_ms < first.median_ms else 1]
    print(
        f"swin_tiny b32 224 fp32: pacabench {first.median_ms:.3f} / {second.median_ms:.3f} ms, "
        f"torch.utils.benchmark {theirs_ms:.3f} ms, ratio {ours_ms / theirs_ms:.4f}"
    )
    assert abs(ours_ms / theirs_ms - 1.0) < 0.05, (first.median_ms, second.median_ms, theirs_ms)


def test_cuda_peak_memory_of_known_allocations():
    """max_memory_allocated over the call equals the bytes we allocate (resident excluded)."""

    def allocate():
        a = torch.empty(256 * MiB, dtype=torch.uint8, device="cuda")
        b = torch.empty(128 * MiB, dtype=torch.uint8, device="cuda")
        del a
        c = torch.empty(64 * MiB, dtype=torch.uint8, device="cuda")  # 192 MiB now: below the peak
        del c
        return b

    rec = measure_peak_memory(allocate, device="cuda")
    assert rec.kind == "cuda_max_allocated"
    assert rec.peak_mb - rec.resident_mb == pytest.approx(384.0, abs=1e-6)
    assert rec.reserved_mb >= rec.peak_mb

    # a layer: weights and input resident, the forward adds exactly its output (no bias: a plain
    # GEMM, whose cuBLAS workspace is allocated once, by the warm-up call)
    lin = torch.nn.Linear(4096, 4096, bias=False).cuda().eval()
    x = torch.randn(1024, 4096, device="cuda")

    def forward():
        with torch.inference_mode():
            return lin(x)

    forward()  # cuBLAS workspace allocated once, before the measurement
    rec = measure_peak_memory(forward, device="cuda")
    resident = torch.cuda.memory_allocated() / MiB
    assert rec.resident_mb == pytest.approx(resident, abs=1e-6)
    assert rec.resident_mb >= (4096 * 4096 + 1024 * 4096) * 4 / MiB
    assert rec.peak_mb - rec.resident_mb == pytest.approx(1024 * 4096 * 4 / MiB, abs=1e-6)


def test_out_of_memory_becomes_a_row_and_the_next_case_runs():
    """Under a 2 GiB cap (set_per_process_memory_fraction) a large case is an ``oom`` row; the
    same process then measures the next case normally."""
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(2 * GiB / total)
    try:
        big = run_case(_case("pvt_v2_b0", 2048, batch=8, metrics=("params", "latency", "memory")))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    print(f"capped at 2 GiB: {big.status}: {big.error}")
    assert big.status == "oom", (big.status, big.error)
    assert "out of memory" in big.error.lower()
    assert big.params is not None and big.latency_ms_median is None

    small = run_case(_case("pvt_v2_b0", 224, metrics=("params", "latency", "memory")))
    assert small.status == "ok", small.error
    assert small.timer == "cuda_event" and small.mem_kind == "cuda_max_allocated"
    assert 0 < small.peak_mem_mb < 1024


@pytest.mark.parametrize("model,res,expected", [("pvt_v2_b1", 512, 12.757), ("pvt_tiny", 512, None)])
def test_flops_traced_on_the_gpu_equal_the_cpu_count(model, res, expected):
    """The runner traces FLOPs on the GPU for CUDA runs: the count must not depend on the device
    (SDPA dispatches to flash/efficient kernels there, to the CPU kernel here)."""
    cpu = count_flops(create_model(model, img_size=(res, res)).eval(), (res, res))
    gpu = count_flops(create_model(model, img_size=(res, res)).cuda().eval(), (res, res))
    assert gpu.gflops == pytest.approx(cpu.gflops, rel=1e-9)
    if expected is not None:
        assert gpu.gflops == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize(
    "dtype,torch_dtype,channels_last",
    [("bf16", torch.bfloat16, False), ("fp16", torch.float16, False), ("bf16", torch.bfloat16, True)],
)
def test_autocast_rows(dtype, torch_dtype, channels_last):
    """bf16/fp16 rows measure under autocast: the model really computes in that dtype, agrees
    with fp32, and the row carries CUDA timing and allocator memory."""
    name = "pacavit_tiny_p2cconv_100_0"
    row = run_case(_case(name, 224, batch=2, dtype=dtype, channels_last=channels_last))
    assert row.status == "ok", row.error
    assert (row.dtype, row.device, row.timer, row.mem_kind) == (
        dtype,
        "cuda",
        "cuda_event",
        "cuda_max_allocated",
    )
    assert row.channels_last is channels_last
    assert len(row.latency_ms_samples) == row.latency_iters >= 5
    assert row.gflops == pytest.approx(count_flops(create_model(name).eval(), (224, 224)).gflops, rel=1e-9)

    torch.manual_seed(0)
    model = create_model(name).cuda().eval()
    x = torch.randn(2, 3, 224, 224, device="cuda")
    if channels_last:
        model, x = (
            model.to(memory_format=torch.channels_last),
            x.contiguous(memory_format=torch.channels_last),
        )
    with torch.inference_mode():
        ref = model(x).float()
        with torch.autocast("cuda", dtype=torch_dtype):
            low = model(x)
    assert low.dtype == torch_dtype
    cos = torch.nn.functional.cosine_similarity(low.float(), ref, dim=1)
    assert cos.min().item() > 0.99


def test_bf16_activation_memory_below_fp32():
    """At 1024², activations dominate: autocast bf16 must need less activation memory than fp32."""
    rows = {
        dt: run_case(_case("pacavit_tiny_p2cconv_100_0", 1024, dtype=dt, metrics=("memory",)))
        for dt in ("fp32", "bf16")
    }
    for r in rows.values():
        assert r.status == "ok", r.error
    act = {dt: r.peak_mem_mb - r.resident_mem_mb for dt, r in rows.items()}
    print(f"pacavit_tiny 1024² activation MiB: {act}")
    assert 0 < act["bf16"] < act["fp32"], act


def test_one_gpu_nccl_eval_equals_cpu_eval(tmp_path):
    """``torchrun --nproc-per-node 1 ... --device cuda`` (a real NCCL process group of one rank)
    gives the CPU evaluation's top-1/top-5 and per-image predictions on the same generated data."""
    import timm

    from pacabench.eval.imagenet import evaluate_imagenet
    from tests.test_eval_distributed import IMG, MODEL, NUM_CLASSES, _free_port, make_imagenet

    data = make_imagenet(tmp_path / "imagenet", per_class=(3, 3, 3))
    torch.manual_seed(1)
    m = timm.create_model(MODEL, pretrained=False, num_classes=NUM_CLASSES)
    with torch.no_grad():
        m.head.weight.mul_(50)  # well-separated logits: no near-ties for TF32/kernel noise to flip
    torch.save(m.state_dict(), tmp_path / "w.pth")
    common = dict(
        checkpoint=tmp_path / "w.pth", num_classes=NUM_CLASSES, img_size=IMG, batch_size=2, workers=0
    )
    cpu = evaluate_imagenet(MODEL, data, device="cpu", save_predictions=tmp_path / "cpu.csv", **common)

    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1",
        "--master-port", str(_free_port()), "-m", "pacabench", "eval", "imagenet",
        "--model", MODEL, "--data", str(data), "--checkpoint", str(tmp_path / "w.pth"),
        "--num-classes", str(NUM_CLASSES), "--img-size", str(IMG), "--batch-size", "2",
        "--workers", "0", "--device", "cuda", "--json",
        "--save-predictions", str(tmp_path / "gpu.csv"),
    ]  # fmt: skip
    env = dict(os.environ, NVIDIA_TF32_OVERRIDE="0", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.strip().startswith("{")]
    assert len(lines) == 1, out.stdout
    gpu = json.loads(lines[0])
    print({k: (cpu[k], gpu[k]) for k in ("top1", "top5", "num_images")}, gpu["dist_backend"])
    assert (gpu["device"], gpu["world_size"], gpu["dist_backend"]) == ("cuda", 1, "nccl")
    for k in ("top1", "top5", "num_images"):
        assert gpu[k] == cpu[k], k
    with open(tmp_path / "cpu.csv", newline="") as f1, open(tmp_path / "gpu.csv", newline="") as f2:
        a, b = list(csv.DictReader(f1)), list(csv.DictReader(f2))
    assert len(a) == 9 and [(r["path"], r["pred"]) for r in a] == [(r["path"], r["pred"]) for r in b]
