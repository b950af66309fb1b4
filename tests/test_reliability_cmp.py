"""Reliability round 3 (issue 21), the compare / report / capacity side: hostile inputs give a
valid result or one line and exit 2, never a traceback, a silent pass or a lost case."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacabench.analysis.compare import compare_rows, load_rows
from pacabench.cli import main
from pacabench.errors import UsageError
from tests._tier import examples


def row(model="pvt_v2_b0", res=(64, 64), **kw):
    d = {
        "suite": "t",
        "model": model,
        "task": "cost",
        "resolution": list(res),
        "batch_size": 1,
        "dtype": "fp32",
        "device": "cpu",
        "status": "ok",
        "params": 3_666_760,
        "gflops": 0.044,
    }
    d.update(kw)
    return d


def write(path: Path, rows, tail: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail, encoding="utf-8")
    return path


def one_error_line(capsys, *words: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("pacabench: error:"), err
    for w in words:
        assert w in err, err
    return err


# ------------------------------------------------------------------- 9: nothing to compare
def test_compare_with_no_check_run_exits_2_nothing_to_compare(tmp_path, capsys):
    """-m latency on FLOPs-only runs, -m accuracy on cost runs, error rows on both sides: cases
    line up but nothing is judged; that is exit 2 with the reason, not a silent 0."""
    flops = write(tmp_path / "flops.jsonl", [row(), row(res=(96, 96))])
    assert main(["compare", str(flops), str(flops), "-m", "latency"]) == 2
    err = one_error_line(capsys, "nothing to compare", "latency_ms_median", "params, gflops")
    assert "2 case(s) ok in both" in err
    assert main(["compare", str(flops), str(flops), "-m", "accuracy", "--format", "json"]) == 2
    out = capsys.readouterr()
    data = json.loads(out.out)
    assert data["verdict"] == "nothing_to_compare" and data["exit_code"] == 2 and data["checks"] == []
    err_rows = write(tmp_path / "err.jsonl", [row(status="error", params=None, gflops=None, error="boom")])
    assert main(["compare", str(err_rows), str(err_rows)]) == 2
    one_error_line(capsys, "nothing to compare", "no case is ok in both", "error → error")
    # the same files with a metric both sides have: a real check, exit 0
    assert main(["compare", str(flops), str(flops), "-m", "flops"]) == 0
    assert "**OK**" in capsys.readouterr().out


def test_nothing_checked_from_the_api_and_a_regression_still_wins():
    import pacabench

    cmp = pacabench.compare([row()], [row()], metrics="latency")
    assert cmp.exit_code == 2 and not cmp.ok and cmp.nothing_checked and "latency_ms_median" in cmp.note
    # a missing case is a regression: exit 1, even though nothing else was checked
    cmp = pacabench.compare([row(), row(res=(96, 96))], [row()], metrics="latency")
    assert cmp.exit_code == 1


# ------------------------------------------------------------------------ 10: bad baselines
def test_torn_last_line_refuses_instead_of_dropping_a_case(tmp_path, capsys):
    rows = [row(), row(res=(96, 96))]
    torn = write(tmp_path / "base.jsonl", rows[:1], tail=json.dumps(rows[1])[:40])
    whole = write(tmp_path / "run.jsonl", rows)
    assert main(["compare", str(torn), str(whole)]) == 2
    one_error_line(capsys, f"{torn}:2", "torn last line", "--resume-from")
    assert main(["compare", str(whole), str(torn)]) == 2  # the run's side alike
    one_error_line(capsys, "torn")


@pytest.mark.parametrize(
    "key,raw",
    [("params", "NaN"), ("params", "Infinity"), ("params", "-Infinity"), ("params", "1e999"),
     ("params", '"3.6M"'), ("gflops", "true"), ("latency_ms_median", "NaN"), ("peak_mem_mb", '"12 MiB"')],
)  # fmt: skip
def test_invalid_values_are_bad_input_not_a_new_metric(tmp_path, capsys, key, raw):
    good = row(latency_ms_median=10.0, peak_mem_mb=50.0)
    base = tmp_path / "base.jsonl"
    base.write_text(json.dumps({**good, key: "@"}).replace('"@"', raw) + "\n", encoding="utf-8")
    run = write(tmp_path / "run.jsonl", [good])
    assert main(["compare", str(base), str(run)]) == 2
    one_error_line(capsys, f"{base}:1", key)


def test_invalid_samples_and_round_sizes_are_bad_input(tmp_path, capsys):
    s = [10.0] * 6
    run = write(tmp_path / "run.jsonl", [row(latency_ms_median=10.0, latency_ms_samples=s)])
    for bad in (
        {"latency_ms_samples": [10.0, -1.0, 10.0, 10.0, 10.0]},
        {"latency_ms_samples": s, "latency_round_sizes": [2, 2]},
        {"latency_ms_samples": s, "latency_round_sizes": [3, "3"]},
        {"batch_size": 1.5},
    ):
        base = write(tmp_path / "base.jsonl", [row(latency_ms_median=10.0, **bad)])
        assert main(["compare", str(base), str(run)]) == 2, bad
        one_error_line(capsys, f"{base}:1")


# --------------------------------------------------------------------- 19: mistyped fields
@pytest.mark.parametrize(
    "field,value", [("resolution", "ab"), ("batch_size", "x"), ("resolution", [64, "a"])]
)
def test_mistyped_row_fields_are_one_line_exit_2(tmp_path, capsys, field, value):
    good = write(tmp_path / "good.jsonl", [row()])
    bad = write(tmp_path / "bad.jsonl", [row(), row(res=(96, 96), **{field: value})])
    assert main(["compare", str(bad), str(good)]) == 2
    one_error_line(capsys, f"{bad}:2", field)
    assert main(["compare", str(good), str(bad)]) == 2
    one_error_line(capsys, field)
    with pytest.raises(UsageError, match=f"row 0: {field}"):  # rows given as data: the same check
        compare_rows_api([{**row(), field: value}], [row()])


def compare_rows_api(base, new):
    import pacabench

    return pacabench.compare(base, new)


# hypothesis: any line in a rows file → a valid comparison or one UsageError line
_FIELDS = ["model", "resolution", "batch_size", "batch_size_used", "status", "params", "gflops",
           "latency_ms_median", "latency_ms_samples", "latency_round_sizes", "peak_mem_mb", "task",
           "kwargs", "head", "error", "mode", "loadavg_1m", "threads", "top1"]  # fmt: skip
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_ROW_LIKE = st.fixed_dictionaries({}, optional={f: _JSON for f in _FIELDS}).map(lambda d: {**row(), **d})
_LINE = st.one_of(
    _ROW_LIKE.map(json.dumps),
    _JSON.map(json.dumps),
    st.text(max_size=40),
    _ROW_LIKE.map(lambda d: json.dumps(d)[: len(json.dumps(d)) // 2]),
)


@settings(
    max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(_LINE, max_size=4), where=st.sampled_from(["base", "run"]))
def test_any_rows_file_gives_a_comparison_or_one_usage_error(tmp_path, lines, where):
    text = "".join(line.replace("\n", " ").replace("\r", " ") + "\n" for line in lines)
    odd = tmp_path / "odd.jsonl"
    odd.write_text(text, encoding="utf-8")
    good = write(tmp_path / "good.jsonl", [row(latency_ms_median=10.0, latency_ms_samples=[10.0] * 6)])
    base, run = (odd, good) if where == "base" else (good, odd)
    try:
        rows = load_rows(odd)
    except UsageError as e:
        assert "\n" not in str(e) and str(odd) in str(e)
        return
    import pacabench

    try:
        cmp = pacabench.compare(base, run, fail_on_missing=False)
    except UsageError as e:  # only the baseline's emptiness is left to refuse
        assert not rows and "no rows" in str(e)
        return
    assert cmp.exit_code in (0, 1, 2)
    json.dumps(cmp.to_dict())


# ------------------------------------------------------------------ 15: between-run drift
def _lognormal(n, scale, seed, sigma=0.02):
    rng = np.random.default_rng(seed)
    return [round(float(x), 4) for x in scale * rng.lognormal(0.0, sigma, n)]


def _timed(samples, rounds=None):
    return row(
        latency_ms_samples=samples,
        latency_ms_median=float(np.median(samples)),
        **({"latency_round_sizes": rounds} if rounds else {}),
    )


def _latency_check(base, new):
    cmp = compare_rows([base], [new])
    (c,) = [c for c in cmp.checks if c.metric == "latency_ms_median"]
    return c, cmp


def test_a_slow_spell_in_one_run_is_not_a_regression():
    """The same code, a run with a slow spell over its last 60%: the samples differ
    significantly and the medians by > 20% (the old verdict: regression), but its first
    stretch of time is as fast as the baseline: a drift, inconclusive, exit 0."""
    base = _lognormal(30, 10.0, 0)
    new = _lognormal(12, 10.0, 1) + _lognormal(18, 25.0, 2)
    c, cmp = _latency_check(_timed(base), _timed(new))
    assert np.median(new) / np.median(base) > 1.2  # the effect the old rule called a regression
    assert c.verdict == "inconclusive" and "not in every round" in c.rule and cmp.exit_code == 0
    # a fast spell in the baseline (the other way round a drift can fool the verdict) alike
    c, cmp = _latency_check(_timed(_lognormal(18, 5.0, 3) + _lognormal(12, 10.0, 4)), _timed(base))
    assert c.verdict == "inconclusive" and cmp.exit_code == 0


def test_rounds_decide_when_rows_have_them():
    """Interleaved rounds: a slowdown in two rounds of three is drift; in all three a regression."""
    base = _lognormal(30, 10.0, 0)
    part = _lognormal(10, 10.0, 1) + _lognormal(20, 16.0, 2)
    c, _ = _latency_check(_timed(base, [10, 10, 10]), _timed(part, [10, 10, 10]))
    assert c.verdict == "inconclusive" and "round medians" in c.rule
    steady = _lognormal(30, 15.0, 5)
    c, cmp = _latency_check(_timed(base, [10, 10, 10]), _timed(steady, [10, 10, 10]))
    assert c.verdict == "regression" and cmp.exit_code == 1
    c, _ = _latency_check(_timed(steady, [10, 10, 10]), _timed(base, [10, 10, 10]))
    assert c.verdict == "faster"


# ------------------------------------------------------------- 11: no zero-width intervals
def _sampled_run(n, *, rounds=None):
    """Two models × two sizes, B twice A's time, ``n`` samples per case."""
    out = []
    for res, t in ((64, 1.0), (128, 4.0)):
        for model, k in (("A", 1.0), ("B", 2.0)):
            s = [round(t * k * (1 + 0.01 * i), 4) for i in range(n)]
            extra = {"latency_round_sizes": rounds} if rounds else {}
            out.append(
                row(model, (res, res), latency_ms_median=float(np.median(s)), latency_ms_samples=s, **extra)
            )
    return out


def _sections(rows):
    from pacabench.reports.sections import SCALING_TITLE, report_sections
    from pacabench.runs.results import rows_frame

    secs = {s.title: s.table for s in report_sections(rows_frame(rows))}
    rel = next(t for k, t in secs.items() if k.startswith("Latency, median relative to A"))
    return rel, secs[SCALING_TITLE]


def test_one_sample_per_case_shows_the_ratio_without_an_interval():
    rel, scaling = _sections(_sampled_run(1))
    assert rel.loc["B", "64"] == pytest.approx(2.0)  # the plain ratio, not "2.00 [2.00, 2.00]"
    assert not any(isinstance(v, str) for v in rel.to_numpy().ravel())
    assert "latency_exp 95% CI" not in scaling.columns
    rel, scaling = _sections(_sampled_run(4))  # below MIN_SAMPLES = 5 alike
    assert not any(isinstance(v, str) for v in rel.to_numpy().ravel())
    rel, scaling = _sections(_sampled_run(8))  # enough: an interval of non-zero width around 2
    low, high = (float(x) for x in rel.loc["B", "64"].split("[")[1].rstrip("]").split(","))
    assert rel.loc["B", "64"].startswith("2.00 [") and low < 2.0 < high
    assert scaling["latency_exp 95% CI"].notna().all()


# ----------------------------------------------- 20: edited samples or round sizes in report
def _slow(value):
    return pytest.param(value, marks=pytest.mark.slow)


@pytest.mark.parametrize(
    "edit",
    # one bad round-size list and one bad sample list in the default tier, the other kinds slow
    [{"latency_round_sizes": [1, 2]}, _slow({"latency_round_sizes": ["a", 7]}), _slow({"latency_round_sizes": [0, 8]}),
     {"latency_ms_samples": ["x"] * 8}, _slow({"latency_ms_samples": [-1.0] * 8}),
     _slow({"latency_ms_samples": [[1.0]] * 8}), _slow({"latency_ms_samples": [True] * 8})],
)  # fmt: skip
def test_report_survives_edited_samples_and_round_sizes(tmp_path, capsys, edit):
    rows = _sampled_run(8, rounds=[4, 4])
    rows[1].update(edit)  # B at 64 px
    run = write(tmp_path / "run" / "rows.jsonl", rows).parent
    for fmt in ("markdown", "html", "latex", "csv"):
        assert main(["report", str(run), "-f", fmt]) == 0, fmt
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "| B | 2.00 |" in main_markdown(run, capsys)


def main_markdown(run, capsys) -> str:
    assert main(["report", str(run)]) == 0
    return capsys.readouterr().out


# hypothesis: rows with any samples / round sizes / values → every report format and every plot,
# no exception and no warning (numpy, pandas, matplotlib)
_NUM = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 10**6))
_CASE = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["A", "B"]),
        "resolution": st.sampled_from([[4, 4], [64, 64], [64, 96], [128, 128]]),
        "status": st.sampled_from(["ok", "ok", "ok", "oom", "error"]),
        "mode": st.sampled_from(["inference", "train"]),
        "grad_checkpointing": st.booleans(),
        "latency_ms_median": _NUM,
        "peak_mem_mb": _NUM,
        "gflops": _NUM,
        "train_ms_median": _NUM,
        "latency_ms_samples": st.one_of(
            st.none(), st.lists(st.one_of(_NUM, st.text(max_size=2)), max_size=9)
        ),
        "latency_round_sizes": st.one_of(st.none(), st.lists(st.integers(-2, 9), max_size=4)),
    }
)


@pytest.mark.slow
@settings(max_examples=examples(40), deadline=None)
@given(cases=st.lists(_CASE, min_size=1, max_size=6))
def test_any_rows_render_every_format_and_plot_without_warnings(cases):
    _render_all_quietly([{**row(c["model"], c["resolution"]), **c} for c in cases])


def test_zero_negative_huge_and_one_size_values_render_without_warnings():
    """The probes that printed numpy/matplotlib warnings: zeros on a log axis ("Data has no
    positive values"), a negative, 1e297, infinities, one resolution, a 2-px side (0 tokens)."""
    rows = [
        row("A", (64, 64), gflops=0.0, latency_ms_median=0.0, peak_mem_mb=0.0),
        row("B", (64, 64), gflops=-1.0, latency_ms_median=1e297, peak_mem_mb=math.inf),
        row("B", (2, 2), gflops=1.0, latency_ms_median=-math.inf, peak_mem_mb=5.0),
    ]
    _render_all_quietly(rows)
    _render_all_quietly(rows[:1], tables=False)  # zeros only: the plots warned


def _render_all_quietly(rows, tables: bool = True):
    from pacabench.reports.formats import RENDERERS, Report, render_html
    from pacabench.reports.plots import figure_png, make_figures
    from pacabench.runs.results import rows_frame

    df = rows_frame(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, r in RENDERERS.items() if tables else ():
            rep = Report(df, title="t")
            if name != "html":  # html = the same sections and the figures below (drawn small: faster)
                r.render(rep)
            if r.files:
                r.files(rep)
        if tables:
            render_html(df, plots=False)
        for fig in make_figures(df).values():
            figure_png(fig, dpi=20)


# --------------------------------------------------------- 25: no rows never measured
def _train_rows():
    out = []
    for m in ("A", "B"):
        for r, scale in ((224, 1.0), (448, 4.0)):
            out.append(row(m, (r, r), mode="inference", grad_checkpointing=False,
                           latency_ms_median=10.0 * scale, peak_mem_mb=50.0 * scale))  # fmt: skip
            for gc in (False, True):
                out.append(row(m, (r, r), mode="train", grad_checkpointing=gc, train_ms_median=30.0 * scale,
                               train_peak_mb=300.0 * scale, train_state_mb=100.0,
                               train_activation_mb=200.0 * scale))  # fmt: skip
    return out


def test_report_tables_hold_only_measured_settings(tmp_path, capsys):
    run = write(tmp_path / "run" / "rows.jsonl", _train_rows()).parent
    text = main_markdown(run, capsys)
    assert "| inference | True |" not in text  # inference with checkpointing was never measured
    params = text.split("## Params (M)")[1].split("##")[0]
    assert params.count("| A |") == 3 and params.count("| B |") == 3  # inference, train, train + gc
    latency = text.split("## Latency, median")[1].split("##")[0]
    assert "| A | inference | False | 10.00 | 40.00 |" in latency and "train" not in latency


# --------------------------------------------------------------- 14: csv mode columns
def test_report_csv_tells_train_from_inference_rows(tmp_path, capsys):
    import csv
    import io

    rows = _train_rows() + [row("C", (224, 224), latency_ms_median=1.0)]  # an older row: no mode at all
    run = write(tmp_path / "run" / "rows.jsonl", rows).parent
    assert main(["report", str(run), "-f", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    keys = [(r["model"], r["res"], r["mode"], r["grad_checkpointing"]) for r in table]
    assert len(set(keys)) == len(table) == 13
    assert keys[:3] == [("A", "224x224", "inference", "False"), ("A", "224x224", "train", "False"),
                        ("A", "224x224", "train", "True")]  # fmt: skip
    assert keys[-1] == ("C", "224x224", "inference", "False")


# ----------------------------------------------------------- 26: the CSV folder is complete
def test_csv_folder_holds_the_capacity_train_and_relative_tables(tmp_path, capsys):
    import pandas as pd

    rows = _train_rows() + [
        row("A", (64, 64), mode="train", capacity_resolution=1376, capacity_peak_mb=4013.6,
            capacity_budget_mb=4096.0, capacity_capped=False),
    ]  # fmt: skip
    run = write(tmp_path / "run" / "rows.jsonl", rows).parent
    out = tmp_path / "csv"
    assert main(["report", str(run), "-f", "csv", "-o", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"train_vs_inference.csv", "capacity.csv", "relative_latency_ms_median.csv"} <= names
    cap = pd.read_csv(out / "capacity.csv")
    assert cap.loc[0, "largest resolution"] == 1376 and cap.loc[0, "budget (MiB)"] == 4096.0
    tv = pd.read_csv(out / "train_vs_inference.csv")
    assert set(tv["train / inference"].dropna()) == {3.0}  # (the capacity row at 64 px has no inference)
    rel = pd.read_csv(out / "relative_latency_ms_median.csv", index_col=[0, 1, 2])
    assert rel.loc[("B", "inference", False), "448"] == pytest.approx(1.0)


# ------------------------------------------------------------ 31: -o into a missing folder
@pytest.mark.parametrize(
    "fmt,name", [("markdown", "r.md"), ("html", "r.html"), ("latex", "r.tex"), ("csv", "csv")]
)
def test_report_output_into_a_missing_folder_is_created(tmp_path, capsys, fmt, name):
    run = write(tmp_path / "run" / "rows.jsonl", [row(), row("B")]).parent
    out = tmp_path / "not" / "yet" / name
    assert main(["report", str(run), "-f", fmt, "-o", str(out)]) == 0
    assert out.exists() and (out.is_dir() if fmt == "csv" else "B" in out.read_text())


# ------------------------------------------------------------ 28: --suite stays a name
def test_report_suite_cannot_leave_the_results_dir(tmp_path, capsys):
    write(tmp_path / "outside" / "r1" / "rows.jsonl", [row()])
    results = tmp_path / "results"
    results.mkdir()
    for suite in ("../outside", "..", "a/b", "*"):
        assert main(["report", "--suite", suite, "--results-dir", str(results)]) == 2, suite
        one_error_line(capsys, "--suite")


def test_compare_latest_run_of_a_baseline_suite_stays_under_results_dir(tmp_path, capsys):
    write(tmp_path / "outside" / "r1" / "rows.jsonl", [row()])
    base = write(tmp_path / "base.jsonl", [row(suite="../outside")])
    results = tmp_path / "results"
    results.mkdir()
    assert main(["compare", str(base), "--results-dir", str(results)]) == 2
    one_error_line(capsys, "suite name")


# ------------------------------------------------------- 12, 20, 27: capacity inputs
@pytest.fixture
def fake_probe(monkeypatch):
    """A model whose peak is 1 MiB per 32 px of side: no model is built."""
    import pacabench.measure.capacity as cap

    monkeypatch.setattr(cap, "model_probe", lambda *a, **k: lambda size: size / 32.0)


def test_capacity_limit_below_the_start_probes_the_limit(fake_probe, capsys):
    from pacabench.measure.capacity import find_capacity

    c = find_capacity("pvt_v2_b0", 2**30, mode="inference", limit=32)
    assert [p.size for p in c.probes] == [32] and c.answer == 32 and c.capped
    assert main(["capacity", "pvt_v2_b0", "--memory", "1GiB", "--limit", "32", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] == 32 and [p["size"] for p in out["probes"]] == [32]
    assert main(["capacity", "pvt_v2_b0", "--memory", "1GiB", "--start", "128", "--limit", "64"]) == 2
    one_error_line(capsys, "starts at 128, above its limit 64")


def test_suite_capacity_limit_below_the_resolution_is_an_error_row(fake_probe):
    from pacabench.runs.runner import run_case
    from pacabench.spec.suite import parse_suite

    text = (
        "name: cap\nmodels: [pvt_v2_b0]\nresolutions: [224]\ndevice: cpu\nmetrics: [capacity]\n"
        "capacity: {memory: 1GiB, limit: 64}\n"
    )
    (case,) = parse_suite(text, "cap.yaml").cases()
    r = run_case(case)
    assert r.status == "error" and "capacity.limit 64 is below the case's resolution 224" in r.error
    assert r.capacity_resolution is None


@pytest.mark.parametrize(
    "args,words",
    [(["--memory", "1" * 400 + "GiB"], ["too large"]), (["--memory", "9" * 400], ["too large"]),
     (["--memory", "0.5"], ["0 bytes", "unit"]), (["--memory", "1000"], ["1000 bytes", "unit"]),
     (["--memory", "1GiB", "-b", str(10**20)], ["--batch must be at most"]),
     (["--memory", "1GiB", "--limit", str(10**20)], ["--limit must be at most"]),
     (["--memory", "1GiB", "-r", str(10**20)], ["--resolution must be at most"])],
)  # fmt: skip
def test_capacity_hostile_sizes_are_one_line(capsys, args, words):
    assert main(["capacity", "pvt_v2_b0", *args]) == 2
    one_error_line(capsys, *words)


def test_profile_huge_batch_is_one_line(capsys):
    assert main(["profile", "pvt_v2_b0", "-r", "64", "-b", str(10**20)]) == 2
    one_error_line(capsys, "--batch-size must be at most")


# ----------------------------------------------------- 13: flops --detector --no-attention
def test_flops_detector_passes_no_attention(monkeypatch, capsys):
    import pacabench.models.detection as det

    seen = []

    def fake(model, hw, *, attention=True, **kw):
        seen.append(attention)
        return {"gflops": 1.0 if attention else 0.5, "parts": {}, "params": 1}

    monkeypatch.setattr(det, "detector_flops", fake)
    assert main(["flops", "pvt_v2_b0", "--detector", "-r", "64", "--no-attention", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["attention_counted"] is False and seen == [False]


@pytest.mark.slow
def test_detector_flops_without_attention_drops_only_the_backbones_attention():
    """A real Mask R-CNN on PVTv2-b0 at 64 px: the backbone's fused attention is counted only
    with ``attention``; the neck and heads have none, so they count the same either way."""
    from pacabench.models.detection import create_detector, detector_flops

    d = create_detector("pvt_v2_b0")
    full, plain = detector_flops(d, (64, 64)), detector_flops(d, (64, 64), attention=False)
    assert plain["parts"]["backbone"] < full["parts"]["backbone"]
    for part in ("neck", "rpn_head", "bbox_head", "mask_head"):
        assert plain["parts"][part] == full["parts"][part]


# ---------------------------------------------------------------- 32: --executor help
def test_run_help_lists_every_executor(capsys):
    from pacabench.spec.executor import EXECUTORS

    try:
        main(["run", "--help"])
    except SystemExit:
        pass
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    at = text.index("--executor")
    for kind in EXECUTORS:
        assert kind in text[at : at + 160], kind
