"""Smoke run of recipes/fsdd/run.sh: real whisper tiny.en, two training steps, real FSDD audio."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speechkit.testing import shared_data_dir

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fsdd_recipe_two_steps(tmp_path):
    if not (shared_data_dir() / "fsdd" / "recordings").is_dir():
        pytest.skip("FSDD not found (set SPEECHKIT_DATA)")
    env = dict(os.environ, SMOKE="1", SKIP_ZERO_SHOT="1", SPEECHKIT_DATA=str(shared_data_dir()),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(["bash", str(REPO / "recipes/fsdd/run.sh"), str(tmp_path / "exp")], env=env,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "exp" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r.keys() == {"id", "ref", "hyp"} for r in rows)
    stems = {p.stem for p in (shared_data_dir() / "fsdd" / "recordings").glob("*.wav")}
    assert all(r["id"] in stems for r in rows)  # ids are the recordings' file stems, e.g. 7_jackson_3
    assert "wer" in json.loads((tmp_path / "exp" / "wer.json").read_text())
