"""HTML / LaTeX reports and the paper table, from known rows (nothing measured)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pacabench.cli import main
from pacabench.reports.formats import latex_escape, render_html, render_latex, render_paper_table
from pacabench.reports.paper import load_reference, paper_table, reference_models
from pacabench.runs.results import load_run

REPO = Path(__file__).resolve().parent.parent


def cost_row(model, res, gflops, lat, mem, status="ok", **kw):
    d = {
        "suite": "t",
        "model": model,
        "task": "cost",
        "resolution": [res, res],
        "tokens": (res // 4) ** 2,
        "batch_size": 1,
        "dtype": "fp32",
        "device": "cpu",
        "device_name": "test-cpu",
        "status": status,
        "params": 14_000_000 if status == "ok" else None,
        "gflops": gflops if status == "ok" else None,
        "latency_ms_median": lat if status == "ok" else None,
        "latency_ms_iqr": 0.1 if status == "ok" else None,
        "throughput_img_s": 1000.0 / lat if status == "ok" and lat else None,
        "peak_mem_mb": mem if status == "ok" else None,
        "error": None if status == "ok" else "RuntimeError: out of memory",
    }
    d.update(kw)
    return d


def known_rows():
    rows = []
    for res, k in ((224, 1), (512, 5.2), (1024, 21)):
        rows.append(cost_row("pvt_v2_b1", res, 2.1 * k, 10 * k, 50 * k))
        rows.append(cost_row("swin_tiny_patch4_window7_224", res, 4.5 * k, 20 * k, 80 * k))
    rows[-1] = cost_row("swin_tiny_patch4_window7_224", 1024, None, None, None, status="oom")
    return rows


def write_run(dirpath: Path, rows) -> Path:
    dirpath.mkdir(parents=True, exist_ok=True)
    (dirpath / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return dirpath


@pytest.fixture
def run_dir(tmp_path):
    return write_run(tmp_path / "results" / "t" / "20260101-000000", known_rows())


def test_html_is_self_contained_with_tables_and_images(run_dir):
    html = render_html(load_run(run_dir), title="known rows")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert html.count("<table>") >= 5
    for text in (
        "Params (M)",
        "GFLOPs (1 MAC = 1 FLOP",
        "Complexity scaling",
        "pvt_v2_b1",
        "Cases that did not finish",
    ):
        assert text in html
    assert '<td class="status oom">oom</td>' in html
    assert html.count('<img src="data:image/png;base64,') == 3
    assert "<script" not in html and "http://" not in html and "https://" not in html  # nothing external


def test_latex_booktabs(run_dir):
    tex = render_latex(load_run(run_dir))
    assert tex.count(r"\begin{tabular}") == tex.count(r"\bottomrule") >= 5
    assert r"\toprule" in tex and r"\midrule" in tex
    assert r"pvt\_v2\_b1" in tex and "pvt_v2_b1" not in tex.replace(r"\_", "")  # escaped
    assert r"\caption{GFLOPs (1 MAC = 1 FLOP" in tex


def test_latex_escape():
    assert latex_escape("a_b & 5 % Δ") == r"a\_b \& 5 \% $\Delta$"


def test_cli_report_html_latex_plot(run_dir, tmp_path):
    out_html = tmp_path / "r.html"
    assert main(["report", str(run_dir), "--format", "html", "-o", str(out_html)]) == 0
    text = out_html.read_text()
    assert "<table>" in text and '<img src="data:image/png;base64,' in text
    out_tex = tmp_path / "r.tex"
    plots = tmp_path / "plots"
    assert main(["report", str(run_dir), "--format", "latex", "-o", str(out_tex), "--plot", str(plots)]) == 0
    assert r"\toprule" in out_tex.read_text()
    assert sorted(p.name for p in plots.glob("*.png")) == [
        "gflops_vs_resolution.png",
        "latency_vs_resolution.png",
        "memory_vs_resolution.png",
    ]
    assert main(["report", str(run_dir), "--format", "pdf"]) == 2
    assert main(["report", str(run_dir), "--format", "html", "--reference", "nosuch"]) == 2


# ------------------------------------------------------------------------------ paper table
def test_reference_data_is_labelled_and_names_known_models():
    from pacabench.models import model_names

    refs = load_reference()
    assert {r.source_kind for r in refs} == {"paper", "authors_readme", "authors_code_fvcore", "timm_fvcore"}
    assert all(r.source for r in refs)
    known = set(model_names())
    assert [m for m in reference_models() if m not in known] == []
    assert len([m for m in reference_models() if m.startswith("pacavit_")]) == 13


def test_paper_table_suite_lists_the_reference_models():
    from pacabench.spec.suite import load_suite

    s = load_suite(REPO / "suites" / "paper_table.yaml")
    assert [m.name for m in s.models] == reference_models()
    assert s.resolutions == [(224, 224)] and set(s.metrics) == {"params", "flops"}


def paper_rows():
    return [
        cost_row("pvt_tiny", 224, 1.944, 1, 1, params=13_229_288),
        cost_row("pvt_v2_b1", 224, 2.120, 1, 1, params=14_009_000),
        cost_row("pacavit_tiny_p2cconv_100_0", 224, 3.2374, 1, 1, params=12_200_680),
        cost_row("pvt_v2_b1", 512, 12.76, 1, 1),  # not 224: ignored
    ]


def test_paper_table_differences():
    tab = paper_table(pd.DataFrame(paper_rows())).set_index("model")
    assert list(tab.index) == ["pacavit_tiny_p2cconv_100_0", "pvt_tiny", "pvt_v2_b1"]
    assert tab.loc["pvt_tiny", "gflops_published"] == 1.9
    assert tab.loc["pvt_tiny", "gflops_delta_pct"] == pytest.approx(100 * (1.944 - 1.9) / 1.9)
    assert tab.loc["pvt_tiny", "gflops_delta_ref_pct"] == pytest.approx(0.0)
    assert "rounds to 1 decimal" in tab.loc["pvt_tiny", "note"]  # > 2 % off the paper: explained
    assert tab.loc["pvt_v2_b1", "note"] == ""
    assert tab.loc["pacavit_tiny_p2cconv_100_0", "params_source"] == "authors_readme"


def test_paper_table_formats(tmp_path):
    run = write_run(tmp_path / "results" / "paper_table" / "20260101-000000", paper_rows())
    md = render_paper_table(load_run(run), "markdown")
    assert "| pvt_tiny | 13.229 | 13.2 | +0.2 % | 1.944 | 1.9 | +2.3 % |" in md
    assert "Not in this run:" in md and "1 MAC = 1 FLOP" in md
    tex = render_paper_table(load_run(run), "latex")
    assert r"\toprule" in tex and r"pvt\_tiny" in tex and r"$\Delta$" in tex
    html = render_paper_table(load_run(run), "html")
    assert "<table>" in html and "rounds to 1 decimal" in html
    # through the CLI: --paper defaults to the latest paper_table run
    out = tmp_path / "paper.md"
    results = tmp_path / "results"
    assert main(["report", "--paper", "--results-dir", str(results), "-o", str(out)]) == 0
    assert "| pvt_tiny |" in out.read_text()
    assert main(["report", "--paper", "--results-dir", str(results), "-f", "latex", "-o", str(out)]) == 0
    assert r"\begin{tabular}" in out.read_text()
    assert main(["report", "--paper", "--results-dir", str(tmp_path / "none")]) == 2
