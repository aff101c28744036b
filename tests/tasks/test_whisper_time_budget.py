"""``speechkit fit -c conf/whisper/fsdd_time_budget.yaml`` end to end with a tiny random Whisper on real FSDD audio:
training stops at ``trainer.max_time``, the lr has decayed over that time, and the checkpoint's ``state_dict`` is
the EMA (the live weights beside it), which is what a task rebuilt from it holds."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from speechkit.checkpoints import load_task
from speechkit.data.corpora.fsdd import prepare
from speechkit.testing import tiny_whisper_dir

REPO = Path(__file__).resolve().parents[2]
BUDGET_S = 15


@pytest.mark.slow
def test_the_time_budget_config_decays_over_its_time_and_saves_the_average(tmp_path, fsdd_dir):
    manifests = tmp_path / "manifests"
    prepare(fsdd_dir.parent, manifests)
    model = tiny_whisper_dir(tmp_path / "tiny", multilingual=False)
    out = tmp_path / "exp"
    command = [sys.executable, "-m", "speechkit.cli", "fit", "-c", str(REPO / "conf/whisper/fsdd_time_budget.yaml"),
               "--model.init_args.model_name_or_path", str(model),
               "--trainer.max_time", f"00:00:00:{BUDGET_S}",
               "--model.init_args.scheduler.init_args.budget_seconds", str(BUDGET_S),
               "--trainer.val_check_interval", "10", "--trainer.limit_val_batches", "1", "--trainer.log_every_n_steps",
               "1", "--data.init_args.config.val_batch_size", "4", "--data.init_args.config.max_duration", "8",
               "--trainer.default_root_dir", str(out), "--trainer.logger.init_args.save_dir", str(out),
               *[arg for split in ("train", "dev", "test") for arg in
                 (f"--data.init_args.config.{split}_cuts", str(manifests / f"cuts_{split}.jsonl.gz"))]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Time limit reached" in done.stderr + done.stdout  # stopped by max_time, not by steps or epochs

    (metrics,) = out.glob("**/metrics.csv")
    lrs = [float(row["lr-AdamW"]) for row in csv.DictReader(metrics.open()) if row.get("lr-AdamW")]
    assert len(lrs) > 10 and 0.8e-4 < max(lrs) <= 1e-4  # warm-up (5 steps) ends while the decay is just starting
    assert lrs[-1] < 0.3 * max(lrs)  # decayed over the budget's time, whatever the step count

    (last,) = out.glob("**/last.ckpt")
    ckpt = torch.load(last, weights_only=True)
    average, live = ckpt["state_dict"], ckpt["current_model_state"]
    assert average.keys() == live.keys() and int(ckpt["averaging_state"]["n_averaged"]) > 1
    assert any(not torch.equal(average[k], live[k]) for k in average)
    rebuilt = load_task(last).state_dict()  # what transcribe and export load: the average
    assert all(torch.equal(rebuilt[k], average[k]) for k in average)
