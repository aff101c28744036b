"""compare_strategies: the four strategies on one tiny corpus -> table, JSON, PNG; metric and table helpers."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from speechkit.commands import command_main
from speechkit.drivers import compare
from speechkit.errors import SpeechkitError
from speechkit.testing import tiny_whisper_dir, tone_corpus

from .test_multistage import tiny_fit_config


def test_best_row_takes_the_first_lowest_val_wer(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(
        "epoch,step,train_loss,val_cer,val_cer_raw,val_wer,val_wer_raw\n"
        "0,0,5.0,,,,\n"
        "0,1,,0.5,0.6,0.75,0.8\n"
        "0,3,,0.4,0.45,0.5,0.55\n"
        "0,5,,0.3,0.35,0.5,0.5\n"
    )
    assert compare.best_row(path) == {"wer": 0.5, "wer_raw": 0.55, "cer": 0.4, "cer_raw": 0.45, "step": 3}


def test_table_gives_percentages_and_the_difference_to_full():
    rows = [compare.StrategyResult("full", 0.2122, 0.25, 0.0852, 0.1, 10, 100, 100, 12.4, "a"),
            compare.StrategyResult("lora", 0.5458, 0.6, 0.3, 0.31, 10, 8, 108, 7.6, "b")]
    table = compare.format_table(rows).splitlines()
    assert table[2] == "| full | 21.22 | 8.52 | 25.00 | 10.00 |  | 100 (100.0%) | 12 |"
    assert table[3] == "| lora | 54.58 | 30.00 | 60.00 | 31.00 | +33.36 | 8 (7.4%) | 8 |"


def test_four_strategies_on_one_budget(tmp_path, capsys):
    model_dir = tiny_whisper_dir(tmp_path / "tiny", multilingual=True)
    tone_corpus(tmp_path / "data", "train", num_cuts=6, seed=1, max_duration=0.6)
    tone_corpus(tmp_path / "data", "dev", num_cuts=4, seed=2, max_duration=0.6)
    base = tmp_path / "base.yaml"
    config = tiny_fit_config(model_dir, tmp_path / "exp")
    config["model"]["init_args"].update(lora_rank=2, lora_alpha=4.0, frozen_encoder_layers=1)
    base.write_text(yaml.safe_dump(config))
    train, dev = str(tmp_path / "data" / "cuts_train.jsonl.gz"), str(tmp_path / "data" / "cuts_dev.jsonl.gz")
    out = tmp_path / "cmp"
    code = command_main("speechkit.drivers.compare:compare_command", "speechkit compare-strategies")([
        "--config", str(base), "--train", train, "--dev", dev, "--language", "ky", "--new-language-init-from", "kk",
        "--related-train", train, "--related-dev", dev, "--related-language", "kk", "--max-steps", "2",
        "--lr", "lora=1e-2", "--out-dir", str(out),  # multistage: 1 step per stage, validation clamped to it
        "--test", dev,  # ky, a language Whisper lacks, is scored as validation scores it ("mul")
    ])
    assert code == 0
    table = capsys.readouterr().out
    rows = {r["strategy"]: r for r in json.loads((out / "strategies.json").read_text())["rows"]}
    assert list(rows) == list(compare.STRATEGIES)
    for name, row in rows.items():
        assert f"| {name} |" in table and math.isfinite(row["wer"]) and row["wall_s"] > 0
        assert math.isfinite(row["test"]["wer"]) and row["test"]["utterances"] == 4
    position_table = 1500 * 32  # the encoder's fixed sinusoidal table, frozen on every load path (issue 11, defect 7)
    assert rows["full"]["trainable_params"] == rows["full"]["total_params"] - position_table
    assert rows["full"]["trainable_params"] == rows["multistage"]["trainable_params"]
    assert rows["lora"]["trainable_params"] < rows["frozen_encoder"]["trainable_params"] < rows["full"]["trainable_params"]
    assert (out / "strategies.png").stat().st_size > 0
    assert (out / "multistage" / "related").is_dir() and (out / "multistage" / "target" / "init_grown.ckpt").is_file()


def test_multistage_without_related_corpus_is_an_error(tmp_path):
    with pytest.raises(SpeechkitError, match="needs a related corpus"):
        compare.strategy_plan("multistage", "c.yaml", "t", "d", "ky", 4, "kk", None, None, tmp_path)


def test_summary_gives_mean_and_sd_over_seeds_and_marks_gated_runs():
    """Issue 22: two seeds of full (test WER 20 % and 40 %) -> 30.00 ± 14.14 (sample sd); a multistage run stopped
    by its gate is counted as such and has no error rate; error classes are summed over the seeds."""
    def test(wer, subs):
        return {"wer": wer, "wer_raw": wer, "cer": wer / 2, "cer_raw": wer / 2, "substitutions": subs,
                "deletions": 1, "insertions": 0, "ref_words": 10, "utterances": 3,
                "letters": {"substitutions": 2, "deletions": 0, "insertions": 1,
                            "top_substitutions": [["ښ", "ش", 2]], "top_deletions": [], "top_insertions": []}}
    rows = [compare.StrategyResult("full", 0.1, 0.1, 0.05, 0.05, 2, 100, 100, 10.0, "a", seed=0, test=test(0.2, 2)),
            compare.StrategyResult("full", 0.3, 0.3, 0.15, 0.15, 2, 100, 100, 20.0, "b", seed=1, test=test(0.4, 4)),
            compare.StrategyResult("multistage", math.nan, math.nan, math.nan, math.nan, -1, 100, 100, 5.0, "c",
                                   seed=0, gate_passed=False)]
    table = compare.format_summary(rows).splitlines()
    assert table[2] == ("| full | 0,1 | 20.00 ± 14.14 | 30.00 ± 14.14 | 15.00 ± 7.07 | 30.00 ± 14.14 | 15.00 ± 7.07 |  "
                        "| 100 (100.0%) | 15 |")
    assert table[3].startswith("| multistage | 0 (1 stopped by the gate) | n/a | n/a |")
    assert table[7] == "| full | 2 | 6 / 2 / 0 (of 20) | 4 / 0 / 2 | ښ→ش 4 |"
