"""The audio-visual student (issue 16): 25 fps frames, modality dropout independence, masking, clear errors."""

import numpy as np
import pytest
import torch
from lhotse.features import Fbank

from speechkit.errors import SpeechkitError
from speechkit.models.av_student import AVStudent, AVStudentConfig, audio_frames, fbank_frames, student_config

TINY = AVStudentConfig(dim=32, num_layers=2, num_heads=2, ffn_dim=64, video_channels=4, resnet_widths=(8,),
                       dropout=0.0)


def batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    lens = torch.tensor([16000, 12000])
    wav = torch.randn(2, 16000, generator=generator) * 0.1
    wav[1, 12000:] = 0
    video_lens = torch.tensor([25, 19])
    video = torch.rand(2, 25, 24, 24, generator=generator)
    video[1, 19:] = 0
    return wav, lens, video, video_lens


def test_frame_counts_match_lhotse_fbank_and_25_fps():
    for samples in (8000, 12000, 16079, 16080, 16481):
        expected = Fbank().extract(np.zeros(samples, dtype=np.float32), 16000).shape[0]
        assert int(fbank_frames(torch.tensor(samples))) == expected
        assert int(audio_frames(torch.tensor(samples))) == -(-expected // 4)


@pytest.mark.parametrize("kept, changed", [("audio", "video"), ("video", "audio")])
def test_dropping_a_modality_makes_the_output_independent_of_that_stream(kept, changed, one_thread):
    torch.manual_seed(0)
    student = AVStudent(TINY).eval()
    wav, lens, video, video_lens = batch()
    other_wav, _, other_video, _ = batch(seed=1)
    hidden, out_lens = student(wav, lens, video, video_lens, kept)
    if changed == "audio":
        perturbed, _ = student(other_wav * 3, lens, video, video_lens, kept)
    else:
        perturbed, _ = student(wav, lens, other_video, video_lens, kept)
    assert all(torch.equal(a, b) for a, b in zip(hidden, perturbed))
    both, _ = student(wav, lens, other_video, video_lens, "audio_video")
    base, _ = student(wav, lens, video, video_lens, "audio_video")
    assert not torch.allclose(both[-1], base[-1])  # with both streams the video does matter
    assert len(hidden) == TINY.num_layers + 1 and hidden[-1].shape == (2, 25, 32)
    assert out_lens.tolist() == ([25, 19] if kept == "video" else audio_frames(lens).tolist())


def test_modality_dropout_with_probability_one_removes_the_chosen_stream(one_thread):
    torch.manual_seed(0)
    config = student_config({**TINY.__dict__, "modality_dropout": 1.0, "audio_drop_prob": 1.0})
    student = AVStudent(config).train()
    wav, lens, video, video_lens = batch()
    a, _ = student(wav, lens, video, video_lens)
    b, _ = student(wav * 5 + 0.1, lens, video, video_lens)
    assert torch.equal(a[-1], b[-1])  # audio always dropped in training: the audio is never heard


def test_masking_replaces_frames_only_when_asked(one_thread):
    torch.manual_seed(0)
    config = student_config({**TINY.__dict__, "mask_prob": 0.5, "modality_dropout": 0.0})
    student = AVStudent(config).eval()
    wav, lens, video, video_lens = batch()
    plain, _ = student(wav, lens, video, video_lens)
    again, _ = student(wav, lens, video, video_lens)
    masked, _ = student(wav, lens, video, video_lens, mask=True)
    assert torch.equal(plain[0], again[0]) and not torch.equal(plain[0], masked[0])


def test_bad_inputs_are_one_line_errors_naming_the_cut():
    student = AVStudent(TINY)
    wav, lens, video, video_lens = batch()
    with pytest.raises(SpeechkitError, match=r"utterance 'b'.*audio lasts 19 frames.*video 10 frames"):
        student(wav, lens, video, torch.tensor([25, 10]), ids=["a", "b"])
    with pytest.raises(SpeechkitError, match="needs video, but the batch has none"):
        student(wav, lens, None, None, "audio_video")
    with pytest.raises(SpeechkitError, match="needs audio"):
        student(None, None, video, video_lens, "audio")
    with pytest.raises(SpeechkitError, match=r"video: expected \(B, T, H, W\)"):
        student(wav, lens, video[:, :, 0], video_lens)
    with pytest.raises(SpeechkitError, match="unknown keys"):
        student_config({"dims": 3})
    with pytest.raises(SpeechkitError, match="multiple of num_heads"):
        AVStudentConfig(dim=30, num_heads=4)
