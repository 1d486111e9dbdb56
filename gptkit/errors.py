"""The exception types that the CLI turns into a single clear error line."""
from __future__ import annotations


class GptkitError(Exception):
    """A problem with the user's input or files: shown as one line, no traceback."""


class OptionError(GptkitError):
    """A bad value of one option. The message names it as the Python API spells it
    ("top_p must be in (0, 1], got 2"); on the command line the CLI names the flag instead
    ("--top-p must be in (0, 1], got 2")."""

    def __init__(self, option: str, message: str) -> None:
        self.option, self.message = option, message
        super().__init__(f"{option} {message}")

    @property
    def flag(self) -> str:
        return "--" + self.option.replace("_", "-")

    def for_flags(self) -> str:
        return f"{self.flag} {self.message}"
