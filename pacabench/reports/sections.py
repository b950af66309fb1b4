"""Rows → pandas tables: per-metric models × resolutions, complexity scaling, relative cost.

The scaling table fits, for each model, the log–log slope of a cost against the number of
tokens (stage-1 tokens, (H/4)·(W/4)) across the measured resolutions: 1 means linear in the
number of tokens, 2 quadratic. A model with patch-to-cluster attention and fixed M should sit
near 1 for FLOPs; global attention over reduced keys (PVT) stays above it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..analysis.intervals import exponent_intervals, relative_intervals
from ..spec.metrics import columns, metric
from ..spec.sizes import res_label, tokens
from .marks import MARKED_METRICS, launch_bound_note, mark_launch_bound
from .tables import markdown_table, md_cell, to_strings
from .train import CAPACITY_TITLE, TRAIN_TITLE, capacity_table, train_vs_inference_table
from .zoo import FAMILY_EXP_TITLE, family_exponents, is_zoo, with_family

__all__ = [
    "METRICS",
    "ACCURACY_COLUMNS",
    "metric_table",
    "all_metric_tables",
    "scaling_table",
    "relative_table",
    "fit_exponent",
    "to_markdown",
    "render_markdown",
    "report_sections",
    "run_summary",
    "Section",
    "SCALING_TITLE",
    "FAILURES_TITLE",
    "tidy_frame",
    "cost_rows",
    "group_cols",
]

# column -> (title, format) of every metric with its own table, from the metric table
METRICS: dict[str, tuple[str, str]] = {c: (metric(c).title, metric(c).fmt) for c in columns(table=True)}
_SCALE = {c: metric(c).scale for c in METRICS if metric(c).scale != 1.0}
# columns of the accuracy table (markdown, HTML, LaTeX)
ACCURACY_COLUMNS = (
    "model", "task", "resolution", "status", "top1", "top5", "miou", "macc", "aacc", "bbox_ap", "segm_ap",
    "num_images", "throughput_img_s",
)  # fmt: skip


def cost_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of a run that measure cost (task ``cost``), not accuracy."""
    if "task" in df.columns:
        df = df[(df["task"].fillna("cost") == "cost")]
    return df


_MODE_COLS = ("mode", "grad_checkpointing")  # train vs inference rows of one run


def group_cols(df: pd.DataFrame) -> list[str]:
    """Model plus whichever of batch/dtype/device/... vary in this run."""
    cols = ["model"]
    for c in (
        "batch_size",
        "dtype",
        "device",
        "channels_last",
        "compile",
        "attn_impl",
        "latency_mode",
        *_MODE_COLS,
    ):
        if c in df.columns and df[c].astype(str).nunique() > 1:
            cols.append(c)
    return cols


def _ordered_res(df: pd.DataFrame) -> list[str]:
    pairs = {}
    for r in df["resolution"]:
        lab = res_label(r)
        pairs[lab] = r[0] * r[1] if isinstance(r, (list, tuple)) and len(r) == 2 else 0
    return sorted(pairs, key=lambda k: pairs[k])


def _model_order(df: pd.DataFrame) -> list[str]:
    seen = []
    for m in df["model"]:
        if m not in seen:
            seen.append(m)
    return seen


def metric_table(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Models (× varying settings) × resolutions; cells hold the value, or the status if not ok."""
    df = cost_rows(df)
    if df.empty:
        return pd.DataFrame()
    df = df.copy()
    df["res"] = df["resolution"].map(res_label)
    scale = _SCALE.get(metric, 1.0)

    def cell(row):
        v = row.get(metric)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            return float(v) * scale
        st = row.get("status")
        return st if st and st != "ok" else None

    df["_cell"] = df.apply(cell, axis=1)
    idx = group_cols(df)
    tab = df.pivot_table(index=idx, columns="res", values="_cell", aggfunc="last", dropna=False)
    tab = tab.reindex(columns=[c for c in _ordered_res(df) if c in tab.columns])
    # dropna=False crosses every level (mode × checkpointing never measured together): keep the
    # settings some row has, and of those the ones with a value or a status somewhere
    if len(idx) > 1:
        tab = tab[tab.index.isin(pd.MultiIndex.from_frame(df[idx]))]
    tab = tab[tab.notna().any(axis=1)]
    order = _model_order(df)
    tab = tab.reset_index()
    tab["_o"] = tab["model"].map(order.index)
    tab = tab.sort_values(["_o"] + idx[1:]).drop(columns="_o").set_index(idx)
    tab.columns.name = "resolution"
    return tab


def all_metric_tables(df: pd.DataFrame, metrics: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    out = {}
    for m in metrics or METRICS:
        if m in df.columns and df[m].notna().any():
            out[m] = metric_table(df, m)
    return out


def fit_exponent(tokens: Sequence[float], values: Sequence[float]) -> float | None:
    """Least-squares slope of log(value) against log(tokens); None with fewer than 2 sizes."""
    pts = [(t, v) for t, v in zip(tokens, values) if t and v and t > 0 and v > 0]
    if len({t for t, _ in pts}) < 2:
        return None
    x = np.log([t for t, _ in pts])
    y = np.log([v for _, v in pts])
    slope, _ = np.polyfit(x, y, 1)
    return float(slope)


_FITTED = [c for c in columns() if metric(c).fit]


def scaling_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per model: fitted exponent of FLOPs, latency and memory against the token count.

    ``memory_exp`` fits the whole peak (weights included, so it flattens at small sizes);
    ``act_memory_exp`` fits peak − resident (the activations), where rows record the resident part.
    """
    df = cost_rows(df)
    if df.empty:
        return pd.DataFrame()
    df = df[df["status"] == "ok"].copy()
    if df.empty:
        return pd.DataFrame()
    df["tokens"] = df["resolution"].map(tokens)
    idx = group_cols(df)
    # train-mode fits only where the run has train rows (inference-only reports stay as they were)
    fitted = [m for m in _FITTED if metric(m).measure != "train" or (m in df.columns and df[m].notna().any())]
    rows = []
    for key, g in df.groupby(idx, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        rec = dict(zip(idx, key))
        toks = sorted(set(g["tokens"]))
        rec["resolutions"] = f"{res_label(g.loc[g['tokens'].idxmin(), 'resolution'])}–" + res_label(
            g.loc[g["tokens"].idxmax(), "resolution"]
        )
        rec["sizes"] = len(toks)
        if "resident_mem_mb" in g.columns and g["resident_mem_mb"].notna().any():
            # activation memory: what the forward adds on top of weights and input
            g = g.assign(_act_mem=g["peak_mem_mb"] - g["resident_mem_mb"])
        for col, name in (*((m, metric(m).fit) for m in fitted), ("_act_mem", "act_memory_exp")):
            if col in g.columns and g[col].notna().any():
                sub = g[g[col].notna()]
                rec[name] = fit_exponent(sub["tokens"].tolist(), sub[col].astype(float).tolist())
            elif col != "_act_mem":
                rec[name] = None
        rows.append(rec)
    out = pd.DataFrame(rows)
    order = _model_order(df)
    out["_o"] = out["model"].map(order.index)
    return out.sort_values("_o").drop(columns="_o").set_index(idx)


def relative_table(df: pd.DataFrame, reference: str, metric: str = "gflops") -> pd.DataFrame:
    """Each model's ``metric`` divided by ``reference``'s, per resolution (same batch/dtype/device)."""
    tab = metric_table(df, metric)
    if tab.empty:
        return tab
    num = tab.apply(pd.to_numeric, errors="coerce")
    models = num.index.get_level_values("model")
    if reference not in set(models):
        raise ValueError(f"reference model '{reference}' is not in this run")
    if num.index.nlevels == 1:
        ref = num.loc[reference]
        return num.div(ref, axis=1)
    out = []
    for _key, g in num.groupby(level=list(range(1, num.index.nlevels)), sort=False):
        ref = g[g.index.get_level_values("model") == reference]
        if ref.empty:
            continue
        out.append(g.div(ref.iloc[0], axis=1))
    return pd.concat(out) if out else pd.DataFrame()


def to_markdown(tab: pd.DataFrame, fmt: str = "{:.3f}") -> str:
    """A DataFrame (index shown as leading columns) as a GitHub markdown table; counts stay plain."""
    return markdown_table(to_strings(tab, fmt, plain_ints=True))


def tidy_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The main columns of each row, for CSV export. ``mode`` and ``grad_checkpointing`` are always
    there (a row without them is an inference row), so a case's train and inference rows differ."""
    cols = ["model", "family", "task", "res", "batch_size", "dtype", "device", *_MODE_COLS, "status"]
    cols += columns(csv=True) + ["error"]
    d = df.copy()
    d["res"] = d["resolution"].map(lambda r: "x".join(map(str, r)) if isinstance(r, (list, tuple)) else r)
    mode = d["mode"] if "mode" in d.columns else pd.Series(None, index=d.index, dtype=object)
    d["mode"] = mode.map(lambda v: v if isinstance(v, str) and v else "inference")
    gc = d["grad_checkpointing"] if "grad_checkpointing" in d.columns else pd.Series(False, index=d.index)
    d["grad_checkpointing"] = gc.map(lambda v: bool(v) if isinstance(v, (bool, np.bool_)) else False)
    keep = ("model", "status", *_MODE_COLS)
    return d[[c for c in cols if c in d.columns and (d[c].notna().any() or c in keep)]]


SCALING_TITLE = "Complexity scaling (log–log slope against tokens; 1 = linear, 2 = quadratic)"
FAILURES_TITLE = "Cases that did not finish"


@dataclass
class Section:
    """One table of the report: raw values (index = leading columns) and the number format.

    Every renderer (markdown here, HTML and LaTeX in ``report_formats``) draws the same sections.
    """

    title: str
    table: pd.DataFrame
    fmt: str = "{:.3f}"
    kind: str = "table"  # table | failures (a list of cases, each with its error message)
    name: str = ""  # file stem of the table in the CSV folder (``report -f csv -o DIR``)


def run_summary(df: pd.DataFrame) -> str:
    """'8 cases (6 ok, 1 oom, 1 error) and 2 accuracy rows (1 ok, 1 error) on <device>.'

    Every row's status is counted: a failed accuracy row is never hidden behind the cost rows' 'ok'.
    """
    if df.empty:
        return "0 rows."
    cost = cost_rows(df)
    acc = df[df["task"].fillna("cost") != "cost"] if "task" in df.columns else df.iloc[0:0]
    parts = [f"{len(cost)} cases ({_status_counts(cost)})"] if not cost.empty else []
    if not acc.empty:
        parts.append(f"{len(acc)} accuracy row{'s' if len(acc) != 1 else ''} ({_status_counts(acc)})")
    devs = sorted({str(x) for x in df["device_name"].dropna() if str(x)}) if "device_name" in df else []
    return " and ".join(parts) + (f" on {', '.join(devs)}" if devs else "") + "."


def _status_counts(df: pd.DataFrame) -> str:
    st = df["status"].fillna("unknown").astype(str).value_counts(sort=False).to_dict()
    return ", ".join(f"{v} {k}" for k, v in st.items())


def _metric_section(m: str, tab: pd.DataFrame, cost: pd.DataFrame, fam) -> Section:
    """One metric's models × resolutions section; launch-bound GPU cells of a latency table carry
    a dagger and the title says what it means (``pacabench.reports.marks``)."""
    title, fmt = METRICS[m]
    marked = mark_launch_bound(tab, cost, group_cols(cost), fmt) if m in MARKED_METRICS else None
    if marked is not None:
        tab, title, fmt = marked, f"{title} — {launch_bound_note()}", "{}"
    return Section(title, fam(tab), fmt)


def report_sections(df: pd.DataFrame, reference: str | None = None) -> list[Section]:
    """Every table of a run's report, in order: per metric, scaling, relative cost, failures, accuracy."""
    secs: list[Section] = []
    cost = cost_rows(df)
    zoo = is_zoo(cost)  # a zoo's tables carry a family column (pacabench.reports.zoo)
    fam = (lambda t: with_family(t, cost)) if zoo else (lambda t: t)
    if not cost.empty:
        for m, tab in all_metric_tables(cost).items():
            secs.append(_metric_section(m, tab, cost, fam))
        raw = scaling_table(cost)
        sc = raw
        for m in columns(samples="latency_ms_samples"):  # the fitted exponent's 95% interval
            sc = exponent_intervals(sc, cost, m)
        if not sc.empty:
            secs.append(Section(SCALING_TITLE, fam(sc), "{:.2f}"))
            if zoo:
                secs.append(Section(FAMILY_EXP_TITLE, family_exponents(raw, cost), "{:.2f}"))
        for title, tab, name in (
            (TRAIN_TITLE, train_vs_inference_table(cost), "train_vs_inference"),
            (CAPACITY_TITLE, capacity_table(cost), "capacity"),
        ):
            if not tab.empty:
                secs.append(Section(title, tab, "{:.1f}", name=name))
        ref = reference or _model_order(cost)[0]
        for m in columns(relative=True):
            if m in cost.columns and cost[m].notna().any():
                try:
                    rel = relative_table(cost, ref, m)
                except ValueError:
                    continue
                title = f"{METRICS[m][0].split(' (')[0]} relative to {ref}"
                if metric(m).samples:  # each ratio with its 95% interval (pacabench.analysis.intervals)
                    rel = relative_intervals(rel, cost, ref, m)
                    title += (
                        " (ratio [95% interval])" if rel.map(lambda v: isinstance(v, str)).any().any() else ""
                    )
                secs.append(Section(title, fam(rel), "{:.2f}", name=f"relative_{m}"))
        errs = cost[cost["status"] != "ok"]
        if not errs.empty:
            failures = pd.DataFrame(
                {
                    "model": errs["model"].astype(str),
                    "resolution": errs["resolution"].map(res_label),
                    "batch": errs["batch_size"].astype(str),
                    "dtype": errs["dtype"].astype(str),
                    "status": errs["status"].astype(str),
                    "error": errs["error"].fillna("").astype(str),
                }
            ).set_index("model")
            secs.append(Section(FAILURES_TITLE, failures, "{}", kind="failures"))
    acc = df[df["task"].fillna("cost") != "cost"] if "task" in df.columns else df.iloc[0:0]
    if not acc.empty:
        a = acc.assign(resolution=acc["resolution"].map(res_label))
        cols = [c for c in ACCURACY_COLUMNS + ("checkpoint",) if c in a.columns]
        keep = ("model", "task", "resolution", "status")
        a = a[[c for c in cols if c in keep or a[c].notna().any()]].set_index("model")
        secs.append(Section("Accuracy", a, "{:.2f}"))
    return secs


def render_markdown(df: pd.DataFrame, *, reference: str | None = None, title: str | None = None) -> str:
    """The full markdown report of one run."""
    return markdown_report(df, report_sections(df, reference), title)


def markdown_report(df: pd.DataFrame, sections: list[Section], title: str | None = None) -> str:
    """The markdown report of ``sections`` (``report_sections``), under ``title``."""
    parts = []
    if title:
        parts.append(f"# {title}\n")
    if not df.empty:
        parts.append(run_summary(df) + "\n")
    for sec in sections:
        if sec.kind == "failures":  # a list reads better than a table of long messages
            lines = [
                md_cell(
                    f"- {model} {r.resolution} b{r.batch} {r.dtype}: **{r.status}** {r.error}", table=False
                )
                for model, r in zip(sec.table.index, sec.table.itertuples())
            ]
            parts.append(f"## {sec.title}\n\n" + "\n".join(lines) + "\n")
        else:
            parts.append(f"## {sec.title}\n\n" + to_markdown(sec.table, sec.fmt))
    return "\n".join(parts)
