"""LibriSpeech (and Mini LibriSpeech): a thin wrapper over ``lhotse.recipes.prepare_librispeech``.

``speechkit prepare librispeech <LibriSpeech_dir> <out_dir> [--parts dev-clean test-clean ...] [--num-jobs 1]``

Layout (what Lhotse 1.33 reads): ``<dir>/<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` with lines
``<speaker>-<chapter>-<utt> TEXT`` and the audio ``<speaker>-<chapter>-<utt>.flac`` beside it. Parts are
LibriSpeech's (``dev-clean``, ``train-clean-100`` ...; Mini LibriSpeech ``dev-clean-2``, ``train-clean-5``); by
default every part found in the folder. Each part becomes one split of that name (``cuts_dev-clean.jsonl.gz``).
Before Lhotse runs, every transcript line's FLAC is checked to exist (Lhotse would skip a missing one with a
warning; a file named ``.FLAC`` is named in the error, as Lhotse reads only ``.flac``). Lhotse writes
``language="English"``; we store the code ``en``. Text stays as LibriSpeech has it (upper case).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from lhotse import CutSet, RecordingSet, SupervisionSet
from lhotse.utils import fastcopy

from speechkit.data.corpora.base import open_target, require_dir, write_corpus
from speechkit.data.corpora.checks import MIN_DURATION
from speechkit.errors import SpeechkitError


def known_parts() -> tuple[str, ...]:
    """LibriSpeech and Mini LibriSpeech part names, as Lhotse knows them."""
    from lhotse.recipes.librispeech import LIBRISPEECH, MINI_LIBRISPEECH

    return LIBRISPEECH + MINI_LIBRISPEECH


def check_part(part_dir: Path) -> int:
    """Utterances of one part, after checking that each transcript line has its FLAC."""
    count = 0
    for transcript in sorted(part_dir.rglob("*.trans.txt")):
        names = {path.name.lower(): path.name for path in transcript.parent.iterdir()}
        for number, line in enumerate(transcript.read_text(encoding="utf-8").splitlines(), start=1):
            fields = line.split(maxsplit=1)
            if len(fields) < 2:
                raise SpeechkitError(f"librispeech: {transcript}:{number}: expected '<utterance id> <text>'")
            audio = transcript.parent / f"{fields[0]}.flac"
            if not audio.is_file():
                other = names.get(audio.name.lower())
                hint = f" ({other} is there, but Lhotse's recipe reads only '.flac': rename it)" if other else ""
                raise SpeechkitError(f"librispeech: missing audio file {audio}{hint}")
            count += 1
    if count == 0:
        raise SpeechkitError(f"librispeech: {part_dir} has no *.trans.txt transcripts")
    return count


def prepare(
    source: str | Path,
    out_dir: str | Path,
    parts: Sequence[str] | None = None,
    num_jobs: int = 1,
    *,
    overwrite: bool = False,
    skip_bad: bool = False,
    min_duration: float = MIN_DURATION,
) -> dict[str, CutSet]:
    """Import LibriSpeech parts into ``{recordings,supervisions,cuts}_<part>.jsonl.gz``.

    Args:
        source: the ``LibriSpeech/`` folder holding one folder per part.
        out_dir: manifest folder.
        parts: parts to import; default every known part present in ``source``.
        num_jobs: Lhotse's audio-scanning threads.
        overwrite: replace a different corpus already in ``out_dir``.
        skip_bad: leave out utterances that fail the audio checks (listed in ``rejected.jsonl``); a file whose
            header Lhotse cannot read still stops the import.
        min_duration: shortest accepted utterance, in seconds.

    Examples:
        speechkit prepare librispeech data/LibriSpeech out/librispeech --parts dev-clean test-clean
    """
    from lhotse.recipes import prepare_librispeech

    folder = require_dir(source, "librispeech").resolve()
    parts = list(parts) if parts else [p for p in known_parts() if (folder / p).is_dir()]
    if not parts:
        raise SpeechkitError(f"librispeech: {folder} is not LibriSpeech: none of {list(known_parts())} is in it")
    for part in parts:
        if part not in known_parts():
            raise SpeechkitError(f"librispeech: unknown part {part!r}; expected one of {list(known_parts())}")
        if not (folder / part).is_dir():
            raise SpeechkitError(f"librispeech: {folder} has no part folder {part}/")
    target = open_target(
        out_dir, "librispeech", folder, {"parts": parts}, overwrite=overwrite, skip_bad=skip_bad,
        min_duration=min_duration,
    )
    expected = {part: check_part(folder / part) for part in parts}
    try:
        manifests = prepare_librispeech(folder, dataset_parts=parts, output_dir=None, num_jobs=num_jobs)
    except Exception as error:  # Lhotse raises AudioLoadingError for unreadable audio
        message = " ".join(line.strip() for line in str(error).splitlines()[:2])
        raise SpeechkitError(f"librispeech: Lhotse failed on {folder}: {message}") from error
    for part in parts:
        if len(manifests[part]["supervisions"]) != expected[part]:
            raise SpeechkitError(
                f"librispeech: {part}: {expected[part]} transcript lines but "
                f"{len(manifests[part]['supervisions'])} supervisions after Lhotse"
            )
    return write_corpus(target, {part: _with_language_code(manifests[part]) for part in parts})


def _with_language_code(manifest: dict) -> tuple[RecordingSet, SupervisionSet]:
    supervisions = SupervisionSet.from_segments(fastcopy(s, language="en") for s in manifest["supervisions"])
    return manifest["recordings"], supervisions
