"""Any model (issue 20): every timm architecture by name, a user's ``module:function`` factory
(``--trust-code`` inside a suite), sizes an architecture cannot take as ``skipped`` rows. Tiny
models at 64-96 px; the expected numbers come from timm itself or are counted by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

import pacabench
from pacabench.cli import main
from pacabench.errors import UsageError
from pacabench.models import ResolutionError, create_model, get_spec, model_names
from pacabench.spec.catalog import is_factory, suggest_model, timm_names

ROOT = Path(__file__).resolve().parent.parent

FACTORY = """\
from torch import nn


def build(depth: int = 2, num_classes: int = 1000):
    layers = [nn.Conv2d(3, 8, 3, 2, 1)] + [nn.Conv2d(8, 8, 3, 1, 1) for _ in range(depth)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


def windowed(num_classes: int = 10):
    return Windowed()


class Windowed(nn.Module):
    \"\"\"Cuts the input into 7x7 windows: a size that 7 does not divide is refused.\"\"\"

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3 * 49, 4)

    def forward(self, x):
        b, c, h, w = x.shape
        x = x.view(b, c, h // 7, 7, w // 7, 7).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * 49)
        return self.proj(x).mean(1)
"""


def factory_params(depth: int, classes: int = 1000) -> int:
    """conv 3->8 (3x3, bias), depth convs 8->8, linear 8->classes: counted by hand."""
    return (3 * 8 * 9 + 8) + depth * (8 * 8 * 9 + 8) + (8 * classes + classes)


def numel(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture
def nets(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "my_net.py").write_text(FACTORY, encoding="utf-8")
    return tmp_path


def _json_out(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _suite(path: Path, models: str, resolutions: str = "[64]") -> Path:
    path.write_text(
        f"name: anymodel\nmodels: {models}\nresolutions: {resolutions}\ndevice: cpu\nmetrics: [params, flops]\n",
        encoding="utf-8",
    )
    return path


def _rows(run: pacabench.Run) -> list[dict]:
    lines = (run.path / "rows.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(ln) for ln in lines]


# --- names ------------------------------------------------------------------------------------


def test_timm_names_are_read_without_importing_timm_and_match_its_registry():
    ours = {n for n in model_names() if get_spec(n).source == "pacabench"}  # registered by this package
    assert set(timm_names()) == set(timm.list_models()) - ours
    assert timm_names()["convnext_atto"] == "convnext"
    code = (
        "import sys\nfrom pacabench.spec.suite import parse_suite\n"
        "s = parse_suite('models: [convnext_tiny, vit_small_patch16_224.augreg_in21k, nets/x.py:build, "
        "pvt_v2_b0]\\nresolutions: [64]\\n', 'x.yaml')\n"
        "print([m.name for m in s.models], [m for m in ('torch', 'timm') if m in sys.modules])"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("[]"), p.stdout


def test_a_name_resolves_to_ours_then_timm_then_a_factory():
    assert get_spec("swin_tiny_patch4_window7_224").source == "timm"  # ours: unchanged spec
    assert get_spec("swin_tiny_patch4_window7_224").params == 28_288_354
    assert get_spec("pacavit_tiny_p2cconv_100_0").family == "paca_vit"
    assert get_spec("convnext_tiny.fb_in1k").family == "convnext"
    assert get_spec("swin_large_patch4_window7_224").family == "swin"  # timm's other Swins: our family
    assert get_spec("nets/my_net.py:build").family == "factory"
    assert is_factory("pkg.mod:fn") and is_factory("a/b.py:build") and not is_factory("convnext_tiny")


def test_did_you_mean_searches_timm_names_too(capsys):
    assert suggest_model("convnxt_atto") == "convnext_atto"
    assert suggest_model("mambaot_tiny") == "mambaout_tiny"
    assert suggest_model("swin_tiny") == "swin_tiny_patch4_window7_224"  # ours first, as before
    assert main(["flops", "vit_smal_patch16_224"]) == 2
    assert "did you mean 'vit_small_patch16_224'" in _error_line(capsys)


# --- a timm model -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_timm_model_through_flops_has_timms_params_and_the_torch_counters_macs(capsys):
    assert main(["flops", "convnext_atto", "-r", "64", "--json"]) == 0
    res = _json_out(capsys)
    ref = timm.create_model("convnext_atto").eval()
    assert res["params"] == numel(ref) == 3_695_520
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        ref(torch.randn(1, 3, 64, 64))
    macs = fc.get_total_flops() / 2  # torch counts 2 FLOPs per multiply-add
    ops = res["by_operator"]
    assert ops["conv"] + ops["linear"] == pytest.approx(macs / 1e9, rel=1e-6)


def test_a_timm_model_in_a_suite_run_gives_a_row_with_timms_params(tmp_path):
    run = pacabench.run(_suite(tmp_path / "s.yaml", "[resnet18]"), results_dir=tmp_path / "res", run_id="r")
    (row,) = _rows(run)
    assert row["status"] == "ok", row.get("error")
    assert row["params"] == numel(timm.create_model("resnet18")) == 11_689_512
    assert row["family"] == "resnet"


@pytest.mark.slow
def test_a_fixed_size_vit_is_built_at_the_asked_size():
    m = create_model("vit_tiny_patch16_224", img_size=96)
    ref = timm.create_model("vit_tiny_patch16_224", img_size=96)
    at224 = timm.create_model("vit_tiny_patch16_224")
    assert numel(m) == numel(ref)
    assert numel(at224) - numel(m) == (14 * 14 - 6 * 6) * 192  # only the position table shrinks
    assert tuple(m.pos_embed.shape) == (1, 1 + 36, 192)
    with torch.no_grad():
        assert m(torch.randn(1, 3, 96, 96)).shape == (1, 1000)


def test_a_pretrained_tag_without_local_weights_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    m = create_model("convnext_atto.d2_in1k", img_size=64)
    line = _error_line(capsys)
    assert "convnext_atto.d2_in1k: no local weights" in line and "never downloads" in line
    assert numel(m) == 3_695_520


def test_a_pretrained_tag_loads_timms_cache_when_it_holds_the_weights(tmp_path, monkeypatch, capsys):
    """A cache laid out as huggingface_hub writes it: the weights come from there, no network."""
    import huggingface_hub.constants as hf
    from safetensors.torch import save_file

    cfg = timm.models.get_pretrained_cfg("convnext_atto.d2_in1k")
    snap = tmp_path / "hub" / f"models--{cfg.hf_hub_id.replace('/', '--')}"
    (snap / "refs").mkdir(parents=True)
    (snap / "refs" / "main").write_text("abc123")
    (snap / "snapshots" / "abc123").mkdir(parents=True)
    torch.manual_seed(0)
    src = timm.create_model("convnext_atto")
    save_file(
        {k: v.contiguous() for k, v in src.state_dict().items()}, snap / "snapshots/abc123/model.safetensors"
    )
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hub"))
    m = create_model("convnext_atto.d2_in1k")
    assert "no local weights" not in capsys.readouterr().err
    assert torch.equal(m.stem[0].weight, src.stem[0].weight)


# --- a user's factory -------------------------------------------------------------------------


def test_a_factory_on_the_command_line_runs(nets, capsys):
    assert main(["flops", "nets/my_net.py:build", "-r", "64", "-k", "depth=3", "--json"]) == 0
    res = _json_out(capsys)
    assert res["params"] == factory_params(3) == 10_976
    # 3 convs at 32x32 + 1: MACs counted by hand (conv: Cout*H*W*Cin*k*k), pool and head
    convs = 8 * 32 * 32 * 3 * 9 + 3 * (8 * 32 * 32 * 8 * 9)
    assert res["by_operator"]["conv"] == pytest.approx(convs / 1e9)


def test_a_bad_factory_is_one_line(nets, capsys):
    nets.joinpath("nets", "bad.py").write_text("def build():\n    return 3\n", encoding="utf-8")
    assert main(["flops", "nets/bad.py:build", "-r", "64"]) == 2
    assert "returned int, not a torch nn.Module" in _error_line(capsys)
    assert main(["flops", "nets/nope.py:build", "-r", "64"]) == 2
    assert "no such file nets/nope.py" in _error_line(capsys)


def test_a_factory_in_a_suite_needs_trust_code(nets, capsys):
    suite = _suite(nets / "s.yaml", '[{name: "nets/my_net.py:build", kwargs: {depth: 1}}]')
    res = nets / "res"
    assert main(["run", str(suite), "--results-dir", str(res), "--no-progress", "--no-report"]) == 2
    line = _error_line(capsys)
    assert "model 'nets/my_net.py:build' is a factory" in line and "--trust-code" in line
    assert not res.exists()  # refused before any folder is made
    with pytest.raises(UsageError, match="trust_code"):
        pacabench.run(suite, results_dir=res)
    argv = ["run", str(suite), "--results-dir", str(res), "--run-id", "r", "--trust-code", "--no-report"]
    assert main([*argv, "--no-progress"]) == 0
    (row,) = [json.loads(ln) for ln in (res / "anymodel" / "r" / "rows.jsonl").read_text().splitlines()]
    assert row["status"] == "ok" and row["params"] == factory_params(1)


# --- sizes an architecture cannot take --------------------------------------------------------


def test_an_impossible_size_is_a_skipped_row_with_the_reason(nets):
    suite = _suite(nets / "s.yaml", '["nets/my_net.py:windowed"]', "[70, 64]")
    run = pacabench.run(suite, results_dir=nets / "res", run_id="r", trust_code=True)
    ok, skipped = _rows(run)
    assert ok["status"] == "ok" and ok["params"] == 3 * 49 * 4 + 4
    assert skipped["status"] == "skipped" and skipped["resolution"] == [64, 64]
    assert skipped["error"].startswith("nets/my_net.py:windowed cannot take 64x64: shape")


@pytest.mark.slow
def test_a_timm_architecture_refusing_a_size_is_one_line_from_flops(capsys):
    assert main(["flops", "hiera_tiny_224", "-r", "100"]) == 2
    assert _error_line(capsys).startswith("pacabench: error: hiera_tiny_224 cannot take 100x100: shape")
    with pytest.raises(ResolutionError):
        create_model("hiera_tiny_224", img_size=100)


def test_flops_both_says_why_the_counters_differ(capsys):
    """MobileNetV3-S: the counters differ by ~4.8 % (fvcore counts BatchNorm, torch's counter does
    not). The output names the op family and its share, computed here independently: fvcore
    counts an eval-mode affine BatchNorm as 2 FLOPs per input element."""
    name = "mobilenetv3_small_100"
    assert main(["flops", name, "--counter", "both", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    model = timm.create_model(name).eval()
    elements = []
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.register_forward_hook(lambda m, i, o: elements.append(i[0].numel()))
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    bn_pct = 100 * 2 * sum(elements) / 1e9 / res["gflops"]
    assert res["counter_diff_pct"] > 2
    assert f"norm layers {bn_pct:+.2f} %, only fvcore counts it" in res["counter_gap_why"]
    assert main(["flops", name, "--counter", "both"]) == 0
    out = capsys.readouterr()
    assert "why they differ" in out.out
    assert f"Why: {res['counter_gap_why']}" in out.err
    assert f"ops fvcore leaves uncounted: ≤ {100 * res['uncounted_share']:.2f} % of the total" in out.err


def test_capacity_searches_resolutions_in_the_models_own_stride(monkeypatch):
    """The resolution search steps by the coarsest stride timm's feature_info gives (LeViT: 64),
    32 for our families and for models whose stages divide it."""
    import pacabench.measure.capacity as capacity
    from pacabench.models import resolution_step

    assert {n: resolution_step(n) for n in ("levit_128s", "resnet18", "pvt_tiny")} == {
        "levit_128s": 64,  # timm's feature_info: reductions 16, 32, 64
        "resnet18": 32,
        "pvt_tiny": 32,
    }
    probed = []

    def fake_probe(model, **_):
        return lambda size: probed.append(size) or 10.0 + size / 100  # every size up to the limit fits

    monkeypatch.setattr(capacity, "model_probe", fake_probe)
    cap = capacity.find_capacity("levit_128s", 2**20 * 1000, limit=1000)
    assert probed and all(s % 64 == 0 for s in probed) and cap.answer == 960  # 1000 // 64 * 64
