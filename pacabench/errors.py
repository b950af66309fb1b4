"""The one exception base the CLI turns into one clear line and exit code 2 (never a traceback).

Every error that means "bad input" derives from ``PacabenchError``: a file, a flag, a value, a
suite that does not validate, an unknown model, a size the architecture refuses, a checkpoint
that does not fit. Library code raises them without naming CLI flags; ``pacabench.cli.main``
catches the base class once.
"""


class PacabenchError(ValueError):
    """Bad input from the user. The first line of the message is shown as is."""


class UsageError(PacabenchError):
    """Bad input from the user: a file, an option, a value."""


def first_line(e: BaseException) -> str:
    """The first line of ``str(e)`` (stripped), or the exception's type name when it says nothing:
    what every one-line error report shows of an exception it did not raise itself."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
