"""Compare a run against a baseline: the regression check behind ``pacabench compare`` and CI.

Rows are joined on the case key built from their fields (``pacabench.spec.casekey.CaseKey``: task,
model (+ head), resolution, batch size, dtype, device, channels_last, compile, checkpoint and its
hash, kwargs) — never on ``case_id`` alone, so a baseline written by another run (or another
machine) still lines up. Which columns are compared, and how, comes from the metric table
(``pacabench.spec.metrics``: ``kind``, ``spread``, ``samples``, ``tolerance``, ``effect``); every
default below is the table's, and ``--tolerance`` overrides it (``Tolerances``). Then, per metric:

* **exact** metrics (``params``, ``gflops``) must match to a relative tolerance (default 0.1 %);
  any difference beyond it, up or down, is a regression.
* **accuracy** metrics (``top1``, ``miou``, ``bbox_ap``, …) may move by an absolute tolerance
  (default 0.1 points); a drop beyond it is a regression, a gain beyond it is listed as improved.
* **latency with raw samples on both sides** (``latency_ms_samples``; the train step's
  ``train_ms_samples`` alike): a one-sided Mann–Whitney U
  test on the per-iteration samples (``pacabench.analysis.stats.mann_whitney``) plus a minimum effect
  size, as asv does: *regression* when the new samples are significantly slower
  (p < ``ALPHA`` = 0.01) **and** the ratio of medians exceeds 1 + ``e`` (``e``: the minimum effect,
  default 0.2 on CPU and 0.1 on CUDA; an explicit ``--tolerance latency=X`` sets it too);
  *faster* symmetrically (ratio below 1/(1 + e)); otherwise *no regression*. *Inconclusive*
  (never a failure): fewer than ``MIN_SAMPLES`` = 5 samples on a side; a regression/faster
  verdict that is not in every round: per-iteration samples do not see a drift between two runs
  or a slow spell within one, so each side's samples are cut into stretches of time (its rounds,
  ``latency_round_sizes``, else 3 consecutive blocks of at least 5 samples) and every stretch of
  the new run must be slower than the baseline's median by ×(1 + e), and every stretch of the
  baseline faster than the new run's median by it (mirrored for *faster*); or a verdict
  measured on a loaded machine (the new row's load average as below, or a spread IQR/median
  above ``HUGE_SPREAD`` = 1 on either side) unless ``ignore_load``. A drift that lasts a whole
  run looks like a change: interleaved rounds against a reference model in one run cancel it.
* **noisy** metrics without samples (``peak_mem_mb``; latency rows from older runs): with
  baseline ``b``, new value ``n``,
  relative tolerance ``t`` and spread ``s`` = the baseline's IQR + the new run's IQR (0 where a
  metric has no IQR, as peak memory), the verdict is a regression **only if**
  ``n > b·(1 + t)`` **and** ``n − b > s`` — the new value exceeds both the tolerance band and the
  measured noise of the two runs. Symmetrically ``n < b/(1 + t)`` and ``b − n > s`` is improved;
  anything else is within noise. Default ``t``: latency and the train step's time 0.5 on CPU
  (shared CPUs are noisy), 0.15 on CUDA; memory and the train step's peak 0.1. A CPU latency regression measured while the machine was busy (the
  new row's 1-min load average above 1.5 × its thread count) is reported as *inconclusive*
  instead, and does not fail (``ignore_load`` turns this off).
* a case whose status was ``ok`` in the baseline and is anything else now (oom, error, skipped)
  is a regression; a metric the baseline had and the new ok row lacks is a regression.
* cases only in the new run are listed as *added*, cases only in the baseline as *missing*
  (a regression only with ``fail_on_missing``).
* given several runs of the same cases (``compare BASE RUN1 RUN2``), a latency or memory
  regression must show in every run (best of N); any other regression in any run counts.

* rows are read whole or not at all (``load_rows``): a torn line, a mistyped field, a compared
  value that is not a finite number (NaN, inf, ``1e999``, ``"3.6M"``) is bad input, never a case
  left out nor a "new metric".

Exit codes of ``pacabench compare``: 1 on any regression (a missing case with
``fail_on_missing``, no case in common), 0 otherwise, 2 on bad input and when cases lined up
but no check ran (``-m latency`` on FLOPs-only runs, rows failed on both sides): nothing to compare.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..paths import write_atomic
from ..spec.casekey import CaseKey
from ..spec.metrics import MEASURE_TABLE, METRICS, Metric, format_value
from ..spec.metrics import metric as _metric
from .stats import mann_whitney, time_blocks, valid_rounds

__all__ = [
    "EXACT_METRICS",
    "NOISY_METRICS",
    "ACCURACY_METRICS",
    "VOLATILE_FIELDS",
    "Tolerances",
    "Check",
    "Comparison",
    "join_key",
    "compare_rows",
    "compare_runs",
    "load_rows",
    "check_rows",
    "value_problem",
    "parse_metrics",
    "parse_tolerances",
    "render_comparison",
    "baseline_rows",
    "write_baseline",
    "baseline_path",
    "suite_of",
    "dropped_rows",
    "busy_warning",
]

# from the metric table (pacabench.spec.metrics): the columns compare checks, by kind
_COMPARED = [m for m in METRICS.values() if m.compare]
EXACT_METRICS = tuple(m.column for m in _COMPARED if m.kind == "exact")
# noisy metric -> the column holding its spread (IQR), if any
NOISY_METRICS: dict[str, str | None] = {m.column: m.spread for m in _COMPARED if m.kind == "noisy"}
ACCURACY_METRICS = tuple(m.column for m in _COMPARED if m.kind == "accuracy")
ALL_METRICS = tuple(m.column for m in _COMPARED)


def _measure_groups(table: Iterable[Metric], measures: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Each measurement with compared columns -> those columns (params, flops, latency, memory, train)."""
    compared = [m for m in table if m.compare]
    return {
        name: cols for name in measures if (cols := tuple(m.column for m in compared if m.measure == name))
    }


def metric_groups(table: Iterable[Metric], measures: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """User-facing names -> compared columns: each measurement's, the kinds (``accuracy``,
    ``exact``), two aliases (``gflops``, ``mem``), and every compared column itself."""
    table = list(table)
    by_measure = _measure_groups(table, measures)
    compared = [m for m in table if m.compare]
    return {
        **by_measure,
        "gflops": ("gflops",),
        "mem": by_measure.get("memory", ()),
        "accuracy": tuple(m.column for m in compared if m.kind == "accuracy"),
        "exact": tuple(m.column for m in compared if m.kind == "exact"),
        **{m.column: (m.column,) for m in compared},
    }


def known_names(table: Iterable[Metric], measures: Iterable[str]) -> list[str]:
    """The names an unknown-metric message lists: the measurements', the kinds', the accuracy
    columns (every compared column is accepted as well)."""
    table = list(table)
    accuracy = [m.column for m in table if m.compare and m.kind == "accuracy"]
    return [*_measure_groups(table, measures), "accuracy", "exact", *accuracy]


METRIC_GROUPS = metric_groups(METRICS.values(), MEASURE_TABLE)

# Fields that change on every run of the same code: not written to baselines.
VOLATILE_FIELDS = ("run_id", "timestamp", "loadavg_1m", "wall_s", "case_id")

# CPU latency measured while the 1-min load average exceeded this × the thread count cannot
# show a regression (a neighbour's load made one forward 45× slower on the shared CI machines):
# such a verdict is "inconclusive" instead, unless ignore_load.
BUSY_LOAD = 1.5
LOAD_SENSITIVE = tuple(m.column for m in _COMPARED if m.load_sensitive)

# latency from raw samples: Mann–Whitney U at ALPHA (one-sided) + a minimum effect size
ALPHA = 0.01
MIN_SAMPLES = 5  # fewer on either side: inconclusive
HUGE_SPREAD = 1.0  # IQR / median above this on either side: the machine was loaded


# ----------------------------------------------------------------------------------- tolerances
@dataclass
class Tolerances:
    """The tolerance each compared column is judged at: the one the metric table declares
    (``Metric.tolerance``; ``Metric.effect`` for the samples test), unless overridden. Relative for
    exact and noisy metrics, points for accuracy.

    Overrides (column -> value, every device) come in two layers, as ``--tolerance`` names them:
    ``by_group`` is set by a bare number (the noisy metrics) and by ``exact``, ``accuracy``,
    ``latency``, ``memory``; ``per_metric`` by a column or another name that stands for columns
    (``params``, ``flops``, ``train``, ...), and wins over ``by_group``. An override of a column
    with raw samples sets the samples test's minimum effect as well.
    """

    per_metric: dict[str, float] = field(default_factory=dict)
    by_group: dict[str, float] = field(default_factory=dict)

    def _override(self, column: str) -> float | None:
        return self.per_metric.get(column, self.by_group.get(column))

    def min_effect(self, column: str, device: str) -> float:
        """The minimum relative change the samples test needs to call a regression."""
        v = self._override(column)
        return _declared(column, device, "effect") if v is None else v

    def for_metric(self, column: str, device: str) -> float:
        v = self._override(column)
        return _declared(column, device, "tolerance") if v is None else v


def _declared(column: str, device: str, what: str) -> float:
    m = _metric(column)
    v = m.tolerance_on(device) if what == "tolerance" else m.effect_on(device)
    if v is None:
        raise UsageError(f"metric '{column}' declares no {what} (pacabench.spec.metrics): it is not compared")
    return v


def _known() -> str:
    return ", ".join(known_names(METRICS.values(), MEASURE_TABLE))


# names of ``--tolerance`` that set the group layer: "" is a bare number, the noisy metrics
_TOLERANCE_GROUPS: dict[str, tuple[str, ...]] = {
    "": tuple(NOISY_METRICS),
    "exact": EXACT_METRICS,
    "accuracy": ACCURACY_METRICS,
    "latency": METRIC_GROUPS["latency"],
    "memory": METRIC_GROUPS["memory"],
    "mem": METRIC_GROUPS["memory"],
}


def parse_tolerances(specs: list[str] | None) -> Tolerances:
    """``["latency=0.3", "memory=0.2", "accuracy=0.5", "flops=0.001", "0.4"]`` → Tolerances.

    A bare number sets the noisy metrics (latency, memory, train) on every device; ``NAME=VALUE``
    sets one metric or group (params, flops, latency, memory, train, accuracy, exact, or a column
    name). A column or measurement name wins over a group (``exact``, ``accuracy``, ``latency``,
    ``memory``, a bare number), whatever their order; otherwise the last one given wins.
    """
    tol = Tolerances()
    for name, v in _tolerance_specs(specs):
        if name in _TOLERANCE_GROUPS:
            layer, cols = tol.by_group, _TOLERANCE_GROUPS[name]
        elif name in METRIC_GROUPS:
            layer, cols = tol.per_metric, METRIC_GROUPS[name]
        else:
            raise UsageError(f"unknown metric '{name}' in --tolerance (known: {_known()})")
        for col in cols:
            layer[col] = v
    return tol


def _tolerance_specs(specs: list[str] | None) -> list[tuple[str, float]]:
    """``["latency=0.3,0.4"]`` → [("latency", 0.3), ("", 0.4)]; a bad value → UsageError."""
    out = []
    for spec in specs or []:
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            name, _, value = part.rpartition("=")
            try:
                v = float(value)
            except ValueError:
                raise UsageError(
                    f"bad --tolerance '{part}' (use e.g. 0.3, latency=0.3, accuracy=0.2)"
                ) from None
            if not math.isfinite(v) or v < 0:
                raise UsageError(f"bad --tolerance '{part}': must be a non-negative number")
            out.append((name.strip().lower(), v))
    return out


def parse_metrics(specs: list[str] | None) -> tuple[str, ...]:
    """``["params,flops", "latency"]`` → columns; empty → every metric."""
    if not specs:
        return ALL_METRICS
    out: list[str] = []
    for spec in specs:
        for name in str(spec).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in METRIC_GROUPS:
                raise UsageError(f"unknown metric '{name}' in --metrics (known: {_known()})")
            out.extend(c for c in METRIC_GROUPS[name] if c not in out)
    return tuple(out) or ALL_METRICS


# ------------------------------------------------------------------------------------ rows, keys
# the identity a comparison joins on: the case key, built from the fields (not from ``case_id``)
join_key = CaseKey.from_row


def key_label(key: CaseKey) -> str:
    return key.label()


def load_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a run folder, a rows.jsonl or a baseline .jsonl; bad input → UsageError.

    Compare is a gate, so it reads only whole, valid rows: a line that is not one — a torn last
    line (a run killed mid-write), a mistyped field (``resolution: "ab"``, ``batch_size: "x"``), a
    compared value that is not a finite number (NaN, inf, ``1e999``, ``"3.6M"``) — refuses the file
    with one line naming it, rather than dropping a case or reading the value as "not measured".
    """
    from ..runs.results import scan_rows

    p = Path(path)
    if p.is_dir():
        if not (p / "rows.jsonl").exists():
            raise UsageError(f"{p}: not a run folder (no rows.jsonl)")
        p = p / "rows.jsonl"
    if not p.exists():
        raise UsageError(f"no such run or baseline file: {p}")
    rows, bad = scan_rows(p)
    if not bad:
        numbers = _row_line_numbers(p)
        bad = [(i, why) for i, r in zip(numbers, rows) if (why := value_problem(r))]
    if bad:
        i, why = bad[0]
        more = f" (and {len(bad) - 1} more bad line(s))" if len(bad) > 1 else ""
        hint = (
            "; a run killed mid-write: finish it with --resume-from, or delete the line"
            if "torn" in why
            else ""
        )
        raise UsageError(f"{p}:{i}: {why}{more}: compare reads only whole, valid rows{hint}")
    return rows


def _row_line_numbers(p: Path) -> list[int]:
    """The numbers of the lines that hold something (rows), as ``scan_rows`` counts them."""
    with open(p, encoding="utf-8", errors="replace") as f:
        return [i for i, line in enumerate(f.read().splitlines(), 1) if line.strip()]


def check_rows(rows: list[Any], where: str = "rows") -> list[dict[str, Any]]:
    """Rows given as data (``pacabench.compare(list_of_dicts)``), checked as ``load_rows`` checks a
    file's lines: the first bad one is a UsageError naming its index."""
    from ..runs.results import row_problem  # the row schema's own check (types of every field)

    for i, r in enumerate(rows):
        why = row_problem(r) or value_problem(r)
        if why:
            raise UsageError(f"{where}: row {i}: {why}")
    return rows


# what compare reads as numbers: every compared column, its spread, its samples (and their rounds)
_VALUE_COLUMNS = tuple(dict.fromkeys(c for m in _COMPARED for c in (m.column, m.spread) if c))
_SAMPLE_COLUMNS = tuple(m.samples for m in _COMPARED if m.samples)
_ROUND_SIZES = {"latency_ms_samples": "latency_round_sizes"}  # samples column -> samples per round


def value_problem(row: dict[str, Any]) -> str | None:
    """Why a (schema-valid) row's values cannot be compared, or None: a batch that is not a positive
    int, a compared value that is not a finite number, a sample that is not a finite number ≥ 0,
    round sizes that do not add up to the samples."""
    for col in ("batch_size", "batch_size_used"):
        v = row.get(col)
        if v is not None and (type(v) is not int or v < 1):
            return f"{col} must be a positive int, got {v!r}"[:120]
    for col in _VALUE_COLUMNS:
        v = row.get(col)
        if v is not None and (not _is_number(v) or not math.isfinite(v)):
            return f"{col} is not a finite number: {v!r}"[:120]
    for col in _SAMPLE_COLUMNS:
        v = row.get(col)
        if v is None:
            continue
        if not isinstance(v, list) or not all(_is_number(x) and math.isfinite(x) and x >= 0 for x in v):
            return f"{col} must be a list of finite timings >= 0"
        sizes = row.get(_ROUND_SIZES.get(col, ""))
        if sizes is not None and v and valid_rounds(sizes, len(v)) is None:
            return f"{_ROUND_SIZES[col]} {sizes!r} are not positive ints adding up to the {len(v)} samples"[
                :160
            ]
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _index(rows: list[dict[str, Any]]) -> dict[CaseKey, dict[str, Any]]:
    """Key → row; with duplicates (a re-measured case) the last row wins."""
    out: dict[CaseKey, dict[str, Any]] = {}
    for r in rows:
        out[join_key(r)] = r
    return out


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# --------------------------------------------------------------------------------------- checks
@dataclass
class Check:
    """One metric of one case.

    verdict: same | within_noise | regression | improved | new_metric | inconclusive, and for
    latency judged on its samples: regression | no_regression | faster | inconclusive.
    """

    case: str
    metric: str
    baseline: float | str | None
    new: float | str | None
    verdict: str
    change: float | None = None  # relative change (exact, noisy) or difference in points (accuracy)
    rule: str = ""

    @property
    def regression(self) -> bool:
        return self.verdict == "regression"


@dataclass
class Comparison:
    baseline: str
    run: str
    checks: list[Check]
    added: list[str]
    missing: list[str]
    compared_cases: int
    fail_on_missing: bool = False
    note: str = ""  # with nothing checked: why (no case ok in both, no selected metric on both sides)

    @property
    def regressions(self) -> list[Check]:
        return [c for c in self.checks if c.regression]

    @property
    def checked(self) -> int:
        """Checks that judged something: a value on both sides, or a status that changed."""
        return sum(
            1
            for c in self.checks
            if c.verdict != "new_metric" and (c.metric, c.verdict) != ("status", "same")
        )

    @property
    def nothing_checked(self) -> bool:
        """Cases lined up, but not one check ran (``-m latency`` on FLOPs-only runs, error rows on
        both sides): exit 2, never a silent pass."""
        return self.compared_cases > 0 and self.checked == 0

    @property
    def improvements(self) -> list[Check]:
        return [c for c in self.checks if c.verdict in ("improved", "faster")]

    @property
    def ok(self) -> bool:
        """No regression, something checked, and (with ``fail_on_missing``) no case missing."""
        return self.compared_cases > 0 and not self.nothing_checked and not self._failed

    @property
    def _failed(self) -> bool:
        return bool(self.regressions) or (self.fail_on_missing and bool(self.missing))

    @property
    def exit_code(self) -> int:
        """0 ok; 1 a regression, a missing case (``fail_on_missing``) or no case in common;
        2 nothing to compare (cases in common, but no check ran)."""
        if self.ok:
            return 0
        return 2 if self.nothing_checked and not self._failed else 1

    def counts(self) -> dict[str, int]:
        c: dict[str, int] = {}
        for ch in self.checks:
            c[ch.verdict] = c.get(ch.verdict, 0) + 1
        return c

    @property
    def verdict(self) -> str:
        """ok | regression | nothing_to_compare (as ``exit_code`` 0, 1, 2)."""
        return ("ok", "regression", "nothing_to_compare")[self.exit_code]

    def to_dict(self) -> dict[str, Any]:
        extra = {"nothing_to_compare": self.note} if self.exit_code == 2 else {}
        return {
            "verdict": self.verdict,
            **extra,
            "exit_code": self.exit_code,
            "baseline": self.baseline,
            "run": self.run,
            "compared_cases": self.compared_cases,
            "counts": self.counts(),
            "regressions": [asdict(c) for c in self.regressions],
            "checks": [asdict(c) for c in self.checks],
            "added": self.added,
            "missing": self.missing,
        }


def _busy(row: dict[str, Any]) -> str | None:
    """'measured on a busy machine (...)' when the row's 1-min load average exceeds BUSY_LOAD × threads."""
    load = _num(row.get("loadavg_1m"))
    if load is None or str(row.get("device") or "cpu") != "cpu":
        return None
    threads = _num(row.get("threads")) or float(os.cpu_count() or 1)
    if load > BUSY_LOAD * threads:
        return f"measured on a busy machine (load {load:.1f} on {threads:g} threads)"
    return None


def _check_metric(
    case: str, metric: str, b: dict, n: dict, tol: Tolerances, ignore_load: bool = False
) -> Check | None:
    bv, nv = _num(b.get(metric)), _num(n.get(metric))
    if bv is None and nv is None:
        return None
    if bv is None:
        return Check(case, metric, None, nv, "new_metric", rule="not in the baseline")
    if nv is None:
        return Check(case, metric, bv, None, "regression", rule="measured in the baseline, missing now")
    device = str(n.get("device") or b.get("device") or "cpu")
    t = tol.for_metric(metric, device)
    if metric in EXACT_METRICS:
        rel = (nv - bv) / abs(bv) if bv else (0.0 if nv == bv else math.inf)
        verdict = "same" if abs(rel) <= t else "regression"
        return Check(case, metric, bv, nv, verdict, rel, f"|Δ| ≤ {100 * t:g} %")
    if metric in ACCURACY_METRICS:
        d = nv - bv
        verdict = "same" if abs(d) <= t + 1e-12 else ("regression" if d < 0 else "improved")
        return Check(case, metric, bv, nv, verdict, d, f"|Δ| ≤ {t:g} points")
    by_samples = _check_samples(case, metric, b, n, tol, device, ignore_load)
    if by_samples is not None:
        return by_samples
    # noisy: beyond the tolerance band AND beyond the combined spread of the two runs
    iqr_col = NOISY_METRICS.get(metric)
    spread = 0.0
    if iqr_col:
        spread = (_num(b.get(iqr_col)) or 0.0) + (_num(n.get(iqr_col)) or 0.0)
    rel = (nv - bv) / bv if bv else None
    rule = f"regression if new > base×{1 + t:g} and new − base > IQRs {spread:.3g}"
    if nv > bv * (1 + t) and nv - bv > spread:
        verdict = "regression"
        busy = _busy(n) if metric in LOAD_SENSITIVE and not ignore_load else None
        if busy:
            verdict, rule = "inconclusive", f"would be a regression, but {busy}"
    elif nv < bv / (1 + t) and bv - nv > spread:
        verdict = "improved"
    else:
        verdict = "within_noise"
    return Check(case, metric, bv, nv, verdict, rel, rule)


def _samples(v: Any) -> list[float] | None:
    if not isinstance(v, list) or not v:
        return None
    vals = [_num(x) for x in v]
    return [x for x in vals if x is not None and x > 0] or None


def _spread(x: list[float]) -> float:
    """IQR / median of raw samples."""
    q25, med, q75 = np.percentile(x, [25, 50, 75])
    return float((q75 - q25) / med) if med > 0 else math.inf


def _check_samples(
    case: str, metric: str, b: dict, n: dict, tol: Tolerances, device: str, ignore_load: bool
) -> Check | None:
    """A latency verdict from the raw samples (Mann–Whitney U + minimum effect); None when a
    side has no samples (then the band rule decides)."""
    col = _metric(metric).samples
    bs, ns = (_samples(b.get(col)), _samples(n.get(col))) if col else (None, None)
    if bs is None or ns is None:
        return None
    bv, nv = _num(b.get(metric)), _num(n.get(metric))
    ratio = float(np.median(ns) / np.median(bs))
    if min(len(bs), len(ns)) < MIN_SAMPLES:
        rule = f"too few samples ({len(bs)} vs {len(ns)}; {MIN_SAMPLES} per side needed)"
        return Check(case, metric, bv, nv, "inconclusive", ratio - 1, rule)
    e = tol.min_effect(metric, device)
    mw = mann_whitney(ns, bs)
    rule = (
        f"Mann–Whitney p(slower) {mw.p_greater:.2g}, p(faster) {mw.p_less:.2g} (α {ALPHA:g}); "
        f"effect needed ×{1 + e:g}; n {len(bs)}/{len(ns)}"
    )
    if mw.p_greater < ALPHA and ratio > 1 + e:
        verdict = "regression"
    elif mw.p_less < ALPHA and ratio < 1 / (1 + e):
        verdict = "faster"
    else:
        return Check(case, metric, bv, nv, "no_regression", ratio - 1, rule)
    rounds = _ROUND_SIZES.get(col or "", "")
    drift = _not_in_every_round(bs, ns, b.get(rounds), n.get(rounds), e, verdict == "regression")
    if drift:
        return Check(case, metric, bv, nv, "inconclusive", ratio - 1, f"would be {verdict}, but {drift}")
    if not ignore_load:
        spread = max(_spread(bs), _spread(ns))
        loaded = _busy(n) if metric in LOAD_SENSITIVE else None
        if loaded is None and spread > HUGE_SPREAD:
            loaded = f"the spread was huge (IQR/median {spread:.2f})"
        if loaded:
            return Check(case, metric, bv, nv, "inconclusive", ratio - 1, f"would be {verdict}, but {loaded}")
    return Check(case, metric, bv, nv, verdict, ratio - 1, rule)


def _not_in_every_round(
    bs: list[float], ns: list[float], b_rounds: Any, n_rounds: Any, e: float, slower: bool
) -> str | None:
    """Why a change is not in every round of both runs, or None when it is.

    Per-iteration samples do not see a drift between two runs, nor a slow spell within one. So
    the samples are cut into stretches of time (``stats.time_blocks``: the rounds, else 3
    consecutive blocks of ≥ ``MIN_SAMPLES``) and a slowdown must show in each: every block of
    the new run slower than the baseline's median by the minimum effect, and every block of the
    baseline faster than the new run's median by it (a speed-up: the mirror image).
    """
    bb = [float(np.median(x)) for x in time_blocks(bs, b_rounds, min_size=MIN_SAMPLES)]
    nb = [float(np.median(x)) for x in time_blocks(ns, n_rounds, min_size=MIN_SAMPLES)]
    mb, mn = float(np.median(bs)), float(np.median(ns))
    if slower:
        steady = min(nb) > mb * (1 + e) and max(bb) * (1 + e) < mn
    else:
        steady = max(nb) * (1 + e) < mb and min(bb) > mn * (1 + e)
    if steady:
        return None

    def show(x: list[float]) -> str:
        return ", ".join(f"{v:.3g}" for v in x)

    return (
        f"the change is not in every round (round medians: baseline {show(bb)}, new {show(nb)}; "
        f"each must differ from the other run's median by ×{1 + e:g}): a drift, not a steady change"
    )


def compare_rows(
    baseline: list[dict[str, Any]],
    new: list[dict[str, Any]],
    *,
    metrics: tuple[str, ...] | None = None,
    tolerances: Tolerances | None = None,
    fail_on_missing: bool = False,
    ignore_load: bool = False,
    baseline_name: str = "baseline",
    run_name: str = "run",
) -> Comparison:
    """Compare two lists of rows (see the module docstring for the rules)."""
    metrics = metrics or ALL_METRICS
    tol = tolerances or Tolerances()
    bi, ni = _index(baseline), _index(new)
    checks: list[Check] = []
    compared = 0
    for key, b in bi.items():
        n = ni.get(key)
        if n is None:
            continue
        compared += 1
        label = key_label(key)
        bst, nst = str(b.get("status") or "ok"), str(n.get("status") or "ok")
        if bst == "ok" and nst != "ok":
            err = (n.get("error") or "").splitlines()[0][:120] if n.get("error") else ""
            checks.append(Check(label, "status", bst, nst, "regression", rule=err or "was ok"))
            continue
        if bst != "ok" and nst == "ok":
            checks.append(Check(label, "status", bst, nst, "improved", rule="failed in the baseline"))
            continue
        if bst != "ok":
            checks.append(Check(label, "status", bst, nst, "same", rule="not ok in either"))
            continue
        for m in metrics:
            c = _check_metric(label, m, b, n, tol, ignore_load)
            if c is not None:
                checks.append(c)
    added = [key_label(k) for k in ni if k not in bi]
    missing = [key_label(k) for k in bi if k not in ni]
    cmp = Comparison(baseline_name, run_name, checks, added, missing, compared, fail_on_missing)
    if cmp.nothing_checked:
        cmp.note = _nothing_note([(b, ni[k]) for k, b in bi.items() if k in ni], metrics)
    return cmp


def _nothing_note(pairs: list[tuple[dict, dict]], metrics: tuple[str, ...]) -> str:
    """Why no check ran although cases lined up: none ok in both, or none with a selected metric."""
    ok = [(b, n) for b, n in pairs if str(b.get("status") or "ok") == "ok" == str(n.get("status") or "ok")]
    if not ok:
        states = sorted({f"{b.get('status')} → {n.get('status')}" for b, n in pairs})
        return f"no case is ok in both the baseline and the run ({len(pairs)} in common: {', '.join(states)})"
    have = [c for c in ALL_METRICS if any(_num(b.get(c)) is not None for b, _ in ok)]
    what = "a compared metric" if metrics == ALL_METRICS else ", ".join(metrics)
    has = (
        f" (the baseline's cases have {', '.join(have)})"
        if have
        else " (the baseline has no compared metric)"
    )
    return f"none of the {len(ok)} case(s) ok in both has {what} on both sides{has}"


def compare_runs(
    baseline: list[dict[str, Any]],
    runs: list[list[dict[str, Any]]],
    *,
    run_names: list[str] | None = None,
    **kw: Any,
) -> Comparison:
    """Compare several runs of the same cases with one baseline ("best of N" for noisy metrics).

    Each run is compared on its own (:func:`compare_rows`), then per case and metric: a noisy
    metric (latency, memory) is a regression only if it is one in **every** run that has the
    case (the verdict shown is the best run's, i.e. the lowest value); any other metric (params,
    FLOPs, accuracy, status) is a regression if it is one in **any** run. Added: in some run, not
    in the baseline; missing: in the baseline, in no run. With one run this is compare_rows.
    """
    if not runs:
        raise ValueError("compare_runs needs at least one run")
    names = run_names or [f"run {i + 1}" for i in range(len(runs))]
    cmps = [compare_rows(baseline, r, run_name=n, **kw) for r, n in zip(runs, names)]
    if len(cmps) == 1:
        return cmps[0]
    grouped: dict[tuple[str, str], list[Check]] = {}
    for c in cmps:
        for ch in c.checks:
            grouped.setdefault((ch.case, ch.metric), []).append(ch)
    checks = []
    for (_, metric), chs in grouped.items():
        regs = [c for c in chs if c.regression]
        if metric in NOISY_METRICS:
            pool = [c for c in chs if not c.regression] or regs
            best = min(pool, key=lambda c: c.new if isinstance(c.new, (int, float)) else math.inf)
            if len(chs) > 1:
                best = Check(**{**asdict(best), "rule": best.rule + f" (best of {len(chs)} runs)"})
            checks.append(best)
        else:
            checks.append(regs[0] if regs else chs[0])
    added = list(dict.fromkeys(a for c in cmps for a in c.added))
    missing = [m for m in cmps[0].missing if all(m in c.missing for c in cmps)]
    note = next((c.note for c in cmps if c.note), "")
    return Comparison(
        cmps[0].baseline,
        " + ".join(names),
        checks,
        added,
        missing,
        max(c.compared_cases for c in cmps),
        cmps[0].fail_on_missing,
        note,
    )


# ------------------------------------------------------------------------------------- rendering
def _fmt_val(column: str, v: Any) -> str:
    m = METRICS.get(column)
    if m is None or m.kind == "accuracy" or not m.unit:
        return format_value(v, "{:.2f}")
    return format_value(v, m.compare_fmt + " " + m.unit, scale=m.compare_scale)


def _fmt_change(c: Check) -> str:
    if c.change is None:
        return ""
    if c.metric in ACCURACY_METRICS:
        return f"{c.change:+.2f} pt"
    if math.isinf(c.change):
        return "inf"
    return f"{100 * c.change:+.2f} %"


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (JSON has no inf or NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def render_comparison(cmp: Comparison, fmt: str = "markdown", *, show_all: bool = False) -> str:
    """Markdown (regressions, improvements, added/missing; every check with ``show_all``) or JSON."""
    if fmt == "json":  # strict JSON: an unbounded change (from a zero baseline) is null, not Infinity
        return json.dumps(_finite(cmp.to_dict()), indent=1, allow_nan=False) + "\n"
    counts = cmp.counts()
    verdict = {"ok": "**OK**", "regression": "**REGRESSION**"}.get(cmp.verdict, "**NOTHING TO COMPARE**")
    lines = [
        f"# Comparison: {cmp.run} against {cmp.baseline}\n",
        f"{verdict}: {cmp.compared_cases} cases compared, "
        + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sorted(counts.items()))
        + (f"; {len(cmp.added)} added" if cmp.added else "")
        + (f"; {len(cmp.missing)} missing" if cmp.missing else "")
        + ("; nothing was compared (no case of the baseline is in the run)" if not cmp.compared_cases else "")
        + (f"; no check ran: {cmp.note}" if cmp.nothing_checked else "")
        + ".\n",
    ]

    def table(title: str, rows: list[Check]) -> None:
        if not rows:
            return
        lines.append(f"## {title}\n")
        lines.append("| case | metric | baseline | new | change | verdict | rule |")
        lines.append("|---|---|---|---|---|---|---|")
        for c in rows:
            lines.append(
                f"| {c.case} | {c.metric} | {_fmt_val(c.metric, c.baseline)} | {_fmt_val(c.metric, c.new)} "
                f"| {_fmt_change(c)} | {c.verdict.replace('_', ' ')} | {c.rule} |"
            )
        lines.append("")

    table("Regressions", cmp.regressions)
    table("Inconclusive (not counted as regressions)", [c for c in cmp.checks if c.verdict == "inconclusive"])
    table("Improvements", cmp.improvements)
    if show_all:
        table(
            "All checks",
            [c for c in cmp.checks if c.verdict not in ("regression", "improved", "faster", "inconclusive")],
        )
    if cmp.missing:
        lines.append(
            "## Missing (in the baseline, not in this run)"
            + (" — counted as regressions" if cmp.fail_on_missing else "")
            + "\n"
        )
        lines.extend(f"- {k}" for k in cmp.missing)
        lines.append("")
    if cmp.added:
        lines.append("## Added (in this run, not in the baseline)\n")
        lines.extend(f"- {k}" for k in cmp.added)
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- baselines
def baseline_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows a baseline keeps: ok rows only (last per case), volatile fields stripped."""
    out = []
    for r in _index(rows).values():
        if (r.get("status") or "ok") != "ok":
            continue
        out.append({k: v for k, v in r.items() if k not in VOLATILE_FIELDS})
    return out


def write_baseline(rows: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    return write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def baseline_path(baselines_dir: str | os.PathLike, suite: str, device: str = "cpu") -> Path:
    """``<dir>/<suite>.jsonl`` for CPU baselines, ``<dir>/<suite>-cuda.jsonl`` for GPU ones."""
    return Path(baselines_dir) / (f"{suite}.jsonl" if device == "cpu" else f"{suite}-{device}.jsonl")


def suite_of(rows: list[dict[str, Any]], path: Path) -> str | None:
    names = {r.get("suite") for r in rows if r.get("suite")}
    if len(names) == 1:
        return names.pop()
    if path.is_file() and path.suffix == ".jsonl" and path.name != "rows.jsonl":
        return path.stem.removesuffix("-cuda")
    return None


def dropped_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Labels (with status) of the cases a baseline would not keep: the ones not ok."""
    return [
        key_label(join_key(r)) + f" ({r.get('status')})"
        for r in _index(rows).values()
        if (r.get("status") or "ok") != "ok"
    ]


def busy_warning(rows: list[dict[str, Any]], keep: list[dict[str, Any]]) -> str | None:
    """A warning when a baseline's latency was measured on a busy machine, else None."""
    busy = sorted({b for b in (_busy(r) for r in _index(rows).values()) if b})
    if busy and any(_num(r.get("latency_ms_median")) for r in keep):
        return (
            f"warning: latency was {busy[-1]}: a baseline from a loaded machine hides latency "
            "regressions; consider re-measuring when the machine is idle"
        )
    return None
