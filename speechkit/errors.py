"""The one exception type for user errors: bad input files, unknown names, wrong settings.

The CLI prints a ``SpeechkitError`` as one line (no traceback) and exits with status 2; library callers catch
it like any ``ValueError``. ``user_error_message`` finds the user error inside the exceptions that jsonargparse (or
a DataLoader worker) wraps around it, and tells it apart from a bug, which keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
from pathlib import Path

DEBUG_ENV = "SPEECHKIT_DEBUG"

# OSError numbers that mean "this path, given by the user, cannot be read or written", not a bug.
USER_PATH_ERRNOS: frozenset[int] = frozenset(
    {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR,
     errno.EEXIST, errno.ENAMETOOLONG}
)  # fmt: skip
# Libraries whose exceptions only wrap the real one (jsonargparse re-raises an __init__'s error as "Does not
# validate against any of the Union subtypes ..." from it).
_WRAPPER_PACKAGES = ("jsonargparse", "argparse.py")
# jsonargparse's lines that describe its own union machinery, not the user's mistake.
_JSONARGPARSE_NOISE = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value type:",
    "Given value:",
    "- Expected a <class 'NoneType'>",
)


class SpeechkitError(ValueError):
    """A user error whose message names the file, cut, key or argument and what was expected."""


def debug_enabled() -> bool:
    """``SPEECHKIT_DEBUG=1`` (any value but empty or ``0``): show tracebacks instead of one-line errors."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def exception_chain(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions it was raised from (``__cause__``, else ``__context__``), outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ if current.__cause__ is not None else current.__context__
    return chain


def _raised_in(error: BaseException) -> str:
    """File name of the frame that raised ``error`` ('' when it carries no traceback)."""
    traceback = error.__traceback__
    if traceback is None:
        return ""
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback.tb_frame.f_code.co_filename


def _is_wrapper(error: BaseException) -> bool:
    """An exception of the argument parser that only re-states another one (not the user error, not a bug)."""
    if isinstance(error, argparse.ArgumentError) or type(error).__name__ == "ArgumentError":
        return True
    raised_in = Path(_raised_in(error)).parts
    return any(part in raised_in for part in _WRAPPER_PACKAGES)


def os_error_message(error: OSError) -> str | None:
    """``'<path>: <reason>'`` for an OSError on a named path with a user-path errno, else None."""
    if error.errno not in USER_PATH_ERRNOS or not error.filename:
        return None
    reason = error.strerror or os.strerror(error.errno or 0)
    if error.errno == errno.ENOSPC:
        reason = "no space left on the device"
    second = f" -> {os.fsdecode(error.filename2)}" if error.filename2 else ""
    return f"{os.fsdecode(error.filename)}{second}: {reason}"


def decode_error_message(error: UnicodeDecodeError, path: str | os.PathLike | None = None) -> str:
    """``'<path>: not UTF-8 text (byte 0xe9 at offset 6: invalid continuation byte)'``."""
    byte = error.object[error.start : error.start + 1].hex() if error.object else "??"
    where = f"{os.fsdecode(path)}: " if path is not None else ""
    return f"{where}not {error.encoding.upper()} text (byte 0x{byte} at offset {error.start}: {error.reason})"


def _one_line(message: str) -> str:
    """One line of a SpeechkitError's text (a DataLoader worker re-raises it with the worker's traceback)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else message
    last = lines[-1]
    prefix = f"{SpeechkitError.__module__}.{SpeechkitError.__name__}: "
    return last[len(prefix) :] if last.startswith(prefix) else " ".join(lines)


def condense_parser_message(message: str) -> str:
    """jsonargparse's indented, multi-line error as one line: the keys and the reason, not the union machinery.

    ``Parser key "model": / Does not validate ... / - Problem with given class_path 'x.Task': / Option 'hiddden' is
    not accepted / ...`` becomes ``Parser key "model": Problem with given class_path 'x.Task': Option 'hiddden' is not
    accepted``.
    """
    kept = []
    for line in message.splitlines():
        text = line.strip()
        if not text or any(text.startswith(noise) for noise in _JSONARGPARSE_NOISE):
            continue
        kept.append(text[2:] if text.startswith("- ") else text)
    return " ".join(kept) if kept else message.strip()


def user_error_message(error: BaseException) -> str | None:
    """The one-line message of a user error inside ``error``, or None for a bug (which keeps its traceback).

    Walks the chain from ``error`` inwards through the parser's wrappers; the first ``SpeechkitError``, OSError on a
    named user path (missing, not writable, not a directory, disk full) or ``UnicodeDecodeError`` is the user error.
    Any other exception on the way (``RuntimeError``, ``KeyError`` raised by speechkit or a library) is a bug. A
    chain of parser errors only (a misspelt key, a value of the wrong type) is a user error too: its condensed text.
    """
    for link in exception_chain(error):
        if isinstance(link, SpeechkitError):
            return _one_line(str(link))
        if isinstance(link, UnicodeDecodeError):
            return decode_error_message(link)
        if isinstance(link, OSError):
            return os_error_message(link)
        if not _is_wrapper(link):
            return None
    return condense_parser_message(str(error))


def dataclass_fields_from(value, cls: type, what: str) -> dict:
    """The fields of dataclass ``cls`` given as a mapping (a config's or a checkpoint's hyper-parameters), as a dict;
    a key that is not a field is an error naming ``what``, the keys and the fields."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise SpeechkitError(f"{what}: unknown keys {unknown}; expected some of {names}")
    return dict(value)
