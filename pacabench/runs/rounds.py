"""Interleaved rounds: which cases of a suite are timed side by side.

With ``latency: {rounds: R, interleave: true}`` the runner measures the cost cases that share a
resolution, batch size, dtype, device and the other timing settings as one *group*: every model
of the group is built, its params/FLOPs/memory measured and warmed up once, then the group is
timed in R alternating rounds (A B C, A B C, …; ``pacabench.measure.latency.measure_rounds``) in
one process, with the models kept between rounds. A slow spell of a shared machine then lands on
every model of the round alike, and ``pacabench.analysis.stats.round_ratio_ci`` resamples the rounds paired
to put a confidence interval on each ratio. The group's rows are written when the group finishes:
an interrupt loses at most that group's partial rounds.
"""

from __future__ import annotations

from collections.abc import Container

from ..spec.casekey import CaseKey
from ..spec.suite import Case

__all__ = ["group_key", "interleave_groups"]


def group_key(case: Case) -> tuple | None:
    """What the cases timed side by side share; None for a case timed on its own."""
    lat = case.latency
    if case.task != "cost" or "latency" not in case.metrics or not lat.interleave:
        return None
    return (
        case.resolution, case.batch_size, case.dtype, case.device, case.channels_last,
        case.compile, case.threads, lat,
    )  # fmt: skip


def interleave_groups(cases: list[Case], done: Container[CaseKey] = ()) -> list[list[Case]]:
    """The cases in run order, as groups: the interleaved cases of one ``group_key`` together
    (at the position of the first of them), every other case (or one already in ``done``) alone."""
    out: list[list[Case]] = []
    at: dict[tuple, list[Case]] = {}
    for case in cases:
        key = group_key(case) if case.key not in done else None
        if key is None:
            out.append([case])
        elif key in at:
            at[key].append(case)
        else:
            at[key] = [case]
            out.append(at[key])
    return out
