"""Whisper adaptation strategies as functions: freeze encoder layers, LoRA, one strategy by name, count, export.

*Fine-tuning Whisper for Pashto ASR: strategies and scale* (Rahman 2026) compares full fine-tuning, LoRA
(``W' = W + (alpha / r) B A``, ``A in R^{r x d_in}``, ``B in R^{d_out x r}`` zero-initialised, rank 64) and a
frozen encoder (the first two of six encoder layers; the convolutional stem and positional table below them are
frozen too). LoRA comes from ``peft``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Mapping, get_args

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from speechkit.errors import SpeechkitError

Strategy = Literal["full", "lora", "frozen_encoder"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


def _encoder(model: nn.Module) -> WhisperEncoder:
    for module in model.modules():
        if isinstance(module, WhisperEncoder):
            return module
    raise SpeechkitError(f"model: no WhisperEncoder inside {type(model).__name__}")


def freeze_encoder_layers(model: nn.Module, n_layers: int) -> list[str]:
    """Freeze the encoder's stem (``conv1``, ``conv2``, ``embed_positions``) and its first ``n_layers`` layers.

    Args:
        model: a Whisper model (``WhisperForConditionalGeneration`` or a module containing one).
        n_layers: encoder layers to freeze, ``0 <= n_layers <= encoder_layers`` (paper: 2 of 6 on whisper-base).

    Returns:
        Names (relative to the encoder) of the parameters frozen.
    """
    encoder = _encoder(model)
    if not 0 <= n_layers <= len(encoder.layers):
        raise SpeechkitError(f"frozen_encoder_layers={n_layers}: this model has {len(encoder.layers)} encoder layers; "
                             f"expected 0..{len(encoder.layers)}")
    frozen = []
    modules = {"conv1": encoder.conv1, "conv2": encoder.conv2, "embed_positions": encoder.embed_positions}
    modules.update({f"layers.{i}": encoder.layers[i] for i in range(n_layers)})
    for prefix, module in modules.items():
        for name, parameter in module.named_parameters():
            parameter.requires_grad_(False)
            frozen.append(f"{prefix}.{name}")
    return frozen


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)  # peft's rule for a list of target names


def apply_lora(
    model: PreTrainedModel,
    rank: int = 64,
    alpha: float = 128.0,
    dropout: float = 0.05,
    target_modules: Sequence[str] = ("q_proj", "v_proj"),
) -> PeftModel:
    """Wrap ``model`` with peft LoRA adapters; only the adapters are trainable.

    Args:
        model: a Whisper model.
        rank: LoRA rank ``r`` (paper: 64).
        alpha: scaling numerator (the update is ``alpha / r * B A``).
        dropout: dropout on the adapter input.
        target_modules: module names (or dotted suffixes) to adapt, e.g. ``["q_proj", "v_proj"]``.

    Raises:
        SpeechkitError: a non-positive rank, or a target that matches no module (named in the message).
    """
    if rank <= 0:
        raise SpeechkitError(f"rank={rank}: expected a positive LoRA rank")
    names = [name for name, _ in model.named_modules()]
    unmatched = [target for target in target_modules if not any(_matches(name, target) for name in names)]
    if not target_modules or unmatched:
        raise SpeechkitError(f"target_modules: {unmatched or '[]'} match no module of {type(model).__name__} "
                             "(Whisper has e.g. q_proj, k_proj, v_proj, out_proj, fc1, fc2)")
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules), bias="none")
    return get_peft_model(model, config)


def apply_strategy(
    model: PreTrainedModel,
    strategy: Strategy,
    lora_rank: int = 64,
    lora_alpha: float = 128.0,
    lora_dropout: float = 0.05,
    lora_target_modules: Sequence[str] = ("q_proj", "v_proj"),
    frozen_encoder_layers: int = 2,
) -> nn.Module:
    """The model one fine-tuning strategy trains: ``full`` (as is), ``lora`` (peft-wrapped, adapters only trainable)
    or ``frozen_encoder`` (stem and first ``frozen_encoder_layers`` encoder layers frozen, in place).

    Raises:
        SpeechkitError: an unknown strategy, or bad LoRA / freezing options (naming the option).
    """
    if strategy not in STRATEGIES:
        raise SpeechkitError(f"strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if strategy == "lora":
        return apply_lora(model, lora_rank, lora_alpha, lora_dropout, lora_target_modules)
    if strategy == "frozen_encoder":
        freeze_encoder_layers(model, frozen_encoder_layers)
    return model


def count_trainable(model: nn.Module) -> int:
    """Number of trainable (``requires_grad``) parameter elements."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def export(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    feature_extractor: WhisperFeatureExtractor,
    generation_config: GenerationConfig,
    out_dir: str | Path,
    merge_lora: bool,
    config_flags: Mapping[str, Any] | None = None,
) -> Path:
    """Write a Hugging Face folder: model (or LoRA adapter), tokenizer, feature extractor, generation config.

    Args:
        model: a Whisper model, or a peft ``PeftModel`` around one.
        tokenizer: the tokenizer (with any added language token).
        feature_extractor: the feature extractor.
        generation_config: the generation config (with any added language).
        out_dir: output folder.
        merge_lora: for a ``PeftModel``: ``True`` merges the adapters into a copy of the base weights (a plain
            Whisper folder that ``pipeline`` loads); ``False`` saves the adapter only (``PeftModel.from_pretrained``
            on the base model loads it). Ignored for a plain model.
        config_flags: extra attributes written into the model's ``config.json`` (not into an adapter-only folder);
            the model's own config is left as it was.

    Returns:
        ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, PeftModel) and not merge_lora:
        model.save_pretrained(out)  # adapter_config.json + adapter_model.safetensors
        generation_config.save_pretrained(out)
    else:
        if isinstance(model, PeftModel):
            model = copy.deepcopy(model).merge_and_unload()  # a copy: the training model keeps its adapters
        model.generation_config = generation_config
        saved_config = model.config
        model.config = copy.deepcopy(saved_config)
        for name, value in (config_flags or {}).items():
            setattr(model.config, name, value)
        try:
            model.save_pretrained(out)
        finally:
            model.config = saved_config
    tokenizer.save_pretrained(out)
    feature_extractor.save_pretrained(out)
    return out
