"""Write the dry-run version of a GPU suite: same models, dtypes and options, CPU and tiny sizes.

    python benchmarks/gpu/dry_suite.py suites/high_resolution.yaml OUT.yaml
    python benchmarks/gpu/dry_suite.py --first-resolution suites/gpu_modes.yaml OUT.yaml   # GPU, trimmed
    python benchmarks/gpu/dry_suite.py --first-model suites/gpu_modes.yaml OUT.yaml        # dry, 1 model

Resolutions become 64², batch sizes 1 (per-model batch overrides: 2), dtypes fp32 only (bf16
autocast on a CPU without bf16 instructions takes ~30 s per case), the device cpu with one
thread (no OpenMP spinning against a neighbour), timing a few iterations: the suite runs in about
a minute on 2 cores, through the code paths of the real run (runner, rows, report, summary).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml


def dry(doc: dict) -> dict:
    out = dict(doc)
    out["resolutions"] = [64]
    out["batch_sizes"] = [1]
    out["device"] = "cpu"
    out["dtypes"] = ["fp32"]
    out["threads"] = 1
    out["latency"] = {"warmup": 1, "iters": 3, "min_iters": 2, "time_budget_s": 0.2}
    models = []
    for m in doc["models"]:
        if isinstance(m, dict):
            m = dict(m)
            if "resolutions" in m:
                m["resolutions"] = [64]
            if "batch_sizes" in m:
                m["batch_sizes"] = [2]
        models.append(m)
    out["models"] = models
    return out


def first_resolution(doc: dict) -> dict:
    """The GPU suite at its first resolution only (the compiled mode: one compile per model and
    shape, ~30 s each, is what the device budget allows at one size)."""
    return {**doc, "resolutions": doc["resolutions"][:1]}


def first_model(doc: dict) -> dict:
    """The dry suite with its first model only (inductor compiles one model in ~2 min on 2 cores)."""
    return {**dry(doc), "models": doc["models"][:1]}


def main(argv: list[str]) -> int:
    how = {"--first-resolution": first_resolution, "--first-model": first_model}
    transform = dry
    if argv and argv[0] in how:
        transform, argv = how[argv[0]], argv[1:]
    if len(argv) != 2:
        print("usage: dry_suite.py [--first-resolution | --first-model] SUITE.yaml OUT.yaml", file=sys.stderr)
        return 2
    doc = yaml.safe_load(Path(argv[0]).read_text(encoding="utf-8"))
    Path(argv[1]).write_text(yaml.safe_dump(transform(doc), sort_keys=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
