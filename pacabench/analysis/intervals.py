"""95% intervals for the report, from the raw samples the latency rows keep.

``relative_intervals``: each cell of a relative table (model ÷ reference, per resolution) as
``"0.78 [0.75, 0.81]"``: ``pacabench.analysis.stats.round_ratio_ci``, which resamples interleaved rounds
paired (round i of the model with round i of the reference) and the samples within them; rows
timed without rounds fall back to resampling their samples. ``exponent_intervals``: the scaling
table's fitted exponent with its bootstrap interval (``pacabench.analysis.stats.exponent_ci``: each size's
median resampled over its rounds and samples, the slope refitted per draw).

Cells whose rows lack samples keep their plain value, and so do cells with fewer than
``MIN_SAMPLES`` samples on a side (one sample per case would give a zero-width "interval") or
whose samples or round sizes are not usable (a timing that is not a finite positive number,
round sizes that do not add up: an edited file is shown without an interval, never a crash).
The tables given here are the report's own (``pacabench.reports.sections``); this module only
adds the intervals to them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..spec.metrics import metric
from ..spec.sizes import res_label, tokens
from .stats import exponent_ci, positive_samples, round_ratio_ci, valid_rounds

__all__ = ["relative_intervals", "exponent_intervals", "LEVEL", "MIN_SAMPLES"]

LEVEL = 0.95
MIN_SAMPLES = 5  # fewer samples on a side: the value without an interval (as compare's samples test)


def _sampled_rows(df: pd.DataFrame, column: str) -> list[dict[str, Any]]:
    """The ok rows with at least MIN_SAMPLES usable samples of ``column``, the samples as floats
    and ``latency_round_sizes`` kept only when they add up to them."""
    col = metric(column).samples
    if not col or col not in df.columns:
        return []
    ok = df[df["status"] == "ok"] if "status" in df.columns else df
    out = []
    for r in ok.to_dict("records"):
        x = positive_samples(r.get(col))
        if x is None or len(x) < MIN_SAMPLES:
            continue
        sizes = r.get("latency_round_sizes")
        rounds = valid_rounds(sizes, len(x))
        if rounds is None and _given(sizes):  # round sizes that do not fit the samples: an edited row
            continue
        out.append({**r, col: x, "latency_round_sizes": rounds})
    return out


def _given(v: Any) -> bool:
    """A field that holds something (not None, NaN or an empty list)."""
    return v is not None and not (isinstance(v, float) and v != v) and not (isinstance(v, list) and not v)


def _key(row: dict[str, Any], names: list[str]) -> tuple[str, ...]:
    return tuple(str(row.get(n)) for n in names)


def _rounds(row: dict[str, Any]) -> list[int] | None:
    return row.get("latency_round_sizes")  # checked by _sampled_rows


def relative_intervals(rel: pd.DataFrame, df: pd.DataFrame, reference: str, column: str) -> pd.DataFrame:
    """``rel`` (``report.relative_table``) with each ratio that has samples on both sides written
    as ``"ratio [low, high]"`` (95%, 2 decimals); other cells unchanged."""
    rows = _sampled_rows(df, column)
    if rel.empty or not rows:
        return rel
    names = [str(n) for n in rel.index.names]
    by = {(*_key(r, names), res_label(r["resolution"])): r for r in rows}
    samples = metric(column).samples
    out = rel.astype(object).copy()
    for idx in rel.index:
        key = _key(dict(zip(names, idx if isinstance(idx, tuple) else (idx,))), names)
        ref_key = (str(reference), *key[1:])
        for res in rel.columns:
            a, b = by.get((*key, res)), by.get((*ref_key, res))
            if a is None or b is None or a is b:  # the reference itself stays a plain 1
                continue
            ci = round_ratio_ci(a[samples], b[samples], _rounds(a), _rounds(b), level=LEVEL)
            out.loc[idx, res] = ci.format(2)
    return out


def exponent_intervals(scaling: pd.DataFrame, df: pd.DataFrame, column: str) -> pd.DataFrame:
    """``scaling`` (``report.scaling_table``) with a column ``<fit> 95% CI`` beside ``column``'s
    fitted exponent, where two or more sizes have samples."""
    rows = _sampled_rows(df, column)
    fit = metric(column).fit
    if scaling.empty or not rows or not fit:
        return scaling
    names = [str(n) for n in scaling.index.names]
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(_key(r, names), []).append(r)
    valued = _valued_counts(df, column, names)
    samples = metric(column).samples
    cells = []
    for idx in scaling.index:
        key = _key(dict(zip(names, idx if isinstance(idx, tuple) else (idx,))), names)
        g = groups.get(key, [])
        toks = [tokens(r["resolution"]) for r in g]
        if len(set(toks)) < 2 or len(g) < valued.get(key, 0):  # a size without enough samples: none
            cells.append(None)
            continue
        ci = exponent_ci(toks, [r[samples] for r in g], [_rounds(r) for r in g], level=LEVEL)
        cells.append(f"[{ci.low:.2f}, {ci.high:.2f}]")
    if not any(cells):
        return scaling
    out = scaling.copy()
    at = list(out.columns).index(fit) + 1 if fit in out.columns else len(out.columns)
    out.insert(at, f"{fit} {int(LEVEL * 100)}% CI", cells)
    return out


def _valued_counts(df: pd.DataFrame, column: str, names: list[str]) -> dict[tuple[str, ...], int]:
    """Per fitted group: how many ok rows have a value of ``column`` (each needs its samples)."""
    ok = df[df["status"] == "ok"] if "status" in df.columns else df
    counts: dict[tuple[str, ...], int] = {}
    for r in ok.to_dict("records"):
        v = r.get(column)
        if v is not None and not (isinstance(v, float) and v != v):
            counts[_key(r, names)] = counts.get(_key(r, names), 0) + 1
    return counts
