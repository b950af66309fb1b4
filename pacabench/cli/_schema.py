"""``pacabench schema``: the JSON Schema of suite files, for editors (``pacabench.spec.suite_schema``)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)


def schema(
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the schema to this file instead of stdout.", dir_okay=False
    ),
):
    """Print the JSON Schema (draft 2020-12) of suite files.

    Point an editor at it (a first line `# yaml-language-server: $schema=<path>` in a suite, as the
    shipped suites have) to complete and check keys while typing; `pacabench run` still checks
    every suite itself and reports problems as file:line.
    """
    from ..spec.suite_schema import schema_text

    text = schema_text()
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {output}: {e.strerror or e}") from None
