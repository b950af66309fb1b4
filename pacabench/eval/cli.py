"""`pacabench eval ...` sub-commands (imagenet, ade20k, coco).

Each command lives beside its evaluation module and is registered on ``eval_app`` here.
Bad input: one line on stderr and exit code 2 (raise ``pacabench.errors.UsageError``).
"""

from __future__ import annotations

import typer

eval_app = typer.Typer(help="Accuracy on local datasets (ImageNet-1k, ADE20k, COCO); works under torchrun.",
                       no_args_is_help=True)

# --- commands are registered below by each evaluation module ---
