"""SpeechTranslation: the MT (text) and ST (speech) models overfit a few Multi30k sentences to BLEU >= 90, the ST
model starts from the MT decoder by name, beam search finds the brute-force best sequence, bad input is one line."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch

from speechkit.checkpoints import save_atomic
from speechkit.data import DataConfig, SpeechDataModule
from speechkit.data.corpora import multi30k_synth
from speechkit.data.text_pairs import TextPairDataModule, read_lines
from speechkit.errors import SpeechkitError
from speechkit.models.speech_encoder import EncoderConfig
from speechkit.models.translation import (
    TransformerConfig,
    TranslationDecoder,
    beam_search,
)
from speechkit.tasks.speech_translation import SpeechTranslation
from speechkit.testing import shared_data_dir
from speechkit.text.subwords import train_subwords

SPEECH = EncoderConfig(num_mel_bins=40, dim=64, num_layers=2, num_heads=2, ffn_dim=128, conv_kernel=7, dropout=0.0)
TEXT = TransformerConfig(dim=64, num_layers=1, num_heads=2, ffn_dim=128, dropout=0.0)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Four synthesized Multi30k training sentences (English speech, German in custom["de"]) and a subword model."""
    source = shared_data_dir() / "multi30k"
    if not source.is_dir():
        pytest.skip(f"Multi30k not found at {source} (set SPEECHKIT_DATA)")
    out = tmp_path_factory.mktemp("st")
    multi30k_synth.prepare(source, out, max_train=4, max_dev=1, max_test=1, speakers=1, seed=3)
    train_subwords(read_lines(source / "val.de.gz"), out / "de.model", vocab_size=300)
    return out


def trainer(steps: int, **kwargs) -> L.Trainer:
    return L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, use_distributed_sampler=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     limit_val_batches=0, **kwargs)


def adam(parameters):
    return torch.optim.Adam(parameters, lr=3e-3)


def speech_data(corpus: Path) -> SpeechDataModule:
    cuts = str(corpus / "cuts_train.jsonl.gz")
    return SpeechDataModule(DataConfig(train_cuts=cuts, dev_cuts=cuts, test_cuts=cuts, input="fbank", num_mel_bins=40,
                                       max_duration=100.0, num_buckets=2, val_batch_size=4, text_field="text"))


def text_pairs(corpus: Path) -> tuple[Path, Path]:
    lines = [json.loads(line) for line in __import__("gzip").open(corpus / "supervisions_train.jsonl.gz", "rt")]
    (corpus / "en.txt").write_text("".join(s["text"] + "\n" for s in lines))
    (corpus / "de.txt").write_text("".join(s["custom"]["de"] + "\n" for s in lines))
    return corpus / "en.txt", corpus / "de.txt"


@pytest.fixture(scope="module")
def mt_checkpoint(corpus) -> tuple[Path, dict]:
    """The MT model overfitted on the four sentence pairs, its checkpoint and test scores."""
    torch.manual_seed(0)
    en, de = text_pairs(corpus)
    data = TextPairDataModule(en, de, en, de, en, de, batch_size=4)
    task = SpeechTranslation(str(corpus / "de.model"), source="text", text_encoder=TEXT, decoder=TEXT,
                             label_smoothing=0.0, beam_size=3, predictions_file=str(corpus / "mt.jsonl"),
                             optimizer=adam)
    run = trainer(120)
    run.fit(task, data)
    scores = run.test(task, data, verbose=False)[0]
    path = corpus / "mt.ckpt"
    save_atomic({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}, path)
    return path, scores


def test_mt_overfits_four_sentence_pairs(mt_checkpoint, corpus):
    _, scores = mt_checkpoint
    assert scores["test_bleu"] >= 90 and scores["test_chrf"] >= 90
    rows = [json.loads(line) for line in (corpus / "mt.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {"id", "src", "ref", "hyp"} <= set(rows[0])


def test_st_overfits_four_utterances_from_the_mt_decoder(mt_checkpoint, corpus):
    mt, _ = mt_checkpoint
    torch.manual_seed(0)
    task = SpeechTranslation(str(corpus / "de.model"), encoder=SPEECH, decoder=TEXT, decoder_init=str(mt),
                             label_smoothing=0.0, beam_size=2, predictions_file=str(corpus / "st.jsonl"),
                             optimizer=adam)
    mt_decoder = torch.load(mt, weights_only=True)["state_dict"]
    assert torch.equal(task.decoder.layers.layers[0].linear1.weight, mt_decoder["decoder.layers.layers.0.linear1.weight"])
    run = trainer(150)
    run.fit(task, speech_data(corpus))
    scores = run.test(task, speech_data(corpus), verbose=False)[0]
    assert scores["test_bleu"] >= 90, scores
    rows = [json.loads(line) for line in (corpus / "st.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(f"multi30k-train-{r['id'].split('-')[-1]}" for r in rows)


def test_beam_search_finds_the_brute_force_best_sequence():
    torch.manual_seed(3)
    config = TransformerConfig(dim=16, num_layers=1, num_heads=2, ffn_dim=32, dropout=0.0)
    decoder = TranslationDecoder(6, config).eval()  # ids 0 pad, 1 unk, 2 BOS, 3 EOS, 4-5 words
    with torch.no_grad():
        decoder.embed.tokens.weight.mul_(8.0)  # a peaked model: sequences differ clearly in probability
    memory, lens = torch.randn(2, 3, 16), torch.tensor([3, 2])
    found = beam_search(decoder, memory, lens, bos=2, eos=3, beam_size=30, max_len=4, length_penalty=1.0)
    for b in range(2):
        best, best_ids = -math.inf, None
        for length in range(4):
            for words in itertools.product([1, 4, 5], repeat=length):
                ids = [2, *words, 3]
                with torch.no_grad():
                    log_probs = decoder(torch.tensor([ids[:-1]]), memory[b:b + 1], lens[b:b + 1]).log_softmax(-1)
                score = sum(log_probs[0, i, ids[i + 1]].item() for i in range(len(ids) - 1)) / (length + 1)
                if score > best:
                    best, best_ids = score, list(words)
        assert found[b] == best_ids


def test_bad_input_is_a_clear_error(corpus, mt_checkpoint):
    spm = str(corpus / "de.model")
    with pytest.raises(SpeechkitError, match="speech encoder dim 64 != decoder dim 32"):
        SpeechTranslation(spm, encoder=SPEECH, decoder=TransformerConfig(dim=32, num_heads=2))
    with pytest.raises(SpeechkitError, match=r"decoder.\* weights do not fit"):
        SpeechTranslation(spm, encoder=EncoderConfig(num_mel_bins=40, dim=32, num_heads=2),
                          decoder=TransformerConfig(dim=32, num_heads=2), decoder_init=str(mt_checkpoint[0]))
    task = SpeechTranslation(spm, encoder=SPEECH, decoder=TEXT, target_field="fr_missing")
    batch = speech_data(corpus)
    batch.setup("fit")
    with pytest.raises(SpeechkitError, match=r"no custom\['fr_missing'\]"):
        task.loss(next(iter(batch.train_dataloader())))
    with pytest.raises(SpeechkitError, match="no such file"):
        SpeechTranslation(str(corpus / "missing.model"))
