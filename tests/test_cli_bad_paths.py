"""Every command that writes files, given an output path it cannot write: one line on stderr,
exit code 2, checked before any work (an evaluation computes nothing). A write that still fails
after an evaluation prints the metrics first."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
from PIL import Image

from pacabench.cli import main
from pacabench.errors import UsageError
from pacabench.paths import check_output_path
from pacabench.runs.results import Row
from tests.test_eval_ade20k import make_ade
from tests.test_eval_imagenet import make_imagefolder


@pytest.fixture
def places(tmp_path):
    """A file (to be used as a parent folder) and a folder (where a file is expected)."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    return a_file, a_dir


@pytest.fixture
def run_dir(tmp_path):
    """A run folder with one row, written by hand (no measurement)."""
    run = tmp_path / "results" / "s" / "r1"
    run.mkdir(parents=True)
    row = Row(suite="s", run_id="r1", model="pvt_v2_b0", family="pvt_v2", resolution=[64, 64]).to_dict()
    row["params"] = 3_666_760
    (run / "rows.jsonl").write_text(json.dumps(row) + "\n")
    return run


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[pacabench]")]
    assert len(lines) == 1, err
    assert lines[0].startswith("pacabench: error: ")
    return lines[0]


def test_check_output_path(places, tmp_path):
    a_file, a_dir = places
    assert check_output_path(tmp_path / "new" / "deeper" / "out.md") == tmp_path / "new" / "deeper" / "out.md"
    assert check_output_path(a_file) == a_file  # overwriting a file is fine
    assert check_output_path(a_dir, "dir") == a_dir
    with pytest.raises(UsageError, match="a_file is not a folder"):
        check_output_path(a_file / "sub" / "out.md")
    with pytest.raises(UsageError, match="is a folder, a file is expected"):
        check_output_path(a_dir)
    with pytest.raises(UsageError, match="is not a folder"):
        check_output_path(a_file, "dir")
    assert not (tmp_path / "new").exists()  # nothing created


def test_report_report_and_report_plot_refuse_bad_paths(run_dir, places, capsys):
    a_file, a_dir = places
    for argv, fragment in (
        (["-o", str(a_file / "r.md")], "a_file is not a folder"),
        (["-o", str(a_dir)], "is a folder, a file is expected"),
        (["-f", "csv", "-o", str(a_file)], "is not a folder"),  # csv writes a folder
        (["--plot", str(a_file)], "is not a folder"),
        (["--plot", str(a_file / "plots")], "a_file is not a folder"),
    ):
        assert main(["report", str(run_dir), *argv]) == 2, argv
        assert fragment in one_error_line(capsys)
    # the same run with a good path works
    assert main(["report", str(run_dir), "-o", str(a_dir / "r.md")]) == 0
    assert "pvt_v2_b0" in (a_dir / "r.md").read_text()


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    return path


def test_clusters_refuses_bad_paths_before_building(image, places, capsys, monkeypatch):
    import pacabench.viz.clusters as cl

    def no_build(*a, **k):
        raise AssertionError("the model was built before the output path was checked")

    monkeypatch.setattr(cl, "_build_model", no_build)
    a_file, a_dir = places
    model = "pacavit_tiny_p2cconv_100_0"
    (a_dir / "d.png").mkdir()
    for out, fragment in (
        (a_file / "c.png", "a_file is not a folder"),
        (a_dir / "d.png", "is a folder, a file is expected"),
        (a_dir / "c.gif", "cannot write a cluster map as '.gif'"),
    ):
        assert main(["clusters", model, str(image), "-o", str(out), "--img-size", "64"]) == 2
        assert fragment in one_error_line(capsys)


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    return make_imagefolder(tmp_path_factory.mktemp("imnet") / "val")


def _forbid(monkeypatch, module, *names):
    def work(*a, **k):
        raise AssertionError("work started before the output path was checked")

    for n in names:
        monkeypatch.setattr(module, n, work)


IMAGENET = ["eval", "imagenet", "-m", "pvt_v2_b0", "--img-size", "64", "--workers", "0", "--device", "cpu"]


def test_eval_imagenet_bad_output_fails_before_evaluating(imagenet, places, capsys, monkeypatch):
    import pacabench.eval.imagenet as ev

    _forbid(monkeypatch, ev, "find_samples", "_build")
    a_file, a_dir = places
    for out, fragment in ((a_file / "p.csv", "a_file is not a folder"), (a_dir, "is a folder")):
        assert main([*IMAGENET, "--data", str(imagenet), "--save-predictions", str(out)]) == 2
        assert fragment in one_error_line(capsys)


def metrics_then_error(argv: list[str], capsys, error: str) -> dict:
    """Run ``argv --json``: exit 2, the metrics on stdout (returned), then exactly ``error``."""
    assert main([*argv, "--json"]) == 2
    captured = capsys.readouterr()
    err = [ln for ln in captured.err.splitlines() if ln.startswith("pacabench:")]
    assert err == [f"pacabench: error: {error}"]
    return json.loads(captured.out)


@pytest.fixture(scope="module")
def ade(tmp_path_factory):
    return make_ade(tmp_path_factory.mktemp("ade"), n=2)


ADE = ["eval", "ade20k", "-m", "pvt_v2_b0", "--head", "upernet", "--num-classes", "6", "--scale", "128x48"]
ADE += ["--workers", "0", "--device", "cpu"]


def test_eval_ade20k_bad_outputs_fail_before_evaluating(ade, places, capsys, monkeypatch):
    import pacabench.eval.ade20k as ev

    _forbid(monkeypatch, ev, "find_ade_samples", "_build")
    a_file, a_dir = places
    for opt, out, fragment in (
        ("--per-class", a_file / "c.csv", "a_file is not a folder"),
        ("--per-class", a_dir, "is a folder, a file is expected"),
        ("--save-predictions", a_file, "is not a folder"),
        ("--save-predictions", a_file / "preds", "a_file is not a folder"),
    ):
        assert main([*ADE, "--data", str(ade), opt, str(out)]) == 2
        assert fragment in one_error_line(capsys)


# task → (module, writer to break, option, output name, command, fixture, metric, images)
FAILED_WRITES = {
    "imagenet": (
        "imagenet",
        "_write_predictions",
        "--save-predictions",
        "p.csv",
        IMAGENET,
        "imagenet",
        "top1",
        9,
    ),
    "ade20k": ("ade20k", "write_per_class", "--per-class", "c.csv", ADE, "ade", "miou", 2),
}


@pytest.mark.parametrize("task", list(FAILED_WRITES))
def test_failed_write_prints_metrics_first(task, request, tmp_path, capsys, monkeypatch):
    import importlib

    module, writer, option, name, command, fixture, metric, n_images = FAILED_WRITES[task]

    def disk_full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(importlib.import_module(f"pacabench.eval.{module}"), writer, disk_full)
    out = tmp_path / name
    argv = [*command, "--data", str(request.getfixturevalue(fixture)), option, str(out)]
    d = metrics_then_error(argv, capsys, f"cannot write {out}: No space left on device")
    assert d["num_images"] == n_images and d[metric] is not None
