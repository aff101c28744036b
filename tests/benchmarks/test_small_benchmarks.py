"""Smoke runs of the benchmarks and recipe scripts of issue 21 on tiny settings: they run end to end and write
their JSON (the numbers are the README's, from the full settings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(script: str, *args: str) -> None:
    done = subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_multi_token_prediction_benchmark(tmp_path, fsdd_dir):
    out = tmp_path / "mtp.json"
    run("benchmarks/multi_token_prediction.py", "--json", str(out), "--train-lines", "300", "--vocab", "200", "--base-steps", "3",
        "--mtp-steps", "3", "--prompts", "2", "--max-new-tokens", "5", "--k", "2")
    result = json.loads(out.read_text())
    assert [row["decoder"] for row in result["rows"]] == ["greedy", "speculative_sampler", "speculative_mask_argmax"]
    assert all(row["equals_greedy"] for row in result["rows"])


@pytest.mark.slow
def test_fsdd_dataset_distillation_recipe(tmp_path, fsdd_dir):
    run("recipes/fsdd/dataset_distillation.py", "--out", str(tmp_path), "--ipc", "1", "--experts", "1",
        "--expert-epochs-total", "3", "--iterations", "2", "--seeds", "1")
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["train"] == 2700 and result["test"] == 300
    assert len(result["rows"][0]["distilled"]) == 1
