"""``pacabench run``: run a suite into a run folder, with a live progress bar."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import typer

from ..errors import UsageError
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
    executor: str | None = typer.Option(None, "--executor", help="inprocess (default), local or slurm."),
    partition: str | None = typer.Option(None, "--partition", help="SLURM partition."),
    parallel: int | None = typer.Option(None, "--parallel", help="Jobs at once (array_parallelism)."),
    timeout_min: float | None = typer.Option(None, "--timeout-min", help="Per-job time limit, minutes."),
    detach: bool = typer.Option(False, "--detach", help="SLURM: submit and return; see status / collect."),
):
    """Run a suite: every model × resolution × batch × dtype case becomes a row in results/."""
    execute_run(
        suite, resume=resume, resume_from=resume_from, device=device, isolate=isolate,
        results_dir=results_dir, run_id=run_id, progress=progress, report=report,
        allow_changed_suite=allow_changed_suite, max_cases=max_cases,
        executor=(executor, partition, parallel, timeout_min, detach),
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
) -> None:
    """The body of ``pacabench run`` (also what ``baseline update --measure`` runs)."""
    from ..runs.runner import run_suite, sigterm_as_interrupt
    from ..spec.suite import load_suite

    s = load_suite(suite)
    _check_device(device or s.device, device)
    if max_cases is not None and max_cases < 1:
        raise UsageError(f"--max-cases must be a positive int, got {max_cases}")
    _, dups = s.expand(device, max_cases)  # refused before any folder is made
    if dups:
        console().print(f"[yellow]warning[/]: {dups} duplicate case(s) in {suite} measured once")
    from ._cluster import executor_config, run_on_executor

    cfg = executor_config(s, *executor)
    rd = _run_dir(s, resume, resume_from, results_dir, run_id)
    bar = _ProgressBar(s.name) if progress else None
    try:
        with rd.lock(), sigterm_as_interrupt():
            refill = _prepare_resume(s, rd, allow_changed_suite) if (resume or resume_from) else frozenset()
            if cfg.kind != "inprocess":
                return run_on_executor(s, rd, cfg, device=device, max_cases=max_cases, detach=executor[4])
            with bar or contextlib.nullcontext():
                summary = run_suite(
                    s, rd, device=device, isolate=isolate, max_cases=max_cases, refill=refill,
                    **(bar.callbacks() if bar else {}),
                )  # fmt: skip
    except KeyboardInterrupt as e:
        n = len(rd.rows())
        how = "terminated" if type(e).__name__ == "Terminated" else "interrupted"
        console().print(
            f"[yellow]{how}[/]: {n} rows kept in {rd.path}; finish with: pacabench run {suite} --resume-from {rd.path}"
        )
        raise typer.Exit(143 if how == "terminated" else 130) from None
    _summarise(summary, rd)
    if report:
        from ..reports.sections import render_markdown
        from ..runs.results import load_run

        # plain write: markdown must not be re-wrapped to the terminal width
        sys.stdout.write(render_markdown(load_run(rd.path), title=f"{s.name} — {rd.path.name}") + "\n")


def _summarise(summary, rd) -> None:
    counts = summary.counts()
    console().print(
        f"{len(summary.rows)} cases in {summary.wall_s:.1f} s "
        + (f"({', '.join(f'{v} {k}' for k, v in counts.items())})" if counts else "")
        + (f", {summary.skipped_done} already done" if summary.skipped_done else "")
        + f" → {rd.rows_path}"
    )


def _check_device(device: str, override: str | None) -> None:
    if override is not None and override not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got '{override}'")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError(
                "device cuda requested but CUDA is not available on this machine (use --device auto)"
            )


SUITE_RECORD = "suite.json"  # {name, digest, metrics, file}: the suite the run measures now


def _record_suite(s, rd, yaml_name: str) -> None:
    (rd.path / yaml_name).write_text(s.source_text, encoding="utf-8")
    record = {"name": s.name, "digest": s.digest(), "metrics": list(s.metrics), "file": yaml_name}
    (rd.path / SUITE_RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")


def _prepare_resume(s, rd, allow_changed: bool) -> frozenset[str]:
    """Under the run's lock: set a torn last row aside, check the suite is the one the run
    measures (else refuse, or with ``allow_changed`` record it as suite.N.yaml); returns the
    metrics added since, to measure for the finished cases."""
    note = rd.repair_torn_tail()
    if note:
        console().print(f"[yellow]warning[/]: {note}")
    names = {r.get("suite") for r in rd.rows()} - {None, ""}
    path = rd.path / SUITE_RECORD
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    old_name = old["name"] if old else (names.pop() if len(names) == 1 else s.name)
    if old_name != s.name:
        raise UsageError(f"{rd.path} is a run of suite '{old_name}', not '{s.name}'")
    if old is None or old["digest"] == s.digest():
        return frozenset()
    if not allow_changed:
        raise UsageError(
            f"{rd.path}: the suite changed since this run began (compare with {rd.path / old['file']}); "
            "pass --allow-changed-suite to measure what is missing, or start a new run"
        )
    n = 2
    while (rd.path / f"suite.{n}.yaml").exists():
        n += 1
    _record_suite(s, rd, f"suite.{n}.yaml")
    added = frozenset(s.metrics) - frozenset(old["metrics"])
    console().print(f"suite changed: recorded as {rd.path / f'suite.{n}.yaml'}; measuring what is missing")
    return added


def _run_dir(s, resume: bool, resume_from: Path | None, results_dir: Path, run_id: str | None):
    """The run folder: the one to resume, or a new one holding the suite and the environment."""
    from ..runs.results import RunDir, environment_record, latest_run, new_run_dir

    if resume or resume_from:
        if resume_from is None:
            path = latest_run(results_dir, s.name)
            if path is None:
                raise UsageError(f"nothing to resume: no run of suite '{s.name}' under {results_dir}")
        else:
            path = resume_from
            if not (path / "rows.jsonl").exists() and not (path / "suite.yaml").exists():
                raise UsageError(f"nothing to resume at {path} (no rows.jsonl)")
        rd = RunDir(path)
        console().print(f"resuming [bold]{rd.path}[/]")
        return rd
    rd = new_run_dir(results_dir, s.name, run_id)
    if run_id is not None and rd.path.name != run_id:
        console().print(f"[yellow]note[/]: run id '{run_id}' is taken; writing to '{rd.path.name}'")
    _record_suite(s, rd, "suite.yaml")
    (rd.path / "environment.json").write_text(
        json.dumps(environment_record(collect_env=True), indent=2), encoding="utf-8"
    )
    rd.rows_path.touch()
    console().print(f"run folder [bold]{rd.path}[/]")
    return rd


class _ProgressBar:
    """The rich progress bar, driven by the runner's callbacks."""

    def __init__(self, suite_name: str):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.suite_name = suite_name
        self.task = None
        self.progress = Progress(
            TextColumn("[bold]{task.fields[suite]}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.description}"),
            transient=False,
        )

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.task is not None and exc[0] is None:
            self.progress.update(self.task, description="done")
        return self.progress.__exit__(*exc)

    def callbacks(self) -> dict:
        return {"on_start": self.on_start, "on_case": self.on_case, "on_row": self.on_row}

    def on_start(self, todo) -> None:
        self.task = self.progress.add_task("", total=len(todo), suite=self.suite_name)

    def on_case(self, case) -> None:
        self.progress.update(self.task, description=case.describe())

    def on_row(self, row) -> None:
        self.progress.advance(self.task)
