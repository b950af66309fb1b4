"""Bad options and inputs of models/flops/clusters/eval: one line on stderr and exit code 2,
before any work. Also: features-mode checkpoints for every family, suggestions from the same
family, the cluster map in the format its suffix names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pacabench.cli import main
from pacabench.errors import UsageError
from pacabench.models import CheckpointError, create_model, get_spec, suggest_model
from tests.test_cli_bad_paths import one_error_line


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["flops", "pvt_v2_b0", "-r", "99999"], "too large"),
        (["flops", "pvt_v2_b0", "-r", "64x99999"], "too large"),
        (["flops", "pvt_v2_b0", "--head", "bogus"], "unknown segmentation head 'bogus'"),
        (["flops", "pvt_v2_b0", "--detector", "-r", "0"], "too small"),
        (["flops", "pvt_v2_b0", "--detector", "-r", "-5"], "too small"),
        (["flops", "swin_tiny"], "did you mean 'swin_tiny_patch4_window7_224'"),
    ],
)
def test_flops_options(argv, fragment, capsys):
    assert main(argv) == 2
    assert fragment in one_error_line(capsys)


def test_flops_allocation_failure_is_one_line(capsys, monkeypatch):
    import pacabench.cli._commands as cmd

    def oom(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(cmd, "_model_flops", oom)
    assert main(["flops", "pvt_v2_b0", "-r", "4096"]) == 2
    assert "out of memory counting FLOPs" in one_error_line(capsys)


def test_suggestions_come_from_the_same_family():
    assert suggest_model("swin_tiny") == "swin_tiny_patch4_window7_224"
    assert suggest_model("swin_smal") == "swin_small_patch4_window7_224"
    assert suggest_model("pvt_v2_b11") == "pvt_v2_b1"
    assert suggest_model("pvt_tiny2") == "pvt_tiny"
    assert get_spec(suggest_model("pacavit_tny")).family == "paca_vit"
    assert suggest_model("convnxt_tiny") == "convnext_tiny"  # timm names too (issue 20)
    assert suggest_model("qqqqzzzz") is None


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


EVAL_BAD = [
    (["imagenet", "--workers", "-1"], "workers must be 0 or more, got -1"),
    (["imagenet", "--device", "mps"], "no MPS device"),
    (["imagenet", "--device", "cuda:7"], "device cuda:7: no such CUDA device"),
    (["imagenet", "--device", "cuda:x"], "unknown device 'cuda:x'"),
    (["ade20k", "--head", "upernet", "--num-classes", "0"], "num_classes must be at least 1, got 0"),
    (["ade20k", "--head", "upernet", "--scale", "0x0"], "scale must be positive"),
    (["ade20k", "--head", "upernet", "--workers", "-1"], "workers must be 0 or more"),
    (["coco", "--ann", "a.json", "--min-size", "0"], "min_size must be at least 1, got 0"),
    (["coco", "--ann", "a.json", "--max-size", "-1"], "max_size must be at least 1, got -1"),
    (["coco", "--ann", "a.json", "--max-proposals", "0"], "max_proposals must be at least 1"),
    (["coco", "--ann", "a.json", "--score-threshold", "1.5"], "score_threshold must be between 0 and 1"),
    (["coco", "--ann", "a.json", "--workers", "-1"], "workers must be 0 or more"),
    (["coco", "--ann", "a.json", "--device", "cuda:7"], "no such CUDA device"),
]


@pytest.mark.parametrize("argv,fragment", EVAL_BAD, ids=[" ".join(a) for a, _ in EVAL_BAD])
def test_eval_options_fail_before_any_work(argv, fragment, folder, capsys, monkeypatch):
    import pacabench.eval.ade20k as ade
    import pacabench.eval.coco as coco
    import pacabench.eval.imagenet as imnet

    def work(*a, **k):
        raise AssertionError("work started before the options were checked")

    for module, name in ((imnet, "find_samples"), (ade, "find_ade_samples"), (coco, "load_coco_annotations")):
        monkeypatch.setattr(module, name, work)
    if "--device" in argv and argv[argv.index("--device") + 1] == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an MPS device")
    if "cuda:7" in argv and torch.cuda.device_count() > 7:
        pytest.skip("this machine has eight GPUs")
    assert main(["eval", *argv, "-m", "pvt_v2_b0", "--data", str(folder)]) == 2
    assert fragment in one_error_line(capsys)


def test_score_threshold_keeps_fewer_detections():
    from pacabench.models.detection import create_detector

    torch.manual_seed(0)
    low = create_detector("pvt_v2_b0", min_size=64, max_size=96, score_thresh=0.05).eval()
    high = create_detector("pvt_v2_b0", min_size=64, max_size=96, score_thresh=0.9).eval()
    high.load_state_dict(low.state_dict())
    x = [torch.rand(3, 64, 80)]
    with torch.inference_mode():
        n_low, n_high = (len(m(x)[0]["scores"]) for m in (low, high))
        scores_high = high(x)[0]["scores"]
    assert n_high <= n_low
    assert bool((scores_high > 0.9).all())


def test_eval_coco_passes_the_score_threshold(monkeypatch):
    import pacabench.eval.coco as coco

    seen = {}

    def fake_build(*args):
        seen["args"] = args
        raise UsageError("stop here")

    monkeypatch.setattr(coco, "_build", fake_build)
    monkeypatch.setattr(coco, "load_coco_annotations", lambda ann: _FakeCoco())
    with pytest.raises(UsageError, match="stop here"):
        coco.evaluate_coco("pvt_v2_b0", ".", "a.json", device="cpu", score_threshold=0.7)
    assert seen["args"][-1] == 0.7


class _FakeCoco:
    """No images, COCO's 80 categories: enough to reach the detector build."""

    imgs: dict = {}

    def getImgIds(self):  # noqa: N802 - pycocotools' name
        return []

    def getCatIds(self):  # noqa: N802
        from pacabench.models.detection import COCO_CATEGORY_IDS

        return list(COCO_CATEGORY_IDS)


FAMILIES = ["pvt_v2_b0", "swin_tiny_patch4_window7_224", "pvt_tiny", "pacavit_tiny_p2cconv_100_0"]


@pytest.mark.parametrize("name", FAMILIES)
def test_features_model_takes_its_own_imagenet_checkpoint(name, tmp_path):
    full = create_model(name)
    path = tmp_path / "imnet.pth"
    torch.save(full.state_dict(), path)
    feats = create_model(name, features_only=True, checkpoint=str(path))
    report = feats.pacabench_load_report
    assert {k for k in report.skipped if "head" in k} and not report.missing and not report.mismatched
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        got = feats(x)
    assert len(got) == 4 and got[0].shape[-2:] == (56, 56)
    # the stage-1 map comes from the checkpoint's weights, not a fresh init
    fresh = create_model(name, features_only=True)
    with torch.no_grad():
        assert not torch.equal(fresh(x)[0], got[0])


@pytest.mark.parametrize("name", FAMILIES)
def test_features_model_reports_real_shape_errors(name, tmp_path):
    sd = create_model(name).state_dict()
    key = next(k for k in sd if k.endswith("weight") and sd[k].dim() == 4)  # the first conv
    sd[key] = torch.zeros(sd[key].shape[0] + 1, *sd[key].shape[1:])
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=f"shape mismatch: {key}"):
        create_model(name, features_only=True, checkpoint=str(path))


def test_checkpoint_with_int_keys_is_one_line(tmp_path, capsys):
    path = tmp_path / "ints.pth"
    torch.save({0: torch.zeros(1), 1: torch.ones(1)}, path)
    with pytest.raises(CheckpointError, match="found int key 0"):
        create_model("pvt_v2_b0", checkpoint=str(path))
    assert main(["clusters", "pacavit_tiny_p2cconv_100_0", str(path), "--checkpoint", str(path)]) == 2
    assert "int key 0" in one_error_line(capsys)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8)).save(path)
    return path


TINY = "pacavit_tiny_p2cconv_100_0"


def test_clusters_refuses_decompression_bombs(image, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 100×100 = 10,000 > 2 × 3000: an error
    assert main(["clusters", TINY, str(image), "-o", str(tmp_path / "c.png"), "--img-size", "64"]) == 2
    assert "refusing image" in one_error_line(capsys)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)  # 10,000 > 6000: PIL only warns
    assert main(["clusters", TINY, str(image), "-o", str(tmp_path / "c.png"), "--img-size", "64"]) == 2
    assert "refusing image" in one_error_line(capsys)
    assert not (tmp_path / "c.png").exists()


def test_clusters_img_size_bound(image, tmp_path, capsys):
    assert main(["clusters", TINY, str(image), "-o", str(tmp_path / "c.png"), "--img-size", "30000"]) == 2
    assert "img_size must be between 32 and 2048, got 30000" in one_error_line(capsys)


@pytest.mark.parametrize("suffix,fmt", [(".jpg", "JPEG"), (".jpeg", "JPEG"), (".png", "PNG")])
def test_clusters_writes_the_format_its_suffix_names(suffix, fmt, image, tmp_path, capsys):
    out = tmp_path / f"c{suffix}"
    assert main(["clusters", TINY, str(image), "-o", str(out), "--img-size", "64", "--top-k", "2"]) == 0
    with Image.open(out) as im:
        assert im.format == fmt
