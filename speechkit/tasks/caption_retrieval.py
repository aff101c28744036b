"""A captioner as an audio-text retriever: every (audio, caption) pair scored by the caption's mean token loss.

*Killing two birds with one stone: Can an audio captioning system also be used for audio-text retrieval?* (Labbé,
Pellegrini, Pinquier, DCASE 2023), section 2: ``L(a, c) = -(1/|c|) sum_i log p(c_i | c_<i, a)``, teacher-forced,
mean over the caption's tokens (``<eos>`` included), no label smoothing. :func:`pairwise_caption_loss` computes the
``(A, C)`` matrix in batches of pairs, encoding each audio once; the scores, their normalisation and the metrics are
``speechkit.metrics.caption_retrieval``. :func:`caption_retrieval_table` gives the four rows of the paper's
comparison (T2A / A2T, raw / normalised) from any loss matrix, so a dual encoder's ``-similarity`` fits too.

Dimension legend: ``A`` audios, ``C`` captions, ``T`` feature frames, ``F`` feature bins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from lhotse import CutSet

from speechkit.data.captions import caption_pairs
from speechkit.data.config import DataConfig
from speechkit.data.dataset import SpeechDataset
from speechkit.errors import SpeechkitError
from speechkit.metrics.caption_retrieval import caption_retrieval_metrics
from speechkit.models.captioner import Captioner
from speechkit.progress import progress_bar
from speechkit.text.words import PAD


class CaptionScorer(Protocol):
    """What :func:`pairwise_caption_loss` needs of a captioner task (``AudioCaptioner`` has it)."""

    model: Captioner

    def tokenize(self, text: str) -> list[int]: ...


def pad_features(feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``A`` tensors ``(T_a, F)`` -> padded ``(A, T, F)`` (padding repeats each one's minimum, as the data
    module pads fbank) and lengths ``(A,)``."""
    if not feats or any(f.dim() != 2 or f.shape[1] != feats[0].shape[1] or not len(f) for f in feats):
        shapes = [tuple(f.shape) for f in feats[:3]]
        raise SpeechkitError(f"audios: expected one or more non-empty (frames, bins) feature tensors with the same "
                             f"bins, got shapes {shapes}{' ...' if len(feats) > 3 else ''}")
    lens = torch.tensor([len(f) for f in feats])
    out = torch.stack([torch.nn.functional.pad(f, (0, 0, 0, int(lens.max()) - len(f)), value=float(f.min()))
                       for f in feats])
    return out, lens


@torch.no_grad()
def pairwise_caption_loss(
    captioner: CaptionScorer,
    audios: Sequence[torch.Tensor],
    captions: Sequence[str],
    batch_pairs: int = 512,
    audio_batch: int = 16,
    progress: bool = False,
) -> torch.Tensor:
    """The ``(A, C)`` matrix of ``L(a, c)`` (see the module docstring), in eval mode.

    Args:
        captioner: an ``AudioCaptioner`` (anything with ``model: Captioner`` and ``tokenize``).
        audios: ``A`` feature tensors ``(T_a, F)`` as the captioner was trained on.
        captions: ``C`` captions.
        batch_pairs: pairs per decoder forward pass.
        audio_batch: audios encoded at once.
        progress: show a bar over the pairs.

    Returns:
        ``(A, C)`` float32 on the CPU.
    """
    if not captions:
        raise SpeechkitError("captions: expected one or more captions, got none")
    if batch_pairs < 1 or audio_batch < 1:
        raise SpeechkitError(f"batch_pairs={batch_pairs}, audio_batch={audio_batch}: expected >= 1")
    model, was_training = captioner.model, captioner.model.training
    device = next(model.parameters()).device
    ids = [torch.tensor(captioner.tokenize(c)) for c in captions]
    tokens = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=PAD).to(device)  # (C, U)
    token_lens = torch.tensor([len(i) for i in ids], device=device)
    out = torch.empty(len(audios), len(captions))
    model.eval()
    try:
        with progress_bar(desc="caption retrieval: pair losses", total=len(audios) * len(captions), unit="pair",
                          enabled=progress) as bar:
            for start in range(0, len(audios), audio_batch):
                feats, lens = pad_features(audios[start:start + audio_batch])
                memory, memory_pad = model.encode(feats.to(device), lens.to(device))  # (a, T', D)
                a = len(memory)
                step = max(1, batch_pairs // a)
                for c0 in range(0, len(captions), step):
                    c = min(step, len(captions) - c0)
                    width = int(token_lens[c0:c0 + c].max())
                    pair_tokens = tokens[c0:c0 + c, :width].repeat(a, 1)  # (a*c, U): audio-major
                    pair_lens = token_lens[c0:c0 + c].repeat(a)
                    pair_memory = memory.repeat_interleave(c, 0)  # (a*c, T', D)
                    pair_pad = memory_pad.repeat_interleave(c, 0)
                    losses, mask = model.token_losses(pair_memory, pair_pad, pair_tokens, pair_lens)
                    out[start:start + a, c0:c0 + c] = (losses.sum(1) / mask.sum(1)).view(a, c).float().cpu()
                    bar.update(a * c)
    finally:
        model.train(was_training)
    return out


def cut_features(cuts: CutSet, data: DataConfig, chunk: int = 32) -> tuple[list[str], list[torch.Tensor]]:
    """Cut ids and unpadded features ``(T, F)`` of every cut, in the CutSet's order, as ``data`` computes them."""
    dataset = SpeechDataset(data)
    cut_list = list(cuts.resample(data.sampling_rate))
    features: dict[str, torch.Tensor] = {}
    for start in range(0, len(cut_list), chunk):
        batch = dataset[CutSet.from_cuts(cut_list[start:start + chunk])]
        for cut_id, feats, n in zip(batch.cut_ids, batch.inputs, batch.input_lens):
            features[cut_id] = feats[:n]
    ids = [cut.id for cut in cut_list]
    return ids, [features[i] for i in ids]


def caption_retrieval_table(loss: torch.Tensor, audio_of_caption: Sequence[int]) -> dict[str, dict[str, float]]:
    """R@1/5/10 and mAP@10 of T2A and A2T, each raw and normalised (``speechkit.metrics.caption_retrieval``)."""
    return {
        f"{direction} {'normalised' if normalize else 'raw'}":
            caption_retrieval_metrics(loss, audio_of_caption, direction, normalize=normalize)
        for direction in ("t2a", "a2t") for normalize in (False, True)
    }


def captioner_retrieval(captioner: CaptionScorer, cuts: CutSet, data: DataConfig, batch_pairs: int = 512,
                        progress: bool = True) -> tuple[torch.Tensor, dict[str, dict[str, float]]]:
    """Score every audio of ``cuts`` against every caption of ``cuts``; returns the losses and the table."""
    _, captions, owner = caption_pairs(cuts)
    _, feats = cut_features(cuts, data)
    loss = pairwise_caption_loss(captioner, feats, captions, batch_pairs=batch_pairs, progress=progress)
    return loss, caption_retrieval_table(loss, owner)
