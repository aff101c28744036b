"""Scoring spoken answers: mel distance by hand; eSpeak answers through Griffin-Lim are understood by Whisper."""

import numpy as np
import pytest
import torch
from lhotse.features.whisper_fbank import WhisperFbank, WhisperFbankConfig

from speechkit.data.batches import SpeechBatch
from speechkit.data.spoken_answers import SpokenAnswerBatch
from speechkit.drivers.spoken_answers_eval import evaluate_spoken_answers, mel_distance
from speechkit.errors import SpeechkitError
from speechkit.tasks.flow_omni import Answer


def test_mel_distance_by_hand():
    generated, reference = torch.zeros(3, 2), torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    assert mel_distance(generated, reference) == pytest.approx(0.5)  # |1| + |-1| over 2 frames x 2 bins
    assert mel_distance(torch.zeros(0, 2), reference) == float("inf")
    with pytest.raises(SpeechkitError, match="same F"):
        mel_distance(torch.zeros(3, 4), reference)


class Oracle:
    """A stand-in for FlowOmni that answers with the reference answers themselves."""

    def __init__(self, batch: SpokenAnswerBatch) -> None:
        self.batch = batch

    def eval(self):
        return self

    def generate(self, feats, lens, generator=None):
        b = self.batch
        return [Answer([], text, b.answer_mels[i, : int(b.answer_mel_lens[i])])
                for i, text in enumerate(b.speech.texts)]


def test_oracle_answers_spoken_by_griffin_lim_are_transcribed(tmp_path, one_thread):
    from speechkit.data.synth import Synthesizer, resample
    from speechkit.models.pretrained import load_whisper

    text = "the cat sat on the mat"
    audio = resample(Synthesizer().synthesize(text, "en"), 22050, 16000).astype(np.float32)
    mels = torch.as_tensor(WhisperFbank(WhisperFbankConfig(num_filters=80)).extract(audio, 16000))[None]
    speech = SpeechBatch(torch.zeros(1, 10, 80), torch.tensor([10]), [text], ["c0"], torch.ones(1))
    batch = SpokenAnswerBatch(speech, mels, torch.tensor([mels.shape[1]]))
    torch.manual_seed(0)
    scores = evaluate_spoken_answers(Oracle(batch), [batch], load_whisper("ct2:tiny.en"), plot=tmp_path / "mel.png")
    assert scores.mel_distance == 0.0 and scores.length_ratio == 1.0
    assert scores.wer.wer <= 0.34, scores.rows  # measured: "The cut sat on the mat." (1 of 6 words)
    assert (tmp_path / "mel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
