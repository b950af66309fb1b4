"""Marks on report cells: a latency that measures the launcher, not the model.

A GPU latency row whose GPU was busy for less than ``LAUNCH_BOUND_SHARE`` of the wall time is
``launch_bound`` (``pacabench.measure.modes``): its number is set by Python and the driver
launching kernels, and comparing architectures by it compares their kernel counts. The report
keeps the number and marks its cell with a dagger, and the table's title says what the mark means.
CPU rows are never marked: the busy share is not measured there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from ..spec.metrics import format_value
from ..spec.sizes import res_label

__all__ = ["LAUNCH_MARK", "MARKED_METRICS", "launch_bound_note", "mark_launch_bound"]

LAUNCH_MARK = "†"
MARKED_METRICS = ("latency_ms_median", "throughput_img_s")  # the cells a launch-bound row fills


def launch_bound_note() -> str:
    """The footnote of a marked table (the threshold is the one the rows were flagged with)."""
    from ..measure.modes import LAUNCH_BOUND_SHARE

    return (
        f"{LAUNCH_MARK} launch bound: the GPU was busy for less than {LAUNCH_BOUND_SHARE:.0%} of the wall "
        "time, so the number measures kernel launches as much as the model (try latency mode cuda_graph)"
    )


def _cell_key(row: pd.Series, idx: Sequence[str]) -> tuple:
    key = tuple(row[c] for c in idx)
    return (key[0] if len(idx) == 1 else key, res_label(row["resolution"]))


def mark_launch_bound(
    tab: pd.DataFrame, cost: pd.DataFrame, idx: Sequence[str], fmt: str
) -> pd.DataFrame | None:
    """``tab`` (a models × resolutions table, index ``idx``) as text with launch-bound cells marked;
    None when no row of ``cost`` is launch bound (the table stays numeric)."""
    if "launch_bound" not in cost.columns or tab.empty:
        return None
    flagged = cost[cost["launch_bound"].map(lambda v: v is True or v == 1.0)]
    if flagged.empty:
        return None
    marked = {_cell_key(r, idx) for _, r in flagged.iterrows()}
    out = tab.astype(object).copy()
    for ix in out.index:
        for col in out.columns:
            v = out.at[ix, col]
            if v is None or isinstance(v, str) or (isinstance(v, float) and math.isnan(v)):
                continue
            text = format_value(v, fmt)
            out.at[ix, col] = text + LAUNCH_MARK if (ix, col) in marked else text
    return out
