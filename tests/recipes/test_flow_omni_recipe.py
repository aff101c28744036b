"""recipes/flow_omni/run.sh, shrunk (2 SLURP sentences, 1 step per stage, 1 answer per condition) and with one speech
head (units: its k-means fit at fit start and its codebook carried from stage 1 to stage 2 are the recipe's extra
seams; the flow head's generation and scoring are tested in tests/drivers/test_eval_spoken_answers.py): every stage
runs and writes what the next reads; the table has a row per prompt condition; a second call trains nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from speechkit.testing import shared_data_dir

REPO = Path(__file__).resolve().parents[2]
SHRUNK = dict(MAX_TRAIN="2", MAX_DEV="1", MAX_TEST="1", STAGE1_STEPS="1", STAGE2_STEPS="1", WARMUP="0",
              EVAL_CUTS="1", MAX_ANSWER_STEPS="2", HEADS="units", OMP_NUM_THREADS="1")


def recipe(out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, **SHRUNK, SLURP=str(shared_data_dir() / "slurp"),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(["bash", str(REPO / "recipes/flow_omni/run.sh"), str(out)], env=env, capture_output=True,
                          text=True, timeout=900, cwd=out.parent)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("flow_omni") / "exp"
    result = recipe(out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_every_stage_runs_and_the_table_has_a_row_per_condition(run):
    report = json.loads((run / "results.json").read_text())
    assert set(report["results"]) == {"units"}
    for head, result in report["results"].items():
        assert [row["condition"] for row in result["scores"]] == ["clean", "noisy", "pitch"]
        assert all(row["answers"] == 1 for row in result["scores"])
        assert {"val_text", "val_speech"} <= set(result["stages"]["stage2"])  # 1 step: no train row logged
        assert (run / head / "eval" / "mel_noisy.png").read_bytes()[:4] == b"\x89PNG"
        assert "Traceback" not in (run / head / "stage2" / "fit.log").read_text()
    assert set(report["times"]) == {"data", "fit_units_stage1", "fit_units_stage2", "eval_units"}
    assert "| units | pitch | 1 |" in (run / "results.md").read_text()
    codebooks = [torch.load(run / "units" / stage / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
                 ["codebook"] for stage in ("stage1", "stage2")]
    assert torch.equal(*codebooks) and codebooks[0].abs().sum() > 0  # fitted once, in stage 1, and kept


@pytest.mark.slow
def test_a_second_call_trains_nothing(run):
    before = (run / "times.tsv").read_text()
    result = recipe(run)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "times.tsv").read_text() == before
    assert "fit_units_stage2: done before, skipped" in result.stdout
