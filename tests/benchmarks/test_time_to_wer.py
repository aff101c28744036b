"""``benchmarks/time_to_wer.py`` end to end on FSDD with a tiny random Whisper: both systems train for the same
clock budget, snapshot, and are decoded; the JSON has the issue's keys (the numbers are the README's, from
ct2:tiny.en and real budgets)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speechkit.testing import tiny_whisper_dir

REPO = Path(__file__).resolve().parents[2]


def load_benchmark():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("time_to_wer", REPO / "benchmarks" / "time_to_wer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_seconds_to_reach_is_the_first_point_at_or_below_the_target():
    bench = load_benchmark()
    curve = [[60.0, 0.5], [120.0, 0.2], [180.0, 0.1], [240.0, 0.3]]
    assert bench.seconds_to_reach(curve, 0.2) == 120.0
    assert bench.seconds_to_reach(curve, 0.05) is None
    assert bench.seconds_to_reach(curve, 0.9) == 60.0


def test_the_shared_schedule_decays_on_the_benchmark_clock():
    import torch

    bench = load_benchmark()
    settings = bench.Settings(pool="", budget_s=100.0, evals=1, clock="cpu", snapshots="", model="", lr=1.0,
                              warmup_steps=2, seed=0, threads=1, baseline_batch_size=1, decay_fraction=0.4)
    now = [0.0]
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = bench.schedule(settings, lambda: now[0])(optimizer)
    lrs = []
    for t in (1.0, 2.0, 60.0, 80.0, 100.0):
        now[0] = t
        optimizer.step()
        schedule.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.5, 0.0])
    constant = bench.schedule(bench.Settings(**{**vars(settings), "decay_fraction": 0.0}), lambda: now[0])(optimizer)
    for _ in range(3):
        optimizer.step()
        constant.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.0)


def test_tokens_per_step_takes_a_count_or_the_baselines_tokens(capsys):
    bench = load_benchmark()
    base = ["--corpus", "sentences", "--minutes", "1", "--json", "x.json"]
    assert bench.parse_args(base).tokens_per_step is None
    assert bench.parse_args(base + ["--tokens-per-step", "900"]).tokens_per_step == 900
    assert bench.parse_args(base + ["--tokens-per-step", "baseline"]).tokens_per_step == "baseline"
    with pytest.raises(SystemExit) as exit_:
        bench.parse_args(base + ["--tokens-per-step", "many"])
    assert exit_.value.code == 2 and "--tokens-per-step: expected a number of tokens or 'baseline', got 'many'" in \
        capsys.readouterr().err


@pytest.mark.slow
def test_both_systems_train_for_the_budget_and_are_scored(tmp_path, fsdd_dir):
    model = tiny_whisper_dir(tmp_path / "tiny", multilingual=False)
    out = tmp_path / "ttw.json"
    command = [sys.executable, str(REPO / "benchmarks/time_to_wer.py"), "--corpus", "fsdd", "--minutes", "0.1",
               "--evals", "2", "--clock", "cpu", "--dev-utterances", "4", "--pool-seconds", "20",
               "--baseline-batch-size", "2", "--tokens-per-step", "20", "--lr-scaling", "sqrt", "--threads", "1",
               "--model", str(model), "--data-dir", str(fsdd_dir.parents[1]), "--work-dir", str(tmp_path / "work")]
    done = subprocess.run(command + ["--json", str(out), "--decay-fraction", "0.5", "--ema-decay", "0"],
                          capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    again = tmp_path / "again.json"  # speechkit alone, against the first run's baseline
    done = subprocess.run(command + ["--json", str(again), "--reuse-baseline", str(out), "--lr-scaling", "none",
                                     "--decay-fraction", "0", "--ema-decay", "0.9", "--ema-warmup-offset", "4",
                                     "--tokens-per-step", "baseline"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    reused = json.loads(again.read_text())
    assert reused["curve_baseline"] == result["curve_baseline"] and len(reused["curve_speechkit"]) == 2
    assert reused["settings"]["ema_decay"] == 0.9  # its snapshots hold speechkit.optim.WarmupEMA's average
    assert reused["settings"]["ema_warmup_offset"] == 4.0
    assert reused["settings"]["tokens_per_step_resolved"] == reused["settings"]["reference_tokens"] > 0
    for system in ("baseline", "speechkit"):
        curve = result[f"curve_{system}"]
        assert len(curve) == 2 and curve[0][0] < curve[1][0] and curve[1][0] >= 6.0  # 0.1 min, cpu clock
        assert all(0.0 <= wer for _, wer in curve) and result[f"steps_{system}"] >= 1
    assert result["final_wer_baseline"] == result["curve_baseline"][-1][1]
    assert result["final_wer_speechkit_30s"] is not None
    assert "seconds_to_baseline_final_wer_speechkit" in result
    assert (tmp_path / "ttw.png").stat().st_size > 0
