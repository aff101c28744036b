"""The audio-visual student: audio and lip-video front-ends, span masking, modality dropout, Transformer fusion.

*Audio-Visual Representation Learning via Knowledge Distillation from Speech Foundation Models* (Zhang et al.,
Pattern Recognition; arXiv 2502.05766), section 3 / Fig. 2 (AV-HuBERT's student layout):

* audio: 10 ms log-mel fbank, normalized per utterance, stacked 4 at a time (40 ms = the video's 25 fps) and
  projected linearly;
* video: a 3-D convolution (5 frames x 7 x 7, spatial stride 2) over the grayscale mouth crops, then a small 2-D
  ResNet per frame (basic blocks, stride 2 each, global average pool) and a linear projection;
* each stream's frames are masked in spans (a learned embedding per modality replaces them; wav2vec 2.0 span
  masks from ``speechkit.data.masking``) and, in training, one whole stream of an utterance is dropped (zeroed)
  with probability ``modality_dropout`` (the audio with ``audio_drop_prob``, else the video);
* the two streams are concatenated per frame, projected and encoded by a pre-norm Transformer; every layer's
  output is returned (``hidden[0]`` the fused input, ``hidden[L]`` the final normalized output) for the
  per-(teacher, layer) regression heads.

Dimension legend: ``B`` utterances, ``S`` audio samples, ``T`` frames at 25 fps, ``H x W`` mouth crop, ``D`` width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional, Sequence, Union

import torch
from torch import nn
from torch.nn import functional as F

from speechkit.data.batches import VIDEO_FRAME_SHIFT
from speechkit.data.masking import random_span_mask
from speechkit.errors import SpeechkitError, dataclass_fields_from
from speechkit.models.quantizer import stack_frames
from speechkit.tensors import lengths_to_mask

Modalities = Literal["audio", "video", "audio_video"]
FBANK_SHIFT_SAMPLES = 160  # 10 ms at 16 kHz
AUDIO_STACK = round(VIDEO_FRAME_SHIFT / 0.01)  # fbank frames per video frame (4)


@dataclass(frozen=True)
class AVStudentConfig:
    """Sizes and regularisation of :class:`AVStudent`.

    Args:
        num_mel_bins: fbank bins of the audio front-end.
        dim: ``D``, the fusion Transformer's width.
        num_layers: Transformer layers.
        num_heads: attention heads (``dim`` must divide by it).
        ffn_dim: feed-forward width.
        dropout: dropout in the Transformer.
        video_channels: output channels of the 3-D convolution.
        resnet_widths: channels of the 2-D ResNet stages (one basic block, stride 2, each).
        mask_prob: probability of a frame starting a masked span, per modality (used when masking is asked for).
        mask_span: frames per masked span.
        modality_dropout: training: probability of dropping one whole stream of an utterance.
        audio_drop_prob: of the dropped streams, the share that is audio (the rest video).
        max_length_mismatch: audio and video of an utterance may differ by this many 25 fps frames.
    """

    num_mel_bins: int = 40
    dim: int = 128
    num_layers: int = 4
    num_heads: int = 4
    ffn_dim: int = 256
    dropout: float = 0.1
    video_channels: int = 16
    resnet_widths: tuple[int, ...] = (16, 32)
    mask_prob: float = 0.1
    mask_span: int = 5
    modality_dropout: float = 0.5
    audio_drop_prob: float = 0.5
    max_length_mismatch: int = 2

    def __post_init__(self) -> None:
        if min(self.num_mel_bins, self.dim, self.num_layers, self.num_heads, self.ffn_dim, self.video_channels,
               self.mask_span, *self.resnet_widths, 1) < 1 or not self.resnet_widths:
            raise SpeechkitError(f"student sizes must be >= 1 (and resnet_widths non-empty), got {self}")
        if self.dim % self.num_heads:
            raise SpeechkitError(f"student dim {self.dim} must be a multiple of num_heads {self.num_heads}")
        for name in ("mask_prob", "modality_dropout", "audio_drop_prob", "dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SpeechkitError(f"student {name}: expected a value in [0, 1], got {getattr(self, name)}")


def student_config(value: Union[AVStudentConfig, Mapping[str, Any]]) -> AVStudentConfig:
    """An ``AVStudentConfig`` from itself or its fields as a dict (a checkpoint's hyper-parameters)."""
    if isinstance(value, AVStudentConfig):
        return value
    values = dataclass_fields_from(value, AVStudentConfig, "student")
    if "resnet_widths" in values:
        values["resnet_widths"] = tuple(values["resnet_widths"])
    return AVStudentConfig(**values)


def fbank_frames(samples: torch.Tensor) -> torch.Tensor:
    """10 ms fbank frames of ``samples`` at 16 kHz (Lhotse, ``snip_edges=False``): ``floor((S + 80) / 160)``."""
    return torch.div(samples + FBANK_SHIFT_SAMPLES // 2, FBANK_SHIFT_SAMPLES, rounding_mode="floor")


def audio_frames(samples: torch.Tensor) -> torch.Tensor:
    """25 fps frames of the audio front-end: ``ceil(fbank_frames / 4)``."""
    return torch.div(fbank_frames(samples) + AUDIO_STACK - 1, AUDIO_STACK, rounding_mode="floor")


class AudioFrontend(nn.Module):
    """Waveform ``(B, S)`` at 16 kHz -> ``(B, T, D)`` at 25 fps: fbank, per-utterance normalization, 4-stack, linear."""

    def __init__(self, num_mel_bins: int, dim: int) -> None:
        super().__init__()
        from lhotse.features.kaldi.layers import Wav2LogFilterBank

        self.fbank = Wav2LogFilterBank(num_filters=num_mel_bins)  # Lhotse's Fbank defaults (no dither)
        self.project = nn.Linear(AUDIO_STACK * num_mel_bins, dim)

    def forward(self, waveform: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            feats = self.fbank(waveform.float())  # (B, T_fbank, F)
        frames = fbank_frames(lens).clamp(max=feats.shape[1])
        return self.project(stack_frames(feats, frames)), audio_frames(lens)  # (B, T, D), (B,)


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): two 3x3 convolutions with batch norm, a strided 1x1 shortcut."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels_out)
        self.shortcut = nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, stride, bias=False),
                                      nn.BatchNorm2d(channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(out)) + self.shortcut(x))


class VisualFrontend(nn.Module):
    """Mouth crops ``(B, T, H, W)`` in [0, 1] -> ``(B, T, D)``: 3-D conv stem, per-frame ResNet, pool, linear."""

    def __init__(self, channels: int, widths: Sequence[int], dim: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(1, channels, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False),
                                  nn.BatchNorm3d(channels), nn.ReLU())
        blocks, width = [], channels
        for out in widths:
            blocks.append(BasicBlock(width, out))
            width = out
        self.resnet = nn.Sequential(*blocks)
        self.project = nn.Linear(width, dim)

    def forward(self, video: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        keep = lengths_to_mask(lens, video.shape[1]).to(video.dtype)  # (B, T)
        x = self.stem((video * keep[:, :, None, None]).unsqueeze(1))  # (B, C, T, H', W')
        x = x * keep[:, None, :, None, None]
        b, c, t, h, w = x.shape
        x = self.resnet(x.transpose(1, 2).reshape(b * t, c, h, w))  # (B T, C', h, w)
        x = x.mean(dim=(2, 3)).reshape(b, t, -1)
        return self.project(x)


def sinusoids(length: int, dim: int) -> torch.Tensor:
    """``(length, dim)`` sinusoidal positions (Vaswani et al. 2017, section 3.5)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    scale = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * scale)
    table[:, 1::2] = torch.cos(position * scale)[:, : dim // 2]
    return table


def check_durations(audio: torch.Tensor, video: torch.Tensor, tolerance: int,
                    ids: Optional[Sequence[str]] = None) -> None:
    """Audio and video frames ``(B,)`` of each utterance agree within ``tolerance`` frames, else one clear error."""
    bad = ((audio - video).abs() > tolerance).nonzero().flatten().tolist()
    if bad:
        i = bad[0]
        name = repr(ids[i]) if ids is not None else f"#{i}"
        raise SpeechkitError(f"utterance {name}: audio lasts {int(audio[i])} frames at 25 fps but its video "
                             f"{int(video[i])} frames; audio and video must cover the same time (tolerance "
                             f"{tolerance} frames)")


def _fit_length(x: torch.Tensor, length: int) -> torch.Tensor:
    """Pad with zeros or cut ``(B, T, D)`` to ``length`` frames."""
    return F.pad(x, (0, 0, 0, length - x.shape[1])) if x.shape[1] < length else x[:, :length]


class AVStudent(nn.Module):
    """Audio + mouth video -> per-layer hidden states at 25 fps (see the module docstring)."""

    def __init__(self, config: AVStudentConfig) -> None:
        super().__init__()
        self.config = config
        self.audio = AudioFrontend(config.num_mel_bins, config.dim)
        self.video = VisualFrontend(config.video_channels, config.resnet_widths, config.dim)
        self.audio_mask = nn.Parameter(torch.empty(config.dim).uniform_())
        self.video_mask = nn.Parameter(torch.empty(config.dim).uniform_())
        self.fuse = nn.Sequential(nn.LayerNorm(2 * config.dim), nn.Linear(2 * config.dim, config.dim))
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(config.dim, config.num_heads, config.ffn_dim, config.dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(config.num_layers)
        ])
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, waveform: Optional[torch.Tensor], waveform_lens: Optional[torch.Tensor],
                video: Optional[torch.Tensor], video_lens: Optional[torch.Tensor],
                modalities: Modalities = "audio_video", mask: bool = False,
                ids: Optional[Sequence[str]] = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Hidden states (``num_layers + 1`` tensors ``(B, T, D)``) and valid frames ``(B,)``.

        Args:
            waveform: ``(B, S)`` 16 kHz audio; may be ``None`` for ``modalities="video"``.
            waveform_lens: ``(B,)`` samples.
            video: ``(B, T, H, W)`` mouth crops; may be ``None`` for ``modalities="audio"``.
            video_lens: ``(B,)`` frames.
            modalities: the streams the student sees; the other one is zeroed (the output does not depend on it).
            mask: span-mask each stream (pretraining).
            ids: cut ids, to name an utterance in an error.
        """
        audio, video_feats, lens = self._streams(waveform, waveform_lens, video, video_lens, modalities, ids)
        if mask:
            audio = self._mask(audio, lens, self.audio_mask)
            video_feats = self._mask(video_feats, lens, self.video_mask)
        if self.training and modalities == "audio_video" and self.config.modality_dropout > 0:
            audio, video_feats = self._drop_modality(audio, video_feats)
        keep = lengths_to_mask(lens, audio.shape[1])  # (B, T)
        x = self.fuse(torch.cat([audio, video_feats], -1))
        x = x + sinusoids(x.shape[1], x.shape[2]).to(x)
        hidden = [x]
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=~keep)
            hidden.append(x)
        hidden[-1] = self.norm(x)
        return hidden, lens

    def _streams(self, waveform: Optional[torch.Tensor], waveform_lens: Optional[torch.Tensor],
                 video: Optional[torch.Tensor], video_lens: Optional[torch.Tensor], modalities: Modalities,
                 ids: Optional[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both streams' features ``(B, T, D)`` on the common time axis (the video's when present) and lengths."""
        if modalities not in ("audio", "video", "audio_video"):
            raise SpeechkitError(f"modalities: expected audio, video or audio_video, got {modalities!r}")
        if modalities != "audio" and (video is None or video_lens is None):
            raise SpeechkitError(f"modalities={modalities!r} needs video, but the batch has none (set the data's "
                                 "video field, or use modalities: audio)")
        if modalities != "video" and (waveform is None or waveform_lens is None):
            raise SpeechkitError(f"modalities={modalities!r} needs audio, but the batch has none")
        if video is not None and (video.dim() != 4 or video_lens is None or video_lens.shape[0] != video.shape[0]):
            raise SpeechkitError(f"video: expected (B, T, H, W) frames with (B,) lengths, got "
                                 f"{tuple(video.shape)}")
        if waveform is not None and waveform.dim() != 2:
            raise SpeechkitError(f"audio: expected a (B, S) waveform batch, got {tuple(waveform.shape)}")
        if modalities == "audio":
            audio, lens = self.audio(waveform, waveform_lens)
            return audio, torch.zeros_like(audio), lens
        video_feats = self.video(video.float(), video_lens)
        if modalities == "video":
            return torch.zeros_like(video_feats), video_feats, video_lens
        audio, audio_lens = self.audio(waveform, waveform_lens)
        check_durations(audio_lens, video_lens, self.config.max_length_mismatch, ids)
        return _fit_length(audio, video.shape[1]), video_feats, video_lens

    def _mask(self, x: torch.Tensor, lens: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """Replace span-masked valid frames of ``x`` ``(B, T, D)`` by ``embedding``."""
        if self.config.mask_prob == 0:
            return x
        rows = []
        for n in lens.tolist():
            row = torch.zeros(0, dtype=torch.bool)
            if n > 0:
                row = random_span_mask(n, self.config.mask_prob, min(self.config.mask_span, n))
            rows.append(F.pad(row, (0, x.shape[1] - n)))
        masked = torch.stack(rows).to(x.device)  # (B, T)
        return torch.where(masked.unsqueeze(-1), embedding.to(x.dtype), x)

    def _drop_modality(self, audio: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero the audio or the video stream of each utterance with probability ``modality_dropout``."""
        batch = audio.shape[0]
        drop = torch.rand(batch, device=audio.device) < self.config.modality_dropout
        audio_side = torch.rand(batch, device=audio.device) < self.config.audio_drop_prob
        keep_audio = ~(drop & audio_side)
        keep_video = ~(drop & ~audio_side)
        return audio * keep_audio[:, None, None], video * keep_video[:, None, None]
