"""``speechkit export`` and ``speechkit merge-lora``: Lightning checkpoints and LoRA adapters to Hugging Face folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from speechkit.commands import command, command_main
from speechkit.errors import SpeechkitError
from speechkit.models.adaptation import export


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, merge_lora: bool = False) -> Path:
    """Export any Whisper task's Lightning checkpoint to a Hugging Face folder.

    The task is rebuilt with :func:`speechkit.checkpoints.load_task` (``weights_only``; the class the checkpoint
    names, ``WhisperFinetune`` when it names none; a pruned student replays its surgery) and written through its
    Whisper core (:meth:`speechkit.models.whisper_seq2seq.WhisperSeq2Seq.export`): model (or LoRA adapter),
    tokenizer, feature extractor, generation config.

    Args:
        checkpoint: the ``.ckpt`` file.
        out_dir: output folder.
        merge_lora: merge LoRA adapters into the weights (``False``: a LoRA model's adapter only; a model
            without LoRA is always saved whole).

    Raises:
        SpeechkitError: not a Whisper task's checkpoint, or shapes a Hugging Face config cannot express.
    """
    from speechkit.checkpoints import load_task
    from speechkit.models.whisper_seq2seq import WhisperSeq2Seq
    from speechkit.tasks.whisper_finetune import WhisperFinetune

    task = load_task(checkpoint, default_class=WhisperFinetune)
    core = getattr(task, "core", None)
    if not isinstance(core, WhisperSeq2Seq):
        raise SpeechkitError(f"--checkpoint {checkpoint}: a {type(task).__name__} checkpoint, not a Whisper task")
    return core.export(out_dir, merge_lora)


def merge_lora(adapter_dir: str | Path, out_dir: str | Path, base: str | None = None) -> Path:
    """Merge an adapter-only export into its base model and write a plain Whisper folder.

    Args:
        adapter_dir: a folder written by ``export(..., merge_lora=False)`` (``adapter_config.json``).
        out_dir: output folder.
        base: base model for ``load_whisper`` (``"ct2:base"``, a folder, a hub name); default: the adapter's
            ``base_model_name_or_path``.
    """
    from peft import PeftModel
    from transformers import GenerationConfig, WhisperFeatureExtractor, WhisperTokenizerFast

    from speechkit.models.pretrained import load_whisper

    adapter = Path(adapter_dir)
    config_file = adapter / "adapter_config.json"
    if not config_file.is_file():
        raise SpeechkitError(f"--adapter {adapter}: no adapter_config.json (not a LoRA adapter export)")
    base = base or json.loads(config_file.read_text()).get("base_model_name_or_path")
    if not base:
        raise SpeechkitError(f"{config_file}: no base_model_name_or_path; pass --base")
    bundle = load_whisper(base)
    model = PeftModel.from_pretrained(bundle.model, str(adapter)).merge_and_unload()
    has = lambda name: (adapter / name).is_file()  # noqa: E731
    tokenizer = WhisperTokenizerFast.from_pretrained(adapter) if has("tokenizer_config.json") else bundle.tokenizer
    extractor = WhisperFeatureExtractor.from_pretrained(adapter) if has("preprocessor_config.json") else bundle.feature_extractor
    generation = GenerationConfig.from_pretrained(adapter) if has("generation_config.json") else bundle.generation_config
    return export(model, tokenizer, extractor, generation, out_dir, merge_lora=True)


@command(aliases={"--out": "--out_dir"})
def export_command(*, checkpoint: str, out_dir: str, merge_lora: bool = False) -> None:
    """Export a ``WhisperFinetune`` / ``WhisperDistill`` Lightning checkpoint to a Hugging Face folder.

    The folder holds the model, tokenizer, feature extractor and generation config (a new language's token
    included), so ``WhisperForConditionalGeneration.from_pretrained`` and ``speechkit transcribe`` load it.

    Args:
        checkpoint: Lightning checkpoint (``.ckpt``) of a Whisper task.
        out_dir: output Hugging Face folder (``--out``).
        merge_lora: merge LoRA adapters into the weights (default for a LoRA run: save the adapter only).

    Examples:
        speechkit export --checkpoint exp/new_language/last.ckpt --out exp/new_language/hf
        speechkit export --checkpoint exp/lora/last.ckpt --out exp/lora/hf --merge_lora true
    """
    out = export_checkpoint(checkpoint, out_dir, merge_lora)
    print(f"exported {checkpoint} -> {out}")


@command(aliases={"--out": "--out_dir"})
def merge_lora_command(*, adapter: str, out_dir: str, base: Optional[str] = None) -> None:
    """Merge an adapter-only export into its base model and write a plain Whisper folder.

    Args:
        adapter: adapter-only export folder (``adapter_config.json``), from ``speechkit export`` of a LoRA run.
        out_dir: output Hugging Face folder (``--out``).
        base: base model (default: the adapter's ``base_model_name_or_path``).

    Examples:
        speechkit merge-lora --adapter exp/lora/hf --out exp/lora/merged
        speechkit merge-lora --adapter exp/lora/hf --out exp/lora/merged --base ct2:base
    """
    out = merge_lora(adapter, out_dir, base)
    print(f"merged {adapter} -> {out}")


export_main = command_main("speechkit.drivers.export:export_command", "speechkit export")
merge_lora_main = command_main("speechkit.drivers.export:merge_lora_command", "speechkit merge-lora")
