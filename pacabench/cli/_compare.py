"""``pacabench compare`` and ``pacabench baseline update`` over ``pacabench.analysis.compare``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)
    baseline_app = typer.Typer(
        help="Committed baselines under results/baselines/ (written only on request).", no_args_is_help=True
    )
    baseline_app.command("update")(baseline_update)
    app.add_typer(baseline_app, name="baseline")


# compare's arguments and options, declared apart so the command reads as what it does
_Baseline = Annotated[
    Path, typer.Argument(help="Baseline: a committed .jsonl (results/baselines/) or a run folder.")
]
_Runs = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="[RUN]...",
        help="Run folder(s) or rows .jsonl (default: latest run of the baseline's suite). With several "
        "runs of the same cases, a latency/memory regression must show in every one (best of N).",
    ),
]
_Metrics = Annotated[
    list[str] | None,
    typer.Option(
        "--metrics", "-m", help="Comma list: params, flops, latency, memory, train, accuracy, or columns."
    ),
]
_Tolerance = Annotated[
    list[str] | None,
    typer.Option(
        "--tolerance",
        "-t",
        help="NAME=VALUE (repeatable): latency=0.5 memory=0.1 (relative), accuracy=0.1 (points), "
        "flops=0.001 (relative), train=0.5; a bare number sets the noisy ones (latency, memory, train).",
    ),
]
_Format = Annotated[str, typer.Option("--format", "-f", help="markdown | json")]
_FailOnMissing = Annotated[
    bool,
    typer.Option(
        "--fail-on-missing/--allow-missing",
        help="A case of the baseline missing from the run is a regression (default); --allow-missing "
        "only lists it. No case in common at all is always exit 1.",
    ),
]
_IgnoreLoad = Annotated[
    bool,
    typer.Option(
        "--ignore-load",
        help="Judge CPU latency even when it was measured on a busy machine (high load average, "
        "or samples whose IQR exceeds their median).",
    ),
]
_ShowAll = Annotated[bool, typer.Option("--all", help="List every check, not only regressions/improvements.")]
_ResultsDir = Annotated[Path, typer.Option("--results-dir", help="Where to find the latest run.")]


def compare_cmd(
    baseline: _Baseline,
    run: _Runs = None,
    metrics: _Metrics = None,
    tolerance: _Tolerance = None,
    fmt: _Format = "markdown",
    fail_on_missing: _FailOnMissing = True,
    ignore_load: _IgnoreLoad = False,
    show_all: _ShowAll = False,
    results_dir: _ResultsDir = Path("results"),
):
    """Check a run against a baseline: exit 1 on any regression, a missing baseline case (unless
    --allow-missing) or no case in common; 2 on bad input (a torn or invalid row: NaN, inf, a
    mistyped field) and when no check ran (e.g. -m latency on FLOPs-only runs); 0 otherwise.

    Params and FLOPs must match to 0.1 %; accuracy within 0.1 points. Latency with raw samples
    on both sides: a Mann–Whitney U test (p < 0.01) plus a minimum effect (median ratio beyond
    1.2 on CPU, 1.1 on CUDA; --tolerance latency=X sets it) → regression / no regression /
    faster; inconclusive (never a failure) with fewer than 5 samples a side, on a loaded
    machine (load > 1.5 × threads, or IQR above the median), or when the change is not in every
    round (rounds, else 3 blocks of the samples in time order: a drift). Memory, and latency rows without
    samples: a regression only when the new value exceeds baseline × (1 + tolerance) AND the
    excess is larger than the two runs' IQRs added (latency 0.5 on CPU, 0.15 on CUDA; memory 0.1).
    """
    from ..analysis.compare import render_comparison
    from ..api import compare

    if fmt not in ("markdown", "json"):
        raise UsageError(f"unknown --format '{fmt}' (markdown, json)")
    cmp = compare(
        baseline, *(run or []), metrics=metrics, tolerances=tolerance, fail_on_missing=fail_on_missing,
        ignore_load=ignore_load, results_dir=results_dir,
    )  # fmt: skip
    sys.stdout.write(render_comparison(cmp, fmt, show_all=show_all))
    if cmp.exit_code == 2:
        raise UsageError(f"nothing to compare: {cmp.note}")
    if cmp.exit_code:
        raise typer.Exit(cmp.exit_code)


def baseline_update(
    suite: str = typer.Argument(..., help="Suite name or file (e.g. smoke or suites/smoke.yaml)."),
    run: Path | None = typer.Option(None, "--run", help="Take the rows of this run (default: latest run)."),
    measure: bool = typer.Option(False, "--measure", help="Run the suite first and take that run."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Write without asking."),
    results_dir: Path = typer.Option(
        Path("results"), "--results-dir", help="Where runs are (and, by default, baselines/)."
    ),
    baselines_dir: Path | None = typer.Option(
        None, "--baselines-dir", help="Default: RESULTS_DIR/baselines."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Baseline file (default: <suite>.jsonl)."
    ),
):
    """Write results/baselines/<suite>.jsonl from an existing run, after showing the diff.

    Nothing is measured unless --measure is given: the latest run of the suite (or --run) is
    compared against the current baseline, the comparison is shown, and the file is written
    after confirmation (--yes to skip). Only ok rows are kept; run id, timestamps, load
    average and wall time are stripped so the file changes only when a number does.
    """
    from ..analysis.compare import baseline_path, baseline_rows, busy_warning, dropped_rows, load_rows

    name, run = _baseline_source(suite, run, measure, results_dir)
    rows = load_rows(run)
    keep = baseline_rows(rows)
    if not keep:
        raise UsageError(f"{run}: no ok rows to make a baseline from")
    devices = {str(r.get("device") or "cpu") for r in keep}
    device = "cpu" if devices == {"cpu"} else sorted(devices - {"cpu"})[0]
    target = output or baseline_path(baselines_dir or (results_dir / "baselines"), name, device)
    from ..paths import check_output_path

    check_output_path(target, "file", "--output")
    _show_diff(target, keep, run)
    dropped = dropped_rows(rows)
    if dropped:
        typer.echo("not kept (not ok): " + "; ".join(dropped), err=True)
    warning = busy_warning(rows, keep)
    if warning:
        typer.echo(warning, err=True)
    if not yes and not _confirm(f"Write {len(keep)} rows to {target}?"):
        typer.echo(f"{target} not written (pass --yes to write without asking)", err=True)
        raise typer.Exit(1)
    from ..analysis.compare import write_baseline

    write_baseline(keep, target)
    typer.echo(f"wrote {target} ({len(keep)} rows from {run})")


def _baseline_source(suite: str, run: Path | None, measure: bool, results_dir: Path) -> tuple[str, Path]:
    """The suite's name and the run to take the rows from (measured first with --measure)."""
    name = suite
    sp = Path(suite)
    if sp.suffix in (".yaml", ".yml") or sp.exists():
        from ..spec.suite import load_suite

        name = load_suite(sp).name
    from ..runs.results import check_name

    check_name(name, "the suite name")  # the baseline file is <name>.jsonl under the baselines folder
    if measure:
        if run is not None:
            raise UsageError("--measure and --run are exclusive")
        suite_file = sp if sp.suffix in (".yaml", ".yml") else Path("suites") / f"{name}.yaml"
        if not suite_file.exists():
            raise UsageError(f"--measure needs the suite file; {suite_file} does not exist")
        from ._run import execute_run

        execute_run(suite_file, results_dir=results_dir, progress=sys.stderr.isatty(), report=False)
    if run is None:
        from ..runs.folder import latest_run

        run = latest_run(results_dir, name)
    if run is None:
        hint = f"`pacabench run suites/{name}.yaml`, or --run RUN, or --measure"
        raise UsageError(f"no run of suite '{name}' under {results_dir} ({hint})")
    return name, run


def _show_diff(target: Path, keep: list[dict], run: Path) -> None:
    from ..analysis.compare import compare_rows, load_rows, render_comparison

    if target.exists():
        cmp = compare_rows(load_rows(target), keep, baseline_name=str(target), run_name=str(run))
        sys.stdout.write(render_comparison(cmp, "markdown"))
    else:
        typer.echo(f"{target} does not exist yet: it will hold {len(keep)} rows from {run}.")


def _confirm(question: str) -> bool:
    try:
        return typer.confirm(question, default=False)
    except typer.Abort:  # no answer (stdin closed)
        return False
