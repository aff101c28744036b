"""Scoring a speech-out model (``FlowOmni``): its generated answers spoken and transcribed, and their mel frames.

As Flow-Omni (Yuan et al. 2024, section 4) reports WER of the generated speech: each answer's mel frames are turned
into a waveform by Griffin-Lim (:func:`speechkit.models.griffin_lim.griffin_lim`), transcribed by a Whisper model
(speechkit's short-form decoder, Whisper's defaults) and scored against the answer text
(:func:`speechkit.metrics.wer.score_wer`, raw and normalized). The mel distance is the mean absolute log-mel
difference over the frames the generated and the reference answer both have (one number per answer, averaged),
reported with the length ratio (generated frames / reference frames over the set). A PNG shows one generated mel
above its reference. ``speechkit eval-spoken-answers CKPT CUTS OUT`` scores a checkpoint on a manifest, per prompt
condition (clean / noisy / pitch of ``speechkit prepare spoken_qa_synth``).
"""

from __future__ import annotations

import json
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

from lhotse import CutSet  # noqa: E402

from speechkit.checkpoints import load_task, save_atomic, temporary_name  # noqa: E402
from speechkit.commands import command  # noqa: E402
from speechkit.data.config import DataConfig  # noqa: E402
from speechkit.data.dataset import SpeechDataset  # noqa: E402
from speechkit.data.manifests import load_cuts  # noqa: E402
from speechkit.data.spoken_answers import SpokenAnswerBatch, SpokenAnswerDataset  # noqa: E402
from speechkit.errors import SpeechkitError  # noqa: E402
from speechkit.metrics.wer import WERReport, score_wer  # noqa: E402
from speechkit.models.ctranslate2 import WhisperBundle  # noqa: E402
from speechkit.models.griffin_lim import griffin_lim  # noqa: E402
from speechkit.models.pretrained import load_whisper  # noqa: E402
from speechkit.models.whisper_decode import DecodeOptions, decode_short, short_features, unguarded  # noqa: E402
from speechkit.progress import progress_bar  # noqa: E402


def mel_distance(generated: Tensor, reference: Tensor) -> float:
    """Mean absolute difference of ``(T1, F)`` and ``(T2, F)`` log-mel frames over their first ``min(T1, T2)``;
    ``inf`` when the generated answer has no frame."""
    if generated.dim() != 2 or reference.dim() != 2 or generated.shape[1] != reference.shape[1]:
        raise SpeechkitError(f"mel_distance: expected (T, F) frames with the same F, got {tuple(generated.shape)} "
                             f"and {tuple(reference.shape)}")
    frames = min(generated.shape[0], reference.shape[0])
    return float((generated[:frames] - reference[:frames]).abs().mean()) if frames else float("inf")


def transcribe_waveforms(asr: WhisperBundle, waveforms: list[Tensor], language: str | None = "en",
                         options: DecodeOptions | None = None) -> list[str]:
    """Whisper's transcripts of 16 kHz waveforms of at most 30 s (an empty waveform transcribes to ``""``), decoded
    with ``options`` (default: Whisper's)."""
    keep = [i for i, w in enumerate(waveforms) if w.numel() > 0]
    texts = [""] * len(waveforms)
    if keep:
        features, lengths = short_features(asr, [waveforms[i].numpy() for i in keep], "30s")
        for i, decoded in zip(keep, decode_short(asr, features, lengths, options or DecodeOptions(), language)):
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
                            seed: int = 0, options: DecodeOptions | None = None) -> SpokenAnswerScores:
    """Generate, speak, transcribe and score every answer of ``batches`` (see the module docstring).

    Args:
        task: a ``FlowOmni`` (anything with its ``generate``).
        batches: spoken-answer batches (``SpokenAnswerDataModule``'s).
        asr: the Whisper that transcribes the generated speech (``load_whisper``).
        language: of the answers (transcription and normalizer).
        plot: where to write the PNG of the first answer's generated and reference mels.
        seed: of the ODE sampler's noise.
        options: how Whisper decodes (default: Whisper's defaults).
    """
    generator, rows, generated_frames, reference_frames = torch.Generator().manual_seed(seed), [], 0, 0
    task.eval()
    for batch in batches:
        answers = task.generate(batch.speech.inputs, batch.speech.input_lens, generator=generator)
        waves = [griffin_lim(a.mels) if a.mels.shape[0] >= 2 else torch.zeros(0) for a in answers]
        heard = transcribe_waveforms(asr, waves, language, options)
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


def _write_text(text: str, path: Path) -> None:
    save_atomic(text, path, save=lambda value, file: file.write(value.encode("utf-8")))


def _conditions(cuts: CutSet) -> dict[str, list[str]]:
    """Cut ids by the supervision's ``custom["condition"]`` (``spoken_qa_synth``'s clean / noisy / pitch), in
    manifest order; cuts without one are ``all``."""
    groups: dict[str, list[str]] = {}
    for cut in cuts:
        custom = (cut.supervisions[0].custom or {}) if cut.supervisions else {}
        groups.setdefault(str(custom.get("condition", "all")), []).append(cut.id)
    return groups


def _score_row(condition: str, scores: SpokenAnswerScores) -> dict[str, Any]:
    return {"condition": condition, "answers": len(scores.rows), "wer": scores.wer.wer, "wer_raw": scores.wer.wer_raw,
            "mel_distance": scores.mel_distance, "length_ratio": scores.length_ratio}


@command(positional=("checkpoint", "cuts", "out"))
def eval_spoken_answers(checkpoint: str, cuts: str, out: str, *, asr: str = "ct2:tiny.en", batch_cuts: int = 8,
                        max_cuts: int = 0, max_answer_steps: int | None = None, seed: int = 0,
                        language: str = "en", max_new_tokens: int = 64,
                        fallback: bool = False) -> list[dict[str, Any]]:
    """Generate the spoken answers of a manifest's prompts, transcribe them and score them, per prompt condition.

    Writes ``<out>/scores.json`` (one row per condition: WER normalized and raw, mel distance, length ratio),
    ``<out>/answers.jsonl`` (every answer: reference, generated text, what Whisper heard, mel distance) and
    ``<out>/mel_<condition>.png`` (the first answer's generated and reference mel), each atomically.

    Args:
        checkpoint: a ``FlowOmni`` checkpoint (``.ckpt``; flow or units speech head).
        cuts: a spoken-answer cut manifest (``speechkit prepare spoken_qa_synth``'s ``cuts_test.jsonl.gz``); cuts
            are grouped by their supervision's ``custom["condition"]``.
        out: the output folder.
        asr: the Whisper that transcribes the generated speech (``load_whisper``).
        batch_cuts: prompts per generation batch.
        max_cuts: score only the first ``max_cuts`` cuts of each condition (0 = all).
        max_answer_steps: answer steps generated at most (default: the checkpoint's ``max_answer_steps``).
        seed: of the flow head's ODE noise.
        language: of the answers (transcription and normalizer).
        max_new_tokens: Whisper tokens per answer at most (a spoken answer of a few seconds needs a few dozen).
        fallback: Whisper's temperature fallback and its loop / no-speech guards; off by default, one greedy
            decoding: generated audio that is not speech would otherwise be decoded up to six times (tens of
            seconds an answer on CPU).

    Examples:
        speechkit eval-spoken-answers exp/fo/flow/last.ckpt exp/fo/data/cuts_test.jsonl.gz exp/fo/eval --max_cuts 20
    """
    if batch_cuts < 1 or max_cuts < 0 or max_new_tokens < 1:
        raise SpeechkitError(f"batch_cuts {batch_cuts} and max_new_tokens {max_new_tokens} must be >= 1, max_cuts "
                             f"{max_cuts} >= 0")
    if not Path(checkpoint).is_file():
        raise SpeechkitError(f"checkpoint {checkpoint}: no such file (expected a FlowOmni .ckpt)")
    if not Path(cuts).is_file():
        raise SpeechkitError(f"cuts {cuts}: no such file (expected a spoken-answer cut manifest, .jsonl.gz)")
    task = load_task(checkpoint, **({} if max_answer_steps is None else {"max_answer_steps": max_answer_steps}))
    if not hasattr(task, "generate") or not hasattr(task, "frames_per_step"):
        raise SpeechkitError(f"{checkpoint}: a {type(task).__name__} checkpoint; expected a speech-out task "
                             "(speechkit.tasks.flow_omni.FlowOmni)")
    cut_set = load_cuts(cuts, "cuts").to_eager()
    config = DataConfig(input="whisper_fbank", num_mel_bins=task.hparams.num_mel_bins, text_field="answer")
    dataset = SpokenAnswerDataset(SpeechDataset(config, tokenizer=task.tokenize, pad_token_id=task.pad_token_id),
                                  task.frames_per_step)
    recognizer, folder, table, answers = load_whisper(asr), Path(out), [], []
    options = DecodeOptions(max_new_tokens=max_new_tokens)
    options = options if fallback else unguarded(options)
    for condition, ids in _conditions(cut_set).items():
        ids = ids[:max_cuts] if max_cuts else ids
        batches = (dataset[cut_set.subset(cut_ids=ids[i:i + batch_cuts])] for i in range(0, len(ids), batch_cuts))
        scores = evaluate_spoken_answers(task, progress_bar(batches, desc=f"spoken answers ({condition})",
                                                            total=-(-len(ids) // batch_cuts), unit="batch"),
                                         recognizer, language, folder / f"mel_{condition}.png", seed, options)
        table.append(_score_row(condition, scores))
        answers += [{"condition": condition, **row} for row in scores.rows]
        print(f"{condition:>8}: {len(ids)} answers, WER {100 * scores.wer.wer:.2f} % (raw "
              f"{100 * scores.wer.wer_raw:.2f} %), mel distance {scores.mel_distance:.3f}, length ratio "
              f"{scores.length_ratio:.2f}")
    _write_text("".join(json.dumps(row) + "\n" for row in answers), folder / "answers.jsonl")
    _write_text(json.dumps({"checkpoint": checkpoint, "cuts": cuts, "asr": asr, "scores": table}, indent=1) + "\n",
                folder / "scores.json")
    return table
