"""The typer app and the two consoles every command prints through."""

from __future__ import annotations

import functools

import typer

app = typer.Typer(
    name="pacabench",
    help="Benchmark PaCa-ViT, Swin, PVT v1, PVTv2, any timm model or your own: FLOPs, latency, memory and "
    "accuracy across resolutions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    rich_markup_mode="markdown",  # docstrings reflow: a paragraph's line breaks are the source's, not the help's
)

DEFAULT_RESULTS = "results"


@functools.cache
def console():
    """Status lines, on stderr: never re-wrapped."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


@functools.cache
def out():
    """Tables on stdout; piped or captured: 120 columns, not squeezed into 80."""
    from rich.console import Console

    c = Console()
    return c if c.is_terminal else Console(width=120)


def latest_or_fail(results_dir, suite: str | None, what: str, hint: str):
    """The latest run folder under ``results_dir`` (of ``suite``), or a UsageError
    "``what`` under DIR [for suite 'S'] (``hint``)"."""
    from ..errors import UsageError
    from ..runs.folder import latest_run

    path = latest_run(results_dir, suite)
    if path is None:
        where = f" for suite '{suite}'" if suite else ""
        raise UsageError(f"{what} under {results_dir}{where} ({hint})")
    return path
