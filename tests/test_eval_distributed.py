"""Two gloo processes on CPU give exactly the single-process numbers (odd dataset sizes, so the
strided shards are uneven), every image evaluated once, results written once."""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

MODEL = "pvt_v2_b0"
NUM_CLASSES = 10
IMG = 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_imagenet(root: Path, per_class=(3, 3, 3), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for ci, n in enumerate(per_class):
        d = root / f"n0000{ci}"
        d.mkdir(parents=True)
        for j in range(n):
            h, w = 40 + 8 * j, 48 + 4 * ci
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / f"img{j}.JPEG")
    return root


def make_ade(root: Path, n=5, ncls=6, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    base = root / "ADEChallengeData2016"
    (base / "images" / "validation").mkdir(parents=True)
    (base / "annotations" / "validation").mkdir(parents=True)
    for j in range(n):
        h, w = 48 + 4 * j, 64 - 2 * j
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            base / "images" / "validation" / f"ADE_val_{j:08d}.jpg"
        )
        Image.fromarray(rng.integers(0, ncls + 1, (h, w), dtype=np.uint8)).save(
            base / "annotations" / "validation" / f"ADE_val_{j:08d}.png"
        )
    return root


def _imagenet_kwargs(d: Path, ckpt: Path, preds: Path) -> dict:
    return dict(
        checkpoint=ckpt,
        num_classes=NUM_CLASSES,
        img_size=IMG,
        batch_size=2,
        workers=0,
        save_predictions=preds,
        device="cpu",
    )


def _ade_kwargs(preds: Path) -> dict:
    return dict(
        head="upernet",
        num_classes=6,
        scale=(128, 48),
        mode="slide",
        crop_size=48,
        stride=32,
        workers=0,
        save_predictions=preds,
        device="cpu",
    )


def _worker(rank: int, world: int, port: int, tmp: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    tmp_p = Path(tmp)
    try:
        torch.set_num_threads(1)
        import pacabench.models  # noqa: F401
        from pacabench.eval.ade20k import evaluate_ade20k
        from pacabench.eval.distributed import cleanup, init_distributed
        from pacabench.eval.imagenet import evaluate_imagenet

        torch.manual_seed(7)  # the segmentor's random weights, as in the single-process run
        from pacabench.models.segmentation import create_segmentor

        seg = create_segmentor(MODEL, "upernet", num_classes=6, verbose=False)
        r1 = evaluate_imagenet(
            MODEL, tmp_p / "imagenet", **_imagenet_kwargs(tmp_p, tmp_p / "w.pth", tmp_p / "dist_preds.csv")
        )
        r2 = evaluate_ade20k(MODEL, tmp_p / "ade", net=seg, **_ade_kwargs(tmp_p / "dist_png"))
        (tmp_p / f"rank{rank}.json").write_text(json.dumps({"imagenet": r1, "ade20k": r2}))
        cleanup(init_distributed())
    except BaseException:  # noqa: BLE001 - report to the parent
        (tmp_p / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    make_imagenet(tmp / "imagenet", per_class=(3, 3, 3))  # 9 images: shards of 5 and 4
    make_ade(tmp / "ade", n=5)  # 5 images: shards of 3 and 2
    import timm

    torch.manual_seed(1)
    m = timm.create_model(MODEL, pretrained=False, num_classes=NUM_CLASSES)
    with torch.no_grad():
        m.head.weight.mul_(50)
    torch.save(m.state_dict(), tmp / "w.pth")
    return tmp


def _single_process(tmp: Path) -> dict:
    from pacabench.eval.ade20k import evaluate_ade20k
    from pacabench.eval.imagenet import evaluate_imagenet
    from pacabench.models.segmentation import create_segmentor

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(7)
        seg = create_segmentor(MODEL, "upernet", num_classes=6, verbose=False)
        r1 = evaluate_imagenet(
            MODEL, tmp / "imagenet", **_imagenet_kwargs(tmp, tmp / "w.pth", tmp / "single.csv")
        )
        r2 = evaluate_ade20k(MODEL, tmp / "ade", net=seg, **_ade_kwargs(tmp / "single_png"))
    finally:
        torch.set_num_threads(threads)
    return {"imagenet": r1, "ade20k": r2}


def _read_csv(p: Path):
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # two spawned interpreters and a single-process reference: ~20 s of CPU
def test_two_gloo_processes_equal_single_process(data):
    single = _single_process(data)
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, str(data))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join()
    errs = [f.read_text() for f in data.glob("rank*.err")]
    assert not errs, errs[0]
    assert all(p.exitcode == 0 for p in procs)
    res = [json.loads((data / f"rank{r}.json").read_text()) for r in range(2)]

    for r in res:
        for task, keys in (
            ("imagenet", ("top1", "top5", "num_images", "skipped_images")),
            ("ade20k", ("miou", "macc", "aacc", "num_images", "per_class_iou", "areas")),
        ):
            assert r[task]["world_size"] == 2
            for k in keys:
                assert r[task][k] == single[task][k], (task, k)  # exactly, not approximately
    assert res[0]["imagenet"]["num_images"] == 9 and res[0]["ade20k"]["num_images"] == 5
    # predictions: every image exactly once, the same as single-process
    assert _read_csv(data / "dist_preds.csv") == _read_csv(data / "single.csv")
    single_png = sorted(p.name for p in (data / "single_png").glob("*.png"))
    assert sorted(p.name for p in (data / "dist_png").glob("*.png")) == single_png and len(single_png) == 5
    for name in single_png:
        a = np.array(Image.open(data / "single_png" / name))
        b = np.array(Image.open(data / "dist_png" / name))
        assert np.array_equal(a, b)


@pytest.mark.slow
def test_torchrun_cli_prints_one_json(data):
    """``torchrun --nproc-per-node 2 -m pacabench eval imagenet ... --json``: one object on stdout."""
    single = _single_process(data)
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(port),
        "-m",
        "pacabench",
        "eval",
        "imagenet",
        "--model",
        MODEL,
        "--data",
        str(data / "imagenet"),
        "--checkpoint",
        str(data / "w.pth"),
        "--num-classes",
        str(NUM_CLASSES),
        "--img-size",
        str(IMG),
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--json",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=400, env=env, cwd=Path(__file__).resolve().parent.parent
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stdout
    d = json.loads(lines[0])
    assert d["world_size"] == 2
    for k in ("top1", "top5", "num_images"):
        assert d[k] == single["imagenet"][k]
