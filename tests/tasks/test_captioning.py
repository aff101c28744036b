"""AudioCaptioner: per-pair cross-entropy equals the model's own loss at batch size one, a tiny captioner learns the
captions of three tone classes, beam search against brute force, validation/test metrics and predictions, the
checkpoint round trip, caption data (five captions per cut, one drawn per batch), and one-line errors."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import lightning as L
import pytest
import torch
from lhotse import CutSet
from lhotse.utils import fastcopy

from speechkit.checkpoints import load_task
from speechkit.data import DataConfig
from speechkit.data.captions import (
    CaptionBatch,
    CaptionDataModule,
    caption_pairs,
    cut_captions,
)
from speechkit.errors import SpeechkitError
from speechkit.models.captioner import DecoderConfig, beam_search
from speechkit.models.speech_encoder import EncoderConfig
from speechkit.tasks.caption_retrieval import cut_features, pairwise_caption_loss
from speechkit.tasks.captioning import AudioCaptioner
from speechkit.testing import TONE_CAPTIONS, captioned_tones
from speechkit.text.words import BOS, EOS, build_vocabulary

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ENCODER = EncoderConfig(num_mel_bins=40, dim=32, num_layers=1, num_heads=2, ffn_dim=64, conv_kernel=7, dropout=0.0)
DECODER = DecoderConfig(dim=32, num_layers=1, num_heads=2, ffn_dim=64, dropout=0.0, max_tokens=12)
PARAPHRASES = TONE_CAPTIONS


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("captions")
    captioned_tones(out, "train", 12, seed=0)
    captioned_tones(out, "dev", 6, seed=1)
    return out


def data_config(corpus: Path, **kwargs) -> DataConfig:
    return DataConfig(train_cuts=str(corpus / "cuts_train.jsonl.gz"), dev_cuts=str(corpus / "cuts_dev.jsonl.gz"),
                      test_cuts=str(corpus / "cuts_dev.jsonl.gz"), input="fbank", num_mel_bins=40, max_duration=12.0,
                      num_buckets=2, val_batch_size=6, **kwargs)


def vocabulary() -> list[str]:
    return build_vocabulary(c for captions in PARAPHRASES.values() for c in captions)


def captioner(**kwargs) -> AudioCaptioner:
    torch.manual_seed(0)
    options = dict(encoder=ENCODER, decoder=DECODER, max_caption_words=8, beam_size=2,
                   optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3))
    return AudioCaptioner(vocabulary(), **(options | kwargs))


def trainer(steps: int, **kwargs) -> L.Trainer:
    return L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, use_distributed_sampler=False,
                     enable_progress_bar=False, enable_model_summary=False, check_val_every_n_epoch=None, **kwargs)


def test_per_pair_cross_entropy_equals_the_models_own_loss_at_batch_size_one(corpus):
    task = captioner(label_smoothing=0.0).eval()
    cuts = CutSet.from_file(corpus / "cuts_dev.jsonl.gz").subset(first=3)
    _, feats = cut_features(cuts, data_config(corpus))
    captions = ["a low hum", "a high tone beeps loudly", "a tone rises", "hum"]  # "loudly": <unk>
    loss = pairwise_caption_loss(task, feats, captions, batch_pairs=5, audio_batch=2)
    assert loss.shape == (3, 4)
    for a, c in itertools.product(range(3), range(4)):
        tokens = torch.tensor([task.tokenize(captions[c])])
        own = task.pair_losses(feats[a][None], torch.tensor([len(feats[a])]), tokens, torch.tensor([tokens.shape[1]]))
        memory, pad = task.model.encode(feats[a][None], torch.tensor([len(feats[a])]))
        logits = task.model.decoder(tokens[:, :-1], memory, pad)[0]
        by_hand = -logits.log_softmax(-1).gather(1, tokens[0, 1:, None]).mean()
        assert loss[a, c].item() == pytest.approx(own.item(), abs=1e-5)
        assert loss[a, c].item() == pytest.approx(by_hand.item(), abs=1e-5)
    assert torch.allclose(pairwise_caption_loss(task, feats, captions, batch_pairs=1, audio_batch=1), loss, atol=1e-5)


def test_training_loss_at_batch_size_one_is_the_pair_loss(corpus):
    task = captioner(label_smoothing=0.0).eval()
    module = CaptionDataModule(data_config(corpus))
    module.tokenizer, module.pad_token_id = task.tokenize, task.pad_token_id
    cut = CutSet.from_file(corpus / "cuts_dev.jsonl.gz").subset(first=1)
    batch = module.dataset(train=False)[cut]
    _, feats = cut_features(cut, data_config(corpus))
    expected = pairwise_caption_loss(task, feats, [batch.speech.texts[0]])[0, 0]
    assert task.loss(batch).item() == pytest.approx(expected.item(), abs=1e-5)


def test_a_tiny_captioner_learns_the_captions_of_three_tone_kinds(corpus, tmp_path):
    task = captioner()
    fit = trainer(160, val_check_interval=160, limit_val_batches=1)
    fit.fit(task, CaptionDataModule(data_config(corpus, max_cuts=6)))
    assert float(fit.callback_metrics["train_loss"]) < 1.6  # label smoothing 0.1 over 5 paraphrases keeps it > 1
    assert float(fit.callback_metrics["val_cider_d"]) > 1.0 and "val_bleu4" in fit.callback_metrics
    cuts = CutSet.from_file(corpus / "cuts_dev.jsonl.gz")
    ids, feats = cut_features(cuts, data_config(corpus))
    hyps = [task.caption(f[None], torch.tensor([len(f)]))[0] for f in feats]
    kinds = [cut.supervisions[0].custom["kind"] for cut in cuts]
    assert all(hyp in PARAPHRASES[kind] for hyp, kind in zip(hyps, kinds)), hyps
    task.hparams.predictions_file = str(tmp_path / "predictions.jsonl")
    fit.test(task, CaptionDataModule(data_config(corpus)), verbose=False)
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and set(rows[0]) == {"id", "hyp", "refs"} and len(rows[0]["refs"]) == 5
    assert float(fit.callback_metrics["test_cider_d"]) > 1.0
    fit.save_checkpoint(tmp_path / "captioner.ckpt")
    loaded = load_task(tmp_path / "captioner.ckpt")
    assert isinstance(loaded, AudioCaptioner) and loaded.tokenizer.words == task.tokenizer.words
    torch.testing.assert_close(loaded.state_dict(), task.state_dict())


def toy_log_probs(vocab: int = 6, seed: int = 0):
    """A Markov chain over tokens: the next token's log-probabilities depend on the last token only."""
    table = torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(seed)).mul(2).log_softmax(-1)
    return table, lambda prefixes: table[prefixes[:, -1]]


def test_beam_search_with_a_wide_beam_equals_brute_force_and_width_one_is_greedy():
    table, next_log_probs = toy_log_probs()
    words, max_tokens = [4, 5], 3  # 0-3 are <pad> <bos> <eos> <unk>
    best, best_score = None, float("-inf")
    for length in range(1, max_tokens + 1):
        for seq in itertools.product(words, repeat=length):
            path = [BOS, *seq, EOS]
            score = sum(table[a, b].item() for a, b in zip(path, path[1:]))
            if score > best_score:
                best, best_score = list(seq), score
    assert beam_search(next_log_probs, 64, max_tokens) == best
    greedy, last = [], BOS
    for _ in range(max_tokens):
        row = table[last].clone()
        row[[0, 1, 3]] = float("-inf")
        if greedy == []:
            row[EOS] = float("-inf")
        token = int(row.argmax())
        if token == EOS:
            break
        greedy.append(token)
        last = token
    assert beam_search(next_log_probs, 1, max_tokens) == greedy


def test_caption_batches_draw_captions_and_keep_every_reference(corpus):
    module = CaptionDataModule(data_config(corpus))
    cuts = CutSet.from_file(corpus / "cuts_train.jsonl.gz").to_eager()
    drawn = {cut.id: set() for cut in cuts}
    for seed in range(8):
        batch = CaptionDataModule(data_config(corpus, seed=seed)).dataset(train=True)[cuts]
        assert isinstance(batch, CaptionBatch)
        for cut_id, text, refs in zip(batch.speech.cut_ids, batch.speech.texts, batch.references):
            assert refs == cut_captions(cuts[cut_id]) and text in refs
            drawn[cut_id].add(text)
    assert sum(len(texts) for texts in drawn.values()) > 2 * len(drawn)  # different captions across draws
    dev = module.dataset(train=False)[cuts]
    assert all(text == refs[0] for text, refs in zip(dev.speech.texts, dev.references))
    audio_ids, captions, owner = caption_pairs(cuts)
    assert len(audio_ids) == 12 and len(captions) == 60 and owner[:6] == [0, 0, 0, 0, 0, 1]


def test_bad_input_is_a_one_line_error(corpus, tmp_path):
    cut = CutSet.from_file(corpus / "cuts_dev.jsonl.gz").to_eager()[0]
    sup = cut.supervisions[0]
    for custom in ({"captions": []}, {"captions": ["ok", " "]}, {"captions": "one string"}):
        broken = fastcopy(cut, supervisions=[fastcopy(sup, custom=custom)])
        with pytest.raises(SpeechkitError, match=r"^cut .*: expected custom\['captions'\] to be a non-empty list"):
            cut_captions(broken)
    with pytest.raises(SpeechkitError, match="0 supervisions"):
        cut_captions(fastcopy(cut, supervisions=[]))
    with pytest.raises(SpeechkitError, match="no such file"):
        AudioCaptioner(str(tmp_path / "missing.txt"), encoder=ENCODER, decoder=DECODER, max_caption_words=8)
    with pytest.raises(SpeechkitError, match="longer than|more than"):
        captioner().tokenize("a " * 20)
    with pytest.raises(SpeechkitError, match="expected one or more non-empty"):
        pairwise_caption_loss(captioner(), [torch.zeros(0, 40)], ["a low hum"])
    with pytest.raises(SpeechkitError, match="text_field"):
        CaptionDataModule(data_config(corpus, text_field="de"))


def test_a_checkpoint_loads_with_its_vocabulary_file_and_refuses_another(corpus, tmp_path):
    task = captioner()
    path = tmp_path / "captioner.ckpt"
    trainer(1, limit_val_batches=0).fit(task, CaptionDataModule(data_config(corpus)))
    task.trainer.save_checkpoint(path)
    (tmp_path / "same.txt").write_text("\n".join(vocabulary()) + "\n")
    assert load_task(path, vocabulary=str(tmp_path / "same.txt")).tokenizer.words == task.tokenizer.words
    (tmp_path / "other.txt").write_text("\n".join(reversed(vocabulary())) + "\n")
    with pytest.raises(SpeechkitError, match=r"^vocabulary: the checkpoint's \d+ words and the given \d+ differ"):
        load_task(path, vocabulary=str(tmp_path / "other.txt"))
