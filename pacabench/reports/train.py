"""Report tables of train-mode and capacity rows: train vs inference side by side, the memory
split (weights + gradients + AdamW state vs activations), and the largest resolution that fits.

Both are empty for a run without such rows, so inference-only reports are unchanged.
"""

from __future__ import annotations

import pandas as pd

from ..spec.sizes import res_label, tokens

__all__ = ["train_vs_inference_table", "capacity_table", "TRAIN_TITLE", "CAPACITY_TITLE"]

TRAIN_TITLE = "Train step vs inference (ms per batch, MiB; memory split of the train peak)"
CAPACITY_TITLE = "Largest resolution that fits (capacity search)"
_INF = {"latency_ms_median": "inference ms", "peak_mem_mb": "inference peak"}
_TRAIN = {
    "train_ms_median": "train ms",
    "train_peak_mb": "train peak",
    "train_state_mb": "weights+grads+AdamW",
    "train_activation_mb": "activations",
}


def _settings(df: pd.DataFrame) -> list[str]:
    """Model plus whichever of batch/dtype/device/channels_last vary (not the mode)."""
    cols = ["model"]
    for c in ("batch_size", "dtype", "device", "channels_last", "compile", "attn_impl"):
        if c in df.columns and df[c].astype(str).nunique() > 1:
            cols.append(c)
    return cols


def _ok(df: pd.DataFrame, mode: str) -> pd.DataFrame:
    modes = df["mode"].fillna("inference") if "mode" in df.columns else pd.Series("inference", df.index)
    return df[(modes == mode) & (df["status"] == "ok")]


def train_vs_inference_table(cost: pd.DataFrame) -> pd.DataFrame:
    """Per model and resolution: inference and train latency, their ratio, and the peaks."""
    train = _ok(cost, "train")
    if train.empty or "train_peak_mb" not in train.columns:
        return pd.DataFrame()
    cost = cost.assign(res=cost["resolution"].map(res_label), _t=cost["resolution"].map(tokens))
    idx = _settings(cost) + ["res"]
    if "grad_checkpointing" in train.columns and train["grad_checkpointing"].astype(bool).any():
        train = train.assign(checkpointing=train["grad_checkpointing"].astype(bool))
    tr_idx = idx + (["checkpointing"] if "checkpointing" in train.columns else [])
    tr = cost.loc[train.index].assign(**{c: train[c] for c in train.columns if c not in cost.columns})
    tr = tr.groupby(tr_idx, sort=False)[[c for c in _TRAIN if c in tr.columns]].last()
    inf_rows = cost.loc[_ok(cost, "inference").index]
    inf = inf_rows.groupby(idx, sort=False)[[c for c in _INF if c in inf_rows.columns]].last()
    out = tr.reset_index().merge(inf.reset_index(), on=idx, how="left")
    if "latency_ms_median" in out.columns and "train_ms_median" in out.columns:
        out["train / inference"] = out["train_ms_median"] / out["latency_ms_median"]
    order = list(dict.fromkeys(cost["model"]))
    res_order = cost.drop_duplicates("res").set_index("res")["_t"].to_dict()
    out = out.assign(_o=out["model"].map(order.index), _r=out["res"].map(res_order))
    out = out.sort_values(["_o", "_r"]).drop(columns=["_o", "_r"])
    cols = [c for c in (*_INF, "train_ms_median", "train / inference", *list(_TRAIN)[1:]) if c in out.columns]
    return out.set_index(tr_idx)[list(dict.fromkeys(cols))].rename(columns={**_INF, **_TRAIN})


def capacity_table(cost: pd.DataFrame) -> pd.DataFrame:
    """Per model (and mode, batch, dtype): the largest resolution within the budget, its peak."""
    if "capacity_resolution" not in cost.columns:
        return pd.DataFrame()
    rows = (
        cost[cost["capacity_budget_mb"].notna()] if "capacity_budget_mb" in cost.columns else cost.iloc[0:0]
    )
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(mode=rows["mode"].fillna("inference") if "mode" in rows.columns else "inference")
    idx = ["model", "mode", "batch_size", "dtype"] + (["device"] if rows["device"].nunique() > 1 else [])
    out = rows.assign(
        **{
            "largest resolution": rows["capacity_resolution"].map(
                lambda v: "none fits" if pd.isna(v) else int(v)
            ),
            "peak (MiB)": rows["capacity_peak_mb"],
            "budget (MiB)": rows["capacity_budget_mb"],
            "at the search limit": rows["capacity_capped"].map(lambda v: "yes" if v else ""),
        }
    )
    return out.set_index(idx)[["largest resolution", "peak (MiB)", "budget (MiB)", "at the search limit"]]
