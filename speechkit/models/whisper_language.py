"""Whisper language tokens: look one up, add one Whisper lacks, and build the decoder prompt.

*Fine-tuning Whisper for Pashto ASR: strategies and scale* (Rahman 2026) trains with the prompt
``<|startoftranscript|><|xx|><|transcribe|><|notimestamps|> y_1..y_n <|endoftext|>``. A language Whisper has keeps
its token (Pashto: ``<|ps|>``); a language it lacks gets a new special token ``<|xx|>`` whose embedding row is
appended (every old row kept) and initialised from a related language's row or the mean of all language rows.
"""

from __future__ import annotations

import re
from typing import Literal

import torch
from tokenizers import AddedToken
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from speechkit.errors import SpeechkitError

# The English-only Whisper vocabulary is GPT-2's: <|endoftext|> is id 50256; the multilingual one puts it at 50257
# (openai/whisper tokenizer.py: encodings "gpt2" and "multilingual").
_ENGLISH_ONLY_EOT = 50256
_CODE = re.compile(r"^[a-z]{2,3}(_[a-z0-9]+)?$")


def _token(code: str) -> str:
    code = code.strip()
    return code if code.startswith("<|") else f"<|{code.lower()}|>"


def has_language(tokenizer: PreTrainedTokenizerBase, code: str) -> bool:
    """Whether the tokenizer has the token ``<|code|>`` (``code`` may also be given as ``"<|xx|>"``)."""
    return _token(code) in tokenizer.get_vocab()


def is_multilingual(tokenizer: PreTrainedTokenizerBase) -> bool:
    """False for the English-only vocabulary (``*.en`` models), whose prompts carry no language or task token."""
    return tokenizer.convert_tokens_to_ids("<|endoftext|>") != _ENGLISH_ONLY_EOT


def language_token_id(tokenizer: PreTrainedTokenizerBase, code: str) -> int:
    """The id of ``<|code|>``.

    Args:
        tokenizer: a Whisper tokenizer.
        code: a language code (``"ps"``) or token (``"<|ps|>"``).

    Raises:
        SpeechkitError: the tokenizer has no such token (add it with ``add_language``).
    """
    token = _token(code)
    vocab = tokenizer.get_vocab()
    if token not in vocab:
        raise SpeechkitError(
            f"language {code!r}: the tokenizer has no token {token}; for a language Whisper lacks call "
            "add_language(model, tokenizer, generation_config, code, init_from=...)"
        )
    return vocab[token]


def language_row_ids(tokenizer: PreTrainedTokenizerBase, generation_config: GenerationConfig) -> list[int]:
    """Distinct ids of all language tokens (``generation_config.lang_to_id`` values)."""
    lang_to_id = getattr(generation_config, "lang_to_id", None)
    if not lang_to_id:
        raise SpeechkitError("generation_config has no lang_to_id: not a multilingual Whisper generation config")
    return sorted(set(lang_to_id.values()))


def add_language(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    generation_config: GenerationConfig,
    code: str,
    init_from: str | None = None,
) -> int:
    """Add ``<|code|>`` for a language Whisper lacks; return its id.

    The tokenizer gets a special token (so decoding with ``skip_special_tokens`` drops it), the decoder embedding
    grows by one row (the tied output projection with it; every old row is kept), the new row is a copy of
    ``init_from``'s row or the mean of all language rows, and ``generation_config.lang_to_id`` maps both
    ``"<|code|>"`` and the bare ``"code"`` to the new id. The bare key is what lets
    ``generate(language="code")`` and ``pipeline(..., generate_kwargs={"language": "code"})`` work from the saved
    files alone: transformers' ``WhisperGenerationMixin`` first looks the given language up in ``lang_to_id``
    and only then in its fixed ``TO_LANGUAGE_CODE`` table, which a new code is not in.

    Args:
        model: a multilingual ``WhisperForConditionalGeneration`` (before LoRA wrapping).
        tokenizer: its tokenizer (``len(tokenizer)`` must equal the embedding rows).
        generation_config: its generation config (changed in place).
        code: the new language code, lower case (``"ky"``, ``"eo"`` ...).
        init_from: code of a related language whose row initialises the new one; ``None`` for the mean.

    Raises:
        SpeechkitError: a malformed or existing code, an English-only model, an unknown ``init_from``, or a
            tokenizer whose size differs from the embedding table.
    """
    if not _CODE.match(code):
        raise SpeechkitError(f"language code {code!r}: expected 2-3 lower-case letters (ISO 639), e.g. 'ky'")
    if has_language(tokenizer, code):
        raise SpeechkitError(f"language {code!r}: Whisper already has {_token(code)} (id "
                             f"{language_token_id(tokenizer, code)}); use it instead of adding a token")
    if not is_multilingual(tokenizer):
        raise SpeechkitError(f"language {code!r}: an English-only Whisper has no language tokens; use a multilingual one")
    embedding = model.get_input_embeddings()
    rows = embedding.weight.shape[0]
    if len(tokenizer) != rows:
        raise SpeechkitError(f"tokenizer has {len(tokenizer)} tokens but the model has {rows} embedding rows")
    source = [language_token_id(tokenizer, init_from)] if init_from else language_row_ids(tokenizer, generation_config)
    tokenizer.add_tokens([AddedToken(_token(code), special=True, normalized=False)], special_tokens=True)
    new_id = language_token_id(tokenizer, code)
    model.resize_token_embeddings(rows + 1, mean_resizing=False)
    with torch.no_grad():
        weight = model.get_input_embeddings().weight  # (V + 1, D)
        weight[new_id] = weight[source].mean(dim=0)
    generation_config.lang_to_id = {**generation_config.lang_to_id, _token(code): new_id, code: new_id}
    return new_id


def decoder_prompt_ids(
    tokenizer: PreTrainedTokenizerBase,
    language: str | None,
    task: Literal["transcribe", "translate"] = "transcribe",
    timestamps: bool = False,
) -> list[int]:
    """The decoder prompt: ``<|startoftranscript|><|xx|><|task|>[<|notimestamps|>]``.

    English-only models (``*.en``) take no language or task token: ``<|startoftranscript|>[<|notimestamps|>]``.

    Args:
        tokenizer: a Whisper tokenizer.
        language: language code (``None`` only for English-only models).
        task: ``"transcribe"`` or ``"translate"``.
        timestamps: leave out ``<|notimestamps|>`` (the model then predicts timestamps).

    Raises:
        SpeechkitError: an unknown language or task, or a non-English language on an English-only model.
    """
    if task not in ("transcribe", "translate"):
        raise SpeechkitError(f"task {task!r}: expected 'transcribe' or 'translate'")
    ids = [tokenizer.convert_tokens_to_ids("<|startoftranscript|>")]
    if is_multilingual(tokenizer):
        if language is None:
            raise SpeechkitError("language: a multilingual Whisper prompt needs a language code, got None")
        ids += [language_token_id(tokenizer, language), tokenizer.convert_tokens_to_ids(f"<|{task}|>")]
    elif language not in (None, "en", "<|en|>") or task != "transcribe":
        raise SpeechkitError(f"language {language!r}, task {task!r}: an English-only Whisper only transcribes English")
    if not timestamps:
        ids.append(tokenizer.convert_tokens_to_ids("<|notimestamps|>"))
    return ids
