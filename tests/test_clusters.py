"""`pacabench clusters`: cluster maps of PaCa-ViT over an image (random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from pacabench.cli._commands import clusters as clusters_command
from pacabench.errors import UsageError
from pacabench.viz.clusters import cluster_assignment, render_cluster_map

TINY = "pacavit_tiny_p2cconv_100_0"


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "img.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, size=(90, 120, 3), dtype=np.uint8)).save(path)
    return path


def test_clusters_command_writes_png(image, tmp_path, capsys):
    out = tmp_path / "maps" / "clusters.png"
    clusters_command(TINY, image, checkpoint=None, out=out, stage=1, top_k=4, img_size=64)
    assert out.is_file()
    with Image.open(out) as im:
        assert im.format == "PNG"
        w, h = im.size
    assert 400 <= w <= 4000 and 300 <= h <= 3000
    assert "100 clusters over 16×16 patches" in capsys.readouterr().out


def test_render_teacher_stage4_and_summary(image, tmp_path):
    out = tmp_path / "teacher.png"
    info = render_cluster_map("pacavit_convmixer_tiny_100", image, out, stage=4, top_k=3, img_size=64)
    assert out.is_file()
    assert info["num_clusters"] == 100 and info["grid"] == (2, 2)
    assert len(info["top_clusters"]) == 3 and sum(info["top_counts"]) <= 4


def test_render_with_checkpoint(image, tmp_path):
    model = timm.create_model(TINY)
    ckpt = tmp_path / "ckpt.pth"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    out = tmp_path / "c.png"
    info = render_cluster_map(TINY, image, out, checkpoint=ckpt, stage=2, top_k=2, img_size=64)
    assert out.is_file() and info["grid"] == (8, 8)


def test_assignment_is_softmax_over_patches():
    model = timm.create_model(TINY).eval()
    z, hw = cluster_assignment(model, torch.randn(1, 3, 64, 96), stage=1)
    assert hw == (16, 24) and z.shape == (1, 100, 16 * 24)
    torch.testing.assert_close(z.sum(-1), torch.ones(1, 100))


def test_bad_input_is_a_usage_error(image, tmp_path):
    out = tmp_path / "x.png"
    with pytest.raises(UsageError, match="image not found"):
        render_cluster_map(TINY, tmp_path / "missing.jpg", out)
    with pytest.raises(UsageError, match="unknown PaCa-ViT model"):
        render_cluster_map("pacavit_tiny_p2cconv_100_1", image, out)
    with pytest.raises(UsageError, match="unknown PaCa-ViT model"):
        render_cluster_map("swin_tiny_patch4_window7_224", image, out)
    with pytest.raises(UsageError, match="stage 4 .* no clusters"):
        render_cluster_map(TINY, image, out, stage=4, img_size=64)
    with pytest.raises(UsageError, match="stage must be between"):
        render_cluster_map(TINY, image, out, stage=5, img_size=64)
    with pytest.raises(UsageError, match="checkpoint not found"):
        render_cluster_map(TINY, image, out, checkpoint=tmp_path / "nope.pth")
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    with pytest.raises(UsageError, match="cannot read image"):
        render_cluster_map(TINY, bad, out, img_size=64)
    wrong = tmp_path / "wrong.pth"
    torch.save(timm.create_model("pacavit_small_p2cconv_2_0").state_dict(), wrong)
    with pytest.raises(UsageError, match="does not fit"):
        render_cluster_map(TINY, image, out, checkpoint=wrong, img_size=64)
    assert not out.exists()
