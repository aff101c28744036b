"""Smoke run of the README's main job, recipes/new_language/run.sh: synthesized Kyrgyz, real whisper base with a
new <|ky|> token, two training steps (about a minute on 2 CPU cores)."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_main_job_two_steps(tmp_path):
    env = dict(os.environ, NUM_UTTERANCES="40", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    out = tmp_path / "exp"
    result = subprocess.run(
        ["bash", str(REPO / "recipes/new_language/run.sh"), str(out),
         "--trainer.max_steps", "2", "--trainer.val_check_interval", "2"],
        env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dev WER before training" in result.stdout + result.stderr
    for split in ("train", "dev", "test"):
        assert (out / "manifests" / f"cuts_{split}.jsonl.gz").is_file()
    (version,) = (out / "lightning_logs").iterdir()
    rows = list(csv.DictReader((version / "metrics.csv").open()))
    assert [float(r["val_wer"]) for r in rows if r.get("val_wer")], "no val_wer logged"
    assert max(int(r["step"]) for r in rows) >= 1
    assert list((version / "checkpoints").glob("best-*.ckpt")), "no best checkpoint written"
    assert (out / "wall_time.txt").read_text().startswith("wall time")
