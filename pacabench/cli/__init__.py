"""The ``pacabench`` command line: every typer command lives in this package.

The commands are thin: they parse options, call the library (``pacabench.api``: run, load,
compare, report, status, collect; and ``measure``, ``eval``, ``viz`` for the single-model
commands) and print. Nothing outside this package imports it.
Importing it loads no torch, timm or pandas (``pacabench --help`` stays fast): the commands
import what they need in their bodies.

Bad input (a missing file, a misspelt model, an invalid suite) raises
``pacabench.errors.PacabenchError``; ``main`` prints its first line on stderr and exits with
code 2, never a traceback.
"""

from __future__ import annotations

import os
import sys

from ..errors import PacabenchError, first_line
from . import _capacity, _cluster, _commands, _compare, _eval, _report, _run, _schema
from ._app import app

__all__ = ["app", "main"]

for _module in (_run, _report, _commands, _compare, _eval, _cluster, _capacity, _schema):
    _module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: bad input → one line on stderr, exit 2."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        app(args=argv, prog_name="pacabench", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    except PacabenchError as e:
        print(f"pacabench: error: {first_line(e)}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"pacabench: error: {e.strerror}: {e.filename}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 0


def _entry() -> None:
    sys.exit(main())
