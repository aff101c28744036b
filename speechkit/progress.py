"""Progress bars of the long commands (``prepare``, ``compress``, ``batch-sizes`` ...): one tqdm style for every loop
a user waits on, with the count, the total, the rate and the time left, on stderr (stdout stays the command's
output). tqdm's own environment variables apply, e.g. ``TQDM_DISABLE=1`` hides every bar.
"""

from __future__ import annotations

import re
import sys
from typing import Iterable, Optional, TypeVar

from tqdm import tqdm

T = TypeVar("T")
# The end of every tqdm bar line: ``[elapsed<remaining, rate]`` or, without a total, ``[elapsed, rate]``.
_BAR_TAIL = re.compile(r"\[\d+:\d\d(:\d\d)?(<[^,\]]*)?, [^\]]*\]$")


def progress_bar(
    iterable: Optional[Iterable[T]] = None,
    *,
    desc: str,
    total: Optional[float] = None,
    unit: str = "it",
    enabled: bool = True,
) -> tqdm:
    """A tqdm bar on stderr: ``desc: 40%|####      | 120/300 [00:12<00:18, 9.9 file/s]``.

    Args:
        iterable: what to iterate (``len(iterable)`` is the total when it has one); ``None`` for a bar that the
            caller advances with ``update``.
        desc: what is being done, e.g. ``fsdd: check audio``.
        total: the number of units to expect (default ``len(iterable)``); without one the bar shows no ETA.
        unit: the name of one unit (``file``, ``batch``, ``layer`` ...).
        enabled: ``False`` draws nothing.
    """
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, disable=not enabled,
                dynamic_ncols=True)


def message_lines(stderr: str) -> list[str]:
    """The non-empty lines of a command's stderr without its progress bars (each redraw of a bar, split at
    ``\\r``, is a line): what a test compares against the messages it expects."""
    return [line for line in stderr.splitlines() if line.strip() and not _BAR_TAIL.search(line.rstrip())]
