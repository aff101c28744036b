"""CTCOptimalTransport: the loss is w_ctc CTC + w_ot Sinkhorn divergence of the two encoders' outputs, a few steps
lower both terms, the text encoder starts from an MT checkpoint (frozen on request), the speech encoder then starts
SpeechTranslation, and bad input is one line."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.nn import functional as F

from speechkit.checkpoints import load_task, save_atomic
from speechkit.data import DataConfig, SpeechDataModule
from speechkit.errors import SpeechkitError
from speechkit.losses.ot import sinkhorn_divergence
from speechkit.models.speech_encoder import EncoderConfig
from speechkit.models.translation import TransformerConfig
from speechkit.tasks.ctc_ot import CTCOptimalTransport
from speechkit.tasks.speech_translation import SpeechTranslation
from speechkit.testing import tone_corpus
from speechkit.text.subwords import train_subwords

SPEECH = EncoderConfig(num_mel_bins=40, dim=32, num_layers=1, num_heads=2, ffn_dim=64, conv_kernel=7, dropout=0.0)
TEXT = TransformerConfig(dim=32, num_layers=1, num_heads=2, ffn_dim=64, dropout=0.0)
ALPHABET = "tone012"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ctc_ot")
    tone_corpus(out, "train", num_cuts=12, num_classes=3, seed=1, min_duration=0.8, max_duration=1.4)
    tone_corpus(out, "dev", num_cuts=4, num_classes=3, seed=2, min_duration=0.8, max_duration=1.4)
    return out


def data(corpus: Path) -> SpeechDataModule:
    return SpeechDataModule(DataConfig(
        train_cuts=str(corpus / "cuts_train.jsonl.gz"), dev_cuts=str(corpus / "cuts_dev.jsonl.gz"), input="fbank",
        num_mel_bins=40, max_duration=20.0, num_buckets=2, val_batch_size=4))


def first_batch(task: CTCOptimalTransport, corpus: Path):
    module = data(corpus)
    module.trainer = None
    module.tokenizer, module.pad_token_id = task.tokenize, task.pad_token_id
    return next(iter(module.val_dataloader()))


def trainer(steps: int, **kwargs) -> L.Trainer:
    return L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, use_distributed_sampler=False,
                     enable_progress_bar=False, enable_model_summary=False, check_val_every_n_epoch=None, **kwargs)


def test_loss_is_weighted_ctc_plus_sinkhorn_divergence(corpus):
    torch.manual_seed(0)
    task = CTCOptimalTransport(ALPHABET, SPEECH, TEXT, ctc_weight=0.7, ot_weight=0.3, ot_position_weight=1.0).eval()
    batch = first_batch(task, corpus)
    out = task.losses(batch)
    hidden, lens = task.encoder(batch.inputs, batch.input_lens)
    log_probs = task.output(hidden).log_softmax(-1)
    ctc = torch.stack([
        F.ctc_loss(log_probs[b, : lens[b]], batch.tokens[b, : batch.token_lens[b]], lens[b:b + 1],
                   batch.token_lens[b:b + 1], reduction="sum") for b in range(len(batch))
    ]).mean()  # per-utterance sums, averaged over the batch
    text, text_lens = task.text_encoder(batch.tokens, batch.token_lens)
    ot = torch.stack([
        sinkhorn_divergence(hidden[b:b + 1, : lens[b]], text[b:b + 1, : text_lens[b]], position_weight=1.0)[0]
        for b in range(len(batch))
    ]).mean()
    torch.testing.assert_close(out["ctc"], ctc, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out["ot"], ot, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["loss"], 0.7 * ctc + 0.3 * ot, rtol=1e-5, atol=1e-4)
    assert float(ot) > 0
    ctc_only = CTCOptimalTransport(ALPHABET, SPEECH, TEXT, ot_weight=0.0).eval()
    assert float(ctc_only.losses(batch)["ot"]) == 0.0


def test_a_few_steps_lower_ctc_and_ot_and_validation_logs_wer(corpus):
    torch.manual_seed(0)
    task = CTCOptimalTransport(ALPHABET, SPEECH, TEXT, ot_weight=1.0,
                               optimizer=lambda params: torch.optim.Adam(params, lr=3e-3))
    module = data(corpus)
    before = trainer(1, limit_train_batches=0).validate(task, module, verbose=False)[0]
    fit = trainer(40, val_check_interval=40)
    fit.fit(task, module)
    after = fit.callback_metrics
    assert float(after["val_ctc"]) < 0.6 * before["val_ctc"]
    assert float(after["val_ot"]) < 0.6 * before["val_ot"]
    assert {"val_wer", "val_cer", "val_loss"} <= set(after)


@pytest.fixture(scope="module")
def mt_checkpoint(corpus) -> Path:
    """An (untrained) MT model over the same characters: what the text encoder starts from."""
    train_subwords(["ein ton", "zwei tone", "drei tone null"] * 20, corpus / "de.model", vocab_size=20)
    torch.manual_seed(5)
    mt = SpeechTranslation(str(corpus / "de.model"), source="text", source_alphabet=ALPHABET, text_encoder=TEXT,
                           decoder=TEXT)
    save_atomic({"state_dict": mt.state_dict(), "hyper_parameters": dict(mt.hparams)}, corpus / "mt.ckpt")
    return corpus / "mt.ckpt"


def test_text_encoder_from_mt_frozen_and_speech_encoder_to_st(corpus, mt_checkpoint, tmp_path):
    mt = torch.load(mt_checkpoint, weights_only=True)["state_dict"]
    task = CTCOptimalTransport(ALPHABET, SPEECH, TEXT, text_encoder_init=str(mt_checkpoint),
                               freeze_text_encoder=True)
    for name, tensor in task.text_encoder.state_dict().items():
        assert torch.equal(tensor, mt[f"encoder.{name}"]), name
    before = {k: v.clone() for k, v in task.text_encoder.state_dict().items()}
    run = trainer(3, limit_val_batches=0)
    run.fit(task, data(corpus))
    assert all(torch.equal(v, before[k]) for k, v in task.text_encoder.state_dict().items())
    run.save_checkpoint(tmp_path / "ctc_ot.ckpt")
    loaded = load_task(tmp_path / "ctc_ot.ckpt")
    assert isinstance(loaded, CTCOptimalTransport)
    torch.testing.assert_close(loaded.state_dict(), task.state_dict())
    st = SpeechTranslation(str(corpus / "de.model"), encoder=SPEECH, decoder=TEXT,
                           encoder_init=str(tmp_path / "ctc_ot.ckpt"), decoder_init=str(mt_checkpoint))
    for name, tensor in st.encoder.state_dict().items():
        assert torch.equal(tensor, task.encoder.state_dict()[name]), name


def test_bad_input_is_a_clear_error(corpus, mt_checkpoint):
    with pytest.raises(SpeechkitError, match="speech encoder dim 32 != text encoder dim 16"):
        CTCOptimalTransport(ALPHABET, SPEECH, TransformerConfig(dim=16, num_heads=2))
    with pytest.raises(SpeechkitError, match="not both 0"):
        CTCOptimalTransport(ALPHABET, SPEECH, TEXT, ctc_weight=0.0, ot_weight=0.0)
    with pytest.raises(SpeechkitError, match=r"encoder.\* weights do not fit"):
        CTCOptimalTransport(ALPHABET, SPEECH, TransformerConfig(dim=32, num_layers=2, num_heads=2),
                            text_encoder_init=str(mt_checkpoint))
    task = CTCOptimalTransport(ALPHABET, SPEECH, TEXT).eval()
    batch = first_batch(task, corpus)
    feasible = task.losses(batch)
    assert float(feasible["ctc_infeasible"]) == 0
    batch.token_lens[0] = 1000  # more characters than encoder frames: CTC infeasible for that utterance
    batch.tokens = torch.nn.functional.pad(batch.tokens, (0, 1000 - batch.tokens.shape[1]), value=1)
    out = task.losses(batch)
    assert float(out["ctc_infeasible"]) == 1 and torch.isfinite(out["loss"])
    assert float(out["ctc"]) < float(feasible["ctc"])  # its CTC term is zero, the others are unchanged
