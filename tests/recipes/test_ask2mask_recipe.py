"""recipes/ask2mask/run.sh, shrunk (64 source texts, 2-3 steps per run, one seed): every stage runs and writes what
the next reads; the table has the four rows; a second call redoes nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lhotse import CutSet

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ask2mask") / "exp"
    env = dict(os.environ, SOURCE_UTTS="64", PRETRAIN_STEPS="2", FINETUNE_STEPS="3", SCORER_STEPS="3", WARMUP="1",
               PRETRAIN_WARMUP="1", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(["bash", str(REPO / "recipes/ask2mask/run.sh"), str(out), "0"], env=env,
                            capture_output=True, text=True, timeout=1500, cwd=out.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_every_stage_runs_and_the_table_has_four_rows(run):
    scored = CutSet.from_file(run / "source" / "cuts_train_scored.jsonl.gz")
    assert all(cut.has_custom("confidence") for cut in scored)
    report = json.loads((run / "results.json").read_text())
    assert set(report["test_wer"]) == {"none", "random", "ask2mask", "ask2mask_uw"}
    assert all(set(seeds) == {"seed0"} for seeds in report["test_wer"].values())
    assert (run / "results.png").stat().st_size > 0
    table = (run / "results.md").read_text()
    assert "Ask2Mask masking + utterance weighting" in table and "11.6 %" in table
    stages = (run / "times.tsv").read_text()
    for stage in ("codebook", "scorer", "confidences", "pretrain_ask2mask_uw_seed0", "finetune_none_seed0"):
        assert f"{stage}\t" in stages


@pytest.mark.slow
def test_a_second_call_redoes_nothing(run):
    before = (run / "times.tsv").read_text()
    env = dict(os.environ, SOURCE_UTTS="64", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(["bash", str(REPO / "recipes/ask2mask/run.sh"), str(run), "0"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "times.tsv").read_text() == before
