"""Scoring a speech-out model (``FlowOmni``): its generated answers spoken and transcribed, and their mel frames.

As Flow-Omni (Yuan et al. 2024, section 4) reports WER of the generated speech: each answer's mel frames are turned
into a waveform by Griffin-Lim (:func:`speechkit.models.griffin_lim.griffin_lim`), transcribed by a Whisper model
(speechkit's short-form decoder, Whisper's defaults) and scored against the answer text
(:func:`speechkit.metrics.wer.score_wer`, raw and normalized). The mel distance is the mean absolute log-mel
difference over the frames the generated and the reference answer both have (one number per answer, averaged),
reported with the length ratio (generated frames / reference frames over the set). A PNG shows one generated mel
above its reference.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from speechkit.checkpoints import temporary_name  # noqa: E402
from speechkit.data.spoken_answers import SpokenAnswerBatch  # noqa: E402
from speechkit.errors import SpeechkitError  # noqa: E402
from speechkit.metrics.wer import WERReport, score_wer  # noqa: E402
from speechkit.models.ctranslate2 import WhisperBundle  # noqa: E402
from speechkit.models.griffin_lim import griffin_lim  # noqa: E402
from speechkit.models.whisper_decode import DecodeOptions, decode_short, short_features  # noqa: E402


def mel_distance(generated: Tensor, reference: Tensor) -> float:
    """Mean absolute difference of ``(T1, F)`` and ``(T2, F)`` log-mel frames over their first ``min(T1, T2)``;
    ``inf`` when the generated answer has no frame."""
    if generated.dim() != 2 or reference.dim() != 2 or generated.shape[1] != reference.shape[1]:
        raise SpeechkitError(f"mel_distance: expected (T, F) frames with the same F, got {tuple(generated.shape)} "
                             f"and {tuple(reference.shape)}")
    frames = min(generated.shape[0], reference.shape[0])
    return float((generated[:frames] - reference[:frames]).abs().mean()) if frames else float("inf")


def transcribe_waveforms(asr: WhisperBundle, waveforms: list[Tensor], language: str | None = "en") -> list[str]:
    """Whisper's transcripts of 16 kHz waveforms of at most 30 s (an empty waveform transcribes to ``""``)."""
    keep = [i for i, w in enumerate(waveforms) if w.numel() > 0]
    texts = [""] * len(waveforms)
    if keep:
        features, lengths = short_features(asr, [waveforms[i].numpy() for i in keep], "30s")
        for i, decoded in zip(keep, decode_short(asr, features, lengths, DecodeOptions(), language)):
            texts[i] = decoded.text.strip()
    return texts


def plot_mels(generated: Tensor, reference: Tensor, path: str | Path, title: str = "") -> Path:
    """A PNG of a generated ``(T1, F)`` mel above its reference ``(T2, F)``, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    low, high = float(reference.min()), float(reference.max())
    for axis, mels, name in zip(axes, (generated, reference), ("generated", "reference")):
        axis.imshow(mels.T.float().numpy(), origin="lower", aspect="auto", vmin=low, vmax=high)
        axis.set_ylabel(f"{name}\nmel bin")
    axes[1].set_xlabel("frame (10 ms)")
    figure.suptitle(title)
    figure.tight_layout()
    temporary = temporary_name(path)
    figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)
    os.replace(temporary, path)
    return path


@dataclass
class SpokenAnswerScores:
    """WER of the transcribed answers, mean mel distance, length ratio and one row per answer."""

    wer: WERReport
    mel_distance: float
    length_ratio: float
    rows: list[dict[str, Any]] = field(default_factory=list)


def evaluate_spoken_answers(task: Any, batches: Iterable[SpokenAnswerBatch], asr: WhisperBundle,
                            language: str | None = "en", plot: str | Path | None = None,
                            seed: int = 0) -> SpokenAnswerScores:
    """Generate, speak, transcribe and score every answer of ``batches`` (see the module docstring).

    Args:
        task: a ``FlowOmni`` (anything with its ``generate``).
        batches: spoken-answer batches (``SpokenAnswerDataModule``'s).
        asr: the Whisper that transcribes the generated speech (``load_whisper``).
        language: of the answers (transcription and normalizer).
        plot: where to write the PNG of the first answer's generated and reference mels.
        seed: of the ODE sampler's noise.
    """
    generator, rows, generated_frames, reference_frames = torch.Generator().manual_seed(seed), [], 0, 0
    task.eval()
    for batch in batches:
        answers = task.generate(batch.speech.inputs, batch.speech.input_lens, generator=generator)
        waves = [griffin_lim(a.mels) if a.mels.shape[0] >= 2 else torch.zeros(0) for a in answers]
        heard = transcribe_waveforms(asr, waves, language)
        for row, (answer, text) in enumerate(zip(answers, heard)):
            reference = batch.answer_mels[row, : int(batch.answer_mel_lens[row])].cpu()
            mels = answer.mels.cpu()
            if plot is not None and not rows:
                plot_mels(mels, reference, plot, f"{batch.speech.cut_ids[row]}: {batch.speech.texts[row]!r}")
            generated_frames, reference_frames = generated_frames + mels.shape[0], reference_frames + len(reference)
            rows.append({"id": batch.speech.cut_ids[row], "ref": batch.speech.texts[row], "text": answer.text,
                         "heard": text, "mel_distance": mel_distance(mels, reference)})
    if not rows:
        raise SpeechkitError("evaluate_spoken_answers: no batch to evaluate")
    report = score_wer([r["ref"] for r in rows], [r["heard"] for r in rows], language)
    distance = sum(r["mel_distance"] for r in rows) / len(rows)
    return SpokenAnswerScores(report, distance, generated_frames / max(reference_frames, 1), rows)
