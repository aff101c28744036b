"""Sampled transcripts from Whisper and their teacher-forced log-probabilities, for policy-gradient training
(:mod:`speechkit.rl`: GRPO, minimum-WER).

The encoder runs once per utterance; its output is repeated for the G samples of each (Whisper's ``generate``
refuses ``num_return_sequences`` when given encoder outputs instead of features). Sequences keep the decoder
prompt, so the log-probabilities are those of exactly the tokens the model chose after the prompt, up to and
including the first ``<|endoftext|>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutput

from speechkit.errors import SpeechkitError
from speechkit.models.whisper_decode import decoding_config, frame_mask, quiet_internal_warning
from speechkit.models.whisper_encoder import variable_length_input
from speechkit.models.whisper_seq2seq import WHISPER_FRAMES, WhisperSeq2Seq
from speechkit.models.whisper_language import is_multilingual
from speechkit.rl.grpo import token_entropy, token_log_probs


def encode(core: WhisperSeq2Seq, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Encoder states ``(B, S, D)`` of :meth:`WhisperSeq2Seq.features` output (variable-length unless padded)."""
    encoder = core.model.get_encoder()  # a peft wrapper forwards it to the adapted model
    if core.pad_to_30s:
        return encoder(features).last_hidden_state
    with variable_length_input(core.model, lengths):
        return encoder(features).last_hidden_state


@torch.no_grad()
def sample(core: WhisperSeq2Seq, hidden: torch.Tensor, lengths: torch.Tensor, num_samples: int,
           temperature: float = 1.0) -> torch.Tensor:
    """``num_samples`` transcripts per utterance drawn at ``temperature``: ``(B * G, U)`` token ids, prompt
    included, rows of one utterance adjacent, padded with ``<|endoftext|>``."""
    if num_samples < 1 or temperature <= 0:
        raise SpeechkitError(f"num_samples must be >= 1 and temperature > 0, got {num_samples}, {temperature}")
    hidden = hidden.detach().repeat_interleave(num_samples, dim=0)
    lengths = lengths.repeat_interleave(num_samples)
    frames = WHISPER_FRAMES if core.pad_to_30s else int(lengths.max())
    kwargs = {"generation_config": decoding_config(core.generation_config, core.max_new_tokens, 1),
              "attention_mask": frame_mask(lengths, len(lengths), frames, hidden.device),
              "temperature": temperature, "return_dict_in_generate": True}
    if is_multilingual(core.tokenizer):
        kwargs.update(language=core.language, task=core.task)
    outputs = BaseModelOutput(last_hidden_state=hidden)
    with quiet_internal_warning():
        if core.pad_to_30s:
            return core.model.generate(encoder_outputs=outputs, **kwargs).sequences
        with variable_length_input(core.model, lengths):
            return core.model.generate(encoder_outputs=outputs, **kwargs).sequences


@dataclass
class ScoredTokens:
    """Per-position values of sampled sequences ``(N, U - 1)``: position t scores token t + 1."""

    log_probs: torch.Tensor  # log p(token) under the model at the sampling temperature
    entropy: torch.Tensor  # entropy of the model's distribution there
    mask: torch.Tensor  # 1 on generated tokens up to and including the first <|endoftext|>
    tokens: torch.Tensor  # the scored tokens (N, U - 1)


def generated_mask(sequences: torch.Tensor, prompt_length: int, eot: int) -> torch.Tensor:
    """``(N, U - 1)`` float mask of the targets ``sequences[:, 1:]`` that were generated: after the prompt, up to and
    including the first ``eot``."""
    targets = sequences[:, 1:]
    positions = torch.arange(targets.shape[1], device=sequences.device)[None, :]
    generated = positions >= prompt_length - 1
    is_eot = (targets == eot) & generated
    after_eot = (is_eot.long().cumsum(dim=1) - is_eot.long()) > 0  # strictly after the first eot
    return (generated & ~after_eot).float()


def score(core: WhisperSeq2Seq, hidden: torch.Tensor, lengths: torch.Tensor, sequences: torch.Tensor,
          temperature: float = 1.0) -> ScoredTokens:
    """Teacher-forced scores of ``sequences`` (from :func:`sample`) given encoder states ``hidden (B, S, D)`` of their
    ``B = N / G`` utterances (repeated here, so gradients reach the encoder once per utterance)."""
    if sequences.shape[0] % hidden.shape[0]:
        raise SpeechkitError(f"sequences: {sequences.shape[0]} rows are not a multiple of the {hidden.shape[0]} "
                             "utterances")
    repeats = sequences.shape[0] // hidden.shape[0]
    hidden, lengths = hidden.repeat_interleave(repeats, dim=0), lengths.repeat_interleave(repeats)
    inputs, targets = sequences[:, :-1], sequences[:, 1:]
    kwargs = {"encoder_outputs": (hidden,), "decoder_input_ids": inputs}
    if core.pad_to_30s:
        logits = core.model(**kwargs).logits
    else:
        with variable_length_input(core.model, lengths):
            logits = core.model(**kwargs).logits
    logits = logits / temperature
    return ScoredTokens(token_log_probs(logits, targets), token_entropy(logits),
                        generated_mask(sequences, len(core.prompt), core.eot), targets)
