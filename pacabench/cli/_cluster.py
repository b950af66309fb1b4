"""``pacabench status`` / ``collect``: follow and merge a run submitted to an executor
(``pacabench.api.status`` / ``collect``)."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import console, out


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("collect")(collect)


def status(
    run: Path = typer.Argument(..., help="Run folder, e.g. results/paper_sweep/<run-id>"),
    all_cases: bool = typer.Option(False, "--all", help="List every case, not only those not done."),
):
    """Pending / running / done / failed per case of a run, and an ETA (no sacct needed); an
    in-process run: done / failed / missing from its rows."""
    from ..api import status as run_status

    st = run_status(run)
    for label, state, detail in st.cases:
        if all_cases or state != "done":
            out().print(f"{state:8} {label}" + (f"  [dim]{detail}[/]" if detail else ""), highlight=False)
    order = ("done", "failed", "running", "pending", "unknown", "missing")
    counts = ", ".join(f"{st.counts[k]} {k}" for k in order if st.counts.get(k))
    eta = f"; eta {st.eta_s / 60:.1f} min" if st.eta_s is not None else ""
    out().print(f"{len(st.cases)} cases: {counts}{eta}", highlight=False)


def collect(run: Path = typer.Argument(..., help="Run folder to merge the jobs' row files into.")):
    """Merge the finished jobs' rows into rows.jsonl in suite order (collecting twice changes nothing)."""
    from ..api import collect as collect_rows
    from ..runs.folder import RunDir

    new = collect_rows(run)
    rd = RunDir(run)
    n = len(rd.done_keys())  # cases, not lines: a case written twice counts once
    console().print(f"{len(new)} row(s) merged into {rd.rows_path} ({n} case(s) in all)")
