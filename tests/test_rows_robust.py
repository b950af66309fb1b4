"""Malformed rows files and report edge cases: good rows kept, one line for the rest (issue 11)."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacabench.cli import main
from pacabench.errors import PacabenchError, UsageError
from pacabench.reports.formats import RENDERERS, Report
from pacabench.reports.sections import render_markdown, run_summary
from pacabench.runs.results import load_run, read_rows
from tests._tier import examples

GOOD = {
    "model": "pvt_v2_b0",
    "task": "cost",
    "resolution": [224, 224],
    "batch_size": 1,
    "dtype": "fp32",
    "device": "cpu",
    "device_name": "cpu",
    "status": "ok",
    "params": 3_666_760,
    "gflops": 0.57,
}


def _write(tmp_path, lines):
    p = tmp_path / "rows.jsonl"
    p.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return p


BAD_LINES = [
    "[1, 2]",
    "5",
    "null",
    '"text"',
    {"foo": 1},
    {**GOOD, "resolution": "224"},
    {**GOOD, "resolution": 224},
    {**GOOD, "params": "<b>many</b>"},
    {**GOOD, "gflops": "$\\frac{1}{0}$"},
    {**GOOD, "status": 5},
    "{not json",
]


@pytest.mark.parametrize("bad", BAD_LINES, ids=range(len(BAD_LINES)))
def test_bad_line_is_skipped_with_one_warning(tmp_path, capsys, bad):
    p = _write(tmp_path, [GOOD, bad, {**GOOD, "model": "pvt_v2_b1"}])
    df = load_run(p)
    assert list(df["model"]) == ["pvt_v2_b0", "pvt_v2_b1"]
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and err.startswith("pacabench: warning: ") and "1 malformed line(s) (2;" in err
    )


def test_every_renderer_draws_the_good_rows_around_a_bad_line(tmp_path, capsys):
    """Once, not per bad line: what the renderers get is the good rows, whichever line was bad."""
    df = load_run(_write(tmp_path, [GOOD, BAD_LINES[-1], {**GOOD, "model": "pvt_v2_b1"}]))
    for fmt, renderer in RENDERERS.items():
        assert "b1" in renderer.render(Report(df, title="t")).replace("\\_", "_"), fmt


@pytest.mark.parametrize("bad", BAD_LINES, ids=range(len(BAD_LINES)))
def test_nothing_usable_is_one_error_exit_2(tmp_path, capsys, bad):
    _write(tmp_path, [bad])
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("pacabench: error: ") and "no usable rows" in err


def test_rows_file_that_is_a_folder(tmp_path, capsys):
    (tmp_path / "rows.jsonl").mkdir()
    with pytest.raises(UsageError, match="is a folder"):
        load_run(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    assert "is a folder, not a rows file" in capsys.readouterr().err


def test_read_rows_names_a_non_object_line(tmp_path):
    p = _write(tmp_path, [GOOD, "[1]", GOOD])
    with pytest.raises(UsageError, match=r"rows\.jsonl:2: not a JSON row \(a list\)"):
        read_rows(p)


def test_summary_counts_accuracy_rows_too():
    import pandas as pd

    acc = {**GOOD, "task": "imagenet", "status": "error", "params": None, "gflops": None, "top1": None}
    df = pd.DataFrame([GOOD, acc])
    assert run_summary(df) == "1 cases (1 ok) and 1 accuracy row (1 error) on cpu."
    df = pd.DataFrame([acc])
    assert run_summary(df) == "1 accuracy row (1 error) on cpu."


def test_markdown_table_survives_pipe_and_newline_in_names(tmp_path):
    rows = [GOOD, {**GOOD, "model": "evil|model\nsecond line", "params": 5}]
    df = load_run(_write(tmp_path, rows))
    md = render_markdown(df)
    tables = [t.splitlines() for t in md.split("\n\n") if t.startswith("|")]
    assert tables
    for t in tables:  # every line of a table is a row with the header's number of cells
        assert all(ln.startswith("|") for ln in t), t
        assert len({ln.replace("\\|", "").count("|") for ln in t}) == 1, t
    table_lines = [ln for t in tables for ln in t]
    assert any("evil\\|model second line" in ln for ln in table_lines)
    assert not any(ln.startswith("second line") for ln in md.splitlines())


ROW_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip
ROWS = st.dictionaries(
    st.sampled_from(
        ["model", "resolution", "status", "task", "params", "gflops", "batch_size", "head", "foo"]
    ),
    ROW_VALUES,
)
LINES = st.lists(
    st.one_of(
        ROWS.map(json.dumps), st.just(json.dumps(GOOD)), st.text(max_size=30), ROW_VALUES.map(json.dumps)
    ),
    max_size=6,
)


@pytest.mark.slow  # 200 examples through every renderer; BAD_LINES above are the default tier's
@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LINES)
def test_fuzz_rows_reader(tmp_path_factory, lines):
    d = tmp_path_factory.mktemp("rows")
    (d / "rows.jsonl").write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        df = load_run(d)
    except PacabenchError as e:
        assert "\n" not in str(e)
        return
    render_markdown(df)
    for renderer in RENDERERS.values():
        renderer.render(Report(df, title="t"))
