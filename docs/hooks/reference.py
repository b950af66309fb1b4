"""mkdocs hook: writes the reference pages (docs/reference/*.md) from the code at build time.

The text comes from ``pacabench.docs_ref`` (torch-free); the command tree from the Typer app. The
pages exist only in the build (nothing is written into docs/), so they cannot go stale in git.
"""

from __future__ import annotations

import os
import sys

from mkdocs.structure.files import File, Files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def on_files(files: Files, config) -> Files:
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)  # this checkout's pacabench, installed or not
    from typer.main import get_command

    from pacabench.cli import app
    from pacabench.docs_ref import pages

    for path, text in pages(get_command(app)).items():
        old = files.get_file_from_path(path)
        if old is not None:
            files.remove(old)
        files.append(File.generated(config, path, content=text))
    return files
