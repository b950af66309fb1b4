"""``python -m pacabench`` (also what ``torchrun -m pacabench eval ...`` runs)."""

import sys

from .cli import main

if __name__ == "__main__":
    import pacabench.models  # noqa: F401 - registers our models with timm

    sys.exit(main())
