"""Golden outputs: the reports and comparisons of a fixed rows file, frozen byte for byte.

``tests/golden/rows.jsonl`` holds cost rows (ok, oom, error) and accuracy rows (ImageNet, ADE20k,
COCO). Each output below is compared with ``tests/golden/<name>``; a refactoring must leave them
unchanged. After an intended change of the output, rewrite them with
``PACABENCH_UPDATE_GOLDEN=1 pytest tests/test_golden.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from pacabench.cli import main

GOLDEN = Path(__file__).parent / "golden"
ROWS = GOLDEN / "rows.jsonl"
UPDATE = os.environ.get("PACABENCH_UPDATE_GOLDEN", "") not in ("", "0")


def _check(name: str, text: str, *, numeric: bool = False) -> None:
    """``text`` equals the golden file byte for byte; with ``numeric``, full-precision floats
    (the CSV export writes them unrounded) may differ in their last bits: a least-squares fit
    takes another BLAS path on another CPU (AMD EPYC vs Intel Xeon), so they are compared to
    1e-9 relative and everything else byte for byte."""
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path} (write it with PACABENCH_UPDATE_GOLDEN=1)"
    want = path.read_text(encoding="utf-8")
    if numeric:
        got_cells, want_cells = re.split(r"([,\n])", text), re.split(r"([,\n])", want)
        assert len(got_cells) == len(want_cells), f"{name} differs from its golden file"
        text = "".join(w if _close(g, w) else g for g, w in zip(got_cells, want_cells))
    assert text == want, f"{name} differs from its golden file"


def _close(a: str, b: str) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return x == y or abs(x - y) <= 1e-9 * max(abs(x), abs(y))


def _stable(text: str, run: Path) -> str:
    """The parts that change on every call: the time, the PNG bytes."""
    text = re.sub(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", "Generated TIME", text)
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png;base64,PNG", text)


@pytest.fixture
def run(tmp_path, monkeypatch) -> Path:
    """The rows as a run folder ``run`` in the current directory (titles show this path)."""
    monkeypatch.chdir(tmp_path)
    p = Path("run")
    p.mkdir()
    (p / "rows.jsonl").write_text(ROWS.read_text(encoding="utf-8"), encoding="utf-8")
    return p


@pytest.mark.parametrize(
    "name,args",
    [
        ("report.md", []),
        ("report_reference.md", ["--reference", "swin_tiny_patch4_window7_224"]),
        ("report_stdout.csv", ["--format", "csv"]),
        ("report.tex", ["--format", "latex"]),
        ("report_reference.tex", ["--format", "latex", "--reference", "swin_tiny_patch4_window7_224"]),
        ("report.html", ["--format", "html"]),
        ("paper.md", ["--paper"]),
        ("paper.tex", ["--paper", "--format", "latex"]),
        ("paper.html", ["--paper", "--format", "html"]),
        ("paper.csv", ["--paper", "--format", "csv"]),
    ],
)
def test_report_outputs_unchanged(name, args, run, tmp_path, capsys):
    out = tmp_path / "out.txt"
    use_file = name.endswith(".html")
    assert main(["report", str(run), *args, *(["-o", str(out)] if use_file else [])]) == 0
    text = out.read_text(encoding="utf-8") if use_file else capsys.readouterr().out
    _check(name, _stable(text, run))


def test_report_csv_folder_unchanged(run, tmp_path):
    out = tmp_path / "csv"
    assert main(["report", str(run), "--format", "csv", "-o", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    text = "".join(f"== {n}\n" + (out / n).read_text(encoding="utf-8") for n in files)
    _check("report_csv_folder.txt", _stable(text, run), numeric=True)


def _changed_rows() -> list[dict]:
    rows = [json.loads(line) for line in ROWS.read_text(encoding="utf-8").splitlines()]
    rows[0]["gflops"] *= 1.01  # exact metric off by 1 %: a regression
    rows[1]["latency_ms_median"] *= 3  # far beyond the noise: a regression
    rows[2]["peak_mem_mb"] *= 0.5  # improved
    rows[5]["status"], rows[5]["error"] = "oom", "OutOfMemoryError: out of memory"
    rows[8]["top1"] = None  # the imagenet row loses its metric
    rows[9]["miou"] += 1.0  # improved by a point
    del rows[3]  # missing
    rows.append({**rows[0], "batch_size": 8})  # added
    return rows


@pytest.mark.parametrize("fmt", ["markdown", "json"])
def test_compare_outputs_unchanged(fmt, tmp_path, capsys):
    new = tmp_path / "new.jsonl"
    new.write_text("".join(json.dumps(r) + "\n" for r in _changed_rows()), encoding="utf-8")
    rc = main(["compare", str(ROWS), str(new), "--all", "--format", fmt, "--allow-missing"])
    assert rc == 1
    text = capsys.readouterr().out.replace(str(new), "NEW").replace(str(ROWS), "BASE")
    _check(f"compare.{'md' if fmt == 'markdown' else 'json'}", text)
