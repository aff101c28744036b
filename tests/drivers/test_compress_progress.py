"""``speechkit compress`` shows every long loop as a progress bar with a total: loading, evaluating before and
after, and calibrating + compressing each target linear."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from speechkit.compress.prune import find_linears
from speechkit.drivers.compress import DEFAULT_TARGETS, load_task

from .test_compress import load_once, main, setup  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")


def final_bars(stderr: str) -> dict[str, str]:
    """``{description: "n/total"}`` of the last redraw of every bar."""
    return dict(re.findall(r"([^\r\n]+?): +\d+%\|[^|]*\| (\d+/\d+) \[", stderr))


def test_gptq_shows_loading_evaluation_and_each_linear(setup: dict, capsys) -> None:
    out = Path(setup["root"]) / "gptq_progress"
    assert main(["--model", setup["model"], "--method", "gptq", "--bits", "4", "--eval-cuts", setup["eval"],
                 "--calib-cuts", setup["calib"], "--num-calib", "2", "--batch-size", "2", "--out", str(out),
                 "--max-new-tokens", "3"]) == 0
    linears = len(find_linears(load_task(setup["model"]).model, list(DEFAULT_TARGETS)))
    assert linears > 10
    bars = final_bars(capsys.readouterr().err)  # transformers adds its own (writing the model's shards)
    assert bars.items() >= {
        "load eval_cuts": "2/2",  # 3 cuts, 2 a batch
        "evaluate before": "2/2",
        "load calib_cuts": "1/1",
        "calibrate and compress": f"{linears}/{linears}",
        "evaluate after": "2/2",
    }.items()
