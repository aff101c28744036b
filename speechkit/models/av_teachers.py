"""Frozen speech teachers for audio-visual distillation: every layer's hidden states from clean 16 kHz audio.

*Audio-Visual Representation Learning via Knowledge Distillation from Speech Foundation Models* (Zhang et al.,
arXiv 2502.05766), section 3: the teachers are frozen speech foundation models run on the clean audio; the student
regresses several of their layers. Three kinds here, each ``(waveform (B, S), samples (B,)) -> (hidden, lengths)``
with ``hidden[l]`` ``(B, T_l, D)`` for ``l = 0..num_layers`` (0 = the input to the first layer, as Hugging Face's
``hidden_states``):

* :class:`WhisperTeacher`: a Whisper encoder (supervised; ``ct2:tiny.en`` from the packaged weights), on Whisper
  log-mel without padding to 30 s (``speechkit.models.whisper_encoder.variable_length_input``); 50 Hz.
* :class:`SpeechEncoderTeacher`: speechkit's masked-speech-model Conformer (``MaskedSpeechPretrain``, self-supervised)
  on Lhotse fbank; 25 Hz.
* :class:`HFAudioTeacher`: any Hugging Face audio encoder with ``output_hidden_states`` (WavLM, HuBERT, wav2vec 2.0)
  on the per-utterance normalized waveform; 50 Hz.

A teacher never trains: its parameters do not require grad, it stays in eval mode whatever ``train()`` is called
with, and its forward runs under ``torch.no_grad``.

Dimension legend: ``B`` utterances, ``S`` samples, ``T`` teacher frames, ``D`` teacher width.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from speechkit.errors import SpeechkitError
from speechkit.models.speech_encoder import EncoderConfig, SpeechEncoder
from speechkit.tensors import lengths_to_mask

Hidden = tuple[list[torch.Tensor], torch.Tensor]


class FrozenTeacher(nn.Module):
    """Base: frozen parameters, always in eval mode, forward without gradient. Subclasses set ``dim``,
    ``num_layers``, ``frame_shift`` (seconds) and implement ``encode``."""

    dim: int
    num_layers: int
    frame_shift: float

    def freeze(self) -> None:
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenTeacher":
        return super().train(False)  # a teacher is never in training mode

    @torch.no_grad()
    def forward(self, waveform: torch.Tensor, lens: torch.Tensor) -> Hidden:
        if waveform.dim() != 2 or lens.shape != waveform.shape[:1]:
            raise SpeechkitError(f"teacher input: expected a (B, S) waveform and (B,) lengths, got "
                                 f"{tuple(waveform.shape)} and {tuple(lens.shape)}")
        return self.encode(waveform.float(), lens)

    def encode(self, waveform: torch.Tensor, lens: torch.Tensor) -> Hidden:
        raise NotImplementedError


def _capture(layers: nn.ModuleList, transpose: bool = False) -> tuple[list[torch.Tensor], list[Any]]:
    """Forward hooks collecting the input of ``layers[0]`` and every layer's output."""
    found: list[torch.Tensor] = []

    def keep(x: torch.Tensor) -> None:
        x = x[0] if isinstance(x, tuple) else x
        found.append(x.transpose(0, 1) if transpose else x)

    handles = [layers[0].register_forward_pre_hook(lambda module, args: keep(args[0]))]
    handles += [layer.register_forward_hook(lambda module, args, out: keep(out)) for layer in layers]
    return found, handles


class WhisperTeacher(FrozenTeacher):
    """A Whisper encoder on unpadded log-mel input (50 Hz frames)."""

    frame_shift = 0.02

    def __init__(self, name_or_path: str) -> None:
        super().__init__()
        from speechkit.models.pretrained import load_whisper

        bundle = load_whisper(name_or_path)
        self.encoder = bundle.model.get_encoder()
        self.num_mel_bins = int(bundle.model.config.num_mel_bins)
        self.dim, self.num_layers = int(bundle.model.config.d_model), len(self.encoder.layers)
        self.freeze()

    def encode(self, waveform: torch.Tensor, lens: torch.Tensor) -> Hidden:
        from lhotse.features.whisper_fbank import WhisperFbank, WhisperFbankConfig

        from speechkit.models.whisper_encoder import encoder_lengths, variable_length_input

        extractor = WhisperFbank(WhisperFbankConfig(num_filters=self.num_mel_bins))
        mels = [torch.as_tensor(extractor.extract(w[:n].cpu().numpy(), 16000)) for w, n in zip(waveform, lens.tolist())]
        mel_lens = torch.tensor([m.shape[0] for m in mels])
        feats = torch.nn.utils.rnn.pad_sequence(mels, batch_first=True).transpose(1, 2).to(waveform)  # (B, F, T)
        found, handles = _capture(self.encoder.layers)
        try:
            with variable_length_input(self.encoder, mel_lens):
                self.encoder(feats)
        finally:
            for handle in handles:
                handle.remove()
        found[-1] = self.encoder.layer_norm(found[-1])  # as Hugging Face's last hidden state
        return found, encoder_lengths(mel_lens).to(lens.device)


class SpeechEncoderTeacher(FrozenTeacher):
    """speechkit's masked-speech-model Conformer (``SpeechEncoder``) on Lhotse fbank (25 Hz frames)."""

    frame_shift = 0.04

    def __init__(self, config: EncoderConfig, weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        from lhotse.features.kaldi.layers import Wav2LogFilterBank

        self.fbank = Wav2LogFilterBank(num_filters=config.num_mel_bins)  # = Lhotse Fbank, as the data module's
        self.encoder = SpeechEncoder(config)
        missing, unexpected = self.encoder.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise SpeechkitError(f"teacher weights do not fit the encoder config (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
        self.dim, self.num_layers = config.dim, config.num_layers
        self.freeze()

    def encode(self, waveform: torch.Tensor, lens: torch.Tensor) -> Hidden:
        from speechkit.models.av_student import fbank_frames

        feats = self.fbank(waveform)  # (B, T, F)
        frames = fbank_frames(lens).clamp(max=feats.shape[1])
        found, handles = _capture(self.encoder.conformer.conformer_layers, transpose=True)  # layers see (T, B, D)
        try:
            _, out_lens = self.encoder(feats, frames)
        finally:
            for handle in handles:
                handle.remove()
        return found, out_lens


class HFAudioTeacher(FrozenTeacher):
    """A Hugging Face audio encoder (``AutoModel``: WavLM, HuBERT, wav2vec 2.0) on normalized waveforms."""

    frame_shift = 0.02

    def __init__(self, path: str) -> None:
        super().__init__()
        from transformers import AutoModel

        try:
            self.model = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as error:
            raise SpeechkitError(f"teacher {path!r}: cannot load a Hugging Face audio encoder ({error})") from error
        self.dim = int(self.model.config.hidden_size)
        self.num_layers = int(self.model.config.num_hidden_layers)
        self.freeze()

    def encode(self, waveform: torch.Tensor, lens: torch.Tensor) -> Hidden:
        keep = lengths_to_mask(lens, waveform.shape[1])
        count = lens.clamp(min=1)[:, None].to(waveform)
        mean = (waveform * keep).sum(1, keepdim=True) / count
        std = (((waveform - mean) * keep) ** 2).sum(1, keepdim=True).div(count).add(1e-7).sqrt()
        normalized = (waveform - mean) / std * keep  # Wav2Vec2FeatureExtractor's do_normalize, per utterance
        out = self.model(normalized, attention_mask=keep.long(), output_hidden_states=True)
        out_lens = self.model._get_feat_extract_output_lengths(lens).long()
        return list(out.hidden_states), out_lens
