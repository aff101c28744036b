"""The MODEL of ``speechkit transcribe``: a speechkit checkpoint, a Hugging Face or CTranslate2 folder, a packaged
name (``ct2:tiny.en``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from speechkit.errors import SpeechkitError
from speechkit.models.ctranslate2 import VARIABLE_LENGTH_KEY, WhisperBundle

CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")
_TASK_PARTS = ("model", "tokenizer", "feature_extractor", "generation_config")
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # org/name: a Hugging Face hub model (needs the network)


@dataclass
class InferenceModel:
    """A Whisper model ready to decode.

    Attributes:
        bundle: model (eval mode, LoRA merged), tokenizer, feature extractor, generation config.
        name: what the user gave (for messages).
        default_language: the language to decode in when none is given: a checkpoint's training language, or the
            ``language`` an exported folder's generation config carries; ``None``: English for an English-only
            model, detected per input for a multilingual one.
        variable_length: trained on variable-length encoder input (a checkpoint with ``pad_to_30s: false``, or a
            folder whose config sets ``speechkit_variable_length_input``), so it may decode that way. Stock
            Whisper may not: on inputs shorter than 30 s without the padding it repeats a word until the limit.
    """

    bundle: WhisperBundle
    name: str
    default_language: Optional[str] = None
    variable_length: bool = False


def _merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """A peft-wrapped model with its adapters merged (one plain Whisper to decode with); others unchanged."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def _from_checkpoint(path: Path) -> InferenceModel:
    """A Whisper task rebuilt from its checkpoint (a multistage stage does not reload its parent's weights)."""
    import inspect

    from speechkit.checkpoints import load_checkpoint, load_task, task_class
    from speechkit.tasks.whisper_finetune import WhisperFinetune

    cls = task_class(load_checkpoint(path), path, default=WhisperFinetune)  # memory-mapped: cheap
    takes_init = "init_checkpoint" in inspect.signature(cls.__init__).parameters
    task = load_task(path, cls=cls, **({"init_checkpoint": None} if takes_init else {}))
    missing = [name for name in _TASK_PARTS if getattr(task, name, None) is None]
    if missing:
        raise SpeechkitError(f"model {path}: a {cls.__name__} checkpoint, not a Whisper task (it has no "
                             f"{', '.join(missing)})")
    bundle = WhisperBundle(_merge_lora(task.model).eval(), task.tokenizer, task.feature_extractor,
                           task.generation_config)
    return InferenceModel(bundle, str(path), task.hparams.get("language"), not task.hparams.get("pad_to_30s", True))


def load_model(name_or_path: str) -> InferenceModel:
    """Load the MODEL argument of ``speechkit transcribe``.

    Args:
        name_or_path: ``ct2:tiny.en`` / ``ct2:base`` (packaged weights), a ``.ckpt`` written by ``speechkit fit``
            (rebuilt by :func:`speechkit.checkpoints.load_task`), a Hugging Face folder (``speechkit export``,
            ``save_pretrained``), a CTranslate2 folder (``model.bin``) or a hub name (``openai/whisper-tiny``;
            needs the network).

    Raises:
        SpeechkitError: a missing path, or a file or folder that is none of these, naming it.
    """
    from speechkit.models.pretrained import load_whisper

    path = Path(name_or_path)
    if path.is_file():
        if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
            raise SpeechkitError(f"model {name_or_path}: a file that is not a checkpoint (.ckpt); a model is a "
                                 "checkpoint, a Hugging Face or CTranslate2 folder, or ct2:tiny.en / ct2:base")
        return _from_checkpoint(path)
    local = not name_or_path.startswith("ct2:") and not _HUB_NAME.fullmatch(name_or_path)
    if local and not path.exists():
        raise SpeechkitError(f"model {name_or_path}: no such file or folder (a model is a .ckpt, a Hugging Face or "
                             "CTranslate2 folder, or ct2:tiny.en / ct2:base)")
    bundle = load_whisper(name_or_path)
    variable = bool(getattr(bundle.model.config, VARIABLE_LENGTH_KEY, False))
    return InferenceModel(bundle, name_or_path, getattr(bundle.generation_config, "language", None), variable)
