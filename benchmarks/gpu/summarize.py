"""Summarise a high-resolution run: latency ratios with 95% intervals, memory at the largest size.

    python benchmarks/gpu/summarize.py results/high_resolution/<run-id> [--pairs A:B,C:D]
    python benchmarks/gpu/summarize.py [RUN] --modes RUN_EAGER RUN_GRAPH RUN_COMPILED

``--modes``: runs of one suite in different latency modes (suites/gpu_modes.yaml): per model,
resolution and batch, eager vs CUDA graph vs compiled latency, the GPU busy share of each and the
energy per image; † marks a launch-bound row, ‡ an unstable one (its evidence listed below).

Prints markdown: for each pair (default PaCa-T ÷ Swin-T, PaCa-S ÷ Swin-S, PaCa-T ÷ PVT-T,
PaCa-T ÷ PVTv2-b1), the ratio of median latencies at every resolution, batch and dtype, with a
95% bootstrap interval from the rows' raw samples (``pacabench.analysis.stats.ratio_ci``); then peak and
activation memory (peak − resident) of every model at the largest resolution of the run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pacabench.analysis.stats import ratio_ci

DEFAULT_PAIRS = (
    ("pacavit_tiny_p2cconv_100_0", "swin_tiny_patch4_window7_224"),
    ("pacavit_small_p2cconv_100_0", "swin_small_patch4_window7_224"),
    ("pacavit_tiny_p2cconv_100_0", "pvt_tiny"),
    ("pacavit_tiny_p2cconv_100_0", "pvt_v2_b1"),
)
SHORT = {
    "pacavit_tiny_p2cconv_100_0": "PaCa-T",
    "pacavit_small_p2cconv_100_0": "PaCa-S",
    "swin_tiny_patch4_window7_224": "Swin-T",
    "swin_small_patch4_window7_224": "Swin-S",
    "pvt_tiny": "PVT-T",
    "pvt_small": "PVT-S",
    "pvt_v2_b1": "PVTv2-b1",
    "pvt_v2_b2": "PVTv2-b2",
}


def _rows(run: Path) -> list[dict]:
    path = run / "rows.jsonl" if run.is_dir() else run
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line of an interrupted run
    return out


def _key(r: dict) -> tuple:
    return (r["model"], int(r["resolution"][0]), int(r["batch_size"]), r["dtype"])


def _settings(rows: list[dict]) -> list[tuple[int, str]]:
    return sorted({(int(r["batch_size"]), r["dtype"]) for r in rows}, key=lambda t: (t[1] != "fp32", t[0]))


def latency_section(rows: list[dict], pairs) -> str:
    by = {_key(r): r for r in rows if r.get("status") == "ok" and r.get("latency_ms_samples")}
    failed = {_key(r): r["status"] for r in rows if r.get("status") != "ok"}
    res = sorted({int(r["resolution"][0]) for r in rows})
    parts = []
    for a, b in pairs:
        if not any(k[0] == a for k in by) or not any(k[0] == b for k in by):
            continue
        head = "| batch, dtype | " + " | ".join(f"{x}²" for x in res) + " |"
        lines = [
            f"**{SHORT.get(a, a)} ÷ {SHORT.get(b, b)}**, median latency ratio [95% bootstrap interval]\n",
            head,
            "|---|" + "---|" * len(res),
        ]
        for bs, dt in _settings(rows):
            cells = []
            for x in res:
                ra, rb = by.get((a, x, bs, dt)), by.get((b, x, bs, dt))
                if ra and rb:
                    cells.append(ratio_ci(ra["latency_ms_samples"], rb["latency_ms_samples"]).format(2))
                else:
                    cells.append(failed.get((a, x, bs, dt)) or failed.get((b, x, bs, dt)) or "–")
            lines.append(f"| b{bs} {dt} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _model_table(title: str, rows: list[dict], columns: list[tuple[str, tuple]], column: str, fmt) -> str:
    """A models × columns markdown table: ``columns`` are (header, key suffix after the model);
    a cell is ``fmt(row)`` for an ok row that measured ``column``, else the row's status or –."""
    by = {_key(r): r for r in rows}
    lines = [
        f"**{title}**\n",
        "| model | " + " | ".join(h for h, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for m in dict.fromkeys(r["model"] for r in rows):
        cells = []
        for _, key in columns:
            r = by.get((m, *key))
            if r is None:
                cells.append("–")
            elif r.get("status") != "ok" or r.get(column) is None:
                cells.append(r.get("status", "?"))
            else:
                cells.append(fmt(r))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latency_table(rows: list[dict], bs: int, dt: str) -> str:
    res = sorted({int(r["resolution"][0]) for r in rows})
    return _model_table(
        f"Latency, ms per batch (median), batch {bs}, {dt}",
        rows,
        [(f"{x}²", (x, bs, dt)) for x in res],
        "latency_ms_median",
        lambda r: f"{r['latency_ms_median']:.2f}",
    )


def memory_section(rows: list[dict]) -> str:
    top = max(int(r["resolution"][0]) for r in rows)
    at = [r for r in rows if int(r["resolution"][0]) == top]

    def peak_and_activations(r: dict) -> str:
        act = r["peak_mem_mb"] - (r.get("resident_mem_mb") or 0.0)
        return f"{r['peak_mem_mb']:.0f} / {act:.0f}"

    return _model_table(
        f"Peak memory at {top}², MiB: whole peak / activations (peak − weights and input)",
        at,
        [(f"b{bs} {dt}", (top, bs, dt)) for bs, dt in _settings(at)],
        "peak_mem_mb",
        peak_and_activations,
    )


MODES = ("eager", "cuda_graph", "compiled")


def _mode_cell(r: dict | None, fmt) -> str:
    if r is None:
        return "–"
    if r.get("status") != "ok":
        return r.get("status", "?")
    text = fmt(r)
    return text + ("†" if r.get("launch_bound") else "") + ("‡" if r.get("latency_unstable") else "")


def _ms(r: dict) -> str:
    return f"{r['latency_ms_median']:.2f}"


def _share(r: dict) -> str:
    return "–" if r.get("gpu_busy_share") is None else f"{r['gpu_busy_share']:.2f}"


def _energy(r: dict) -> str:
    return "–" if r.get("energy_mj_per_image") is None else f"{r['energy_mj_per_image']:.1f}"


def modes_section(rows: list[dict]) -> str:
    """Eager vs CUDA graph vs compiled, per model × resolution × batch (dtype fp32 first)."""
    by = {(*_key(r), r.get("latency_mode") or "eager"): r for r in rows}
    modes = [m for m in MODES if any(k[-1] == m for k in by)]
    head = ["model", "size", "batch"] + [f"{m} ms" for m in modes] + [f"busy {m}" for m in modes]
    head += [f"mJ/img {m}" for m in modes]
    lines = [
        "**Latency modes**: median ms per batch, GPU busy share, energy per image "
        "(† launch bound: busy share < 0.8; ‡ unstable samples, evidence below)\n",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
    ]
    models = list(dict.fromkeys(r["model"] for r in rows))
    for model, x, bs, dt in sorted(
        {_key(r) for r in rows}, key=lambda k: (models.index(k[0]), k[3], k[1], k[2])
    ):
        cases = [by.get((model, x, bs, dt, m)) for m in modes]
        cells = [_mode_cell(r, _ms) for r in cases] + [_mode_cell(r, _share) for r in cases]
        cells += [_mode_cell(r, _energy) for r in cases]
        size = f"{x}²" + ("" if dt == "fp32" else f" {dt}")
        lines.append(f"| {SHORT.get(model, model)} | {size} | {bs} | " + " | ".join(cells) + " |")
    why = [
        f"- {SHORT.get(r['model'], r['model'])} {_key(r)[1]}² b{_key(r)[2]} {r.get('latency_mode') or 'eager'}"
        + (" (retried)" if r.get("latency_retried") else "")
        + f": {r['latency_unstable_why']}"
        for r in rows
        if r.get("latency_unstable_why")
    ]
    return "\n".join(lines) + ("\n\nInstability evidence:\n" + "\n".join(why) if why else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, nargs="?", help="run folder (or its rows.jsonl)")
    ap.add_argument("--pairs", default=None, help="A:B,C:D model pairs (default: PaCa vs Swin/PVT)")
    ap.add_argument(
        "--modes", type=Path, nargs="+", default=[], help="runs of one suite in other latency modes"
    )
    args = ap.parse_args(argv)
    out = []
    if args.modes:
        missing = [p for p in args.modes if not p.exists()]
        if missing:
            print(f"summarize: error: no such run: {missing[0]}", file=sys.stderr)
            return 2
        mode_rows = [r for p in args.modes for r in _rows(p) if r.get("task", "cost") == "cost"]
        out.append(modes_section(mode_rows) if mode_rows else "no rows in the latency-mode runs")
    if args.run is None:
        if not out:
            print("summarize: error: give a run folder, or --modes RUN ...", file=sys.stderr)
            return 2
        sys.stdout.write("\n\n".join(out) + "\n")
        return 0
    if not args.run.exists():
        print(f"summarize: error: no such run: {args.run}", file=sys.stderr)
        return 2
    rows = [r for r in _rows(args.run) if r.get("task", "cost") == "cost" and r.get("resolution")]
    if not rows:
        print(f"summarize: error: no cost rows in {args.run}", file=sys.stderr)
        return 2
    pairs = DEFAULT_PAIRS
    if args.pairs:
        pairs = tuple(tuple(p.split(":", 1)) for p in args.pairs.split(","))
    ok = sum(r.get("status") == "ok" for r in rows)
    dev = next((r.get("device_name") for r in rows if r.get("device_name")), "?")
    out = [
        *out,
        f"# {rows[0].get('suite', '')} on {dev}: {len(rows)} rows ({ok} ok)\n",
        latency_section(rows, pairs),
        *(latency_table(rows, bs, dt) for bs, dt in _settings(rows)),
        memory_section(rows),
    ]
    sys.stdout.write("\n\n".join(p for p in out if p) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
