"""recipes/squtr/run.sh, shrunk (6 queries, 50 distractors, the oracle ASR, 8 training utterances and 3 steps for the
end-to-end retriever): every stage runs, the JSON has the protocol's rows, and a second call redoes nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speechkit.testing import shared_data_dir

REPO = Path(__file__).resolve().parents[2]
SHRUNK = {"NUM_QUERIES": "6", "MAX_QUERIES": "4", "DISTRACTORS": "50", "ASRS": "oracle", "E2E_QUERIES": "8",
          "E2E_STEPS": "3", "E2E_DIM": "32", "E2E_LAYERS": "1"}


def _run(out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OUT=str(out), SPEECHKIT_DATA=str(shared_data_dir()), TQDM_DISABLE="1",
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", **SHRUNK)
    result = subprocess.run(["bash", str(REPO / "recipes/squtr/run.sh")], env=env, capture_output=True, text=True,
                            timeout=600, cwd=out.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_every_stage_runs_and_a_second_call_redoes_nothing(tmp_path):
    if not (shared_data_dir() / "multi30k").is_dir():
        pytest.skip(f"Multi30k not found under {shared_data_dir()} (set SPEECHKIT_DATA)")
    out = tmp_path / "exp"
    first = _run(out)
    rows = json.loads((out / "results.json").read_text())["rows"]
    systems = {(row["condition"], row["asr"], row["retriever"]) for row in rows}
    for condition in ("clean", "20", "10", "0"):
        assert {(condition, "oracle", "bm25"), (condition, "oracle", "dense"), (condition, None, "e2e:e2e.pt")} \
            <= systems
    assert {("text", None, "bm25"), ("text", None, "dense")} <= systems
    assert (out / "results.png").stat().st_size > 10_000
    assert "stage 'squtr-train-e2e'" in first.stderr
    second = _run(out)
    assert "squtr-set" not in second.stderr and "squtr-train-e2e" not in second.stderr
    assert json.loads((out / "results.json").read_text())["rows"] == rows
