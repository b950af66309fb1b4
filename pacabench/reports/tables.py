"""Table writers shared by every report format: one value formatter (``metrics.format_value``)
turns a table into strings, then one writer per format draws it (markdown, LaTeX booktabs, HTML).
"""

from __future__ import annotations

import html
import re

import pandas as pd

from ..spec.metrics import format_value

__all__ = ["to_strings", "md_cell", "markdown_table", "latex_table", "html_table", "latex_escape"]


def to_strings(tab: pd.DataFrame, fmt: str = "{:.3f}", *, plain_ints: bool = False) -> pd.DataFrame:
    """Index becomes leading columns; every value formatted (non-numbers, e.g. 'oom', kept).

    ``plain_ints``: integers written as integers (the markdown report's convention)."""
    if tab is None or tab.empty:
        return pd.DataFrame()
    nidx = tab.index.nlevels if not isinstance(tab.index, pd.RangeIndex) else 0
    t = tab.reset_index() if nidx else tab.copy()
    out = {}
    for i, c in enumerate(t.columns):
        if i < nidx:
            out[str(c)] = [str(v) for v in t[c]]
        else:
            out[str(c)] = [format_value(v, fmt, plain_ints=plain_ints) for v in t[c]]
    return pd.DataFrame(out)


def _numeric_col(values: list[str]) -> bool:
    return all(re.fullmatch(r"[+\-−]?[\d.,]+( ?%)?|–", v.strip()) for v in values) and bool(values)


def md_cell(value: object, *, table: bool = True) -> str:
    """Text on one markdown line: line breaks made spaces; in a table cell, ``|`` escaped too."""
    text = " ".join(str(value).splitlines())
    return text.replace("|", "\\|") if table else text


def markdown_table(sdf: pd.DataFrame) -> str:
    """The one markdown table writer: every header and cell through ``md_cell``."""
    if sdf is None or sdf.empty:
        return "_(no data)_\n"
    cols = [md_cell(c) for c in sdf.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in sdf.itertuples(index=False):
        lines.append("| " + " | ".join(md_cell(v) for v in row) + " |")
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
