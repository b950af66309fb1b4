"""The ``pacabench`` command line.

Bad input (a missing file, a misspelt model, an invalid suite) prints one line on stderr and
exits with code 2; it never shows a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .errors import UsageError

app = typer.Typer(
    name="pacabench",
    help="Benchmark PaCa-ViT, Swin, PVT v1 and PVTv2: FLOPs, latency, memory and accuracy across resolutions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)  # status lines: never re-wrapped
out = Console()
if not out.is_terminal:  # piped or captured: don't squeeze tables into 80 columns
    out = Console(width=120)

DEFAULT_RESULTS = "results"


def _parse_resolution(text: str) -> tuple[int, int]:
    t = text.lower().replace(" ", "")
    try:
        if "x" in t:
            h, w = t.split("x")
            return int(h), int(w)
        return int(t), int(t)
    except ValueError:
        raise UsageError(f"resolution must be R or HxW (e.g. 512 or 512x1024), got '{text}'") from None


# ------------------------------------------------------------------------------------------ run
@app.command()
def run(
    suite: Path = typer.Argument(..., help="Suite YAML file, e.g. suites/resolution_scaling.yaml"),
    resume: bool = typer.Option(False, "--resume", help="Finish the latest (interrupted) run of this suite."),
    resume_from: Path | None = typer.Option(None, "--resume-from", help="Finish this run folder."),
    device: str | None = typer.Option(None, "--device", help="Override the suite's device: auto, cpu, cuda."),
    isolate: bool | None = typer.Option(None, "--isolate/--no-isolate", help="Each case in its own process."),
    results_dir: Path = typer.Option(Path(DEFAULT_RESULTS), "--results-dir", help="Where run folders go."),
    run_id: str | None = typer.Option(None, "--run-id", help="Name of the run folder (default: timestamp)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Live progress bar."),
    report: bool = typer.Option(True, "--report/--no-report", help="Print the markdown report at the end."),
):
    """Run a suite: every model × resolution × batch × dtype case becomes a row in results/."""
    from .results import RunDir, environment_record, latest_run, new_run_dir
    from .runner import run_suite
    from .suite import load_suite

    s = load_suite(suite)
    if device is not None and device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got '{device}'")
    if (device or s.device) == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError(
                "device cuda requested but CUDA is not available on this machine (use --device auto)"
            )
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
        console.print(f"resuming [bold]{rd.path}[/] ({len(rd.rows())} rows already measured)")
    else:
        rd = new_run_dir(results_dir, s.name, run_id)
        (rd.path / "suite.yaml").write_text(s.source_text, encoding="utf-8")
        (rd.path / "environment.json").write_text(
            json.dumps(environment_record(), indent=2), encoding="utf-8"
        )
        rd.rows_path.touch()
        console.print(f"run folder [bold]{rd.path}[/]")
    try:
        summary = run_suite(s, rd, device=device, isolate=isolate, progress=progress)
    except KeyboardInterrupt:
        n = len(rd.rows())
        console.print(
            f"[yellow]interrupted[/]: {n} rows kept in {rd.path}; finish with: pacabench run {suite} --resume-from {rd.path}"
        )
        raise typer.Exit(130) from None
    counts = summary.counts()
    console.print(
        f"{len(summary.rows)} cases in {summary.wall_s:.1f} s "
        + (f"({', '.join(f'{v} {k}' for k, v in counts.items())})" if counts else "")
        + (f", {summary.skipped_done} already done" if summary.skipped_done else "")
        + f" → {rd.rows_path}"
    )
    if report:
        from .report import render_markdown
        from .results import load_run

        # plain write: markdown must not be re-wrapped to the terminal width
        sys.stdout.write(render_markdown(load_run(rd.path), title=f"{s.name} — {rd.path.name}") + "\n")


# --------------------------------------------------------------------------------------- report
def _resolve_run(run_path: Path | None, results_dir: Path, suite: str | None) -> Path:
    from .results import latest_run

    if run_path is not None:
        if not run_path.exists():
            raise UsageError(f"no such run: {run_path}")
        return run_path
    p = latest_run(results_dir, suite)
    if p is None:
        raise UsageError(
            f"no runs under {results_dir}"
            + (f" for suite '{suite}'" if suite else "")
            + " (run `pacabench run SUITE` first)"
        )
    return p


@app.command()
def report(
    run_path: Path | None = typer.Argument(
        None,
        metavar="[RUN]",
        help="Run folder or rows .jsonl (default: latest; with --paper, latest paper_table run).",
    ),
    fmt: str = typer.Option("markdown", "--format", "-f", help="markdown | csv | html | latex"),
    reference: str | None = typer.Option(None, "--reference", help="Model the relative tables divide by."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to this file (csv: a folder; csv with --paper: a file)."
    ),
    results_dir: Path = typer.Option(Path(DEFAULT_RESULTS), "--results-dir"),
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
    from .report import all_metric_tables, render_markdown, scaling_table, tidy_frame
    from .results import load_run

    if fmt not in ("markdown", "csv", "html", "latex"):
        raise UsageError(f"unknown --format '{fmt}' (markdown, csv, html, latex)")
    if paper and run_path is None and suite is None:
        suite = "paper_table"
    path = _resolve_run(run_path, results_dir, suite)
    try:
        df = load_run(path)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None

    def emit(text: str) -> None:
        if output:
            output.write_text(text, encoding="utf-8")
            console.print(f"wrote {output}")
        else:
            sys.stdout.write(text)

    if plot is not None:
        from .plots import write_plots

        paths = write_plots(df, plot)
        console.print(f"wrote {len(paths)} plots to {plot}/" + ("" if paths else " (nothing to plot)"))
    if paper:
        from .report_formats import render_paper_table

        emit(render_paper_table(df, fmt, title=f"Efficiency at 224×224: ours ({path}) vs published"))
        return
    if fmt in ("html", "latex"):
        if reference and reference not in set(df["model"]):
            raise UsageError(f"reference model '{reference}' is not in {path}")
        from .report_formats import render_html, render_latex

        render = render_html if fmt == "html" else render_latex
        emit(render(df, reference=reference, title=str(path)))
    elif fmt == "markdown":
        try:
            text = render_markdown(df, reference=reference, title=str(path))
        except ValueError as e:
            raise UsageError(str(e)) from None
        if reference and reference not in set(df["model"]):
            raise UsageError(f"reference model '{reference}' is not in {path}")
        if output:
            output.write_text(text, encoding="utf-8")
            console.print(f"wrote {output}")
        else:
            sys.stdout.write(text + "\n")
    elif fmt == "csv":
        if output:
            output.mkdir(parents=True, exist_ok=True)
            tidy_frame(df).to_csv(output / "rows.csv", index=False)
            for m, tab in all_metric_tables(df).items():
                tab.to_csv(output / f"{m}.csv")
            scaling_table(df).to_csv(output / "scaling.csv")
            console.print(f"wrote CSV tables to {output}/")
        else:
            sys.stdout.write(tidy_frame(df).to_csv(index=False))


# --------------------------------------------------------------------------------------- models
@app.command("models")
def models_cmd(
    as_json: bool = typer.Option(False, "--json", help="One JSON list on stdout."),
    family: str | None = typer.Option(
        None, "--family", help="Only this family (paca_vit, swin, pvt_v1, pvt_v2)."
    ),
):
    """Every model pacabench can benchmark, with family, parameter count and default resolution."""
    import torch

    from .models import create_model, list_models

    specs = [s for s in list_models() if family is None or s.family == family]
    if family is not None and not specs:
        raise UsageError(f"unknown family '{family}' (paca_vit, swin, pvt_v1, pvt_v2)")
    rows = []
    for s in specs:
        try:
            with torch.device("meta"):
                m = create_model(s.name)
            params = sum(p.numel() for p in m.parameters())
        except Exception:  # noqa: BLE001 - a model that cannot build on meta: build for real
            m = create_model(s.name)
            params = sum(p.numel() for p in m.parameters())
        rows.append(
            {
                "name": s.name,
                "family": s.family,
                "params": params,
                "default_resolution": s.default_resolution,
                "source": s.source,
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return
    t = Table(title="pacabench models")
    for c in ("name", "family", "params (M)", "default res", "from"):
        t.add_column(
            c,
            justify="right" if c.startswith(("params", "default")) else "left",
            no_wrap=True,
            min_width=36 if c == "name" else None,
        )
    for r in rows:
        t.add_row(
            r["name"], r["family"], f"{r['params'] / 1e6:.3f}", str(r["default_resolution"]), r["source"]
        )
    out.print(t)


# ---------------------------------------------------------------------------------------- flops
@app.command()
def flops(
    model: str = typer.Argument(..., help="Model name (see `pacabench models`)."),
    resolution: str = typer.Option("224", "--resolution", "-r", help="R or HxW."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
    no_attention: bool = typer.Option(
        False, "--no-attention", help="Plain fvcore: skip fused attention ops (to see what it misses)."
    ),
    head: str | None = typer.Option(None, "--head", help="Segmentor: backbone + paca | upernet head."),
    detector: bool = typer.Option(False, "--detector", help="Mask R-CNN on the backbone (COCO setting)."),
):
    """Parameters and FLOPs (GMACs, fvcore, batch 1, every attention op counted)."""
    from .measure.flops import count_flops
    from .models import create_model

    hw = _parse_resolution(resolution)
    if head and detector:
        raise UsageError("--head and --detector are exclusive")
    if detector:
        from .models.detection import detector_flops

        res = detector_flops(model, hw)
        res = {"model": model, "what": "mask_rcnn", "resolution": list(hw), **res}
    else:
        if head:
            from .models.segmentation import create_segmentor

            m = create_segmentor(model, head, img_size=hw)
        else:
            m = create_model(model, img_size=hw)
        rec = count_flops(m, hw, attention=not no_attention)
        res = {
            "model": model,
            **({"head": head} if head else {}),
            **rec.to_dict(),
            "units": "GMACs (1 multiply-add = 1 FLOP), batch 1, eval",
            "attention_counted": not no_attention,
        }
    if as_json:
        sys.stdout.write(json.dumps(res) + "\n")
        return
    t = Table(title=f"{model}{' + ' + head if head else ''} at {hw[0]}x{hw[1]}", show_header=False)
    t.add_row("params", f"{res['params'] / 1e6:.3f} M")
    t.add_row("GFLOPs (1 MAC = 1 FLOP)", f"{res['gflops']:.3f}")
    if "by_operator" in res:
        for op, v in list(res["by_operator"].items())[:8]:
            t.add_row(f"  {op}", f"{v:.3f}")
    if res.get("uncounted_ops"):
        t.add_row("left uncounted", ", ".join(f"{k}×{v}" for k, v in res["uncounted_ops"].items()))
        t.add_row("their share (upper bound)", f"{100 * res['uncounted_share']:.2f} %")
    out.print(t)


# ------------------------------------------------------------------------------- sub-commands
def _register_optional():
    """Commands that live with their feature modules."""
    try:
        from .clusters import clusters_command
    except ModuleNotFoundError as e:
        if e.name != "pacabench.clusters":
            raise
    else:
        app.command("clusters", help="Render PaCa-ViT cluster assignments over an image.")(clusters_command)
    from .eval.cli import eval_app

    app.add_typer(eval_app, name="eval")
    try:
        from .compare import register as register_compare
    except ModuleNotFoundError as e:
        if e.name != "pacabench.compare":
            raise
    else:
        register_compare(app)


_register_optional()


def _usage_errors() -> tuple[type[BaseException], ...]:
    from .models import CheckpointError, ResolutionError, UnknownModelError
    from .suite import SuiteError

    return (UsageError, SuiteError, UnknownModelError, ResolutionError, CheckpointError)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: bad input → one line on stderr, exit 2."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        app(args=argv, prog_name="pacabench", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    except _usage_errors() as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"pacabench: error: {msg}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"pacabench: error: {e.strerror}: {e.filename}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 0


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
