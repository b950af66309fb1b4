"""Which test tier runs, for the property tests' example counts.

The default tier (`pytest -q`: pyproject's ``-m "not slow"``) is the quick loop; it runs each
hypothesis test with a quarter of its examples (at least 20). Any other selection (the full set
``-m "slow or not slow"`` of ``.ci/run`` and ``nox -s tests_full``, ``-m cuda``, ...) runs the
count the test names. ``tests/conftest.py`` sets ``FULL`` before the test modules are imported.
"""

from __future__ import annotations

FULL = True


def examples(n: int) -> int:
    """``n`` hypothesis examples in the full tier; a quarter (at least 20) in the default tier."""
    return n if FULL else max(20, n // 4)
