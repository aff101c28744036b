"""Adaptation: LoRA (frozen base, r(d_in+d_out) parameters, B=0 start), frozen encoder layers, export, merge-lora."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

from speechkit.errors import SpeechkitError
from speechkit.models.adaptation import apply_lora, count_trainable, export, freeze_encoder_layers
from speechkit.drivers.export import merge_lora_main


def batch(model):
    torch.manual_seed(1)
    return dict(input_features=torch.randn(2, 8, 100), labels=torch.randint(3, 100, (2, 5)))


def step(model) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    model(**batch(model)).loss.backward()
    optimizer.step()
    model.eval()


def test_lora_trains_adapters_only(tiny_whisper):
    with torch.no_grad():
        base_logits = tiny_whisper(**batch(tiny_whisper)).logits
    base = {k: v.clone() for k, v in tiny_whisper.state_dict().items()}
    model = apply_lora(tiny_whisper, rank=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    adapted = [m for n, m in tiny_whisper.named_modules() if n.endswith(("q_proj", "v_proj")) and hasattr(m, "lora_A")]
    assert len(adapted) == 2 * 2 + 2 * 2 * 2  # encoder self-attn, decoder self- and cross-attn; q and v each
    assert count_trainable(model) == sum(4 * (m.in_features + m.out_features) for m in adapted)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch(model)).logits, base_logits, rtol=0, atol=1e-6)  # B = 0
    step(model)
    merged_names = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
                    for k, v in model.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(merged_names[k], v) for k, v in base.items())  # bit-identical base weights
    assert any(m.lora_B["default"].weight.abs().sum() > 0 for m in adapted)


def test_lora_unknown_target_is_named(tiny_whisper):
    with pytest.raises(SpeechkitError, match="'query'"):
        apply_lora(tiny_whisper, rank=4, alpha=8, dropout=0.0, target_modules=["q_proj", "query"])


def test_frozen_encoder_layers_stay_bit_identical(tiny_whisper):
    frozen = freeze_encoder_layers(tiny_whisper, 1)
    assert "conv1.weight" in frozen and "embed_positions.weight" in frozen and "layers.0.fc1.weight" in frozen
    encoder = tiny_whisper.model.encoder
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    step(tiny_whisper)
    after = encoder.state_dict()
    for name in before:
        changed = not torch.equal(before[name], after[name])
        assert changed == (name not in frozen), name
    with pytest.raises(SpeechkitError, match="frozen_encoder_layers=3: this model has 2 encoder layers"):
        freeze_encoder_layers(tiny_whisper, 3)


def test_export_merged_and_adapter_then_merge_lora_cli(tmp_path, tiny_multilingual):
    bundle = tiny_multilingual
    bundle.save_pretrained(tmp_path / "base")
    base = WhisperForConditionalGeneration.from_pretrained(tmp_path / "base")
    model = apply_lora(base, rank=2, alpha=4, dropout=0.0, target_modules=["q_proj", "v_proj", "fc1"])
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)
    features, tokens = torch.randn(1, 80, 3000), torch.tensor([[50258, 50259, 50359, 50363]])
    with torch.no_grad():
        expected = model(input_features=features, decoder_input_ids=tokens).logits
    fe = WhisperFeatureExtractor(feature_size=80)
    export(model, bundle.tokenizer, fe, bundle.generation_config, tmp_path / "merged", merge_lora=True)
    export(model, bundle.tokenizer, fe, bundle.generation_config, tmp_path / "adapter", merge_lora=False)
    assert isinstance(model, PeftModel) and (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert merge_lora_main(["--adapter", str(tmp_path / "adapter"), "--out", str(tmp_path / "cli"),
                            "--base", str(tmp_path / "base")]) == 0
    for folder in ("merged", "cli"):
        loaded = WhisperForConditionalGeneration.from_pretrained(tmp_path / folder)
        with torch.no_grad():
            got = loaded(input_features=features, decoder_input_ids=tokens).logits
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_export_cli_missing_checkpoint_is_an_error(tmp_path):
    from speechkit.drivers.export import export_main

    with pytest.raises(SpeechkitError, match=r"checkpoint .*missing\.ckpt: no such file"):
        export_main(["--checkpoint", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "out")])
