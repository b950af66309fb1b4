"""The typer app and the two consoles every command prints through."""

from __future__ import annotations

import functools

import typer

app = typer.Typer(
    name="pacabench",
    help="Benchmark PaCa-ViT, Swin, PVT v1 and PVTv2: FLOPs, latency, memory and accuracy across resolutions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
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
