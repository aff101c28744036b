"""The progress bar of the long commands: count, total and time left on stderr; nothing on stdout."""

from __future__ import annotations

import re
import sys

from speechkit.progress import message_lines, progress_bar


def test_a_bar_shows_count_total_and_time_left_on_stderr(capsys):
    for _ in progress_bar(range(3), desc="fsdd: read headers", unit="file"):
        pass
    captured = capsys.readouterr()
    assert captured.out == ""
    final = captured.err.strip().split("\r")[-1]
    assert re.fullmatch(r"fsdd: read headers: 100%\|\S+\| 3/3 \[\d\d:\d\d<\d\d:\d\d, .*file/s\]", final), final


def test_a_bar_the_caller_advances_and_a_disabled_bar(capsys):
    with progress_bar(desc="decode", total=4, unit="batch") as bar:
        bar.update(4)
    assert "4/4" in capsys.readouterr().err
    with progress_bar(desc="quiet", total=2, enabled=False) as bar:
        bar.update(2)
    assert capsys.readouterr().err == ""


def test_message_lines_drop_every_redraw_of_a_bar(capsys):
    for _ in progress_bar(range(2), desc="train: check audio", unit="file"):
        pass
    with progress_bar(desc="no total", unit="step") as bar:
        bar.update(5)
    print("speechkit prepare fsdd: error: split 'dev' has no recordings", file=sys.stderr)
    err = capsys.readouterr().err
    assert len(err.splitlines()) > 1
    assert message_lines(err) == ["speechkit prepare fsdd: error: split 'dev' has no recordings"]
