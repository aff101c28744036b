"""speechkit scorer-confidences: a CTC scorer's max posteriors stored on cuts as TemporalArrays; Whisper and
non-scorers refused in one line; the masked data module reads what it wrote."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lhotse import CutSet

from speechkit.cli import main
from speechkit.data import DataConfig, SpeechDataset
from speechkit.data.masked import MaskedSpeechDataModule
from speechkit.drivers.codebook import msm_codebook
from speechkit.models.speech_encoder import EncoderConfig
from speechkit.tasks.ctc_finetune import CTCFinetune
from speechkit.tasks.msm_pretrain import MaskedSpeechPretrain
from speechkit.testing import tone_corpus

TINY = EncoderConfig(num_mel_bins=40, dim=32, num_layers=2, num_heads=2, ffn_dim=64, conv_kernel=7, dropout=0.0)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> tuple[Path, CTCFinetune]:
    """Tones, a CTC scorer trained 10 steps, and ``speechkit scorer-confidences`` run on the training cuts."""
    out = tmp_path_factory.mktemp("scorer")
    tone_corpus(out, "train", num_cuts=12, num_classes=3, seed=1, min_duration=0.8, max_duration=1.6)
    torch.manual_seed(0)
    scorer = CTCFinetune("tone012", TINY, optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3))
    from speechkit.data import SpeechDataModule

    trainer = L.Trainer(max_steps=10, logger=False, enable_checkpointing=False, use_distributed_sampler=False,
                        limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(scorer, SpeechDataModule(DataConfig(train_cuts=str(out / "cuts_train.jsonl.gz"), input="fbank",
                                                    num_mel_bins=40, max_duration=8.0, num_buckets=2)))
    trainer.save_checkpoint(out / "scorer.ckpt")
    code = main(["scorer-confidences", str(out / "scorer.ckpt"), str(out / "cuts_train.jsonl.gz"),
                 str(out / "scored.jsonl.gz"), "--batch_cuts", "5"])
    assert code in (0, None)
    return out, scorer.eval()


def test_confidences_are_the_max_posterior_per_encoder_frame(scored):
    out, scorer = scored
    cuts = CutSet.from_file(out / "scored.jsonl.gz").to_eager()
    assert len(cuts) == 12 and (out / "scored_confidence").is_dir()
    dataset = SpeechDataset(DataConfig(input="fbank", num_mel_bins=40))
    for cut in cuts:
        batch = dataset[CutSet.from_cuts([cut])]
        posteriors, lens = scorer.frame_posteriors(batch.inputs, batch.input_lens)
        expected = posteriors[0, : int(lens[0])].max(-1).values
        stored = torch.as_tensor(cut.custom["confidence"].load())
        torch.testing.assert_close(stored, expected, atol=1e-5, rtol=1e-5)
        assert cut.custom["confidence"].frame_shift == pytest.approx(0.04)
        assert cut.custom["utterance_confidence"] == pytest.approx(float(expected.mean()), abs=1e-5)
        assert torch.all((stored > 0) & (stored <= 1))


def test_frame_shift_resamples(scored, tmp_path):
    out, _ = scored
    assert main(["scorer-confidences", str(out / "scorer.ckpt"), str(out / "cuts_train.jsonl.gz"),
                 str(tmp_path / "fine.jsonl.gz"), "--frame_shift", "0.01"]) in (0, None)
    cut = CutSet.from_file(tmp_path / "fine.jsonl.gz")[0]
    assert cut.custom["confidence"].frame_shift == 0.01
    assert cut.custom["confidence"].load().shape[0] == round(cut.duration / 0.01)


def test_ask2mask_pretraining_reads_the_written_manifest(scored):
    out, _ = scored
    msm_codebook(str(out / "cuts_train.jsonl.gz"), str(out / "codebook.pt"), num_codes=4, num_mel_bins=40,
                 max_frames=500)
    model = MaskedSpeechPretrain(str(out / "codebook.pt"), TINY, masking="ask2mask", utterance_weighting=True,
                                 mask_prob=0.1, mask_span=3)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, use_distributed_sampler=False,
                        limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, MaskedSpeechDataModule(DataConfig(train_cuts=str(out / "scored.jsonl.gz"), input="fbank",
                                                         num_mel_bins=40, max_duration=8.0, num_buckets=2)))
    assert torch.isfinite(trainer.callback_metrics["train_loss"])


def one_line_error(capsys, args: list[str]) -> str:
    assert main(args) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_whisper_and_non_scorers_are_refused_in_one_line(scored, capsys, tmp_path):
    out, _ = scored
    cuts, target = str(out / "cuts_train.jsonl.gz"), str(tmp_path / "x.jsonl.gz")
    assert "Whisper scorers are not supported" in one_line_error(capsys, ["scorer-confidences", "ct2:tiny.en", cuts,
                                                                          target])
    assert "Whisper scorers are not supported" in one_line_error(capsys, ["scorer-confidences", str(tmp_path), cuts,
                                                                          target])
    msm = MaskedSpeechPretrain(str(out / "codebook.pt"), TINY) if (out / "codebook.pt").exists() else None
    if msm is not None:
        trainer = L.Trainer(logger=False, max_steps=0)
        trainer.strategy.connect(msm)
        trainer.save_checkpoint(tmp_path / "msm.ckpt")
        assert "has no frame_posteriors" in one_line_error(capsys, ["scorer-confidences", str(tmp_path / "msm.ckpt"),
                                                                    cuts, target])
    assert "expected a .jsonl.gz" in one_line_error(capsys, ["scorer-confidences", str(out / "scorer.ckpt"), cuts,
                                                             str(tmp_path / "x.txt")])
    assert not Path(target).exists()
