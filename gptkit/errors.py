"""The one exception type that the CLI turns into a single clear error line."""


class GptkitError(Exception):
    """A problem with the user's input or files: shown as one line, no traceback."""
