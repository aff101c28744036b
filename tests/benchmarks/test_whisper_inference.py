"""``benchmarks/whisper_inference.py`` end to end on two real FSDD clips with a tiny random Whisper checkpoint: the
mechanics (exports, fresh worker processes, round-robin shards, the table, the JSON keys, the profile's stages),
not the WER (a random model's transcripts are garbage)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from speechkit.tasks.whisper_finetune import WhisperFinetune
from speechkit.testing import tiny_whisper_dir

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")


def load_benchmark():
    spec = importlib.util.spec_from_file_location("whisper_inference", REPO / "benchmarks" / "whisper_inference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_benchmark()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny English-only Whisper saved as ``speechkit fit`` saves a variable-length run's checkpoint."""
    root = tmp_path_factory.mktemp("inference")
    task = WhisperFinetune(str(tiny_whisper_dir(root / "tiny", multilingual=False)), pad_to_30s=False,
                           max_new_tokens=4)
    hparams = {"_class_path": "speechkit.tasks.whisper_finetune.WhisperFinetune", **task.hparams}
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams}, root / "run.ckpt")
    return root / "run.ckpt"


def test_a_missing_checkpoint_says_how_to_make_one(bench, tmp_path, capsys):
    assert bench.main(["--checkpoint", str(tmp_path / "none.ckpt")]) == 2
    err = capsys.readouterr().err
    assert "recipes/fsdd/run.sh" in err and "conf/whisper/fsdd_tiny_en.yaml" in err
    assert bench.main([]) == 2 and "recipes/fsdd/run.sh" in capsys.readouterr().err


def test_shards_are_runs_of_whole_batches_longest_first(bench):
    clips = [bench.Clip(f"c{i}", f"/a/{i}.wav", 0.1 * (i + 1), "") for i in range(10)]
    parts = bench.shards(clips, 3, batch_size=2)
    assert [[c.id for c in part] for part in parts] == [["c9", "c8", "c7", "c6"], ["c5", "c4", "c3", "c2"],
                                                        ["c1", "c0"]]
    assert sum(map(len, bench.shards(clips, 3, batch_size=16)), 0) == 10 and len(bench.shards(clips, 3, 16)) == 1


def test_ratios_take_the_faster_faster_whisper_mode(bench):
    rows = {"speechkit": {"audio_s_per_s": 40.0, "audio_s_per_cpu_s": 30.0},
            "fw_int8": {"audio_s_per_s": 1.0, "audio_s_per_cpu_s": 1.0},
            "fw_int8_batched": {"audio_s_per_s": 2.0, "audio_s_per_cpu_s": 3.0}}
    out = bench.ratios(rows, 20.0)
    assert out["fw_int8_best"] == "fw_int8_batched"
    assert out["speedup_vs_fw_int8"] == 20.0 and out["speedup_vs_fw_int8_cpu"] == 10.0 and out["target_met"]
    assert rows["fw_int8"]["vs_fw_int8_wall"] == 0.5


@pytest.mark.slow  # two fresh worker processes (torch + transformers imports), an int8 export
def test_two_systems_end_to_end(bench, checkpoint, fsdd_dir, tmp_path, capsys):
    pytest.importorskip("faster_whisper")
    out = tmp_path / "out.json"
    argv = ["--checkpoint", str(checkpoint), "--corpora", "fsdd", "--max-clips", "2", "--rounds", "1",
            "--systems", "speechkit", "fw_int8", "--max-new-tokens", "4", "--batch-size", "2",
            "--data-dir", str(fsdd_dir.parents[1]), "--work-dir", str(tmp_path / "work"), "--json", str(out)]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| speechkit: speechkit transcribe, variable-length, batched |" in printed
    assert "speechkit / faster-whisper int8 (fw_int8):" in printed and "target >= 20x" in printed

    report = json.loads(out.read_text())
    assert report["settings"]["threads"] == 1 and len(report["settings"]["load_average_before"]) == 3
    fsdd = report["fsdd"]
    assert fsdd["clips"] == 2 and fsdd["fw_int8_best"] == "fw_int8" and fsdd["target_vs_fw_int8"] == 20.0
    assert {"speedup_vs_fw_int8", "speedup_vs_fw_int8_cpu", "target_met", "hyps", "refs", "ids"} <= set(fsdd)
    for name in ("speechkit", "fw_int8"):
        row = fsdd["systems"][name]
        assert {"audio_s_per_s", "audio_s_per_cpu_s", "peak_rss_mb", "rss_ready_mb", "load_s", "wer", "wer_raw",
                "vs_fw_int8_wall", "vs_fw_int8_cpu"} <= set(row)
        assert len(row["runs"]) == 1 and row["audio_s"] == pytest.approx(fsdd["audio_s"])
        assert 0 < row["peak_rss_mb"] < 4000 and row["wall_s"] > 0 and row["cpu_s"] > 0
        assert len(fsdd["hyps"][name]) == 2
    assert all(fsdd["refs"])
    assert (tmp_path / "work" / "exports" / "ct2_int8" / "model.bin").is_file()


def test_the_profile_accounts_for_the_whole_call(bench, checkpoint, fsdd_dir, tmp_path):
    """In this process (no worker), on the int8 proposal: every stage is found and the stages plus the rest add up
    to the total."""
    clips = sorted(fsdd_dir.glob("*_jackson_0.wav"))[:3]
    spec = {"system": "speechkit_int8", "paths": [str(c) for c in clips], "models": {"checkpoint": str(checkpoint)},
            "threads": 1, "batch_size": 2, "max_new_tokens": 4, "scratch": str(tmp_path), "top": 5}
    result = bench.profile_worker(spec)
    assert result["missing_stages"] == []
    stages = result["stages"]
    assert stages["encoder"]["calls"] == 2 and stages["features"]["calls"] == 2  # 3 clips in batches of 2
    assert stages["generate_decoder"]["calls"] >= 2 and stages["generate_lm_head"]["calls"] >= 2
    assert stages["first_step_decoder"]["calls"] == stages["first_step_lm_head"]["calls"] == 2
    assert stages["read_audio"]["wall"] > 0
    assert sum(row["wall"] for row in stages.values()) == pytest.approx(result["wall_s"])
    assert "tottime" in result["cprofile_tottime"]
    from transformers.models.whisper import modeling_whisper

    assert "__call__" not in vars(modeling_whisper.WhisperEncoder)  # the timers are gone again


def test_the_greedy_probe_runs_both_ways(checkpoint, fsdd_dir, tmp_path, capsys):
    """``whisper_greedy_probe.py`` (the lean-loop proposal) on three clips: both ways timed, WER and agreement
    printed (a random model's transcripts may differ: decode_short's guards resample them)."""
    spec = importlib.util.spec_from_file_location("whisper_greedy_probe",
                                                  REPO / "benchmarks" / "whisper_greedy_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    assert probe.main(["--checkpoint", str(checkpoint), "--corpus", "fsdd", "--max-clips", "3", "--max-new-tokens",
                       "4", "--data-dir", str(fsdd_dir.parents[1]), "--work-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("decode_short: ") == 3 and printed.count("lean: ") == 3
    assert "identical transcripts: " in printed and " / 3" in printed
