"""Reports for a zoo (pacabench.reports.zoo): the family of a model, the Pareto frontier against an
independent brute-force non-dominance check, the per-family scaling exponents against slopes fitted
here, and the Pareto figure in the HTML report and in ``report --plot``.

The synthetic run: 9 models in 4 families at 224 and 512, FLOPs and latency planted as power laws of
the token count with a known exponent per model, plus one oom row that must not become a point.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacabench.reports.formats import render_html
from pacabench.reports.plots import cost_figure, family_styles, make_figures, pareto_figure, write_plots
from pacabench.reports.sections import SCALING_TITLE, render_markdown, report_sections
from pacabench.reports.zoo import (
    FAMILY_EXP_TITLE,
    LABEL_ALL_UP_TO,
    family_of,
    is_zoo,
    label_offsets,
    pareto_mask,
    pareto_points,
)
from pacabench.runs.results import load_run
from tests._tier import examples

GOLDEN_ROWS = Path(__file__).parent / "golden" / "rows.jsonl"

# model -> (family field the runner wrote, params, GFLOPs at 224, FLOPs exponent, latency ms at 224,
# latency exponent); an empty family makes the report derive it (family_of)
ZOO = {
    "convnext_tiny": ("", 28.6e6, 4.5, 1.00, 4.0, 1.05),
    "convnext_small": ("", 50.2e6, 8.7, 1.00, 7.0, 1.10),
    "convnext_base": ("", 88.6e6, 15.4, 1.00, 12.0, 1.02),
    "vit_tiny_patch16_224": ("", 5.7e6, 1.3, 1.30, 7.0, 1.40),
    "vit_small_patch16_224": ("", 22.1e6, 4.6, 1.25, 7.5, 1.35),
    "vit_base_patch16_224": ("", 86.6e6, 17.6, 1.20, 24.0, 1.28),
    "swin_tiny_patch4_window7_224": ("swin", 28.3e6, 4.5, 1.02, 11.0, 1.08),
    "swin_small_patch4_window7_224": ("swin", 49.6e6, 8.7, 1.02, 20.0, 1.12),
    "nets/my_net.py:build": ("", 12.0e6, 2.0, 1.10, 6.0, 1.15),
}
T224 = (224 // 4) ** 2


def _rows() -> list[dict]:
    rows = []
    for model, (fam, params, g0, a, l0, b) in ZOO.items():
        for res in (224, 512):
            t = (res // 4) ** 2
            rows.append(
                {"suite": "zoo", "run_id": "t", "model": model, "family": fam, "task": "cost",
                 "resolution": [res, res], "tokens": t, "batch_size": 1, "dtype": "fp32", "device": "cpu",
                 "status": "ok", "error": None, "params": int(params), "gflops": g0 * (t / T224) ** a,
                 "latency_ms_median": l0 * (t / T224) ** b}
            )  # fmt: skip
    rows.append({**rows[-1], "resolution": [1024, 1024], "tokens": 65536, "status": "oom",
                 "error": "out of memory", "gflops": None, "latency_ms_median": None})  # fmt: skip
    return rows


@pytest.fixture
def zoo_run(tmp_path) -> Path:
    run = tmp_path / "zoo"
    run.mkdir()
    (run / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    return run


def _dominated(p, q) -> bool:
    """q dominates p: no worse in both, better in one."""
    return q[0] <= p[0] and q[1] <= p[1] and (q[0] < p[0] or q[1] < p[1])


def _brute_front(points) -> list[bool]:
    return [not any(_dominated(p, q) for q in points) for p in points]


# ------------------------------------------------------------------------------------- family_of
@pytest.mark.parametrize(
    "name,family",
    [
        ("pacavit_tiny_p2cconv_100_0", "paca_vit"),  # catalogue names: the catalogue's family
        ("pvt_tiny", "pvt_v1"),
        ("pvt_v2_b2_li", "pvt_v2"),
        ("swin_base_patch4_window7_224", "swin"),
        ("convnext_tiny", "convnext"),  # timm names: timm's module (as `pacabench models --all`)
        ("convnext_tiny.fb_in1k", "convnext"),
        ("vit_small_patch16_224", "vision_transformer"),
        ("resnet50d", "resnet"),
        ("swinv2_tiny_window8_256", "swin_transformer_v2"),
        ("mobilenetv3_large_100", "mobilenetv3"),
        ("eva02_tiny_patch14_224", "eva"),
        ("tf_efficientnet_b0", "efficientnet"),
        ("efficientvit_b0", "efficientvit_mit"),
        ("resnet77x_future.tag", "resnet"),  # not registered here: the first word, digits cut
        ("tf_eva03_giant_future", "eva"),
        ("swinv9_future_window8", "swinv9"),
        ("nets/my_net.py:build", "my_net"),  # user factories: the module
        ("my_pkg.nets:build_net", "my_pkg.nets"),
    ],
)
def test_family_of(name, family):
    assert family_of(name) == family


def test_zoo_rule(zoo_run):
    df = load_run(zoo_run)
    assert is_zoo(df)
    assert not is_zoo(load_run(GOLDEN_ROWS))  # 2 models of 2 families: not a zoo
    few = df[df["model"].isin(["convnext_tiny", "vit_tiny_patch16_224", "nets/my_net.py:build"])]
    assert not is_zoo(few)  # 3 families of one model each
    two = df[df["model"].isin(["convnext_tiny", "convnext_small", "vit_tiny_patch16_224"])]
    assert is_zoo(two)  # two families, one with two models


# ----------------------------------------------------------------------------------- the frontier
def test_pareto_points_match_brute_force(zoo_run):
    df = load_run(zoo_run)
    pts = pareto_points(df)
    assert len(pts) == 2 * len(ZOO)  # one point per (model, resolution); the oom row is none
    assert set(pts["family"]) == {"convnext", "vision_transformer", "swin", "my_net"}
    for cost in ("gflops", "params"):
        for res, g in pts.groupby("res"):
            want = _brute_front(list(zip(g[cost], g["latency"])))
            assert g[f"front_{cost}"].tolist() == want, (cost, res)
    # planted: at 224 the GFLOPs frontier is vit_tiny (1.3, 7 ms), my_net (2.0, 6 ms), convnext_tiny
    # (4.5, 4 ms); swin_tiny ties convnext_tiny's GFLOPs at a higher latency and is off it
    at224 = pts[pts["res"] == "224"].set_index("model")
    front = set(at224.index[at224["front_gflops"]])
    assert front == {"vit_tiny_patch16_224", "nets/my_net.py:build", "convnext_tiny"}


@settings(max_examples=examples(200), deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 12).map(float), st.integers(1, 12).map(float)), min_size=1, max_size=30)
)
def test_pareto_mask_properties(points):
    mask = pareto_mask([p[0] for p in points], [p[1] for p in points])
    front = [p for p, m in zip(points, mask) if m]
    for p, m in zip(points, mask):
        if m:  # no frontier point is dominated by any point
            assert not any(_dominated(p, q) for q in points)
        else:  # every other point is dominated by a frontier point
            assert any(_dominated(p, q) for q in front)
    assert mask == _brute_front(points)


# ------------------------------------------------------------------------------- report sections
def test_family_column_and_family_exponents(zoo_run):
    df = load_run(zoo_run)
    secs = {s.title: s.table for s in report_sections(df)}
    sc = secs[SCALING_TITLE]
    assert list(sc.index.names) == ["model", "family"]
    assert dict(sc.index.tolist())["vit_small_patch16_224"] == "vision_transformer"
    fam = secs[FAMILY_EXP_TITLE]
    # independently: each model's slope from its two planted points, then the median per family
    fams = {"convnext": [], "vision_transformer": [], "swin": [], "my_net": []}
    for model in ZOO:
        f = family_of(model)
        ok = [r for r in _rows() if r["model"] == model and r["status"] == "ok"]
        x = [math.log(r["tokens"]) for r in ok]
        fams[f].append(
            ((math.log(ok[1]["gflops"]) - math.log(ok[0]["gflops"])) / (x[1] - x[0]),
             np.polyfit(x, [math.log(r["latency_ms_median"]) for r in ok], 1)[0])
        )  # fmt: skip
    for f, slopes in fams.items():
        assert fam.loc[f, "models"] == len(slopes)
        assert fam.loc[f, "flops_exp"] == pytest.approx(float(np.median([s[0] for s in slopes])), abs=1e-9)
        assert fam.loc[f, "latency_exp"] == pytest.approx(float(np.median([s[1] for s in slopes])), abs=1e-9)
    assert fam.loc["convnext", "flops_exp"] == pytest.approx(1.00, abs=1e-9)  # the planted exponents
    assert fam.loc["vision_transformer", "latency_exp"] == pytest.approx(1.35, abs=1e-9)
    md = render_markdown(df)
    assert "| model | family |" in md and f"## {FAMILY_EXP_TITLE}" in md


def test_not_a_zoo_has_no_family_column():
    df = load_run(GOLDEN_ROWS)
    titles = [s.title for s in report_sections(df)]
    assert FAMILY_EXP_TITLE not in titles
    assert all("family" not in (s.table.index.names or []) for s in report_sections(df))
    assert "pareto" not in make_figures(df)


# --------------------------------------------------------------------------------------- figures
def test_pareto_figure(zoo_run):
    df = load_run(zoo_run)
    fig = pareto_figure(df)
    assert fig is not None and len(fig.axes) == 2
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    # a small zoo names every point; the frontier's names are the bold ones
    pts = pareto_points(df)
    assert len(pts) <= LABEL_ALL_UP_TO
    for ax, cost in zip(fig.axes, ("gflops", "params")):
        assert sorted(t.get_text() for t in ax.texts) == sorted(pts.loc[pts[cost].gt(0), "model"])
        bold = sorted(t.get_text() for t in ax.texts if t.get_fontweight() == "bold")
        assert bold == sorted(pts.loc[pts[f"front_{cost}"], "model"])


def _box(x, y, place, text, size=7.0, dpi=72.0):
    """The text box label_offsets assumes for a label at ``place`` (dpi 72: points = pixels)."""
    dx, dy, ha = place
    w = 0.6 * size * len(text)
    x0 = x + dx - w * {"left": 0.0, "center": 0.5, "right": 1.0}[ha]
    return (x0, y + dy, x0 + w, y + dy + 1.15 * size)


def test_label_offsets_keep_labels_apart_and_inside():
    far = label_offsets([(10, 10), (300, 300)], ["alpha", "beta"], 7.0, 72.0)
    assert far == [(3.0, 2.0, "left")] * 2  # nothing in the way: right above each point
    pts, texts = [(100, 100), (104, 103), (98, 106)], ["convnext_tiny", "mambaout_tiny", "swin_tiny"]
    places = label_offsets(pts, texts, 7.0, 72.0)
    boxes = [_box(x, y, p, t) for (x, y), p, t in zip(pts, places, texts)]
    for i in range(3):
        for j in range(i):
            a, b = boxes[i], boxes[j]
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (texts[i], texts[j])
    # at the panel's right edge the label goes to the left of its point
    (edge,) = label_offsets([(195, 50)], ["resnet50"], 7.0, 72.0, bounds=(0, 0, 200, 200))
    assert edge[2] == "right" and _box(195, 50, edge, "resnet50")[2] <= 200


def test_pareto_figure_in_html(zoo_run, tmp_path, monkeypatch):
    import pacabench.reports.plots as plots

    df = load_run(zoo_run)
    cheap = plots.figure_png  # small PNGs and no cost plots keep the test fast (tested elsewhere)
    monkeypatch.setattr(plots, "figure_png", lambda fig, dpi=110: cheap(fig, dpi=20))
    monkeypatch.setattr(plots, "cost_figure", lambda *a, **k: None)
    page = render_html(df, title="zoo")
    caps = re.findall(r'<figure><img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([^"]+)">', page)
    assert "pareto" in caps
    assert "<th>family</th>" in page


def test_report_plot_folder_has_pareto_png(zoo_run, tmp_path, monkeypatch):
    import pacabench.reports.plots as plots

    monkeypatch.setattr(plots, "cost_figure", lambda *a, **k: None)  # only the Pareto plot, fast
    df = load_run(zoo_run)
    paths = write_plots(df, tmp_path / "plots", dpi=20)
    assert tmp_path / "plots" / "pareto.png" in paths
    assert (tmp_path / "plots" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pareto_skips_rows_without_latency(zoo_run):
    df = load_run(zoo_run)
    df.loc[df["model"] == "convnext_tiny", "latency_ms_median"] = None
    pts = pareto_points(df)
    assert "convnext_tiny" not in set(pts["model"])
    assert pd.Series(pts["latency"]).gt(0).all()


def test_zoo_cost_plot_lines_coloured_by_family(zoo_run):
    from matplotlib.colors import to_hex

    df = load_run(zoo_run)
    fig = cost_figure(df, "gflops", family_styles(df))
    colour = {ln.get_label(): to_hex(ln.get_color()) for ln in fig.axes[0].lines if ln.get_label() in ZOO}
    assert set(colour) == set(ZOO)
    by_family: dict[str, set] = {}
    for model, c in colour.items():
        by_family.setdefault(family_of(model), set()).add(c)
    assert all(len(cs) == 1 for cs in by_family.values())  # one colour per family
    assert len({next(iter(cs)) for cs in by_family.values()}) == len(by_family)  # families differ


def test_zoo_latency_suite_times_a_subset_of_the_scaling_zoo():
    """suites/zoo_latency.yaml: the Pareto plot's points, a CPU-sized subset of zoo_scaling.yaml's
    models (every kind, our three families among them) timed at 224, batch 1."""
    from pacabench.spec.suite import load_suite

    root = Path(__file__).resolve().parent.parent / "suites"
    lat, scaling = load_suite(root / "zoo_latency.yaml"), load_suite(root / "zoo_scaling.yaml")
    names = [m.name for m in lat.models]
    assert set(names) <= {m.name for m in scaling.models} and len(names) >= 10
    assert {"latency", "memory", "params", "flops"} <= set(lat.metrics)
    assert lat.resolutions == [(224, 224)] and lat.batch_sizes == [1] and lat.device == "cpu"
    fams = {family_of(n) for n in names}
    assert {"paca_vit", "swin", "pvt_v2"} <= fams and len(fams) == len(names)
