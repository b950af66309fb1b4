"""``pacabench run``: ``pacabench.api.run`` with a live progress bar, then a summary and the report."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..runs.progress import Progress
from ._app import DEFAULT_RESULTS, console


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    suite: Path = typer.Argument(..., help="Suite YAML file, e.g. suites/resolution_scaling.yaml"),
    resume: bool = typer.Option(False, "--resume", help="Finish the latest (interrupted) run of this suite."),
    resume_from: Path | None = typer.Option(None, "--resume-from", help="Finish this run folder."),
    allow_changed_suite: bool = typer.Option(
        False, "--allow-changed-suite", help="Resume although the suite changed: measure what is missing."
    ),
    device: str | None = typer.Option(None, "--device", help="Override the suite's device: auto, cpu, cuda."),
    isolate: bool | None = typer.Option(None, "--isolate/--no-isolate", help="Each case in its own process."),
    results_dir: Path = typer.Option(Path(DEFAULT_RESULTS), "--results-dir", help="Where run folders go."),
    run_id: str | None = typer.Option(None, "--run-id", help="Name of the run folder (default: timestamp)."),
    max_cases: int | None = typer.Option(None, "--max-cases", help="Allow more than 5000 cases."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Live progress bar."),
    report: bool = typer.Option(True, "--report/--no-report", help="Print the markdown report at the end."),
    executor: str | None = typer.Option(
        None, "--executor", help="inprocess (default), local, slurm or debug (submitit, in this process)."
    ),
    partition: str | None = typer.Option(None, "--partition", help="SLURM partition."),
    parallel: int | None = typer.Option(None, "--parallel", help="Jobs at once (array_parallelism)."),
    timeout_min: float | None = typer.Option(None, "--timeout-min", help="Per-job time limit, minutes."),
    detach: bool = typer.Option(False, "--detach", help="SLURM: submit and return; see status / collect."),
    trust_code: bool = typer.Option(
        False, "--trust-code", help="Run the suite's model factories (module:function entries run code)."
    ),
    latency_mode: str | None = typer.Option(
        None, "--latency-mode", help="Override the suite's latency mode: eager, cuda_graph or compiled."
    ),
    compile_mode: str | None = typer.Option(
        None,
        "--compile-mode",
        help="torch.compile mode of --latency-mode compiled (default, max-autotune, ...).",
    ),
):
    """Run a suite: every model × resolution × batch × dtype case becomes a row in results/."""
    execute_run(
        suite, resume=resume, resume_from=resume_from, device=device, isolate=isolate,
        results_dir=results_dir, run_id=run_id, progress=progress, report=report,
        allow_changed_suite=allow_changed_suite, max_cases=max_cases,
        executor=(executor, partition, parallel, timeout_min, detach), trust_code=trust_code,
        latency=(latency_mode, compile_mode),
    )  # fmt: skip


def execute_run(
    suite: Path,
    *,
    results_dir: Path,
    resume: bool = False,
    resume_from: Path | None = None,
    allow_changed_suite: bool = False,
    device: str | None = None,
    isolate: bool | None = None,
    run_id: str | None = None,
    max_cases: int | None = None,
    progress: bool = True,
    report: bool = True,
    executor: tuple = (None, None, None, None, False),  # kind, partition, parallel, timeout_min, detach
    trust_code: bool = False,
    latency: tuple[str | None, str | None] = (None, None),  # --latency-mode, --compile-mode
) -> None:
    """The body of ``pacabench run`` (also what ``baseline update --measure`` runs)."""
    from ..api import report as render_report
    from ..api import run as run_suite
    from ..spec.suite import load_suite

    s = load_suite(suite)
    kind, partition, parallel, timeout_min, detach = executor
    overrides = {
        "kind": kind,
        "partition": partition,
        "array_parallelism": parallel,
        "timeout_min": timeout_min,
    }
    hooks = _Hooks(s.name, bar=progress)
    try:
        with hooks:
            r = run_suite(
                s, results_dir=results_dir, run_id=run_id, resume=resume, resume_from=resume_from,
                allow_changed_suite=allow_changed_suite, device=device, isolate=isolate,
                executor=overrides, detach=detach, max_cases=max_cases, on_progress=hooks,
                trust_code=trust_code, latency_mode=latency[0], compile_mode=latency[1],
            )  # fmt: skip
    except KeyboardInterrupt as e:
        if hooks.path is None:
            raise
        from ..runs.folder import RunDir

        n = len(RunDir(hooks.path).done_keys())
        how = "terminated" if type(e).__name__ == "Terminated" else "interrupted"
        console().print(
            f"[yellow]{how}[/]: {n} rows kept in {hooks.path}; finish with: "
            f"pacabench run {suite} --resume-from {hooks.path}"
        )
        raise typer.Exit(143 if how == "terminated" else 130) from None
    if r.summary is None:  # submitted to an executor
        _jobs_summary(r)
        if r.missing:  # said by the executor's warning; not a finished run
            raise typer.Exit(1)
        return
    _summarise(r.summary, r.path / "rows.jsonl")
    if report:  # plain write: markdown must not be re-wrapped to the terminal width
        sys.stdout.write(render_report(r, title=f"{s.name} — {r.path.name}") + "\n")


def _summarise(summary, rows_path: Path) -> None:
    counts = summary.counts()
    console().print(
        f"{len(summary.rows)} cases in {summary.wall_s:.1f} s "
        + (f"({', '.join(f'{v} {k}' for k, v in counts.items())})" if counts else "")
        + (f", {summary.skipped_done} already done" if summary.skipped_done else "")
        + f" → {rows_path}"
    )


def _jobs_summary(r) -> None:
    """After an executor run: the jobs to follow (detached), or the rows merged."""
    if r.detached:
        ids = sorted({s.job_id.split("_")[0] for s in r.submissions})
        console().print(
            f"submitted job {', '.join(ids) or '-'}; follow: pacabench status {r.path}; "
            f"merge: pacabench collect {r.path}"
        )
        return
    from ..runs.results import row_key

    rows = {row_key(row).requested(): row for row in r.rows()}  # a case written twice counts once
    counts: dict[str, int] = {}
    for row in rows.values():
        counts[row.get("status", "?")] = counts.get(row.get("status", "?"), 0) + 1
    console().print(
        f"{len(rows)} rows ({', '.join(f'{v} {k}' for k, v in counts.items())}) → {r.path / 'rows.jsonl'}"
    )


class _Hooks(Progress):
    """The run's progress hooks on the terminal: status lines on stderr, the rich progress bar
    (``bar``) while cases are measured in process, a line per row merged from an executor's jobs.
    Keeps the run folder's path for the interrupt message."""

    def __init__(self, suite_name: str, bar: bool = True):
        self.suite_name = suite_name
        self.bar = bar
        self.path: Path | None = None
        self.progress = None  # the rich Progress, started on "start"
        self.task = None
        self.lines = False  # rows come from an executor's jobs: one line each

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            if exc[0] is None:
                self.progress.update(self.task, description="done")
            self.progress.stop()
        return False

    def on_folder(self, path) -> None:
        self.path = path
        console().print(f"run folder [bold]{path}[/]")

    def on_resume(self, path) -> None:
        self.path = path
        console().print(f"resuming [bold]{path}[/]")

    def on_note(self, text: str) -> None:
        console().print(f"[yellow]note[/]: {text}")

    def on_warning(self, text: str) -> None:
        console().print(f"[yellow]warning[/]: {text}")

    def on_info(self, text: str) -> None:
        console().print(text)

    def on_start(self, todo) -> None:
        if self.bar:
            self.progress = _rich_progress()
            self.progress.start()
            self.task = self.progress.add_task("", total=len(todo), suite=self.suite_name)

    def on_submit(self, todo) -> None:
        self.lines = True

    def on_case(self, case) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=case.describe())

    def on_row(self, row: dict) -> None:
        if self.lines:
            console().print(
                f"  {row.get('status')}: {row.get('case_id')}"
                + (f" ({row['error']})" if row.get("error") else "")
            )
        elif self.progress is not None:
            self.progress.advance(self.task)


def _rich_progress():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    return RichProgress(
        TextColumn("[bold]{task.fields[suite]}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        transient=False,
    )
