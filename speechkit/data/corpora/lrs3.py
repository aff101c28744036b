"""LRS3-TED (and LRS2-BBC laid out the same way): talking-face mp4 files -> audio + mouth-crop video cuts.

``speechkit prepare lrs3 <lrs3_dir> <out_dir> [--subsets trainval test] [--frame_size 88]``

Lhotse has no LRS2/LRS3 recipe, and its video reader needs ``torchaudio.io`` (absent from torchaudio 2.9+), so
this importer decodes every file once with PyAV (``pip install speechkit[video]``; its wheels carry FFmpeg):

- Layout: ``<lrs3_dir>/<subset>/<speaker>/<id>.mp4`` with ``<id>.txt`` whose first line is ``Text:  WORDS``
  (subsets ``pretrain``, ``trainval``, ``test``; each becomes a split of that name). Cut ids are
  ``<speaker>_<id>``, ``supervision.speaker`` is the speaker folder, the text is the ``Text:`` line as written
  (upper case; scoring normalizes it).
- Audio: the file's audio stream, mixed to mono and resampled to 16 kHz, written as 16-bit FLAC
  ``<out_dir>/audio/<subset>/<speaker>/<id>.flac``.
- Video: every frame to grayscale, cropped to a fixed box of the face-centred 224 x 224 frame (``mouth_box``,
  fractions of width and height, default the lower centre ``(0.29, 0.5, 0.71, 0.93)``, about 96 x 96 pixels around
  the mouth) and resized to ``frame_size`` (default 88, the mouth ROI of AV-HuBERT-style students). A fixed box is
  the cheap route: LRS3's faces are already tracked and centred; landmark-based crops (as AV-HuBERT's) follow the
  lips more tightly. Frames are taken at 25 fps (the frame nearest each 0.04 s step) for the audio's duration,
  and stored as the cut field ``mouth`` like ``synthetic_av`` (uint8 ``(V, H, W)`` ``TemporalArray``,
  ``<out_dir>/mouth/<subset>/<speaker>/<id>.npy``).
- A file without a transcript, audio or video stream, or whose video is more than one frame shorter than its
  audio, is an error naming it (``--skip_bad``: left out and listed in ``rejected.jsonl``). Converted files are
  written atomically and reused by a second run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from lhotse import CutSet, Recording, RecordingSet, SupervisionSet
from lhotse.array import TemporalArray

from speechkit.data.batches import VIDEO_FRAME_SHIFT
from speechkit.data.corpora.base import Target, open_target, require_dir, whole_recording_supervision, write_corpus
from speechkit.data.corpora.checks import MIN_DURATION, Rejection
from speechkit.data.corpora.synthetic_av import MOUTH_FIELD, write_flac
from speechkit.data.mouth import num_video_frames
from speechkit.data.video import mouth_array, write_mouth
from speechkit.errors import SpeechkitError
from speechkit.progress import progress_bar

log = logging.getLogger(__name__)

SUBSETS = ("pretrain", "trainval", "test")
SAMPLE_RATE = 16000
MOUTH_BOX = (0.29, 0.5, 0.71, 0.93)  # left, top, right, bottom as fractions of the frame


def _av():
    try:
        import av
    except ImportError as error:
        raise SpeechkitError("lrs3 decodes mp4 with PyAV: pip install 'speechkit[video]' (or pip install av)") \
            from error
    return av


def read_transcript(path: Path) -> str:
    """The words of an LRS2/LRS3 ``<id>.txt`` (first line ``Text:  WORDS``); an error names a bad file."""
    if not path.is_file():
        raise SpeechkitError(f"lrs3: transcript {path} is missing")
    first = path.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
    key, _, text = first.partition(":")
    if key.strip() != "Text" or not text.strip():
        raise SpeechkitError(f"lrs3: {path}: first line {first[:60]!r} is not 'Text:  WORDS'")
    return " ".join(text.split())


def decode_audio(path: Path) -> np.ndarray:
    """The first audio stream of a media file as 16 kHz mono float32 ``(T,)``."""
    av = _av()
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise SpeechkitError(f"lrs3: {path} has no audio stream")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        chunks = [out.to_ndarray()[0] for frame in container.decode(audio=0) for out in resampler.resample(frame)]
        chunks += [out.to_ndarray()[0] for out in resampler.resample(None)]
    if not chunks:
        raise SpeechkitError(f"lrs3: {path}: its audio stream has no samples")
    return np.concatenate(chunks).astype(np.float32) / 32768.0


def decode_gray_frames(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every video frame of a media file in grayscale, ``(N, H, W)`` uint8, and their start times ``(N,)``."""
    av = _av()
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise SpeechkitError(f"lrs3: {path} has no video stream")
        decoded = [(frame.time, frame.to_ndarray(format="gray")) for frame in container.decode(video=0)]
    if not decoded:
        raise SpeechkitError(f"lrs3: {path}: its video stream has no frames")
    times = np.array([t if t is not None else i * VIDEO_FRAME_SHIFT for i, (t, _) in enumerate(decoded)])
    return np.stack([frame for _, frame in decoded]), times


def crop_mouth(frames: np.ndarray, box: Sequence[float], size: int) -> np.ndarray:
    """Crop ``box`` (left, top, right, bottom fractions) of ``(N, H, W)`` uint8 frames, resize to ``size``."""
    left, top, right, bottom = box
    if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
        raise SpeechkitError(f"mouth_box {tuple(box)} must be fractions with left < right and top < bottom")
    height, width = frames.shape[1:]
    crop = frames[:, int(top * height) : int(np.ceil(bottom * height)), int(left * width) : int(np.ceil(right * width))]
    resized = torch.nn.functional.interpolate(
        torch.from_numpy(crop).float()[:, None], size=(size, size), mode="bilinear", antialias=True,
        align_corners=False,
    )[:, 0]  # (N, size, size)
    return resized.round().clamp(0, 255).to(torch.uint8).numpy()


def frames_at_25fps(frames: np.ndarray, times: np.ndarray, count: int) -> np.ndarray:
    """``count`` frames, the one starting nearest each 0.04 s step (LRS3 is 25 fps already: one each)."""
    steps = np.arange(count) * VIDEO_FRAME_SHIFT
    index = np.abs(times[None, :] - steps[:, None]).argmin(axis=1)
    return frames[index]


def convert(
    mp4: Path, audio_path: Path, mouth_path: Path, box: Sequence[float], frame_size: int
) -> tuple[Recording, TemporalArray]:
    """Decode one file into FLAC audio and mouth frames (unless both exist); its recording and video field."""
    recording_id = f"{mp4.parent.name}_{mp4.stem}"
    if not (audio_path.is_file() and mouth_path.is_file()):
        samples = decode_audio(mp4)
        frames, times = decode_gray_frames(mp4)
        audio_seconds = samples.size / SAMPLE_RATE
        video_seconds = float(times[-1]) + VIDEO_FRAME_SHIFT
        if video_seconds < audio_seconds - VIDEO_FRAME_SHIFT:
            raise SpeechkitError(f"lrs3: {mp4}: its video lasts {video_seconds:.3f} s but its audio "
                                 f"{audio_seconds:.3f} s (more than one frame apart)")
        write_mouth(mouth_path, crop_mouth(frames_at_25fps(frames, times, num_video_frames(audio_seconds)), box,
                                           frame_size))
        write_flac(audio_path, samples, SAMPLE_RATE)
    recording = Recording.from_file(audio_path, recording_id=recording_id)
    return recording, mouth_array(mouth_path, num_video_frames(recording.duration), frame_size)


def import_subset(
    target: Target, subset: str, box: Sequence[float], frame_size: int, rejected: list[Rejection],
    custom: dict[str, dict],
) -> tuple[RecordingSet, SupervisionSet]:
    """Every ``<subset>/<speaker>/<id>.mp4`` of the source as recordings and supervisions."""
    folder = Path(target.source) / subset
    files = sorted(folder.glob("*/*.mp4"))
    if not files:
        raise SpeechkitError(f"lrs3: {folder} holds no <speaker>/<id>.mp4 files")
    recordings, supervisions = [], []
    with progress_bar(files, desc=f"lrs3: {subset}", unit="file") as bar:
        for mp4 in bar:
            relative = Path(subset) / mp4.parent.name / mp4.stem
            try:
                text = read_transcript(mp4.with_suffix(".txt"))
                recording, video = convert(mp4, target.out_dir / "audio" / relative.with_suffix(".flac"),
                                           target.out_dir / MOUTH_FIELD / relative.with_suffix(".npy"), box, frame_size)
            except Exception as error:  # PyAV raises its own types for corrupt files
                if not target.skip_bad:
                    raise error if isinstance(error, SpeechkitError) else SpeechkitError(
                        f"lrs3: cannot decode {mp4}: {error}; --skip_bad leaves it out") from error
                rejected.append(Rejection(subset, f"{mp4.parent.name}_{mp4.stem}", str(mp4), str(error)))
                continue
            custom[recording.id] = {MOUTH_FIELD: video}
            recordings.append(recording)
            supervisions.append(whole_recording_supervision(recording, text, "en", mp4.parent.name))
    return RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)


def prepare(
    source: str | Path,
    out_dir: str | Path,
    subsets: list[str] = ["trainval", "test"],  # noqa: B006 (jsonargparse needs a literal default)
    frame_size: int = 88,
    mouth_box: tuple[float, float, float, float] = MOUTH_BOX,
    *,
    overwrite: bool = False,
    skip_bad: bool = False,
    min_duration: float = MIN_DURATION,
) -> dict[str, CutSet]:
    """Import LRS3 (or LRS2 in the same layout): audio + mouth-crop video cuts, one split per subset.

    Args:
        source: the LRS3 folder holding ``pretrain/``, ``trainval/``, ``test/``.
        out_dir: manifest folder (audio under ``<out_dir>/audio``, video under ``<out_dir>/mouth``).
        subsets: which subset folders to import (``pretrain`` is 400+ hours).
        frame_size: side of the square grayscale mouth crops, in pixels.
        mouth_box: the crop (left, top, right, bottom) as fractions of the frame.
        overwrite: replace a different corpus already in ``out_dir``.
        skip_bad: leave out files that fail to decode or check (listed in ``rejected.jsonl``).
        min_duration: shortest accepted clip, in seconds.

    Examples:
        speechkit prepare lrs3 /data/LRS3 data/lrs3 --subsets '[trainval, test]'
    """
    unknown = [s for s in subsets if s not in SUBSETS]
    if unknown or not subsets:
        raise SpeechkitError(f"lrs3: subsets {list(subsets)}: choose among {list(SUBSETS)}")
    if frame_size < 16:
        raise SpeechkitError(f"frame_size must be >= 16 pixels, got {frame_size}")
    root = require_dir(source, "lrs3")
    missing = [s for s in subsets if not (root / s).is_dir()]
    if missing:
        raise SpeechkitError(f"lrs3: {root} has no subset folder(s) {missing} (expected {list(SUBSETS)} folders)")
    options = dict(subsets=list(subsets), frame_size=frame_size, mouth_box=list(mouth_box))
    target = open_target(out_dir, "lrs3", root, options, overwrite=overwrite, skip_bad=skip_bad,
                         min_duration=min_duration)
    crop_mouth(np.zeros((1, 8, 8), np.uint8), mouth_box, frame_size)  # a bad box fails before any decoding
    rejected: list[Rejection] = []
    custom: dict[str, dict] = {}
    splits = {subset: import_subset(target, subset, mouth_box, frame_size, rejected, custom) for subset in subsets}
    return write_corpus(target, splits, unreadable=rejected, cut_custom=custom)
