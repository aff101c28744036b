"""CTCFinetune: a pretrained MaskedSpeechPretrain encoder loads by name, a few steps lower the CTC loss, validation
logs val_wer, test writes predictions; greedy and prefix beam search decode as CTC defines."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch

from speechkit.checkpoints import load_task, save_atomic
from speechkit.data import DataConfig, SpeechDataModule
from speechkit.drivers.codebook import msm_codebook
from speechkit.errors import SpeechkitError
from speechkit.models.ctc_decode import beam_decode, greedy_decode, prefix_beam_search
from speechkit.models.speech_encoder import EncoderConfig
from speechkit.tasks.ctc_finetune import CTCFinetune
from speechkit.tasks.msm_pretrain import MaskedSpeechPretrain
from speechkit.testing import tone_corpus

TINY = EncoderConfig(num_mel_bins=40, dim=32, num_layers=2, num_heads=2, ffn_dim=64, conv_kernel=7, dropout=0.0)
ALPHABET = "tone012"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ctc")
    tone_corpus(out, "train", num_cuts=24, num_classes=3, seed=1, min_duration=0.8, max_duration=1.6)
    tone_corpus(out, "dev", num_cuts=6, num_classes=3, seed=2, min_duration=0.8, max_duration=1.6)
    return out


@pytest.fixture(scope="module")
def pretrained(corpus) -> Path:
    """A MaskedSpeechPretrain checkpoint as Lightning saves it (state_dict + hyper-parameters)."""
    msm_codebook(str(corpus / "cuts_train.jsonl.gz"), str(corpus / "codebook.pt"), num_codes=8, num_mel_bins=40,
                 max_frames=1000)
    torch.manual_seed(1)
    model = MaskedSpeechPretrain(str(corpus / "codebook.pt"), TINY)
    path = corpus / "msm.ckpt"
    save_atomic({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


def data(corpus: Path) -> SpeechDataModule:
    return SpeechDataModule(DataConfig(
        train_cuts=str(corpus / "cuts_train.jsonl.gz"), dev_cuts=str(corpus / "cuts_dev.jsonl.gz"),
        test_cuts=str(corpus / "cuts_dev.jsonl.gz"), input="fbank", num_mel_bins=40, max_duration=8.0,
        num_buckets=2, val_batch_size=6))


def trainer(steps: int, **kwargs) -> L.Trainer:
    return L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, use_distributed_sampler=False,
                     enable_progress_bar=False, enable_model_summary=False, check_val_every_n_epoch=None, **kwargs)


def test_pretrained_encoder_loads_by_name(pretrained):
    source = load_task(pretrained, MaskedSpeechPretrain).encoder.state_dict()
    task = CTCFinetune(ALPHABET, TINY, pretrained=str(pretrained))
    for name, tensor in task.encoder.state_dict().items():
        assert torch.equal(tensor, source[name]), name
    assert not torch.equal(CTCFinetune(ALPHABET, TINY).encoder.subsampler.conv1.weight, source["subsampler.conv1.weight"])


def test_pretrained_encoder_of_other_sizes_is_a_clear_error(pretrained):
    other = EncoderConfig(num_mel_bins=40, dim=48, num_layers=2, num_heads=2, ffn_dim=64, conv_kernel=7)
    with pytest.raises(SpeechkitError, match=r"^pretrained .*msm.ckpt: its encoder does not fit"):
        CTCFinetune(ALPHABET, other, pretrained=str(pretrained))
    with pytest.raises(SpeechkitError, match="no such file"):
        CTCFinetune(ALPHABET, TINY, pretrained=str(pretrained) + ".missing")


def test_a_few_steps_lower_the_loss_and_validation_logs_wer(corpus, pretrained, tmp_path):
    torch.manual_seed(0)
    task = CTCFinetune(ALPHABET, TINY, pretrained=str(pretrained),
                       optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3))
    module = data(corpus)
    run = trainer(1, limit_train_batches=0)
    before = run.validate(task, module, verbose=False)[0]
    fit = trainer(30, val_check_interval=30)
    fit.fit(task, module)
    after = fit.callback_metrics
    assert float(after["val_loss"]) < 0.7 * before["val_loss"]
    assert {"val_wer", "val_wer_raw", "val_cer"} <= set(after)
    assert 0.0 <= float(after["val_wer"])
    task.hparams.predictions_file = str(tmp_path / "predictions.jsonl")
    fit.test(task, module, verbose=False)
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and set(rows[0]) == {"id", "ref", "hyp"}


def test_checkpoint_round_trip_and_freezing(corpus, tmp_path):
    task = CTCFinetune(ALPHABET, TINY, freeze_encoder_steps=2, decoding="beam", beam_size=3)
    first = task.encoder.subsampler.conv1.weight.detach().clone()
    output = task.output.weight.detach().clone()
    run = trainer(2, limit_val_batches=0)
    run.fit(task, data(corpus))
    assert torch.equal(task.encoder.subsampler.conv1.weight, first)  # frozen for the first 2 steps
    assert not torch.equal(task.output.weight, output)
    run.save_checkpoint(tmp_path / "ctc.ckpt")
    loaded = load_task(tmp_path / "ctc.ckpt")
    assert isinstance(loaded, CTCFinetune) and loaded.hparams.decoding == "beam"
    torch.testing.assert_close(loaded.state_dict(), task.state_dict())


def test_text_outside_the_alphabet_is_an_error_naming_it():
    with pytest.raises(SpeechkitError, match=r"characters \['x'\] are not in the alphabet"):
        CTCFinetune(ALPHABET, TINY).tokenize("tone x")


def log_probs(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64).log()


def test_greedy_merges_repeats_and_drops_blanks():
    # frames: a a blank a b b -> "a a b" (ids 1 1 2)
    frames = log_probs([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8],
                        [0.1, 0.1, 0.8]])
    assert greedy_decode(frames[None], torch.tensor([6])) == [[1, 1, 2]]
    assert greedy_decode(frames[None], torch.tensor([2])) == [[1]]


def test_beam_search_finds_the_most_probable_labelling_that_greedy_misses():
    """Two frames, P(blank)=0.6, P(a)=0.4 each: best path is blank blank (""), p=0.36; but "a" sums
    a-a, a-blank, blank-a: 0.16 + 0.24 + 0.24 = 0.64."""
    frames = log_probs([[0.6, 0.4], [0.6, 0.4]])
    assert greedy_decode(frames[None], torch.tensor([2])) == [[]]
    assert prefix_beam_search(frames, beam_size=4) == [1]
    assert beam_decode(frames[None], torch.tensor([2]), 4) == [[1]]


def test_beam_search_scores_sum_over_alignments():
    """Against brute force over all 3^3 paths of a 3-frame, 3-symbol utterance."""
    import itertools

    g = torch.Generator().manual_seed(0)
    frames = torch.rand(3, 3, generator=g, dtype=torch.float64).softmax(-1)
    totals: dict[tuple, float] = {}
    for path in itertools.product(range(3), repeat=3):
        labels = tuple(k for i, k in enumerate(path) if k != 0 and (i == 0 or path[i - 1] != k))
        totals[labels] = totals.get(labels, 0.0) + math.prod(float(frames[t, k]) for t, k in enumerate(path))
    assert tuple(prefix_beam_search(frames.log(), beam_size=30)) == max(totals, key=totals.get)
