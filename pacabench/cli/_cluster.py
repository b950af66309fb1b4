"""``pacabench status`` / ``collect``, and ``run --executor local|slurm`` (the submitting side)."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from ..errors import UsageError
from ._app import console, out


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("collect")(collect)


def _run_folder(run: Path) -> Path:
    from ..runs.executors.jobstate import JOBS_FILE

    if not run.is_dir():
        raise UsageError(f"{run}: not a run folder")
    if not (run / JOBS_FILE).exists():
        raise UsageError(f"{run}: no {JOBS_FILE} (a run made with --executor local or slurm has one)")
    return run


def status(
    run: Path = typer.Argument(..., help="Run folder, e.g. results/paper_sweep/<run-id>"),
    all_cases: bool = typer.Option(False, "--all", help="List every case, not only those not done."),
):
    """Pending / running / done / failed per case of a submitted run, and an ETA (no sacct needed)."""
    from ..runs.executors.collect import run_status
    from ..spec.suite import load_suite

    path = _run_folder(run)
    par = load_suite(path / "suite.yaml").executor.parallelism() if (path / "suite.yaml").exists() else 1
    st = run_status(path, parallel=par)
    for label, state, detail in st.cases:
        if all_cases or state != "done":
            out().print(f"{state:8} {label}" + (f"  [dim]{detail}[/]" if detail else ""), highlight=False)
    order = ("done", "failed", "running", "pending", "unknown")
    counts = ", ".join(f"{st.counts[k]} {k}" for k in order if st.counts.get(k))
    eta = f"; eta {st.eta_s / 60:.1f} min" if st.eta_s is not None else ""
    out().print(f"{len(st.cases)} cases: {counts}{eta}", highlight=False)


def collect(run: Path = typer.Argument(..., help="Run folder to merge the jobs' row files into.")):
    """Merge the finished jobs' rows into rows.jsonl in suite order (collecting twice changes nothing)."""
    from ..runs.executors.collect import collect_rows
    from ..runs.results import RunDir

    rd = RunDir(_run_folder(run))
    with rd.lock():
        new = collect_rows(rd)
    console().print(f"{len(new)} row(s) merged into {rd.rows_path} ({len(rd.rows())} in all)")


def executor_config(suite, executor, partition, parallel, timeout_min, detach: bool):
    """The suite's executor block with the CLI's overrides; refuses --detach off SLURM."""
    cfg = suite.executor.override(
        kind=executor, partition=partition, array_parallelism=parallel, timeout_min=timeout_min
    )
    if detach and cfg.kind != "slurm":
        raise UsageError(f"--detach needs --executor slurm, not {cfg.kind}")
    if cfg.kind == "slurm" and shutil.which("sbatch") is None:
        raise UsageError(
            "--executor slurm: no sbatch on PATH (no SLURM here); use --executor inprocess or local"
        )
    return cfg


def run_on_executor(suite, rd, cfg, *, device: str | None, max_cases: int | None, detach: bool) -> None:
    """Submit what is missing or failed (not what is still queued) and wait unless ``detach``;
    the caller holds the run's lock (released when it returns, so a detached run holds none)."""
    from ..runs.executors.collect import collect_rows
    from ..runs.executors.jobstate import job_states, load_submissions
    from ..runs.executors.submit import submit_cases
    from ..runs.results import row_key

    cases, _ = suite.expand(device, max_cases)
    collect_rows(rd)
    subs = load_submissions(rd.path)
    queued = {k for k, s in job_states(subs).items() if s.state in ("pending", "running")} if subs else set()
    done = {row_key(r): r.get("status") for r in rd.rows()}
    todo = [c for c in cases if done.get(c.key, "error") == "error" and c.key.file_stem() not in queued]
    console().print(
        f"{cfg.kind}: submitting {len(todo)} of {len(cases)} case(s)"
        + (f" ({len(queued)} still queued)" if queued else "")
    )

    def on_row(d: dict) -> None:
        console().print(
            f"  {d.get('status')}: {d.get('case_id')}" + (f" ({d['error']})" if d.get("error") else "")
        )

    subs = submit_cases(todo, rd, cfg, detach=detach, on_row=on_row)
    if detach:
        ids = sorted({s.job_id.split("_")[0] for s in subs})
        console().print(
            f"submitted job {', '.join(ids) or '-'}; follow: pacabench status {rd.path}; "
            f"merge: pacabench collect {rd.path}"
        )
        return
    counts: dict[str, int] = {}
    for r in rd.rows():
        counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
    console().print(
        f"{len(rd.rows())} rows ({', '.join(f'{v} {k}' for k, v in counts.items())}) → {rd.rows_path}"
    )
