"""recipes/synthetic_av/run.sh, shrunk (40 utterances, 2-5 steps per run, two-teacher distillation, AVSR, clean and
0 dB): every stage runs and writes what the next reads; the table and plot come out; a second call redoes nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL = {"UTTERANCES": "40", "MSM_STEPS": "2", "PRETRAIN_STEPS": "2", "FINETUNE_STEPS": "5", "INITS": "two",
         "MODALITIES": "audio_video", "SNRS": "clean 0", "BABBLE_SECONDS": "1", "MSM_WARMUP": "1",
         "PRETRAIN_WARMUP": "1", "FINETUNE_WARMUP": "1"}


def recipe(out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, **SMALL, PNG=str(out / "results.png"),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(["bash", str(REPO / "recipes/synthetic_av/run.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=900, cwd=out.parent)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic_av") / "exp"
    result = recipe(out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_every_stage_runs_and_the_table_has_the_avsr_row(run):
    results = json.loads((run / "results.json").read_text())
    assert set(results["wer"]) == set(results["cer"]) == {"two_audio_video"}
    assert set(results["wer"]["two_audio_video"]) == {"clean", "0"}
    assert "| AVSR | KD: Whisper + MSM |" in (run / "results.md").read_text()
    assert (run / "results.png").stat().st_size > 0
    rows = [json.loads(line) for line in (run / "runs/ft_two_audio_video/test_0.jsonl").read_text().splitlines()]
    assert len(rows) > 0 and {"id", "ref", "hyp"} <= set(rows[0])
    stages = (run / "times.tsv").read_text()
    for stage in ("data", "babble_train", "babble_test", "codebook", "msm", "pretrain_two", "ft_two_audio_video",
                  "test_two_audio_video_0"):
        assert f"{stage}\t" in stages
    assert "pretrain_whisper\t" not in stages  # only the asked-for pretraining runs


@pytest.mark.slow
def test_a_second_call_redoes_nothing(run):
    before = (run / "times.tsv").read_text()
    result = recipe(run)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "times.tsv").read_text() == before
