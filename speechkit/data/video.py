"""Mouth-crop video on Lhotse cuts: a custom ``TemporalArray`` field, loaded and padded into ``SpeechBatch.video``.

Why not Lhotse's own video support: Lhotse 1.33 reads video recordings through ``torchaudio.io.StreamReader``,
which torchaudio 2.9+ no longer ships (``import torchaudio.io`` fails with the pinned 2.11). Importers therefore
decode video once (PyAV, or render it) and store grayscale mouth crops as uint8 ``(V, H, W)`` arrays, a
``TemporalArray`` with ``frame_shift`` 0.04 s (25 fps) in a custom field of each cut (``"mouth"``; not
``"video"``, which clashes with Lhotse's ``Cut.load_video``). Lhotse then carries the field through everything
the data module does: manifests, filtering, bucketing (2-D too), ``resample``, ``truncate`` (frames are cut with
the audio), padding and noise mixing (``MixedCut.load_<field>``). Speed perturbation is the exception: Lhotse
stretches the audio but not the array, so ``DataConfig`` refuses ``speed_perturb`` with a ``video_field``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from lhotse.array import Array, TemporalArray
from lhotse.cut import Cut, MixedCut, PaddingCut

from speechkit.checkpoints import save_atomic
from speechkit.data.batches import VIDEO_FRAME_SHIFT
from speechkit.data.manifests import Paths, numbered_cuts
from speechkit.errors import SpeechkitError


def write_bytes(data: bytes, file) -> None:
    """``save_atomic``'s writer for bytes already encoded in memory."""
    file.write(data)


def mouth_array(path: Path, num_frames: int, size: int) -> TemporalArray:
    """The ``TemporalArray`` (25 fps, uint8 ``(V, size, size)``) of a mouth video stored as ``path`` (``.npy``)."""
    path = Path(path).absolute()
    array = Array(storage_type="numpy_files", storage_path=str(path.parent), storage_key=path.name,
                  shape=[num_frames, size, size])
    return TemporalArray(array=array, temporal_dim=0, frame_shift=VIDEO_FRAME_SHIFT, start=0.0)


def write_mouth(path: Path, frames: np.ndarray) -> TemporalArray:
    """Store uint8 ``(V, H, H)`` frames as ``path`` (``.npy``, written atomically); their ``TemporalArray``."""
    if frames.dtype != np.uint8 or frames.ndim != 3 or frames.shape[1] != frames.shape[2]:
        raise SpeechkitError(f"mouth video for {path}: expected uint8 (V, H, H) frames, got {frames.dtype} "
                             f"{frames.shape}")
    buffer = io.BytesIO()
    np.save(buffer, frames, allow_pickle=False)
    save_atomic(buffer.getvalue(), path, write_bytes)
    return mouth_array(path, frames.shape[0], frames.shape[1])


def video_manifest(cut: Cut, field: str) -> tuple[TemporalArray, float]:
    """The cut's video ``TemporalArray`` and the duration of the recording it belongs to (a mixed cut: the one
    track that has the field). A missing field, or video and audio durations more than one frame apart, is an
    error naming the cut and both durations."""
    cuts = [t.cut for t in cut.tracks if not isinstance(t.cut, PaddingCut)] if isinstance(cut, MixedCut) else [cut]
    owners = [c for c in cuts if c.custom and field in c.custom]
    if not owners:
        raise SpeechkitError(f"cut {cut.id!r} has no video field {field!r} (custom fields: "
                             f"{sorted(k for c in cuts for k in (c.custom or {}))}); data config video_field names "
                             "the cut field holding mouth frames")
    manifest = owners[0].custom[field]
    if not isinstance(manifest, TemporalArray):
        raise SpeechkitError(f"cut {cut.id!r}: field {field!r} is a {type(manifest).__name__}, expected a "
                             "TemporalArray of (V, H, W) frames")
    if abs(manifest.frame_shift - VIDEO_FRAME_SHIFT) > 1e-6 or len(manifest.shape) != 3:
        raise SpeechkitError(f"cut {cut.id!r}: video {field!r} has frame_shift {manifest.frame_shift} and shape "
                             f"{manifest.shape}; expected {VIDEO_FRAME_SHIFT} s (25 fps) and (V, H, W)")
    audio = owners[0].recording.duration if owners[0].has_recording else owners[0].duration
    if abs(manifest.start + manifest.duration - audio) > VIDEO_FRAME_SHIFT + 1e-6:
        raise SpeechkitError(f"cut {cut.id!r}: video {field!r} lasts {manifest.start + manifest.duration:.3f} s but "
                             f"its audio {audio:.3f} s (more than one {VIDEO_FRAME_SHIFT} s frame apart)")
    return manifest, audio


def load_video(cut: Cut, field: str) -> torch.Tensor:
    """The cut's frames as uint8 ``(V, H, W)`` (Lhotse cuts them to the cut's span and pads mixed cuts)."""
    video_manifest(cut, field)
    try:
        frames = cut.load_custom(field)
    except Exception as error:  # numpy/h5py/lilcom raise many types for a missing or corrupt file
        raise SpeechkitError(f"cut {cut.id!r}: cannot load video field {field!r}: {error}") from error
    if frames.ndim != 3 or frames.dtype != np.uint8:
        raise SpeechkitError(f"cut {cut.id!r}: video {field!r} loaded as {frames.dtype} {frames.shape}, expected uint8 "
                             "(V, H, W)")
    return torch.from_numpy(frames)


def collate_video(frames: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``(V_i, H, W)`` per cut -> float ``(B, V, H, W)`` in [0, 1], zero-padded, and ``(B,)`` lengths."""
    sizes = {tuple(f.shape[1:]) for f in frames}
    if len(sizes) > 1:
        raise SpeechkitError(f"video frames of one batch differ in size: {sorted(sizes)}; prepare the corpus with "
                             "one frame size")
    lens = torch.tensor([f.shape[0] for f in frames], dtype=torch.int64)
    padded = torch.nn.utils.rnn.pad_sequence([f.float() / 255.0 for f in frames], batch_first=True)
    return padded, lens  # (B, V, H, W), (B,)


def check_video(paths: Paths, what: str, field: str) -> int:
    """Check every cut of a manifest for its video field (``video_manifest``) before training, from the manifest
    alone (no frames read); an error names the manifest file and line. Returns the number of cuts checked."""
    count = 0
    for path, number, cut in numbered_cuts(paths, what):
        try:
            video_manifest(cut, field)
        except SpeechkitError as error:
            raise SpeechkitError(f"{what}: {path}, line {number}: {error}") from None
        count += 1
    return count
