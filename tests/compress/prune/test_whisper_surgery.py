"""Structured surgery on a tiny Hugging Face Whisper built from a config (no downloads)."""

import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from speechkit.compress.prune.block_removal import remove_blocks
from speechkit.compress.prune.minitron import (
    ActivationImportance,
    block_importance,
    prune_depth,
    prune_heads,
    prune_neurons,
)


@pytest.fixture
def tiny_whisper() -> WhisperForConditionalGeneration:
    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=60, num_mel_bins=8, d_model=16, encoder_layers=2, decoder_layers=3,
                           encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=32,
                           decoder_ffn_dim=32, max_source_positions=16, max_target_positions=16,
                           decoder_start_token_id=1, pad_token_id=0, eos_token_id=2, bos_token_id=1,
                           suppress_tokens=[], begin_suppress_tokens=[])
    return WhisperForConditionalGeneration(config).eval()


def test_remove_decoder_block_and_generate_with_cache(tiny_whisper: WhisperForConditionalGeneration) -> None:
    features = torch.randn(1, 8, 32)
    remove_blocks(tiny_whisper, "model.decoder.layers", 1, 1, config_key="decoder_layers")
    assert tiny_whisper.config.decoder_layers == 2 and len(tiny_whisper.model.decoder.layers) == 2
    assert [layer.self_attn.layer_idx for layer in tiny_whisper.model.decoder.layers] == [0, 1]
    out = tiny_whisper.generate(features, max_new_tokens=4, do_sample=False, use_cache=True)
    no_cache = tiny_whisper.generate(features, max_new_tokens=4, do_sample=False, use_cache=False)
    assert torch.equal(out, no_cache)


def test_width_pruning_keeps_output_shapes(tiny_whisper: WhisperForConditionalGeneration) -> None:
    features = torch.randn(2, 8, 32)
    tokens = torch.tensor([[1, 5, 6], [1, 7, 8]])
    before = tiny_whisper(input_features=features, decoder_input_ids=tokens).logits
    layer = "model.decoder.layers.0"
    with ActivationImportance(tiny_whisper, neurons=[f"{layer}.fc1"], heads={f"{layer}.self_attn.out_proj": 4}) as imp:
        tiny_whisper(input_features=features, decoder_input_ids=tokens)
    prune_neurons(tiny_whisper, f"{layer}.fc1", f"{layer}.fc2", imp.scores[f"{layer}.fc1"], keep=16)
    attn = f"{layer}.self_attn"
    prune_heads(tiny_whisper, [f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj"], f"{attn}.out_proj", 4,
                imp.scores[f"{attn}.out_proj"], keep=2, attention=attn)
    after = tiny_whisper(input_features=features, decoder_input_ids=tokens).logits
    assert after.shape == before.shape and not torch.allclose(after, before)
    assert tiny_whisper.model.decoder.layers[0].fc1.out_features == 16
    assert tiny_whisper.generate(features, max_new_tokens=3, do_sample=False).shape[0] == 2


def test_depth_pruning_by_block_importance(tiny_whisper: WhisperForConditionalGeneration) -> None:
    features = torch.randn(2, 8, 32)
    tokens = torch.tensor([[1, 5, 6], [1, 7, 8]])
    out = tiny_whisper(input_features=features, decoder_input_ids=tokens, output_hidden_states=True)
    importance = block_importance(out.decoder_hidden_states)
    assert importance.shape == (3,)
    kept = prune_depth(tiny_whisper, "model.decoder.layers", importance, keep=2, config_key="decoder_layers")
    assert kept.tolist() == torch.sort(torch.topk(importance, 2).indices).values.tolist()
    assert tiny_whisper.config.decoder_layers == 2
    assert tiny_whisper(input_features=features, decoder_input_ids=tokens).logits.shape == out.logits.shape
