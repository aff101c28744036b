"""The one exception type for user errors: bad input files, unknown names, wrong settings.

The CLI prints a ``SpeechkitError`` as one line (no traceback) and exits with status 2; library callers catch
it like any ``ValueError``.
"""


class SpeechkitError(ValueError):
    """A user error whose message names the file, cut, key or argument and what was expected."""
