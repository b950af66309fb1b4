"""``pacabench report``: a run's tables in any registered format (``report_formats.RENDERERS``)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..errors import UsageError
from ._app import DEFAULT_RESULTS, console, latest_or_fail

FORMATS = ("markdown", "csv", "html", "latex")  # the names of report_formats.RENDERERS


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    run_path: Path | None = typer.Argument(
        None,
        metavar="[RUN]",
        help="Run folder or rows .jsonl (default: latest; with --paper, latest paper_table run).",
    ),
    fmt: str = typer.Option("markdown", "--format", "-f", help=" | ".join(FORMATS)),
    reference: str | None = typer.Option(None, "--reference", help="Model the relative tables divide by."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to this file (csv: a folder; csv with --paper: a file)."
    ),
    results_dir: Path = typer.Option(
        Path(DEFAULT_RESULTS), "--results-dir", help="Where to find the latest run."
    ),
    suite: str | None = typer.Option(None, "--suite", help="Latest run of this suite."),
    plot: Path | None = typer.Option(
        None,
        "--plot",
        help="Also write PNGs here: cost vs resolution (log-log) per metric, accuracy vs latency.",
    ),
    paper: bool = typer.Option(
        False,
        "--paper",
        help="The paper's efficiency table: params/FLOPs at 224 beside the published numbers "
        "(measure with `pacabench run suites/paper_table.yaml`).",
    ),
):
    """Tables of a run: models × resolutions per metric, scaling exponents, relative cost.

    --format html writes one self-contained page (tables + embedded plots); --format latex,
    booktabs tables for a paper; --paper, the efficiency table against the published numbers.
    """
    from ..api import load
    from ..api import report as render_report
    from ..reports.formats import RENDERERS

    if fmt not in RENDERERS:
        raise UsageError(f"unknown --format '{fmt}' ({', '.join(RENDERERS)})")
    if paper and run_path is None and suite is None:
        suite = "paper_table"
    to_folder = RENDERERS[fmt].files is not None and not paper
    _check_outputs(output, plot, "dir" if to_folder else "file")
    path = resolve_run(run_path, results_dir, suite)
    text = render_report(path, format=fmt, reference=reference, paper=paper, output=output)
    if plot is not None:
        from ..reports.plots import write_plots

        paths = write_plots(load(path), plot)
        console().print(f"wrote {len(paths)} plots to {plot}/" + ("" if paths else " (nothing to plot)"))
    if output is None:
        sys.stdout.write(text + ("" if paper else RENDERERS[fmt].stdout_end))
    else:
        console().print(f"wrote {fmt.upper()} tables to {output}/" if to_folder else f"wrote {output}")


def _check_outputs(output: Path | None, plot: Path | None, output_kind: str) -> None:
    """Refuse an unwritable ``-o`` or ``--plot`` before reading the run (one line, exit 2)."""
    from ..paths import check_output_path

    if output is not None:
        check_output_path(output, output_kind, "--output")
    if plot is not None:
        check_output_path(plot, "dir", "--plot")


def resolve_run(run_path: Path | None, results_dir: Path, suite: str | None) -> Path:
    """The run folder named on the command line, or the latest one (of ``suite``: a name, one
    folder under ``results_dir``; '../x' or 'a/b' would read runs from elsewhere)."""
    if run_path is not None:
        if not run_path.exists():
            raise UsageError(f"no such run: {run_path}")
        return run_path
    if suite is not None:
        from ..runs.results import check_name

        check_name(suite, "--suite")
    return latest_or_fail(results_dir, suite, "no runs", "run `pacabench run SUITE` first")
