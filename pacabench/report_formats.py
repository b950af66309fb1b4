"""The run report as one self-contained HTML file (tables + plots embedded as base64 PNGs) or as
LaTeX booktabs tables ready for a paper; the paper's efficiency table in markdown, LaTeX or HTML.

The tables are the markdown report's (``pacabench.report``): per metric models × resolutions,
complexity scaling, cost relative to a reference model, unfinished cases, accuracy.
"""

from __future__ import annotations

import base64
import html
import math
import re
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from .report import FAILURES_TITLE, report_sections, run_summary

__all__ = [
    "to_strings",
    "markdown_table",
    "latex_table",
    "html_table",
    "render_html",
    "render_latex",
    "render_paper_table",
    "latex_escape",
]

_DIFF_TITLE = "Differences above 2 % from the published number, or above 0.5 % from the exact reference"


# ------------------------------------------------------------------------------------- helpers
def _cell(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, (bool,)):
        return str(v)
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def to_strings(tab: pd.DataFrame, fmt: str = "{:.3f}") -> pd.DataFrame:
    """Index becomes leading columns; every value formatted (non-numbers, e.g. 'oom', kept)."""
    if tab is None or tab.empty:
        return pd.DataFrame()
    nidx = tab.index.nlevels if not isinstance(tab.index, pd.RangeIndex) else 0
    t = tab.reset_index() if nidx else tab.copy()
    out = {}
    for i, c in enumerate(t.columns):
        if i < nidx:
            out[str(c)] = [str(v) for v in t[c]]
        else:
            out[str(c)] = [_cell(v, fmt) for v in t[c]]
    return pd.DataFrame(out)


def _numeric_col(values: list[str]) -> bool:
    return all(re.fullmatch(r"[+\-−]?[\d.,]+( ?%)?|–", v.strip()) for v in values) and bool(values)


def markdown_table(sdf: pd.DataFrame) -> str:
    if sdf is None or sdf.empty:
        return "_(no data)_\n"
    cols = [str(c) for c in sdf.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in sdf.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_UNICODE = {
    "Δ": r"$\Delta$",
    "–": "--",
    "—": "---",
    "−": "$-$",
    "×": r"$\times$",
    "·": r"$\cdot$",
    "≤": r"$\le$",
}


def latex_escape(text: str) -> str:
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    for k, v in _LATEX_UNICODE.items():
        out = out.replace(k, v)
    return out


def latex_table(sdf: pd.DataFrame, caption: str = "", label: str = "", *, small: bool = False) -> str:
    """A booktabs table environment (needs ``\\usepackage{booktabs}``)."""
    if sdf is None or sdf.empty:
        return f"% {caption}: no data\n"
    cols = list(sdf.columns)
    align = "".join("r" if _numeric_col([str(v) for v in sdf[c]]) else "l" for c in cols)
    lines = [r"\begin{table}[t]", r"\centering"]
    if small:
        lines.append(r"\small")
    if caption:
        lines.append(r"\caption{" + latex_escape(caption) + "}")
    if label:
        lines.append(r"\label{" + label + "}")
    lines += [
        r"\begin{tabular}{" + align + "}",
        r"\toprule",
        " & ".join(latex_escape(str(c)) for c in cols) + r" \\",
        r"\midrule",
    ]
    for row in sdf.itertuples(index=False):
        lines.append(" & ".join(latex_escape(str(v)) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def html_table(sdf: pd.DataFrame) -> str:
    if sdf is None or sdf.empty:
        return "<p><em>(no data)</em></p>\n"
    cols = list(sdf.columns)
    num = [_numeric_col([str(v) for v in sdf[c]]) for c in cols]
    out = [
        "<table>",
        "<thead><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in cols) + "</tr></thead>",
        "<tbody>",
    ]
    for row in sdf.itertuples(index=False):
        cells = []
        for v, n in zip(row, num):
            s = str(v)
            cls = ' class="num"' if n else ""
            if s in ("oom", "error", "skipped"):
                cls = f' class="status {s}"'
            cells.append(f"<td{cls}>{html.escape(s)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out += ["</tbody>", "</table>"]
    return "\n".join(out) + "\n"


def _label(text: str) -> str:
    return "tab:" + re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# --------------------------------------------------------------------------------- run sections
def _sections(df: pd.DataFrame, reference: str | None) -> list[tuple[str, pd.DataFrame]]:
    """(title, string table) for every table of the report (the markdown report's sections)."""
    out = []
    for sec in report_sections(df, reference):
        tab = sec.table
        if sec.title == FAILURES_TITLE:
            tab = tab.assign(error=tab["error"].str.slice(0, 160))
        out.append((sec.title, to_strings(tab, sec.fmt)))
    return out


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{padding:.25em .7em;border-bottom:1px solid #e5e5e5;text-align:left}
th{border-bottom:2px solid #555;background:#fafafa}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.status{font-weight:600}td.oom{color:#b00}td.error{color:#b60}td.skipped{color:#777}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
.meta{color:#555;font-size:.9em}.note{font-size:.85em;color:#444;max-width:60em}
"""


def _html_page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def render_html(
    df: pd.DataFrame, *, reference: str | None = None, title: str | None = None, plots: bool = True
) -> str:
    """One self-contained HTML page: every table of the report and the plots as inline PNGs."""
    title = title or "pacabench report"
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{html.escape(run_summary(df))} Generated {now} by pacabench.</p>',
    ]
    for sec_title, sdf in _sections(df, reference):
        body.append(f"<h2>{html.escape(sec_title)}</h2>")
        body.append(html_table(sdf))
    if plots:
        from .plots import figure_png, make_figures

        figs = make_figures(df)
        if figs:
            body.append("<h2>Plots</h2>")
        for stem, fig in figs.items():
            b64 = base64.b64encode(figure_png(fig)).decode("ascii")
            cap = stem.replace("_", " ")
            body.append(
                f'<figure><img src="data:image/png;base64,{b64}" alt="{html.escape(cap)}">'
                f"<figcaption>{html.escape(cap)}</figcaption></figure>"
            )
    return _html_page(title, body)


def render_latex(df: pd.DataFrame, *, reference: str | None = None, title: str | None = None) -> str:
    """Booktabs table environments, one per table of the report (``\\usepackage{booktabs}``)."""
    parts = [
        f"% {title or 'pacabench report'} — generated by pacabench",
        r"% Requires \usepackage{booktabs}. FLOPs: one multiply-add = one FLOP (GMACs), batch 1.",
        f"% {run_summary(df)}",
        "",
    ]
    for sec_title, sdf in _sections(df, reference):
        parts.append(latex_table(sdf, caption=sec_title, label=_label(sec_title)))
    return "\n".join(parts)


# --------------------------------------------------------------------------------- paper table
def render_paper_table(
    run: pd.DataFrame | None,
    fmt: str = "markdown",
    *,
    title: str | None = None,
    include_unmeasured: bool = False,
) -> str:
    """The paper's efficiency table (ours vs published, with Δ) in markdown, latex, html or csv."""
    from .reference import PAPER_TABLE_NOTES, SOURCE_KINDS, paper_table, paper_table_strings

    tab = paper_table(run, include_unmeasured=include_unmeasured)
    if fmt == "csv":
        return tab.to_csv(index=False)
    sdf = paper_table_strings(tab) if not tab.empty else pd.DataFrame()
    notes = (
        [(r["model"], r["note"]) for r in tab.to_dict("records") if r.get("note")] if not tab.empty else []
    )
    missing = []
    if not include_unmeasured:
        from .reference import reference_models

        measured = set(tab["model"]) if not tab.empty else set()
        missing = [m for m in reference_models() if m not in measured]
    title = title or "Efficiency at 224×224: ours vs published"
    legend = (
        "Sources: "
        + "; ".join(
            f"{k} = {v}"
            for k, v in (
                ("paper", SOURCE_KINDS["paper"]),
                ("README", SOURCE_KINDS["authors_readme"]),
                ("code", SOURCE_KINDS["authors_code_fvcore"]),
                ("timm", SOURCE_KINDS["timm_fvcore"]),
            )
        )
        + "."
    )
    if fmt == "markdown":
        out = [f"## {title}\n", markdown_table(sdf), PAPER_TABLE_NOTES + " " + legend + "\n"]
        if notes:
            out.append(_DIFF_TITLE + ":\n")
            out += [f"- {m}: {n}" for m, n in notes]
            out.append("")
        if missing:
            out.append(f"Not in this run: {', '.join(missing)}.\n")
        return "\n".join(out)
    if fmt == "latex":
        out = [
            f"% {title} — generated by pacabench; requires \\usepackage{{booktabs}}",
            latex_table(sdf, caption=f"{title}. {PAPER_TABLE_NOTES}", label="tab:efficiency", small=True),
        ]
        if notes:
            out.append("% " + _DIFF_TITLE + ":")
            out += [f"% - {m}: {n}" for m, n in notes]
        return "\n".join(out) + "\n"
    if fmt == "html":
        body = [
            f"<h1>{html.escape(title)}</h1>",
            html_table(sdf),
            f'<p class="note">{html.escape(PAPER_TABLE_NOTES + " " + legend)}</p>',
        ]
        if notes:
            body.append(
                f"<h2>{html.escape(_DIFF_TITLE)}</h2><ul>"
                + "".join(f"<li><b>{html.escape(m)}</b>: {html.escape(n)}</li>" for m, n in notes)
                + "</ul>"
            )
        if missing:
            body.append(f'<p class="note">Not in this run: {html.escape(", ".join(missing))}.</p>')
        return _html_page(title, body)
    raise ValueError(f"unknown format '{fmt}' (markdown, latex, html, csv)")
