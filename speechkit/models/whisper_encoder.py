"""Variable-length Whisper encoder input: no padding to 30 s, attention to real frames only.

Stock Whisper pads every input to 3000 mel frames (30 s) and transformers' ``WhisperEncoder.forward`` refuses
anything else (``expected_seq_length`` check); its ``attention_mask`` argument is documented as unused, and
``WhisperDecoder`` passes ``encoder_attention_mask=None`` to every cross-attention. So, inside
``variable_length_input(model, feature_lengths)``:

* the encoder takes ``T <= 3000`` mel frames and adds the first ``ceil(T / 2)`` rows of its positional table;
* mel frames past an utterance's length are zeroed before ``conv1`` and after it, so the convolutional stem sees
  exactly what it sees on the utterance alone (its zero padding);
* encoder self-attention and decoder cross-attention get an additive key mask (``finfo.min`` on padded frames).

Hence an utterance in a padded batch gets the same encoder output on its frames, and the same decoder logits,
as the utterance alone. No library does this for HF Whisper, so the encoder forward (20 lines mirroring
``WhisperEncoder.forward``) and the cross-attention mask hooks are written here. Both training (``labels``) and
``generate`` work; use ``generate_variable_length`` for the latter (``WhisperGenerationMixin.generate`` would pad
``input_features`` back to 3000 frames).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from transformers import WhisperForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.whisper.modeling_whisper import WhisperDecoderLayer, WhisperEncoder

from speechkit.errors import SpeechkitError
from speechkit.tensors import lengths_to_mask


def encoder_lengths(feature_lengths: torch.Tensor) -> torch.Tensor:
    """Encoder frames per utterance: ``conv2`` (kernel 3, stride 2, padding 1) maps ``n`` mel frames to ``ceil(n/2)``."""
    return (feature_lengths - 1) // 2 + 1


def _find(model: nn.Module, kind: type) -> list[nn.Module]:
    found = [module for module in model.modules() if isinstance(module, kind)]
    if not found:
        raise SpeechkitError(f"model: no {kind.__name__} inside {type(model).__name__} (expected a Whisper model)")
    return found


def _keep(lengths: torch.Tensor, width: int, device: torch.device) -> torch.Tensor:
    """``(B, width)`` boolean mask of real frames."""
    return lengths_to_mask(lengths.to(device), width)


def _key_bias(keep: torch.Tensor, batch: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask ``(batch, 1, 1, S)`` from ``keep (B, S)``; rows repeat when generate expands the batch."""
    if batch != keep.shape[0]:
        keep = keep.repeat_interleave(batch // keep.shape[0], dim=0)  # beams are expanded with repeat_interleave
    bias = torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)
    return bias[:, None, None, :]


def _encoder_forward(encoder: WhisperEncoder, lengths: torch.Tensor | None):
    def forward(input_features: torch.Tensor, attention_mask: Any = None, **kwargs: Any) -> BaseModelOutput:
        # input_features: (B, n_mels, T) with T <= 2 * max_source_positions
        frames = input_features.shape[-1]
        limit = encoder.max_source_positions * encoder.conv1.stride[0] * encoder.conv2.stride[0]
        if frames > limit:
            raise SpeechkitError(f"input_features: {frames} mel frames, at most {limit} (30 s) per segment")
        keep = None if lengths is None else _keep(lengths, frames, input_features.device)  # (B, T)
        if keep is not None:
            input_features = input_features * keep[:, None, :]
        hidden = nn.functional.gelu(encoder.conv1(input_features))  # (B, D, T)
        if keep is not None:
            hidden = hidden * keep[:, None, :]
        hidden = nn.functional.gelu(encoder.conv2(hidden)).permute(0, 2, 1)  # (B, S, D), S = ceil(T / 2)
        hidden = hidden + encoder.embed_positions.weight[: hidden.shape[1]]
        hidden = nn.functional.dropout(hidden, p=encoder.dropout, training=encoder.training)
        bias = None if keep is None else _key_bias(keep[:, ::2], hidden.shape[0], hidden.dtype)  # keep[:, ::2]: (B, S)
        for layer in encoder.layers:
            if encoder.training and encoder.layerdrop > 0.0 and torch.rand([]) < encoder.layerdrop:
                continue
            hidden = layer(hidden, bias)
        return BaseModelOutput(last_hidden_state=encoder.layer_norm(hidden))

    return forward


def _cross_attention_hook(frames: torch.Tensor):
    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        keys = kwargs.get("key_value_states")
        if kwargs.get("attention_mask") is None and keys is not None:
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            kwargs["attention_mask"] = _key_bias(_keep(frames, keys.shape[1], hidden.device), hidden.shape[0], hidden.dtype)
        return args, kwargs

    return hook


@contextlib.contextmanager
def variable_length_input(model: nn.Module, feature_lengths: torch.Tensor | None = None) -> Iterator[None]:
    """Let a Whisper model take mel inputs shorter than 30 s, attending to each utterance's real frames only.

    Works on ``WhisperForConditionalGeneration``, a peft-wrapped one and a ``WhisperEncoder`` alone. On exit the
    model is stock again (nothing is saved with it).

    Args:
        model: a Whisper model.
        feature_lengths: ``(B,)`` mel frames per utterance of the batch that will be passed inside the block;
            ``None``: no masking (every frame of the batch is real).

    Example:
        >>> with variable_length_input(model, lengths):  # features: (B, 80, max(lengths))
        ...     loss = model(input_features=features, labels=labels).loss
    """
    encoder = _find(model, WhisperEncoder)[0]
    lengths = None if feature_lengths is None else torch.as_tensor(feature_lengths).long()
    hooks = []
    if lengths is not None:
        for layer in (m for m in model.modules() if isinstance(m, WhisperDecoderLayer)):  # none in an encoder alone
            hook = _cross_attention_hook(encoder_lengths(lengths))
            hooks.append(layer.encoder_attn.register_forward_pre_hook(hook, with_kwargs=True))
    encoder.forward = _encoder_forward(encoder, lengths)
    try:
        yield
    finally:
        del encoder.forward
        for handle in hooks:
            handle.remove()


def generate_variable_length(
    model: nn.Module, input_features: torch.Tensor, feature_lengths: torch.Tensor | None = None, **generate_kwargs: Any
) -> Any:
    """``model.generate`` on unpadded features: the encoder runs on the batch's frames, the decoder is masked.

    Args:
        model: a Whisper model (peft-wrapped or not).
        input_features: ``(B, n_mels, T)``, ``T <= 3000``.
        feature_lengths: ``(B,)`` real frames per utterance; ``None``: all ``T``.
        **generate_kwargs: passed to ``generate`` (``language``, ``task``, ``num_beams``, ``max_new_tokens`` ...).

    Returns:
        What ``generate`` returns (token ids without the prompt by default).
    """
    whisper = _find(model, WhisperForConditionalGeneration)[0]
    with variable_length_input(model, feature_lengths):
        encoder_outputs = whisper.get_encoder()(input_features)
        return model.generate(encoder_outputs=encoder_outputs, **generate_kwargs)
