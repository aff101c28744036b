"""Write a CTranslate2 (faster-whisper) Whisper folder from a Hugging Face one, with CTranslate2's own converter.

``ctranslate2.converters.TransformersConverter`` does the conversion and the quantization (the ``deploy`` extra);
this module only adds what a folder of a fine-tuned model needs on top:

* ``lang_ids`` once each: a language token added by :func:`speechkit.models.whisper_language.add_language` sits in
  ``lang_to_id`` under ``<|ky|>`` and ``ky``, and the converter would list its id twice;
* the files a reader needs beside ``model.bin``: ``tokenizer.json``, ``preprocessor_config.json`` (faster-whisper
  reads the number of mel bins there) and ``generation_config.json`` (the default language, ``lang_to_id``);
* the decoding defaults under ``config.json``'s ``"speechkit"`` key: the language and task the model was trained on,
  the decoder prompt they make (what ``ctranslate2.models.Whisper.generate`` must be given, since a CTranslate2 folder
  has no generation config of its own), and whether it was trained on unpadded encoder input.
  CTranslate2 ignores keys it does not know; :func:`speechkit.models.ctranslate2.load_ctranslate2` reads them back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

from speechkit.errors import SpeechkitError
from speechkit.models.ctranslate2 import VARIABLE_LENGTH_KEY
from speechkit.models.whisper_language import decoder_prompt_ids, is_multilingual

# CTranslate2's weight types (``ct2-transformers-converter --quantization``); None keeps the weights' float32.
Quantization = Literal["int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16",
                       "float32"]
COPIED_FILES = ("tokenizer.json", "preprocessor_config.json", "generation_config.json")
SPEECHKIT_KEY = "speechkit"
INSTALL_HINT = 'pip install "speechkit[deploy]"'


def write_ctranslate2(hf_dir: str | Path, out_dir: str | Path, quantization: Optional[Quantization] = None) -> Path:
    """Convert a Hugging Face Whisper folder (``speechkit export``) into a CTranslate2 folder.

    Args:
        hf_dir: a Hugging Face Whisper folder with tokenizer, feature extractor and generation config.
        out_dir: the CTranslate2 folder to write (an empty or missing folder: callers stage it, see
            :func:`speechkit.checkpoints.staged_folder`).
        quantization: CTranslate2 weight type; ``None`` keeps float32. ``int8`` is the usual CPU deployment.

    Returns:
        ``out_dir``, holding ``model.bin``, ``config.json``, ``vocabulary.json`` and :data:`COPIED_FILES`.

    Raises:
        SpeechkitError: ``ctranslate2`` is not installed, or the converter refuses the model (its message).
    """
    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError:
        raise SpeechkitError(f"CTranslate2 output needs the ctranslate2 package: {INSTALL_HINT}") from None
    source, out = Path(hf_dir), Path(out_dir)
    copied = [name for name in COPIED_FILES if (source / name).is_file()]
    try:
        TransformersConverter(str(source), copy_files=copied).convert(str(out), quantization=quantization, force=True)
    except (ValueError, RuntimeError, NotImplementedError) as error:
        raise SpeechkitError(f"CTranslate2 converter: {str(error).strip().splitlines()[0]}") from None
    _finish_config(source, out)
    return out


def _finish_config(source: Path, out: Path) -> None:
    """Deduplicate ``lang_ids`` and record the decoding defaults under :data:`SPEECHKIT_KEY` (module docstring)."""
    from transformers import WhisperTokenizerFast

    config = json.loads((out / "config.json").read_text())
    hf_config = json.loads((source / "config.json").read_text())
    generation_file = source / "generation_config.json"
    generation = json.loads(generation_file.read_text()) if generation_file.is_file() else {}
    if config.get("lang_ids"):
        config["lang_ids"] = sorted(set(config["lang_ids"]))
    tokenizer = WhisperTokenizerFast.from_pretrained(source)
    multilingual = is_multilingual(tokenizer)
    language = generation.get("language") if multilingual else None
    task = generation.get("task") or "transcribe"
    prompt = decoder_prompt_ids(tokenizer, language, task) if language or not multilingual else None
    config[SPEECHKIT_KEY] = {
        "language": language, "task": task,
        "prompt": tokenizer.convert_ids_to_tokens(prompt) if prompt else None,  # None: detect the language
        "variable_length_input": bool(hf_config.get(VARIABLE_LENGTH_KEY, False)),
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
