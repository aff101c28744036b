"""recipes/commonvoice_pashto/offline.sh (issue 22), two steps a strategy on a tiny random Whisper: the proxy corpus
keeps its Pashto letters from the text file through the manifests to the normalizer, the test split is speaker- and
text-disjoint, and the four strategies give the table, JSON and PNG (multistage stopped by its Urdu dev-WER gate: a
random model cannot pass it). Also the number-word tables against hand-checked forms."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lhotse import load_manifest

from speechkit.testing import tiny_whisper_dir
from speechkit.text.normalizers import get_normalizer

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "commonvoice_pashto"
PASHTO_LETTERS = set("ښږټډړځڅڼېۍئ")


def number_words():
    spec = importlib.util.spec_from_file_location("number_words", RECIPE / "number_words.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_number_words_follow_the_construction_rules():
    words = number_words()
    assert [words.pashto_number(n) for n in (3, 15, 16, 20, 24, 35, 40, 100, 300, 1000, 2000)] == [
        "درې", "پنځلس", "شپاړس", "شل", "څلېرویشت", "پنځه دېرش", "څلوېښت", "سل", "درې سوه", "زر", "دوه زره"]
    with pytest.raises(ValueError):
        words.pashto_number(101)  # compounds beyond 100 are left out, not guessed
    assert words.urdu_number(2350) == "دو ہزار تین سو پچاس" and words.urdu_number(100) == "ایک سو"
    assert len(words.urdu_numbers()) == 370 and len(words.pashto_numbers()) == 118
    # Each voice reads letters it has: څ /ts/ as ت + س, ې as ی (fa) or word-final ے (ur), ړ as ر (fa) or ڑ (ur).
    assert words.respell("څلېرویشت", "fa") == "تسلیرویشت" and words.respell("درې شپاړس", "ur") == "درے شپاڑس"
    assert words.respell("شپاړس", "fa") == "شپارس"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pashto_offline")
    model = tiny_whisper_dir(root / "tiny", multilingual=True)
    env = dict(os.environ, MODEL=str(model), STEPS="2", SEEDS="1", COPIES="1", PS_LINES="24", UR_LINES="12",
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", OMP_NUM_THREADS="1")
    result = subprocess.run(
        ["bash", str(RECIPE / "offline.sh"), str(root / "exp"), "--trainer.accelerator", "cpu",
         "--model.init_args.lora_rank", "2", "--model.init_args.lora_alpha", "4",
         "--model.init_args.frozen_encoder_layers", "1", "--model.init_args.max_new_tokens", "4",
         "--data.init_args.config.max_duration", "4", "--trainer.enable_progress_bar", "false"],
        env=env, capture_output=True, text=True, timeout=600, cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "exp"


def test_proxy_corpus_keeps_pashto_letters_through_manifest_and_normalizer(run):
    lines = (run / "texts" / "ps_numbers_fa.tsv").read_text(encoding="utf-8").splitlines()[:24]
    written = {line.split("\t")[0] for line in lines}
    normalize = get_normalizer("ps")
    cuts = {split: load_manifest(run / "ps" / f"cuts_{split}.jsonl.gz") for split in ("train", "dev", "test")}
    texts = [s.text for split in cuts.values() for c in split for s in c.supervisions]
    assert set(texts) == written and len(texts) == 2 * 24  # every line, read by both voices, transcript as written
    assert all(normalize(text) == text for text in texts)  # the Pashto normalizer keeps every letter
    kept = PASHTO_LETTERS & set("".join(texts))
    assert kept == PASHTO_LETTERS & set("".join(written)) and kept >= set("ږړځڅې")  # (ښ: from 40 on)
    assert {s.language for split in cuts.values() for c in split for s in c.supervisions} == {"ps"}
    speakers = {split: {c.supervisions[0].speaker for c in cs} for split, cs in cuts.items()}
    assert {name.split("+")[0] for name in speakers["test"]} == {"fa", "ur"}
    assert not speakers["test"] & (speakers["train"] | speakers["dev"])
    by_text = {split: {c.supervisions[0].text for c in cs} for split, cs in cuts.items()}
    assert not by_text["test"] & (by_text["train"] | by_text["dev"])


def test_four_strategies_give_the_table_with_test_scores_and_the_gate(run):
    compare = run / "compare"
    summary = (compare / "summary.md").read_text(encoding="utf-8")
    for strategy in ("full", "lora", "frozen_encoder", "multistage"):
        assert f"| {strategy} |" in summary
    rows = {r["strategy"]: r for r in json.loads((compare / "summary.json").read_text())["rows"]}
    assert rows["multistage"]["gate_passed"] is False and "stopped by the gate" in summary
    assert not (compare / "seed0" / "multistage" / "target").exists()  # stage 2 never started
    for strategy in ("full", "lora", "frozen_encoder"):
        test = rows[strategy]["test"]
        assert test["utterances"] == len(load_manifest(run / "ps" / "cuts_test.jsonl.gz"))
        assert test["wer"] >= 0 and set(test["letters"]) >= {"substitutions", "deletions", "insertions"}
        assert (compare / "seed0" / strategy / "test.jsonl").is_file()
    trainable = {name: row["trainable_params"] for name, row in rows.items()}
    assert trainable["lora"] < trainable["frozen_encoder"] < trainable["full"]
    assert (compare / "summary.png").stat().st_size > 0
    assert (run / "wall_time.txt").read_text().startswith("wall time")
