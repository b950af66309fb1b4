"""What a run reports while it goes: one set of hooks, for the CLI's progress bar and for Python callers.

``pacabench.run(..., on_progress=X)`` accepts:

- a ``Progress`` (subclass it and override the ``on_*`` methods you need),
- any object with some ``on_<event>`` methods (the others keep ``Progress``'s behaviour),
- a callable ``fn(event, value)``, called for every event.

The events, in the order a run sends them:

========  =======================  ================================================================
event     value                    when
========  =======================  ================================================================
folder    ``Path``                 a new run folder was made (suite record and environment written)
resume    ``Path``                 an existing run folder is resumed
note      ``str``                  something worth knowing (a taken run id: another name was used)
warning   ``str``                  something went wrong and was dealt with (duplicate cases, a torn
                                   last row set aside)
info      ``str``                  a status line (the suite changed and was recorded; what an
                                   executor submits)
start     ``list[Case]``           in process: the cases about to be measured
submit    ``list[Case]``           on an executor (local, slurm, debug): the cases submitted as jobs
case      ``Case``                 in process: before each case
row       ``dict``                 each row written (in process) or merged (from an executor's jobs)
========  =======================  ================================================================

With no ``on_progress``, notes and warnings go to the ``pacabench`` logger (so Python shows them
on stderr unless logging is configured otherwise) and nothing else is reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["Progress", "EVENTS", "as_progress"]

EVENTS = ("folder", "resume", "note", "warning", "info", "start", "submit", "case", "row")

_log = logging.getLogger("pacabench")


class Progress:
    """Hooks a run calls as it goes (see the module docstring for the events); all do nothing
    here except ``on_note`` and ``on_warning``, which log a warning on the ``pacabench`` logger."""

    def emit(self, event: str, value: Any) -> None:
        """Send ``event`` (one of ``EVENTS``) with its value to the ``on_<event>`` hook."""
        getattr(self, "on_" + event)(value)

    def on_folder(self, path) -> None:
        """A new run folder was made."""

    def on_resume(self, path) -> None:
        """An existing run folder is resumed."""

    def on_note(self, text: str) -> None:
        _log.warning(text)

    def on_warning(self, text: str) -> None:
        _log.warning(text)

    def on_info(self, text: str) -> None:
        """A status line."""

    def on_start(self, cases: list) -> None:
        """In process: the cases about to be measured."""

    def on_submit(self, cases: list) -> None:
        """On an executor: the cases submitted as jobs."""

    def on_case(self, case) -> None:
        """In process: the next case."""

    def on_row(self, row: dict) -> None:
        """A row was written (in process) or merged (from a job)."""


class _Hooks(Progress):
    """An object with some ``on_<event>`` methods; the events it lacks behave as in ``Progress``."""

    def __init__(self, obj: Any):
        self.obj = obj

    def emit(self, event: str, value: Any) -> None:
        getattr(self.obj, "on_" + event, getattr(self, "on_" + event))(value)


class _Callback(Progress):
    """A callable ``fn(event, value)``, called for every event."""

    def __init__(self, fn: Callable[[str, Any], None]):
        self.fn = fn

    def emit(self, event: str, value: Any) -> None:
        self.fn(event, value)


def as_progress(obj: Any) -> Progress:
    """``on_progress`` as a ``Progress``: None, a ``Progress``, an object with ``on_<event>``
    methods, or a callable ``fn(event, value)``; anything else is a ``TypeError``."""
    if obj is None:
        return Progress()
    if isinstance(obj, Progress):
        return obj
    if any(callable(getattr(obj, "on_" + e, None)) for e in EVENTS):
        return _Hooks(obj)
    if callable(obj):
        return _Callback(obj)
    raise TypeError(
        f"on_progress must be a Progress, an object with on_<event> methods or a callable, got {obj!r}"
    )
