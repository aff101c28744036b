"""``speechkit export`` and ``speechkit merge-lora``: Lightning checkpoints and LoRA adapters to Hugging Face folders."""

from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Literal, Optional

from speechkit.commands import command, command_main
from speechkit.drivers.model_card import card_facts, write_model_card
from speechkit.errors import SpeechkitError
from speechkit.models.adaptation import export
from speechkit.models.ctranslate2_writer import INSTALL_HINT, Quantization, write_ctranslate2


ExportFormat = Literal["hf", "ctranslate2"]


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, merge_lora: bool = False,
                      format: ExportFormat = "hf", quantization: Optional[Quantization] = None) -> Path:
    """Export any Whisper task's Lightning checkpoint to a Hugging Face or CTranslate2 folder with a model card.

    The task is rebuilt with :func:`speechkit.checkpoints.load_task` (``weights_only``; the class the checkpoint
    names, ``WhisperFinetune`` when it names none; a pruned student replays its surgery) and written through its
    Whisper core (:meth:`speechkit.models.whisper_seq2seq.WhisperSeq2Seq.export`): model (or LoRA adapter),
    tokenizer, feature extractor, generation config with the training language as default. ``ctranslate2`` converts
    that folder (LoRA merged) with CTranslate2's converter (:func:`speechkit.models.ctranslate2_writer.write_ctranslate2`).
    Both get a ``README.md`` model card (:mod:`speechkit.drivers.model_card`). The folder is built beside
    ``out_dir`` and moved into place at the end: a failed export leaves a previous folder there unchanged.

    Args:
        checkpoint: the ``.ckpt`` file.
        out_dir: output folder.
        merge_lora: merge LoRA adapters into the weights (``False``: a LoRA model's adapter only; a model
            without LoRA is always saved whole; ``ctranslate2`` always merges).
        format: ``hf`` (transformers ``from_pretrained`` / ``pipeline``) or ``ctranslate2`` (faster-whisper).
        quantization: CTranslate2 weight type (``ctranslate2`` only; ``None`` keeps float32).

    Raises:
        SpeechkitError: not a Whisper task's checkpoint, shapes a Hugging Face config cannot express,
            ``quantization`` without ``ctranslate2``, or ``ctranslate2`` not installed.
    """
    from speechkit.checkpoints import load_checkpoint, load_task, staged_folder
    from speechkit.models.whisper_seq2seq import WhisperSeq2Seq
    from speechkit.tasks.whisper_finetune import WhisperFinetune

    if quantization is not None and format != "ctranslate2":
        raise SpeechkitError(f"--quantization {quantization}: weight types apply to --format ctranslate2 only")
    if format == "ctranslate2" and importlib.util.find_spec("ctranslate2") is None:
        raise SpeechkitError(f"--format ctranslate2 needs the ctranslate2 package: {INSTALL_HINT}")
    task = load_task(checkpoint, default_class=WhisperFinetune)
    core = getattr(task, "core", None)
    if not isinstance(core, WhisperSeq2Seq):
        raise SpeechkitError(f"--checkpoint {checkpoint}: a {type(task).__name__} checkpoint, not a Whisper task")
    card = card_facts(checkpoint, load_checkpoint(checkpoint), core)
    card.adapter_only = format == "hf" and hasattr(core.model, "peft_config") and not merge_lora
    with staged_folder(out_dir) as staging:
        if format == "hf":
            core.export(staging, merge_lora)
        else:
            with tempfile.TemporaryDirectory(prefix=".hf-", dir=staging.parent) as hf:
                write_ctranslate2(core.export(hf, merge_lora=True), staging, quantization)
        write_model_card(staging, card, format, quantization)
    return Path(out_dir)


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
def export_command(*, checkpoint: str, out_dir: str, format: ExportFormat = "hf",
                   quantization: Optional[Quantization] = None, merge_lora: bool = False) -> None:
    """Export a ``WhisperFinetune`` / ``WhisperDistill`` Lightning checkpoint to a Hugging Face or CTranslate2 folder.

    ``hf``: model, tokenizer, feature extractor and generation config (a new language's token included, the training
    language as the default), which ``WhisperForConditionalGeneration.from_pretrained``, ``transformers.pipeline``
    and ``speechkit transcribe`` load. ``ctranslate2``: the same model converted by CTranslate2's converter, for
    faster-whisper and ``ctranslate2.models.Whisper`` (needs ``pip install "speechkit[deploy]"``). Both folders
    carry a ``README.md`` model card: base model, language, data, dev WER, how it was made and how to run it.

    Args:
        checkpoint: Lightning checkpoint (``.ckpt``) of a Whisper task.
        out_dir: output folder (``--out``); an existing one is replaced once the new one is complete.
        format: ``hf`` (Hugging Face transformers) or ``ctranslate2`` (CTranslate2 / faster-whisper).
        quantization: CTranslate2 weight type (``--format ctranslate2`` only; default: float32 as trained).
        merge_lora: merge LoRA adapters into the weights (default for a LoRA run with ``hf``: save the adapter
            only; ``ctranslate2`` always merges).

    Examples:
        speechkit export --checkpoint exp/new_language/best.ckpt --out exp/new_language/hf
        speechkit export --checkpoint exp/new_language/best.ckpt --out exp/new_language/ct2 --format ctranslate2 --quantization int8
        speechkit export --checkpoint exp/lora/last.ckpt --out exp/lora/hf --merge_lora true
    """
    out = export_checkpoint(checkpoint, out_dir, merge_lora, format, quantization)
    print(f"exported {checkpoint} -> {out} ({format}{', ' + quantization if quantization else ''})")


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
