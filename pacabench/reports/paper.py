"""Published params / FLOPs / top-1 at 224 (``pacabench/data/reference_numbers.csv``) and the
paper's efficiency table: our measurement beside the published number, with the difference.

Every reference row names its source and what kind of source it is:

* ``paper`` — the model's paper (Swin, PVT, PVTv2);
* ``authors_readme`` — the authors' README (PaCa-ViT's numbers are published there);
* ``authors_code_fvcore`` — the authors' released code, measured with fvcore (eval, batch 1, 224):
  exact numbers, where the paper/README rounds;
* ``timm_fvcore`` — timm 1.0.31's implementation measured with fvcore, attention counted.

"Published" is the paper or README value; where neither gives a metric (most PaCa-ViT ablation
variants publish only top-1), the authors' code measurement is used and marked so. The
"measured reference" (authors' code or timm, with fvcore) is the precise check: our numbers
should match it to a fraction of a percent.

FLOPs follow the papers' convention: one multiply-add = one FLOP (GMACs), batch 1.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pandas as pd

__all__ = [
    "SOURCE_KINDS",
    "RefRow",
    "load_reference",
    "reference_models",
    "paper_table",
    "paper_table_strings",
    "PAPER_TABLE_NOTES",
]

SOURCE_KINDS = {
    "paper": "paper",
    "authors_readme": "authors' README",
    "authors_code_fvcore": "authors' code, measured with fvcore",
    "timm_fvcore": "timm 1.0.31, measured with fvcore",
}
_PUBLISHED_ORDER = ("paper", "authors_readme", "authors_code_fvcore")
_MEASURED_ORDER = ("authors_code_fvcore", "timm_fvcore")
_SHORT = {"paper": "paper", "authors_readme": "README", "authors_code_fvcore": "code", "timm_fvcore": "timm"}

# Differences beyond this (percent) get an explanation in the table.
EXPLAIN_ABOVE_PCT = 2.0
# ... and so do differences beyond this from the exact (fvcore) measurement of the reference code.
EXPLAIN_REF_ABOVE_PCT = 0.5

PAPER_TABLE_NOTES = (
    "Params in millions; GFLOPs with 1 MAC = 1 FLOP (GMACs: fvcore, batch 1, eval, "
    "attention counted), at 224x224. Δ = (ours − published) / published. Published: paper, or the "
    "authors' README; 'code' marks a value taken from the authors' code measured with fvcore where "
    "neither publishes one. 'Δ ref' compares with the exact measurement of the authors' code "
    "(PaCa-ViT, PVT v1) or timm (Swin, PVTv2) with fvcore."
)


@dataclass
class RefRow:
    model: str
    name_in_source: str
    source_kind: str
    source: str
    values: dict[str, float | None] = field(default_factory=dict)  # params_m, gflops, top1
    text: dict[str, str] = field(default_factory=dict)  # the values as written (for rounding)
    note: str = ""


def load_reference() -> list[RefRow]:
    """All reference rows, in file order."""
    path = resources.files("pacabench") / "data" / "reference_numbers.csv"
    rows = []
    with path.open(encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            kind = r["source_kind"].strip()
            if kind not in SOURCE_KINDS:
                raise ValueError(f"reference_numbers.csv: unknown source_kind '{kind}'")
            vals, text = {}, {}
            for k in ("params_m", "gflops", "top1"):
                s = (r.get(k) or "").strip()
                vals[k] = float(s) if s else None
                text[k] = s
            rows.append(
                RefRow(
                    r["model"].strip(),
                    r["name_in_source"].strip(),
                    kind,
                    r["source"].strip(),
                    vals,
                    text,
                    (r.get("note") or "").strip(),
                )
            )
    return rows


def reference_models() -> list[str]:
    seen: list[str] = []
    for r in load_reference():
        if r.model not in seen:
            seen.append(r.model)
    return seen


def _pick(refs: list[RefRow], metric: str, order: tuple[str, ...]) -> RefRow | None:
    for kind in order:
        for r in refs:
            if r.source_kind == kind and r.values.get(metric) is not None:
                return r
    return None


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _pct(ours: float | None, ref: float | None) -> float | None:
    if ours is None or ref is None or ref == 0:
        return None
    return 100.0 * (ours - ref) / ref


def _ours(run: pd.DataFrame | None) -> dict[str, dict[str, float | None]]:
    """model -> params (M), gflops from the run's ok cost rows at 224x224."""
    out: dict[str, dict[str, float | None]] = {}
    if run is None or run.empty:
        return out
    for r in run.to_dict("records"):
        if (r.get("task") or "cost") != "cost" or r.get("status") != "ok":
            continue
        if list(r.get("resolution") or []) != [224, 224]:
            continue
        d = out.setdefault(r["model"], {"params_m": None, "gflops": None})
        p, g = r.get("params"), r.get("gflops")
        if p is not None and not (isinstance(p, float) and math.isnan(p)):
            d["params_m"] = float(p) / 1e6
        if g is not None and not (isinstance(g, float) and math.isnan(g)):
            d["gflops"] = float(g)
    return out


def _explain(metric: str, ours: float, pub: RefRow, meas: RefRow | None) -> str:
    """Why ``ours`` differs from the published value by more than EXPLAIN_ABOVE_PCT."""
    what = "params" if metric == "params_m" else "FLOPs"
    pub_v, pub_t = pub.values[metric], pub.text[metric]
    kind = SOURCE_KINDS[pub.source_kind]
    if meas is not None and meas is not pub:
        d_ref = _pct(ours, meas.values[metric])
        if d_ref is not None and abs(d_ref) <= 0.5:
            half_unit = 0.5 * 10 ** (-_decimals(pub_t))
            agree = (
                f"ours matches the {SOURCE_KINDS[meas.source_kind]} ({meas.text[metric]}, Δ {d_ref:+.2f} %)"
            )
            if abs(meas.values[metric] - pub_v) <= half_unit + 1e-9:
                return f"{what}: the {kind} rounds to {_decimals(pub_t)} decimal(s) ({pub_t}); {agree}"
            return f"{what}: the {kind}'s {pub_t} disagrees with the reference code; {agree}" + (
                f" ({pub.note})" if pub.note else ""
            )
        pub, kind = meas, SOURCE_KINDS[meas.source_kind]
        pub_t = meas.text[metric]
    return f"{what}: differs from the {kind} ({pub_t}): " + (pub.note or "unexplained")


def paper_table(run: pd.DataFrame | None, *, include_unmeasured: bool = False) -> pd.DataFrame:
    """One row per model: ours vs published params/FLOPs, Δ %, Δ against the measured reference.

    Models come in the reference file's order (PaCa-ViT, Swin, PVT v1, PVTv2), then any other
    model of the run. Without ``include_unmeasured``, reference models absent from the run are left out.
    """
    refs = load_reference()
    by_model: dict[str, list[RefRow]] = {}
    for r in refs:
        by_model.setdefault(r.model, []).append(r)
    ours = _ours(run)
    models = [m for m in by_model if include_unmeasured or m in ours]
    models += [m for m in ours if m not in by_model]
    recs: list[dict[str, Any]] = []
    for m in models:
        rr = by_model.get(m, [])
        o = ours.get(m, {"params_m": None, "gflops": None})
        rec: dict[str, Any] = {"model": m}
        notes, sources = [], []
        for metric, col in (("params_m", "params"), ("gflops", "gflops")):
            pub = _pick(rr, metric, _PUBLISHED_ORDER)
            meas = _pick(rr, metric, _MEASURED_ORDER)
            rec[f"{col}_ours"] = o[metric]
            rec[f"{col}_published"] = pub.values[metric] if pub else None
            rec[f"{col}_published_text"] = pub.text[metric] if pub else ""
            rec[f"{col}_source"] = pub.source_kind if pub else ""
            rec[f"{col}_delta_pct"] = _pct(o[metric], pub.values[metric] if pub else None)
            rec[f"{col}_measured_ref"] = meas.values[metric] if meas else None
            rec[f"{col}_delta_ref_pct"] = _pct(o[metric], meas.values[metric] if meas else None)
            d = rec[f"{col}_delta_pct"]
            d_ref = rec[f"{col}_delta_ref_pct"]
            if pub is not None and (
                (d is not None and abs(d) > EXPLAIN_ABOVE_PCT)
                or (d_ref is not None and abs(d_ref) > EXPLAIN_REF_ABOVE_PCT)
            ):
                notes.append(_explain(metric, o[metric], pub, meas))
            if pub is not None:
                s = f"{_SHORT[pub.source_kind]}"
                if s not in sources:
                    sources.append(s)
        top = _pick(rr, "top1", ("paper", "authors_readme"))
        rec["top1_published"] = top.values["top1"] if top else None
        rec["top1_published_text"] = top.text["top1"] if top else ""
        rec["name_in_source"] = next(
            (r.name_in_source for r in rr if r.source_kind in ("paper", "authors_readme")), m
        )
        rec["source"] = next(
            (r.source for r in rr if r.source_kind in ("paper", "authors_readme")),
            next((r.source for r in rr), ""),
        )
        rec["sources"] = ", ".join(sources)
        rec["note"] = "; ".join(notes)
        recs.append(rec)
    return pd.DataFrame(recs)


def _f(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    out = fmt.format(v)
    if out.startswith("-") and not any(ch in "123456789" for ch in out):
        out = "+" + out[1:]  # -0.0 -> +0.0
    return out


def paper_table_strings(tab: pd.DataFrame) -> pd.DataFrame:
    """The display version of :func:`paper_table` (strings, short column names)."""
    rows = []
    for r in tab.to_dict("records"):
        pub_p = r["params_published_text"] + (
            " (code)" if r["params_source"] == "authors_code_fvcore" else ""
        )
        pub_g = r["gflops_published_text"] + (
            " (code)" if r["gflops_source"] == "authors_code_fvcore" else ""
        )
        rows.append(
            {
                "model": r["model"],
                "params ours (M)": _f(r["params_ours"], "{:.3f}"),
                "params published (M)": pub_p or "–",
                "Δ params": _f(r["params_delta_pct"], "{:+.1f} %"),
                "GFLOPs ours": _f(r["gflops_ours"], "{:.3f}"),
                "GFLOPs published": pub_g or "–",
                "Δ GFLOPs": _f(r["gflops_delta_pct"], "{:+.1f} %"),
                "Δ ref (params / FLOPs)": _f(r["params_delta_ref_pct"], "{:+.2f}")
                + " / "
                + _f(r["gflops_delta_ref_pct"], "{:+.2f} %"),
                "top-1 published": r["top1_published_text"] or "–",
                "source": r["sources"] or "–",
            }
        )
    return pd.DataFrame(rows)
