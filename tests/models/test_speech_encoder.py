"""SpeechEncoder (the masked-pretraining / CTC encoder): frame counts, padding independence, the mask embedding."""

from __future__ import annotations

import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.models.speech_encoder import EncoderConfig, SpeechEncoder, encoder_config, encoder_frames

TINY = EncoderConfig(num_mel_bins=8, dim=16, num_layers=2, num_heads=2, ffn_dim=32, conv_kernel=5, dropout=0.0)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_frame_counts_are_ceil_of_a_quarter():
    lens = torch.tensor([1, 2, 3, 4, 5, 8, 9, 101])
    assert encoder_frames(lens).tolist() == [-(-n // 4) for n in lens.tolist()]
    encoder = SpeechEncoder(TINY)
    hidden, out = encoder(torch.randn(2, 37, 8), torch.tensor([37, 20]))
    assert hidden.shape == (2, 10, 16) and out.tolist() == [10, 5]


def test_an_utterance_encodes_the_same_alone_and_padded_in_a_batch():
    torch.manual_seed(0)
    encoder = SpeechEncoder(TINY).eval()
    short, long = torch.randn(1, 23, 8), torch.randn(1, 61, 8)
    batch = torch.cat([long, torch.nn.functional.pad(short, (0, 0, 0, 38), value=3.0)])
    with torch.no_grad():
        alone, _ = encoder(short, torch.tensor([23]))
        together, lens = encoder(batch, torch.tensor([61, 23]))
    torch.testing.assert_close(together[1, : int(lens[1])], alone[0], atol=1e-5, rtol=1e-5)


def test_masked_frames_change_the_output_and_a_wrong_mask_is_an_error():
    torch.manual_seed(0)
    encoder = SpeechEncoder(TINY).eval()
    feats, lens = torch.randn(1, 40, 8), torch.tensor([40])
    mask = torch.zeros(1, 10, dtype=torch.bool)
    mask[0, 3:6] = True
    with torch.no_grad():
        plain, _ = encoder(feats, lens)
        masked, _ = encoder(feats, lens, mask)
    assert not torch.allclose(plain, masked)
    with pytest.raises(SpeechkitError, match=r"mask: expected shape \(1, 10\)"):
        encoder(feats, lens, mask[:, :5])


def test_config_errors_and_dicts():
    assert encoder_config({"dim": 16, "num_heads": 2}).dim == 16
    with pytest.raises(SpeechkitError, match=r"unknown keys \['width'\]"):
        encoder_config({"width": 3})
    with pytest.raises(SpeechkitError, match="multiple of num_heads"):
        EncoderConfig(dim=10, num_heads=4)
