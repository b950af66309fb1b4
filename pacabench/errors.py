"""Errors that the CLI turns into one clear line and exit code 2 (never a traceback)."""


class UsageError(ValueError):
    """Bad input from the user: a file, a flag, a value. The message is shown as is."""
