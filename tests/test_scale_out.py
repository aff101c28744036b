"""The README's scale-out command: `speechkit fit` with `--trainer.strategy ddp --trainer.devices 2` runs two real
processes (CPU, gloo) through LightningCLI, trains, validates and writes one checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from speechkit.testing import tiny_whisper_dir, tone_corpus


@pytest.mark.slow
def test_ddp_on_two_processes_from_the_command_line(tmp_path):
    for split in ("train", "dev"):
        tone_corpus(tmp_path / "data", split, num_cuts=12, seed=len(split))
    config = {
        "seed_everything": 0,
        "trainer": {"max_steps": 2, "val_check_interval": 2, "num_sanity_val_steps": 0, "limit_val_batches": 2,
                    "use_distributed_sampler": False, "enable_progress_bar": False, "enable_model_summary": False,
                    "default_root_dir": str(tmp_path / "exp")},
        "model": {"class_path": "speechkit.tasks.whisper_finetune.WhisperFinetune",
                  "init_args": {"model_name_or_path": str(tiny_whisper_dir(tmp_path / "whisper", multilingual=False)),
                                "language": "en", "max_new_tokens": 4}},
        "data": {"class_path": "speechkit.data.SpeechDataModule", "init_args": {"config": {
            "train_cuts": str(tmp_path / "data" / "cuts_train.jsonl.gz"),
            "dev_cuts": str(tmp_path / "data" / "cuts_dev.jsonl.gz"), "max_duration": 3.0, "num_buckets": 2}}},
    }  # fmt: skip
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(
        ["speechkit", "fit", "-c", str(tmp_path / "tiny.yaml"), "--trainer.accelerator", "cpu",
         "--trainer.devices", "2", "--trainer.num_nodes", "1", "--trainer.strategy", "ddp"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting with 2 processes" in result.stdout + result.stderr, result.stderr[-2000:]  # Lightning's DDP log
    checkpoints = list((tmp_path / "exp").rglob("*.ckpt"))
    assert len(checkpoints) == 1, checkpoints  # rank 0 writes, once
