"""MUSAN noise, music and speech for noise mixing: a thin wrapper over ``lhotse.recipes.prepare_musan``.

``speechkit prepare musan <musan_dir> <out_dir> [--parts noise music]``

Layout (what Lhotse 1.33 reads): ``<dir>/{noise,music,speech}/<source>/*.wav``. Each part becomes one split of
recordings without supervisions (``cuts_noise.jsonl.gz``): the cuts are noise to mix in (``speechkit bench squtr
--noise <out>/cuts_noise.jsonl.gz``, SQuTR section 3.2's real noise; MUSAN is the usual stand-in for its 17
categories). Music is read without its vocal tracks' supervisions (Lhotse's ``use_vocals=False``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

from lhotse import CutSet, SupervisionSet

from speechkit.data.corpora.base import open_target, require_dir, write_corpus
from speechkit.data.corpora.checks import MIN_DURATION
from speechkit.errors import SpeechkitError

MusanPart = Literal["noise", "music", "speech"]


def prepare(
    source: str | Path,
    out_dir: str | Path,
    parts: Sequence[MusanPart] = ("noise",),
    *,
    overwrite: bool = False,
    skip_bad: bool = False,
    min_duration: float = MIN_DURATION,
) -> dict[str, CutSet]:
    """Import MUSAN parts as noise cuts into ``{recordings,supervisions,cuts}_<part>.jsonl.gz``.

    Args:
        source: the ``musan/`` folder holding ``noise/``, ``music/``, ``speech/``.
        out_dir: manifest folder.
        parts: parts to import (each a split).
        overwrite: replace a different corpus already in ``out_dir``.
        skip_bad: leave out recordings that fail the audio checks (listed in ``rejected.jsonl``).
        min_duration: shortest accepted recording, in seconds.

    Examples:
        speechkit prepare musan data/musan out/musan --parts noise
    """
    from lhotse.recipes import prepare_musan

    folder = require_dir(source, "musan").resolve()
    parts = list(dict.fromkeys(parts))
    for part in parts:
        if part not in ("noise", "music", "speech"):
            raise SpeechkitError(f"musan: unknown part {part!r}; expected noise, music or speech")
        if not any((folder / part).rglob("*.wav")):
            raise SpeechkitError(f"musan: {folder / part} has no .wav files; is {folder} the MUSAN folder?")
    target = open_target(out_dir, "musan", folder, {"parts": parts}, overwrite=overwrite, skip_bad=skip_bad,
                         min_duration=min_duration)
    try:
        manifests = prepare_musan(folder, output_dir=None, parts=parts, use_vocals=False)
    except Exception as error:  # Lhotse asserts / raises AudioLoadingError on unreadable audio
        message = " ".join(line.strip() for line in str(error).splitlines()[:2])
        raise SpeechkitError(f"musan: Lhotse failed on {folder}: {message}") from error
    empty = SupervisionSet.from_segments([])
    return write_corpus(target, {part: (manifests[part]["recordings"], empty) for part in parts})
