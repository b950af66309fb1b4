"""``python -m pacabench`` (also what ``torchrun -m pacabench eval ...`` runs).

Only a command that builds models loads them here: ``eval`` (on every torchrun rank) has our
families registered with timm before it starts. Every other command imports what it needs in its
body, so ``--help``, ``status``, ``report``, ``compare`` and ``baseline`` never load torch.
"""

import sys

from .cli import main

MODEL_COMMANDS = {"eval"}  # commands that get pacabench.models (timm registration) up front


def needs_models(argv: list[str]) -> bool:
    """Whether ``argv`` (without the program name) runs a command in ``MODEL_COMMANDS`` (not its --help)."""
    return bool(argv) and argv[0] in MODEL_COMMANDS and not {"--help", "-h"} & set(argv)


if __name__ == "__main__":
    if needs_models(sys.argv[1:]):
        import pacabench.models  # noqa: F401 - registers our models with timm

    sys.exit(main())
