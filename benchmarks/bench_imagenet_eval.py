"""ImageNet eval throughput: pacabench's ``evaluate_imagenet`` vs timm's validation pipeline.

Performance target: "ImageNet eval throughput ÷ timm's validation pipeline on the same data ≥ 1.0".

Both pipelines evaluate the *same* model object (``pacabench.models.create_model``, random
weights, seeded) on the *same* ImageFolder of JPEGs, with the same batch size, DataLoader workers
and torch threads:

- pacabench: ``pacabench.eval.imagenet.evaluate_imagenet(name, DIR, net=model, ...)``; its own
  ``throughput_img_s`` (images ÷ wall time of the loader loop, worker start-up included);
- timm, the ``validate.py`` way: ``resolve_data_config`` → ``create_dataset('', root=DIR)`` →
  ``create_loader(..., use_prefetcher=False)`` → ``model(input)`` under ``inference_mode``,
  top-1/top-5 from ``topk``; timed over the same span (iterator creation to last batch).

The two are run in alternating rounds (the order flips every round) so machine noise hits both
alike; the table shows the median over rounds. In the first round both also record every image's
top-5 predictions, which must agree exactly (same weights, same preprocessing, same batches).
"End-to-end" adds the setup each pipeline does per call (file listing, transform, loader).

Without ``--data`` a synthetic ImageNet-val-like set (synset-named folders, JPEG quality 90,
sizes around 500×375) is generated in a temporary folder.

    python benchmarks/bench_imagenet_eval.py                         # 10 classes × 20 images
    python benchmarks/bench_imagenet_eval.py --batch-size 32 --workers 2 --rounds 3 --json out.json
    python benchmarks/bench_imagenet_eval.py --data /data/imagenet/val --limit 2000 --num-classes 1000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pacabench.eval.imagenet import evaluate_imagenet  # noqa: E402
from pacabench.models import create_model  # noqa: E402

MODEL = "pacavit_tiny_p2cconv_100_0"


# --------------------------------------------------------------------------- data


def make_dataset(root: Path, num_classes: int, per_class: int, seed: int = 0) -> int:
    """Synset-named class folders of JPEGs shaped like ImageNet val images; returns the count."""
    from PIL import Image

    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    wnids = sorted({f"n{rng.randrange(1_000_000, 15_000_000):08d}" for _ in range(num_classes * 3)})
    wnids = sorted(rng.sample(wnids, num_classes))
    n = 0
    for c, wnid in enumerate(wnids):
        d = root / wnid
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            # ImageNet val: mostly 500×375 / 375×500 / 500×333, some other sizes.
            base = rng.choice([(500, 375), (500, 375), (375, 500), (500, 333), (500, 400)])
            w = max(64, int(base[0] * rng.uniform(0.85, 1.15)))
            h = max(64, int(base[1] * rng.uniform(0.85, 1.15)))
            # Smooth structure (upsampled coarse noise) + fine texture: compresses like a photo.
            coarse = nrng.integers(0, 256, size=(rng.randint(4, 12), rng.randint(4, 12), 3), dtype=np.uint8)
            img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), dtype=np.int16)
            img = img + nrng.normal(0, 12, size=img.shape).astype(np.int16)
            img = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
            img.save(d / f"ILSVRC2012_val_{c * per_class + i + 1:08d}.JPEG", quality=90)
            n += 1
    return n


def count_classes(root: Path) -> int:
    return sum(1 for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


# --------------------------------------------------------------------------- pipelines


def run_pacabench(model_name, net, data, args, record: bool) -> dict:
    preds_file = None
    if record:
        preds_file = Path(tempfile.mkstemp(suffix=".jsonl", prefix="pacabench_preds_")[1])
    t0 = time.perf_counter()
    res = evaluate_imagenet(
        model_name,
        data,
        batch_size=args.batch_size,
        workers=args.workers,
        device="cpu",
        limit=args.limit,
        num_classes=args.num_classes,
        net=net,
        save_predictions=preds_file,
    )
    e2e = time.perf_counter() - t0
    out = {
        "top1": res["top1"],
        "top5": res["top5"],
        "num_images": res["num_images"],
        "loop_s": res["wall_s"],
        "img_s": res["throughput_img_s"],
        "e2e_s": e2e,
        "e2e_img_s": res["num_images"] / e2e,
        "data_config": res["data_config"],
    }
    if preds_file is not None:
        with open(preds_file, encoding="utf-8") as f:
            out["preds"] = [json.loads(line)["top5"] for line in f if line.strip()]
        preds_file.unlink()
    return out


def run_timm(net, data, args, record: bool) -> dict:
    """timm's validate.py, CPU, no prefetcher (the same calls, minus AMP/CUDA/logging)."""
    from timm.data import create_dataset, create_loader, resolve_data_config

    t0 = time.perf_counter()
    data_config = resolve_data_config({}, model=net, use_test_size=True)
    dataset = create_dataset(root=str(data), name="", split="validation", class_map="")
    if args.limit is not None:
        # validate.py has no --limit; keep the same first-N images as pacabench's --limit.
        dataset = _LimitedView(dataset, args.limit)
    loader = create_loader(
        dataset,
        input_size=data_config["input_size"],
        batch_size=args.batch_size,
        use_prefetcher=False,
        interpolation=data_config["interpolation"],
        mean=data_config["mean"],
        std=data_config["std"],
        num_workers=args.workers,
        crop_pct=data_config["crop_pct"],
        crop_mode=data_config["crop_mode"],
        pin_memory=False,
        device=torch.device("cpu"),
    )
    n_cls = net.num_classes
    k = min(5, n_cls)
    correct1 = correct5 = seen = 0
    preds: list[list[int]] = []
    t1 = time.perf_counter()
    with torch.inference_mode():
        for inp, target in loader:
            output = net(inp)
            top = output.topk(k, dim=1).indices
            hit = top == target[:, None]
            correct1 += int(hit[:, 0].sum())
            correct5 += int(hit.any(dim=1).sum())
            seen += len(target)
            if record:
                preds.extend(top.tolist())
    t2 = time.perf_counter()
    del loader  # persistent workers: shut them down outside the timed span, as validate.py's exit does
    out = {
        "top1": 100.0 * correct1 / seen,
        "top5": 100.0 * correct5 / seen,
        "num_images": seen,
        "loop_s": t2 - t1,
        "img_s": seen / (t2 - t1),
        "e2e_s": t2 - t0,
        "e2e_img_s": seen / (t2 - t0),
        "data_config": {k2: (list(v) if isinstance(v, tuple) else v) for k2, v in data_config.items()},
    }
    if record:
        out["preds"] = preds
    return out


class _LimitedView(torch.utils.data.Dataset):
    """First ``n`` items of a timm ImageDataset; ``transform`` is forwarded so create_loader can set it."""

    def __init__(self, ds, n):
        self.ds, self.n = ds, min(n, len(ds))

    @property
    def transform(self):
        return self.ds.transform

    @transform.setter
    def transform(self, t):
        self.ds.transform = t

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.ds[i]


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=None, help="ImageFolder root (generated there if empty/missing)"
    )
    ap.add_argument("--classes", type=int, default=10, help="classes to generate")
    ap.add_argument("--per-class", type=int, default=20, help="images per class to generate")
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--num-classes", type=int, default=None, help="classifier size (default: folder count)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the model")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)

    tmp = None
    if args.data is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_imagenet_")
        data = Path(tmp.name)
    else:
        data = args.data.expanduser()
    try:
        if not data.is_dir() or not any(data.iterdir()):
            data.mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            n = make_dataset(data, args.classes, args.per_class, args.seed)
            print(
                f"generated {n} JPEGs in {count_classes(data)} folders under {data} "
                f"({time.perf_counter() - t:.1f} s)",
                flush=True,
            )
        if args.num_classes is None:
            args.num_classes = count_classes(data)

        torch.manual_seed(args.seed)
        net = create_model(args.model, num_classes=args.num_classes).eval()
        print(
            f"model {args.model} ({args.num_classes} classes, random init)   batch {args.batch_size}   "
            f"workers {args.workers}   torch threads {torch.get_num_threads()}   cpus {os.cpu_count()}   "
            f"torch {torch.__version__}   loadavg {os.getloadavg()[0]:.2f}",
            flush=True,
        )

        runs: dict[str, list[dict]] = {"pacabench": [], "timm": []}
        fns = {
            "pacabench": lambda rec: run_pacabench(args.model, net, data, args, rec),
            "timm": lambda rec: run_timm(net, data, args, rec),
        }
        for r in range(args.rounds):
            order = ["pacabench", "timm"] if r % 2 == 0 else ["timm", "pacabench"]
            for name in order:
                gc.collect()
                res = fns[name](r == 0)
                runs[name].append(res)
                print(
                    f"round {r + 1} {name:9s}: {res['img_s']:7.2f} img/s  (loop {res['loop_s']:.2f} s, "
                    f"end-to-end {res['e2e_s']:.2f} s)  top1 {res['top1']:.2f}  top5 {res['top5']:.2f}  "
                    f"n={res['num_images']}  load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    finally:
        if tmp is not None:
            tmp.cleanup()

    p, t = runs["pacabench"], runs["timm"]
    med = {
        name: {
            "img_s": statistics.median(x["img_s"] for x in rs),
            "e2e_img_s": statistics.median(x["e2e_img_s"] for x in rs),
            "img_s_min": min(x["img_s"] for x in rs),
            "img_s_max": max(x["img_s"] for x in rs),
        }
        for name, rs in runs.items()
    }
    ratio = med["pacabench"]["img_s"] / med["timm"]["img_s"]
    ratio_e2e = med["pacabench"]["e2e_img_s"] / med["timm"]["e2e_img_s"]
    same_counts = all(
        (a["top1"], a["top5"], a["num_images"]) == (b["top1"], b["top5"], b["num_images"])
        for a in p
        for b in t
    )
    same_preds = p[0]["preds"] == t[0]["preds"]
    same_cfg = p[0]["data_config"] == t[0]["data_config"]
    distinct_top1 = len({row[0] for row in t[0]["preds"]})

    print()
    print("| pipeline | img/s (median) | min–max | end-to-end img/s | top-1 % | top-5 % | images |")
    print("|---|---|---|---|---|---|---|")
    for name, rs in runs.items():
        m = med[name]
        print(
            f"| {name} | {m['img_s']:.2f} | {m['img_s_min']:.2f}–{m['img_s_max']:.2f} | {m['e2e_img_s']:.2f} | "
            f"{rs[0]['top1']:.2f} | {rs[0]['top5']:.2f} | {rs[0]['num_images']} |"
        )
    print()
    print(
        f"pacabench / timm throughput: {ratio:.3f} (loop), {ratio_e2e:.3f} (end-to-end)   goal ≥ 1.0 "
        f"-> {'met' if ratio >= 1.0 else 'NOT met'}"
    )
    print(
        f"top-1/top-5 equal in every run: {same_counts}   per-image top-5 identical: {same_preds}   "
        f"data config identical: {same_cfg}   ({distinct_top1} distinct top-1 classes predicted)"
    )

    if args.json:
        for rs in runs.values():
            for x in rs:
                x.pop("preds", None)
        args.json.write_text(
            json.dumps(
                {
                    "model": args.model,
                    "num_classes": args.num_classes,
                    "batch_size": args.batch_size,
                    "workers": args.workers,
                    "threads": torch.get_num_threads(),
                    "runs": runs,
                    "median": med,
                    "ratio": ratio,
                    "ratio_end_to_end": ratio_e2e,
                    "same_top1_top5": same_counts,
                    "same_predictions": same_preds,
                    "same_data_config": same_cfg,
                },
                indent=2,
            )
        )
        print(f"wrote {args.json}")
    return 0 if (same_counts and same_preds) else 1


if __name__ == "__main__":
    raise SystemExit(main())
