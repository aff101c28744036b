"""``speechkit scorer-confidences MODEL CUTS OUT``: a scorer's per-frame confidences stored on cuts, for Ask2Mask.

*Ask2Mask: Guided Data Selection for Masked Speech Modeling* (Baskar et al., IEEE J-STSP 2022, section 3;
``../shared/papers/speech.md`` section 3 [P]): the scorer is a frozen ASR model; the confidence of frame ``t`` is
``c_t = max_k p(k | x, t)`` over the whole output vocabulary, blank included, and the utterance confidence is
``u = mean_t c_t``. The scorer here is any speechkit task with ``frame_posteriors(feats, lens)`` (the CTC model
``speechkit.tasks.ctc_finetune.CTCFinetune``). Whisper is refused: its decoder's token posteriors are not tied to
encoder frames (an alignment through cross-attention would be needed, which is not implemented).

Each cut of OUT carries ``confidence``, a Lhotse ``TemporalArray`` (one float per frame, ``frame_shift`` seconds
apart: the scorer's own frame rate, or ``--frame_shift`` by linear interpolation), and ``utterance_confidence``. The
arrays are ``.npy`` files in the folder ``<OUT without .jsonl.gz>_confidence/`` beside OUT; the folder is built aside
and moved into place, then OUT is written to a temporary file and renamed: a failed run leaves no partial OUT.
``speechkit.data.masked`` resamples the arrays to the masked encoder's frame count when it loads them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Optional

import torch
from lhotse import CutSet
from lhotse.features.io import NumpyFilesWriter

from speechkit.checkpoints import load_checkpoint, load_task, staged_folder, task_class
from speechkit.commands import command
from speechkit.data import DataConfig, SpeechDataset, load_cuts
from speechkit.data.manifests import write_cuts_atomic
from speechkit.data.masked import CONFIDENCE_FIELD, UTTERANCE_CONFIDENCE_FIELD, resample_frames
from speechkit.errors import SpeechkitError
from speechkit.progress import progress_bar

log = logging.getLogger(__name__)

WHISPER_REFUSAL = ("Whisper scorers are not supported: Whisper's decoder gives token posteriors that are not tied "
                   "to encoder frames; use a CTC scorer (speechkit.tasks.ctc_finetune.CTCFinetune, e.g. "
                   "speechkit fit -c conf/ctc/scorer.yaml)")


def load_scorer(model: str) -> Any:
    """The scorer task of a checkpoint, in eval mode; Whisper (a folder, ``ct2:``, a Whisper task) is refused."""
    path = Path(model)
    if model.startswith("ct2:") or path.is_dir():  # a Whisper model name or a Hugging Face / CTranslate2 folder
        raise SpeechkitError(f"{model}: {WHISPER_REFUSAL}")
    cls = task_class(load_checkpoint(path), path)
    if "whisper" in cls.__name__.lower():
        raise SpeechkitError(f"{model}: a {cls.__name__} checkpoint: {WHISPER_REFUSAL}")
    if not hasattr(cls, "frame_posteriors"):
        raise SpeechkitError(f"{model}: a {cls.__name__} checkpoint has no frame_posteriors (per-frame output "
                             "posteriors); a scorer is a CTC model such as speechkit.tasks.ctc_finetune.CTCFinetune")
    return load_task(path).eval()


def frame_confidences(scorer: Any, batch: Any) -> list[torch.Tensor]:
    """``max_k p(k | x, t)`` per valid frame of each utterance of a ``SpeechBatch``: ``(T'_b,)`` tensors."""
    posteriors, lens = scorer.frame_posteriors(batch.inputs, batch.input_lens)  # (B, T', V), (B,)
    best = posteriors.max(-1).values.float().cpu()  # (B, T')
    return [best[row, :length] for row, length in enumerate(lens.tolist())]


def confidence_folder(out: Path) -> Path:
    """``exp/x/cuts_train.jsonl.gz`` -> ``exp/x/cuts_train_confidence``."""
    name = out.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return out.with_name(f"{name}_{CONFIDENCE_FIELD}")


def score_cuts(scorer: Any, cuts: CutSet, writer: NumpyFilesWriter, final_folder: Path,
               frame_shift: Optional[float], batch_cuts: int) -> list[Any]:
    """Every cut with its ``confidence`` TemporalArray (stored by ``writer``) and ``utterance_confidence``."""
    dataset = SpeechDataset(DataConfig(input="fbank", num_mel_bins=scorer.encoder.config.num_mel_bins))
    source_shift = float(scorer.frame_shift)
    by_id, ids, scored = {cut.id: cut for cut in cuts}, list(cuts.ids), []
    for start in progress_bar(range(0, len(ids), batch_cuts), desc="scorer-confidences", unit="batch"):
        batch = dataset[cuts.subset(cut_ids=ids[start:start + batch_cuts])]
        for cut_id, values in zip(batch.cut_ids, frame_confidences(scorer, batch)):
            cut = by_id[cut_id]
            shift = source_shift if frame_shift is None else frame_shift
            if frame_shift is not None:
                values = resample_frames(values, max(1, round(cut.duration / frame_shift)))
            array = writer.store_array(cut.id, values.numpy(), frame_shift=shift, temporal_dim=0, start=cut.start)
            array.array.storage_path = str(final_folder)
            scored.append(cut.with_custom(CONFIDENCE_FIELD, array)
                          .with_custom(UTTERANCE_CONFIDENCE_FIELD, float(values.mean())))
    order = {cut_id: i for i, cut_id in enumerate(ids)}
    return sorted(scored, key=lambda cut: order[cut.id])


@command(positional=("model", "cuts", "out"))
def scorer_confidences(model: str, cuts: str, out: str, *, frame_shift: Optional[float] = None,
                       batch_cuts: int = 16) -> None:
    """Store a scorer's per-frame confidences (max posterior) and their mean on every cut of a manifest.

    Args:
        model: a CTC scorer checkpoint (``CTCFinetune`` ``.ckpt``); Whisper is refused (see the module docstring).
        cuts: the cut manifest to score (MonoCuts, e.g. the pretraining set).
        out: the new manifest (``.jsonl.gz``); arrays go to ``<out stem>_confidence/`` beside it.
        frame_shift: seconds between stored frames (default: the scorer's, 0.04 for ``CTCFinetune``).
        batch_cuts: cuts per forward pass.

    Examples:
        speechkit scorer-confidences exp/a2m/scorer.ckpt exp/a2m/pretrain/cuts_train.jsonl.gz exp/a2m/scored.jsonl.gz
    """
    begin = time.perf_counter()
    if frame_shift is not None and frame_shift <= 0:
        raise SpeechkitError(f"frame_shift: expected > 0 seconds, got {frame_shift}")
    out_path = Path(out)
    if not out.endswith((".jsonl.gz", ".jsonl")):
        raise SpeechkitError(f"out {out}: expected a .jsonl.gz or .jsonl cut manifest name")
    scorer = load_scorer(model)
    cut_set = load_cuts(cuts, "cuts").to_eager()
    mixed = [cut.id for cut in cut_set if not hasattr(cut, "with_custom")]
    if mixed:
        raise SpeechkitError(f"cuts {cuts}: {len(mixed)} cuts are not single-recording cuts (first {mixed[0]!r}); "
                             "score the clean cuts before mixing noise into them")
    cut_set = cut_set.resample(16000)
    final_folder = confidence_folder(out_path).resolve()
    with torch.inference_mode(), staged_folder(final_folder) as staging:
        with NumpyFilesWriter(str(staging)) as writer:
            scored = score_cuts(scorer, cut_set, writer, final_folder, frame_shift, batch_cuts)
    write_cuts_atomic(CutSet.from_cuts(scored), out_path)
    mean = sum(cut.custom[UTTERANCE_CONFIDENCE_FIELD] for cut in scored) / max(len(scored), 1)
    print(f"scorer-confidences: {len(scored)} cuts scored by {model} (mean utterance confidence {mean:.3f}) in "
          f"{time.perf_counter() - begin:.1f} s -> {out} (arrays in {final_folder})")
