"""``speechkit self-data TEACHER CUTS OUT``: a cut manifest whose transcripts are the teacher's own, where verified.

Self-data distillation (*Self-Data Distillation for Recovering Quality in Pruned Large Language Models*, Thangarasa
et al. 2024; :mod:`speechkit.distill.self_data`): the unpruned model transcribes every cut; a transcript equal to the
reference after the language's normalization replaces the supervision text (the original is kept in
``custom["original_text"]``), any other leaves it. Fine-tune the pruned model on OUT as on any manifest.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional

from lhotse import CutSet
from lhotse.utils import fastcopy

from speechkit.commands import command
from speechkit.data import load_cuts
from speechkit.data.manifests import write_cuts_atomic
from speechkit.distill.self_data import accept_rewrites, same_normalized
from speechkit.errors import SpeechkitError
from speechkit.inference.transcribe import transcribe
from speechkit.metrics.wer import resolve_normalizer
from speechkit.models.whisper_seq2seq import metric_language

ORIGINAL_TEXT = "original_text"


def _text(cut) -> str:
    return " ".join(s.text for s in cut.supervisions if s.text)


@command(positional=("teacher", "cuts", "out"))
def self_data(teacher: str, cuts: str, out: str, *, language: Optional[str] = None, batch_size: int = 16,
              max_new_tokens: int = 128, progress: bool = True) -> dict:
    """Rewrite a manifest's transcripts with the teacher's own where they agree after normalization.

    Args:
        teacher: the unpruned Whisper: ``ct2:tiny.en``, a ``.ckpt`` of ``speechkit fit``, a Hugging Face folder.
        cuts: the training cut manifest (one supervision with text per cut).
        out: the new manifest (``.jsonl.gz``), written atomically.
        language: the data's language (default: the checkpoint's, English for English-only models); it also picks
            the normalizer that verifies a rewrite.
        batch_size: cuts decoded together.
        max_new_tokens: decoding length limit.
        progress: show a progress bar.

    Examples:
        speechkit self-data exp/fsdd/best.ckpt exp/fsdd/manifests/cuts_train.jsonl.gz exp/fsdd/cuts_train_self.jsonl.gz
    """
    source = load_cuts(cuts, "cuts").to_eager()
    references = {cut.id: _text(cut) for cut in source}
    missing = [cut_id for cut_id, text in references.items() if not text]
    if missing:
        raise SpeechkitError(f"{cuts}: {len(missing)} cuts without a transcript (first: {missing[0]})")
    several = [cut.id for cut in source if len(cut.supervisions) != 1]
    if several:
        raise SpeechkitError(f"{cuts}: {len(several)} cuts do not have exactly one supervision (first: {several[0]}); "
                             "self-data rewrites one transcript per cut")
    with tempfile.TemporaryDirectory(dir=Path(out).parent if Path(out).parent.exists() else None) as folder:
        transcripts = Path(folder) / "teacher.jsonl"
        transcribe(teacher, [cuts], out=str(transcripts), language=language, batch_size=batch_size,
                   max_new_tokens=max_new_tokens, progress=progress)
        rewrites = {row["id"]: row["text"] for row in map(json.loads, transcripts.read_text().splitlines())}
    ids = list(references)
    normalize = resolve_normalizer(metric_language(language or "en"), "auto")
    targets = accept_rewrites([references[i] for i in ids], [rewrites.get(i, "") for i in ids],
                              same_normalized(normalize))
    rewritten = []
    for cut, text, ok in zip(source, targets.texts, targets.accepted):
        if ok:
            supervision = cut.supervisions[0]
            custom = {**(supervision.custom or {}), ORIGINAL_TEXT: supervision.text}
            cut = fastcopy(cut, supervisions=[fastcopy(supervision, text=text, custom=custom)])
        rewritten.append(cut)
    write_cuts_atomic(CutSet.from_cuts(rewritten), Path(out))
    summary = {"cuts": len(ids), "rewritten": sum(targets.accepted), "acceptance": round(targets.acceptance, 4),
               "untranscribed": len(ids) - len(rewrites), "out": out}
    print(json.dumps(summary))
    return summary
