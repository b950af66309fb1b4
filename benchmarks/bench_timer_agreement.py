"""Does pacabench's latency agree with torch.utils.benchmark on the same model and input?

    python benchmarks/bench_timer_agreement.py [--device cpu|cuda] [--rounds 5] [--models a,b] [-r 224]

For each model, in alternating rounds (ours, theirs, ours, theirs, ...: a drift of a shared
machine hits both), pacabench's ``measure_latency`` median and ``torch.utils.benchmark.Timer``'s
``blocked_autorange`` median of the same forward; prints each round and the ratio of the medians
over rounds. The goal (docs: performance goals) is agreement within 5%. On a GPU the CUDA test
``tests/test_cuda.py::test_cuda_event_latency_agrees_with_torch_utils_benchmark`` checks the same.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
from torch.utils import benchmark

import pacabench.models  # noqa: F401 - registers our models with timm
from pacabench.measure.latency import measure_latency
from pacabench.models import create_model

DEFAULT_MODELS = "pacavit_tiny_p2cconv_100_0,swin_tiny_patch4_window7_224"


def agreement(name: str, res: int, device: str, rounds: int, min_run_time: float) -> tuple[float, list]:
    model = create_model(name, img_size=res).to(device).eval()
    x = torch.randn(1, 3, res, res, device=device)

    def forward():
        with torch.inference_mode():
            return model(x)

    for _ in range(3):
        forward()
    per_round = []
    for _ in range(rounds):
        ours = measure_latency(
            forward, warmup=1, iters=20, min_iters=5, time_budget_s=min_run_time, device=device
        )
        # Timer runs single-threaded unless told otherwise: give it the threads pacabench used
        theirs = benchmark.Timer(
            stmt="forward()", globals={"forward": forward}, num_threads=torch.get_num_threads()
        ).blocked_autorange(min_run_time=min_run_time)
        per_round.append((ours.median_ms, theirs.median * 1000.0))
    ratio = statistics.median(o for o, _ in per_round) / statistics.median(t for _, t in per_round)
    return ratio, per_round


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("-r", "--resolution", type=int, default=224)
    ap.add_argument("--min-run-time", type=float, default=1.0, help="seconds per measurement")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_timer_agreement: error: CUDA is not available", file=sys.stderr)
        return 2
    print(f"device {args.device}, {args.resolution}², batch 1, threads {torch.get_num_threads()}")
    print("| model | pacabench median (ms) | torch.utils.benchmark median (ms) | ratio |")
    print("|---|---|---|---|")
    for name in args.models.split(","):
        ratio, per_round = agreement(name, args.resolution, args.device, args.rounds, args.min_run_time)
        ours = statistics.median(o for o, _ in per_round)
        theirs = statistics.median(t for _, t in per_round)
        print(f"| {name} | {ours:.2f} | {theirs:.2f} | {ratio:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
