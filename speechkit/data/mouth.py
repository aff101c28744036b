"""A rendered talking mouth: eSpeak phonemes -> visemes -> grayscale mouth-crop frames at 25 fps.

The synthetic audio-visual corpus (``corpora/synthetic_av``) needs video in which lip reading is possible and
checkable: the mouth must move with the speech. Following the usual viseme grouping of lip-reading work (several
phonemes look alike on the lips; the students of *Audio-Visual Representation Learning via Knowledge
Distillation from Speech Foundation Models*, Zhang et al., arXiv 2502.05766, read LRS2/LRS3 mouth crops), every
eSpeak phoneme maps to one of ``VISEMES`` (closed lips, lip on teeth, rounded, open, spread ...), each a target
mouth shape (opening, width, visible teeth). The target track (one shape per millisecond) is smoothed over ``SMOOTHING_MS`` (coarticulation)
and sampled at each frame's centre. Frames are drawn with numpy only: a face-coloured background, lips as a
filled ellipse, the opening as a darker inner ellipse, teeth as a bright band, anti-aliased by supersampling;
each speaker (``MouthStyle``) has its own grey levels, mouth size and position, and every frame a little head
motion and sensor noise.

``measure_mouth`` reads a frame back (dark opening height and width, teeth and lip area, counted on the pixels)
and ``decode_visemes`` names the nearest viseme, which is how the tests check that the video follows the
phoneme timings.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from speechkit.data.batches import VIDEO_FRAME_SHIFT
from speechkit.errors import SpeechkitError

FRAME_SIZE = 32  # pixels, square: small enough to train a lip reader on CPU
SUPERSAMPLE = 4  # each pixel is the mean of SUPERSAMPLE^2 sub-pixels (anti-aliasing)
SMOOTHING_MS = 30  # width of the moving average over the viseme targets (coarticulation)


@dataclass(frozen=True)
class Viseme:
    """A target mouth shape.

    Args:
        name: what it looks like.
        opening: opening height, 0 (closed) to 1 (wide open).
        width: mouth width relative to the speaker's resting width (rounded < 1 < spread).
        teeth: visible upper teeth, 0-1 (share of the opening they fill, at most).
    """

    name: str
    opening: float
    width: float
    teeth: float


VISEMES: tuple[Viseme, ...] = (
    Viseme("rest", 0.18, 1.0, 0.0),  # silence, pauses: lips relaxed, barely apart
    Viseme("bilabial", 0.0, 0.9, 0.0),  # p b m: lips pressed together
    Viseme("labiodental", 0.25, 1.0, 1.0),  # f v: upper teeth on the lower lip
    Viseme("alveolar", 0.4, 1.05, 0.7),  # t d n l s z th sh ch j: teeth close, tongue behind them
    Viseme("rounded", 0.45, 0.62, 0.0),  # w u o r: lips rounded and pushed out
    Viseme("open", 1.0, 0.95, 0.0),  # a aa ah ai au: jaw down
    Viseme("spread", 0.45, 1.3, 0.0),  # i ee e ei y: lips spread
    Viseme("back", 0.7, 0.82, 0.0),  # k g ng h and schwa: neutral, half open
)
VISEME_INDEX = {v.name: i for i, v in enumerate(VISEMES)}

# eSpeak NG English phoneme mnemonics (stress marks ' , % = removed) -> viseme name. Matching tries the whole
# mnemonic, then its first two characters, then the first; anything unknown counts as "back" (neutral).
_PHONEME_VISEMES = {
    "rest": "_ _: _! ||",
    "bilabial": "p b m",
    "labiodental": "f v",
    "alveolar": "t d n l s z T D S Z tS dZ t# d# n- l/ l# r- *",
    "rounded": "w u u: U oU o@ O: O O@ 0 OI r",
    "open": "a a: A: A@ aI aU a# V 3:",
    "spread": "i i: I i@ I@ e E eI e@ j I#",
    "back": "k g N h @ 3 x @L @2 @5",
}
PHONEME_VISEME = {p: name for name, phonemes in _PHONEME_VISEMES.items() for p in phonemes.split()}


def viseme_of(phoneme: str) -> int:
    """The index in ``VISEMES`` of an eSpeak phoneme mnemonic (``"'aI"`` -> open)."""
    bare = phoneme.lstrip("',%=")
    for key in (bare, bare[:2], bare[:1]):
        if key in PHONEME_VISEME:
            return VISEME_INDEX[PHONEME_VISEME[key]]
    return VISEME_INDEX["back"]


@dataclass(frozen=True)
class MouthStyle:
    """How one speaker's mouth looks (drawn by ``draw_mouth_styles``).

    Args:
        center_x: horizontal mouth centre in [-1, 1] frame coordinates.
        center_y: vertical mouth centre.
        size: mouth size factor (1 = half-width 0.5 of the frame's half-size).
        skin: background grey level in [0, 1].
        lip: lip grey level.
        inside: grey level of the open mouth.
        teeth: grey level of the teeth.
        lip_thickness: lip thickness in frame coordinates.
        noise: standard deviation of the per-pixel noise of each frame.
        motion: standard deviation of the per-frame head motion, in frame coordinates.
    """

    center_x: float = 0.0
    center_y: float = 0.0
    size: float = 1.0
    skin: float = 0.7
    lip: float = 0.42
    inside: float = 0.08
    teeth: float = 0.95
    lip_thickness: float = 0.13
    noise: float = 0.02
    motion: float = 0.015


def draw_mouth_styles(count: int, seed: int) -> list[MouthStyle]:
    """``count`` speakers' mouth styles drawn from ``random.Random(f"{seed}-mouth")``."""
    if count < 1:
        raise SpeechkitError(f"mouth styles: count must be >= 1, got {count}")
    rng = random.Random(f"{seed}-mouth")
    return [
        MouthStyle(
            center_x=round(rng.uniform(-0.1, 0.1), 3), center_y=round(rng.uniform(-0.1, 0.1), 3),
            size=round(rng.uniform(0.85, 1.1), 3), skin=round(rng.uniform(0.6, 0.85), 3),
            lip=round(rng.uniform(0.33, 0.5), 3), inside=round(rng.uniform(0.03, 0.12), 3),
            teeth=round(rng.uniform(0.92, 1.0), 3), lip_thickness=round(rng.uniform(0.11, 0.15), 3),
        )
        for _ in range(count)
    ]


def num_video_frames(duration: float) -> int:
    """Frames of 25 fps video covering ``duration`` seconds (Lhotse's rounding, as ``TemporalArray`` loads)."""
    return max(1, int(round(duration / VIDEO_FRAME_SHIFT)))


def frame_visemes(phonemes: Sequence[tuple[float, str]], num_frames: int) -> np.ndarray:
    """The viseme (index in ``VISEMES``) of the phoneme sounding at each frame's centre; ``(V,)`` int.

    Before the first phoneme the mouth rests; each phoneme lasts until the next one starts.
    """
    centres = (np.arange(num_frames) + 0.5) * VIDEO_FRAME_SHIFT
    starts = np.array([start for start, _ in phonemes] or [0.0])
    ids = np.array([viseme_of(p) for _, p in phonemes] or [VISEME_INDEX["rest"]])
    index = np.searchsorted(starts, centres, side="right") - 1
    return np.where(index < 0, VISEME_INDEX["rest"], ids[np.clip(index, 0, None)])


def shape_track(phonemes: Sequence[tuple[float, str]], num_frames: int) -> np.ndarray:
    """Smoothed (opening, width, teeth) at each frame's centre, ``(V, 3)``: targets per ms, moving average."""
    _check_phonemes(phonemes)
    total_ms = int(round(num_frames * VIDEO_FRAME_SHIFT * 1000))
    targets = np.array([[v.opening, v.width, v.teeth] for v in VISEMES])  # (K, 3)
    ms = np.arange(total_ms) + 0.5
    starts = np.array([start * 1000 for start, _ in phonemes] or [0.0])
    ids = np.array([viseme_of(p) for _, p in phonemes] or [VISEME_INDEX["rest"]])
    index = np.searchsorted(starts, ms, side="right") - 1
    per_ms = targets[np.where(index < 0, VISEME_INDEX["rest"], ids[np.clip(index, 0, None)])]  # (total_ms, 3)
    window = np.hanning(SMOOTHING_MS + 2)[1:-1]
    window /= window.sum()
    padded = np.pad(per_ms, ((SMOOTHING_MS, SMOOTHING_MS), (0, 0)), mode="edge")
    smooth = np.stack([np.convolve(padded[:, k], window, mode="same") for k in range(3)], axis=1)
    smooth = smooth[SMOOTHING_MS:-SMOOTHING_MS]
    centres = ((np.arange(num_frames) + 0.5) * VIDEO_FRAME_SHIFT * 1000).astype(int)
    return smooth[np.clip(centres, 0, total_ms - 1)]


def _check_phonemes(phonemes: Sequence[tuple[float, str]]) -> None:
    starts = [start for start, _ in phonemes]
    if any(b < a for a, b in zip(starts, starts[1:])) or any(s < 0 for s in starts):
        raise SpeechkitError(f"phoneme starts must be >= 0 and non-decreasing, got {starts[:10]}")


def render_frame(
    opening: float, width: float, teeth: float, style: MouthStyle, size: int = FRAME_SIZE,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """One noiseless frame ``(size, size)`` float in [0, 1] of a mouth of the given shape."""
    n = size * SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / n * 2 - 1
    y, x = np.meshgrid(coords, coords, indexing="ij")
    x = x - style.center_x - shift[0]
    y = y - style.center_y - shift[1]
    half_width = 0.5 * style.size * width
    half_open = 0.35 * style.size * opening
    thickness = style.lip_thickness * style.size * (1.15 if width < 0.8 else 1.0)  # rounded lips push out
    image = np.full((n, n), style.skin)
    outer = (x / (half_width + 0.06)) ** 2 + (y / (half_open + thickness)) ** 2 <= 1
    image[outer] = style.lip
    seam = max(half_open, 0.012)  # closed lips still show a dark line between them
    inner = (x / (0.85 * half_width)) ** 2 + (y / seam) ** 2 <= 1
    image[inner] = style.inside
    if teeth > 0 and half_open > 0:
        band = inner & (y <= -half_open + 2 * half_open * min(1.0, teeth) * 0.6)
        image[band] = style.teeth
    return image.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))


def render_mouth(
    phonemes: Sequence[tuple[float, str]], duration: float, style: MouthStyle, seed: int, size: int = FRAME_SIZE
) -> np.ndarray:
    """Frames of a mouth saying ``phonemes``, ``(V, size, size)`` uint8, ``V = num_video_frames(duration)``.

    Args:
        phonemes: ``(start_seconds, eSpeak mnemonic)`` in order of time (``Synthesizer.synthesize_with_phonemes``).
        duration: seconds of the audio; frame ``i`` shows the shape at ``(i + 0.5) * 0.04`` s.
        style: the speaker's look.
        seed: draws head motion and pixel noise.
        size: frame side in pixels (>= 16).
    """
    if size < 16:
        raise SpeechkitError(f"mouth frame size must be >= 16 pixels, got {size}")
    if duration <= 0:
        raise SpeechkitError(f"render_mouth: duration must be positive, got {duration}")
    track = shape_track(phonemes, num_video_frames(duration))
    rng = np.random.default_rng(seed)
    frames = []
    for opening, width, teeth in track:
        shift = tuple(rng.normal(0.0, style.motion, size=2))
        frame = render_frame(opening, width, teeth, style, size, shift)
        frames.append(frame + rng.normal(0.0, style.noise, size=frame.shape))
    return np.round(np.clip(np.stack(frames), 0.0, 1.0) * 255).astype(np.uint8)


def measure_mouth(frame: np.ndarray, style: MouthStyle) -> np.ndarray:
    """What a frame shows, counted on its pixels: (opening height, opening width, opening area, teeth area, lip area).

    Pixels darker than midway between lip and inside are the opening; brighter than midway between skin and
    teeth are teeth; the others darker than midway between skin and lip are lip. Heights and widths are the
    number of rows / columns holding at least two opening pixels.

    Args:
        frame: ``(H, W)`` uint8 or float in [0, 1].
        style: the speaker's look (its grey levels set the thresholds).
    """
    image = frame.astype(np.float64) / 255.0 if frame.dtype == np.uint8 else np.asarray(frame, np.float64)
    dark = image < (style.lip + style.inside) / 2
    bright = image > (style.skin + style.teeth) / 2
    lip = (image < (style.skin + style.lip) / 2) & ~dark
    height = float((dark.sum(axis=1) >= 2).sum())
    width = float((dark.sum(axis=0) >= 2).sum())
    return np.array([height, width, float(dark.sum()), float(bright.sum()), float(lip.sum())])


def decode_visemes(frames: np.ndarray, style: MouthStyle) -> np.ndarray:
    """The viseme each frame shows, ``(V,)``: the nearest (in measured features) noiseless viseme of ``style``."""
    size = frames.shape[-1]
    prototypes = np.stack(
        [measure_mouth(render_frame(v.opening, v.width, v.teeth, style, size), style) for v in VISEMES]
    )  # (K, 5)
    scale = prototypes.std(axis=0) + 1e-6
    features = np.stack([measure_mouth(frame, style) for frame in frames])  # (V, 5)
    distances = (((features[:, None, :] - prototypes[None]) / scale) ** 2).sum(axis=-1)  # (V, K)
    return distances.argmin(axis=1)


def save_preview(
    path, styles: Sequence[MouthStyle], example: np.ndarray, example_visemes: np.ndarray, size: int = FRAME_SIZE
) -> None:
    """A PNG of every viseme as each speaker shows it (one row a speaker) above one utterance's frames, each
    labelled with the viseme of its phoneme; written atomically (``checkpoints.save_atomic``).

    Args:
        path: the ``.png`` to write.
        styles: the speakers' looks.
        example: ``(V, H, W)`` uint8 frames of one utterance.
        example_visemes: ``(V,)`` the viseme of each frame (``frame_visemes``).
        size: frame side of the viseme grid.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from speechkit.checkpoints import save_atomic

    shown = example[:24]
    columns = max(len(VISEMES), len(shown) // 2 + len(shown) % 2)
    rows = len(styles) + 2
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 1.0), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for row, style in enumerate(styles):
        for column, viseme in enumerate(VISEMES):
            axes[row, column].imshow(render_frame(viseme.opening, viseme.width, viseme.teeth, style, size),
                                     cmap="gray", vmin=0, vmax=1)
            if row == 0:
                axes[row, column].set_title(viseme.name, fontsize=7)
    for i, frame in enumerate(shown):
        axis = axes[len(styles) + i // columns, i % columns]
        axis.imshow(frame, cmap="gray", vmin=0, vmax=255)
        axis.set_title(f"{i * VIDEO_FRAME_SHIFT:.2f}s {VISEMES[example_visemes[i]].name}", fontsize=5)
    figure.suptitle("visemes per speaker (rows); one utterance at 25 fps (last rows)", fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    save_atomic(buffer.getvalue(), path, lambda data, file: file.write(data))
