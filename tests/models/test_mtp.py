"""Multi-token prediction: gated LoRA keeps the base model's next-token outputs, speculative decoding equals greedy
decoding, an oracle speculator is accepted in full, and the loss trains the mask positions."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from speechkit.errors import SpeechkitError
from speechkit.models.gated_lora import GatedLoRALinear, apply_gated_lora, lora_gate
from speechkit.models.mtp import (
    SamplerHead,
    add_mask_tokens,
    causal_lm_forward,
    greedy_generate,
    mtp_batch,
    mtp_loss,
    speculative_generate,
)

VOCAB, K = 40, 3


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def adapted(seed: int = 0):
    """A tiny Llama with K mask tokens, gated LoRA whose B is random (so the adapters do change mask positions)."""
    model = tiny_llama(seed)
    apply_gated_lora(model, rank=4, alpha=8)
    masks = add_mask_tokens(model, K)
    for module in model.modules():
        if isinstance(module, GatedLoRALinear):
            torch.nn.init.normal_(module.lora_b, std=0.5)
    sampler = SamplerHead(32, model.get_input_embeddings(), model.get_output_embeddings())
    return model, masks, sampler


def test_gate_off_is_bit_identical_to_the_base_model(one_thread):
    base = tiny_llama()
    model, masks, _ = adapted()
    ids = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad():
        expected = base(input_ids=ids).logits
        gate = torch.zeros_like(ids, dtype=torch.bool)
        with lora_gate(gate):
            got = model(input_ids=ids).logits[..., :VOCAB]
        assert torch.equal(got, expected)
        gate[:, -2:] = True  # the adapters act where the gate is on ...
        with lora_gate(gate):
            changed = model(input_ids=ids).logits[..., :VOCAB]
        assert torch.equal(changed[:, :-2], expected[:, :-2])  # ... and causally nowhere before
        assert not torch.allclose(changed[:, -2:], expected[:, -2:])


@pytest.mark.parametrize("use_sampler", [True, False])
def test_speculative_decoding_equals_greedy(use_sampler, one_thread):
    model, masks, sampler = adapted(seed=1)
    forward = causal_lm_forward(model)
    rng = random.Random(0)
    passes = tokens = 0
    for _ in range(5):
        prompt = [rng.randrange(VOCAB) for _ in range(rng.randint(1, 6))]
        reference = greedy_generate(forward, prompt, 16, eos_id=None, banned_ids=masks)
        result = speculative_generate(forward, sampler if use_sampler else None, prompt, masks, 16, eos_id=None)
        assert result.tokens == reference
        passes, tokens = passes + result.forward_passes, tokens + len(result.tokens)
        assert result.tokens_per_pass >= 1
    assert passes <= tokens


def test_an_oracle_speculator_is_accepted_in_full(one_thread):
    """Mask positions that predict the true greedy continuation: every verifying pass accepts all K tokens."""
    base = tiny_llama(seed=2)
    base_forward = causal_lm_forward(base)
    prompt = [5, 7, 11]
    continuation = greedy_generate(base_forward, prompt, 24, eos_id=None)
    full = prompt + continuation
    mask_ids = list(range(VOCAB, VOCAB + K))

    def oracle(ids, attention_mask):
        ordinary = [t for t in ids[0].tolist() if t < VOCAB]
        logits, hidden = base_forward(ids.clamp_max(VOCAB - 1), attention_mask)
        logits = torch.cat([logits, torch.full((*logits.shape[:-1], K), -1e9)], dim=-1)
        for i, position in enumerate(range(ids.shape[1] - K, ids.shape[1])):
            index = len(ordinary) + 1 + i
            if index < len(full):
                logits[0, position] = -1e9
                logits[0, position, full[index]] = 0.0
        return logits, hidden

    result = speculative_generate(oracle, None, prompt, mask_ids, 24, eos_id=None)
    assert result.tokens == continuation
    assert result.accepted[:-1] == [K] * (len(result.accepted) - 1)
    assert result.forward_passes == 6 + 1  # 24 tokens: 1 + 4 + 4 + 4 + 4 + 4 + 3


def test_training_mask_positions_lowers_the_loss_and_leaves_the_base_alone(one_thread):
    """A tiny Llama trained on a deterministic pattern; its mask positions then learn to predict the future."""
    model = tiny_llama(seed=3)
    sequences = [[(start + 2 * i) % VOCAB for i in range(12)] for start in range(VOCAB)]  # x_{i+1} = x_i + 2
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):  # the base model learns next-token prediction
        ids = torch.tensor(sequences)
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    apply_gated_lora(model, rank=4, alpha=8)
    masks = add_mask_tokens(model, K)
    base_state = {k: v.clone() for k, v in model.state_dict().items() if "lora_" not in k}
    sampler = SamplerHead(32, model.get_input_embeddings(), model.get_output_embeddings())
    trainable = [p for p in model.parameters() if p.requires_grad] + list(sampler.parameters())
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    forward, rng = causal_lm_forward(model), random.Random(0)
    losses = []
    for _ in range(60):
        out = mtp_loss(forward, sampler, mtp_batch(sequences, masks, 0, rng), masks)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    for key, value in model.state_dict().items():  # only the adapters and the mask rows moved
        if key in base_state:
            changed = ~torch.isclose(value, base_state[key]).all(dim=-1) if value.dim() == 2 else None
            if "embed_tokens" in key or "lm_head" in key:
                assert not changed[:VOCAB].any()
            else:
                assert torch.equal(value, base_state[key]), key
    result = speculative_generate(forward, sampler, sequences[0][:3], masks, 9, eos_id=None)
    assert result.tokens == sequences[0][3:12] and result.tokens_per_pass > 1.5


def test_bad_input_is_clear():
    with pytest.raises(SpeechkitError, match="no nn.Linear"):
        apply_gated_lora(tiny_llama(), target_modules=("nothing",))
    with pytest.raises(SpeechkitError, match="at least 2 tokens"):
        mtp_batch([[1]], [40], 0, random.Random(0))
    with pytest.raises(SpeechkitError, match="mask tokens"):
        add_mask_tokens(tiny_llama(), 0)


def test_whisper_decoder_speculates_exactly(tmp_path, one_thread):
    """The same machinery on Whisper's decoder (adapters inside the decoder only), over fixed encoder states."""
    from transformers import WhisperForConditionalGeneration

    from speechkit.models.mtp import whisper_decoder_forward
    from speechkit.testing import tiny_whisper_dir

    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir(tmp_path, multilingual=False)).eval()
    names = apply_gated_lora(model, rank=4, alpha=8, target_modules=("q_proj", "v_proj"),
                             within=("decoder", "self_attn"))
    assert len(names) == 4 and all(".decoder." in name and "self_attn" in name for name in names)
    masks = add_mask_tokens(model, K)
    for module in model.modules():
        if isinstance(module, GatedLoRALinear):
            torch.nn.init.normal_(module.lora_b, std=0.5)
    with torch.no_grad():
        hidden = model.get_encoder()(torch.randn(1, 80, 3000)).last_hidden_state
    forward = whisper_decoder_forward(model, hidden)
    sampler = SamplerHead(32, model.get_input_embeddings(), model.get_output_embeddings())
    prompt = [50257]  # <|startoftranscript|> of tiny.en
    reference = greedy_generate(forward, prompt, 10, eos_id=50256, banned_ids=masks)
    assert speculative_generate(forward, sampler, prompt, masks, 10, eos_id=50256).tokens == reference
