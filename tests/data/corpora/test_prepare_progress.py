"""``speechkit prepare`` shows its long loops as progress bars with a total (stderr), and an error still ends in
one line after them."""

from __future__ import annotations

import re
from pathlib import Path

from speechkit import cli
from speechkit.progress import message_lines


def final_bars(stderr: str) -> dict[str, str]:
    """``{description: "n/total"}`` of the last redraw of every bar in ``stderr``."""
    bars = re.findall(r"([^\r\n]+?): +\d+%\|[^|]*\| (\d+/\d+) \[", stderr)
    return dict(bars)


def test_prepare_fsdd_shows_headers_and_audio_checks_with_totals(tmp_path: Path, fsdd_like, capsys) -> None:
    source = fsdd_like(tmp_path / "fsdd", takes=(0, 1, 5, 10, 11, 12))
    assert cli.main(["prepare", "fsdd", str(source), str(tmp_path / "out")]) == 0
    bars = final_bars(capsys.readouterr().err)
    assert bars == {"fsdd: read headers": "6/6", "train: check audio": "3/3", "dev: check audio": "1/1",
                    "test: check audio": "2/2"}


def test_an_error_after_a_bar_is_still_one_line(tmp_path: Path, fsdd_like, capsys) -> None:
    source = fsdd_like(tmp_path / "fsdd", takes=(10, 11))  # no dev or test takes
    assert cli.main(["prepare", "fsdd", str(source), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "fsdd: read headers" in err
    assert message_lines(err) == [f"speechkit prepare fsdd: error: fsdd: split 'dev' has no recordings in {source}"]


def test_prepare_synthetic_shows_synthesis_with_a_total(tmp_path: Path, capsys) -> None:
    argv = ["prepare", "synthetic", "numbers", str(tmp_path / "out"), "--num_utterances", "3", "--dev_fraction", "0",
            "--test_fraction", "0"]
    assert cli.main(argv) == 0
    bars = final_bars(capsys.readouterr().err)
    assert bars == {"synthetic: synthesize": "3/3", "train: check audio": "3/3"}
