"""The deployment clients an exported model is run with: ``transformers.pipeline``, ``ctranslate2.models.Whisper``
and faster-whisper, each called as its own documentation shows, on 16 kHz mono float32 arrays.

Used to check an export against what users run (tests, ``recipes/new_language/compare_runtimes.py``) and to time
speechkit's decoding against them (``benchmarks/whisper_inference.py``). Each returns one text a clip. The clients
are optional packages (``ctranslate2`` from the ``deploy`` extra, ``faster-whisper`` installed by hand); a missing
one is a one-line error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from speechkit.errors import SpeechkitError

SAMPLE_RATE = 16000


def _need(module: str, install: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SpeechkitError(f"{module} is not installed: {install}") from None


def load_pipeline(hf_dir: str | Path, threads: int = 0):
    """``transformers.pipeline("automatic-speech-recognition")`` on a Hugging Face folder, on the CPU.

    Args:
        threads: torch intra-op threads (0: leave torch's setting).
    """
    import torch
    from transformers import pipeline

    if threads:
        torch.set_num_threads(threads)
    return pipeline("automatic-speech-recognition", model=str(hf_dir), device="cpu")


def pipeline_transcribe(hf_dir: str | Path | object, audios: Sequence[np.ndarray], language: Optional[str] = None,
                        batch_size: int = 8, max_new_tokens: Optional[int] = None) -> list[str]:
    """``transformers.pipeline("automatic-speech-recognition")`` on a Hugging Face folder (greedy; the folder's
    default language unless ``language`` is given); ``hf_dir`` may also be a pipeline from :func:`load_pipeline`.

    Every input is padded to 30 s (the pipeline's feature extractor); ``batch_size`` inputs go through one
    ``generate``.
    """
    asr = load_pipeline(hf_dir) if isinstance(hf_dir, (str, Path)) else hf_dir
    kwargs = {"language": language} if language else {}
    if max_new_tokens is not None:
        kwargs["max_new_tokens"] = max_new_tokens
    outputs = asr([np.asarray(a, dtype=np.float32) for a in audios], batch_size=batch_size,
                  generate_kwargs={"num_beams": 1, **kwargs})
    return [output["text"].strip() for output in outputs]


def _ctranslate2_defaults(ct2_dir: Path) -> dict:
    return json.loads((ct2_dir / "config.json").read_text()).get("speechkit") or {}


@dataclass
class CTranslate2Whisper:
    """A CTranslate2 Whisper folder loaded to decode: the model, its feature extractor, tokenizer and prompt."""

    model: object  # ctranslate2.models.Whisper
    extractor: object  # transformers.WhisperFeatureExtractor
    tokenizer: object  # transformers.WhisperTokenizerFast
    prompt: list[str]


def load_ctranslate2_whisper(ct2_dir: str | Path, prompt: Optional[list[str]] = None, compute_type: str = "default",
                             threads: int = 0) -> CTranslate2Whisper:
    """``ctranslate2.models.Whisper`` on a folder, with what decoding it needs.

    Args:
        prompt: decoder prompt tokens; default: the one ``speechkit export`` records in ``config.json``
            (``speechkit.prompt``), which names the training language.
        compute_type: CTranslate2's compute type (``int8``, ``float32``, ``default``: the stored weights' type).
        threads: CTranslate2 intra-op threads (0: its default, 4).
    """
    ctranslate2 = _need("ctranslate2", 'pip install "speechkit[deploy]"')
    from transformers import WhisperFeatureExtractor, WhisperTokenizerFast

    folder = Path(ct2_dir)
    prompt = prompt or _ctranslate2_defaults(folder).get("prompt")
    if not prompt:
        raise SpeechkitError(f"{folder}: no decoder prompt given and none recorded in config.json (speechkit.prompt)")
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type=compute_type, intra_threads=threads)
    return CTranslate2Whisper(model, WhisperFeatureExtractor.from_pretrained(folder),
                              WhisperTokenizerFast.from_pretrained(folder), list(prompt))


def ctranslate2_transcribe(ct2_dir: str | Path | CTranslate2Whisper, audios: Sequence[np.ndarray],
                           prompt: Optional[list[str]] = None, compute_type: str = "default", batch_size: int = 8,
                           max_length: int = 448) -> list[str]:
    """``ctranslate2.models.Whisper.generate`` on 30 s log-mel windows (the folder's feature extractor), greedy,
    ``batch_size`` inputs a call.

    Args:
        ct2_dir: the folder, or one loaded by :func:`load_ctranslate2_whisper` (then ``prompt`` and
            ``compute_type`` are its own).
        prompt: decoder prompt tokens; default: the one ``speechkit export`` records in ``config.json``
            (``speechkit.prompt``), which names the training language.
    """
    import ctranslate2

    runner = ct2_dir if isinstance(ct2_dir, CTranslate2Whisper) else load_ctranslate2_whisper(ct2_dir, prompt,
                                                                                             compute_type)
    texts = []
    for start in range(0, len(audios), batch_size):
        chunk = [np.asarray(a, dtype=np.float32) for a in audios[start:start + batch_size]]
        features = runner.extractor(chunk, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
        results = runner.model.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)),
                                        [runner.prompt] * len(chunk), beam_size=1, max_length=max_length)
        # The sequences start with the prompt after <|startoftranscript|> (special tokens, skipped by decode).
        texts += [runner.tokenizer.decode(r.sequences_ids[0], skip_special_tokens=True).strip() for r in results]
    return texts


def register_faster_whisper_language(code: str) -> None:
    """Let faster-whisper accept a language code Whisper did not ship with (its list is fixed): the same line the
    model card of a new-language export tells users to run."""
    tokenizer = _need("faster_whisper.tokenizer", "pip install faster-whisper")
    if code not in tokenizer._LANGUAGE_CODES:
        tokenizer._LANGUAGE_CODES += (code,)


def faster_whisper_model(ct2_dir: str | Path, compute_type: str = "int8", cpu_threads: int = 0):
    """``faster_whisper.WhisperModel`` on a CTranslate2 folder, its new language (if any) registered."""
    faster_whisper = _need("faster_whisper", "pip install faster-whisper")
    defaults = _ctranslate2_defaults(Path(ct2_dir))
    if defaults.get("language"):
        register_faster_whisper_language(defaults["language"])
    return faster_whisper.WhisperModel(str(ct2_dir), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads)


def faster_whisper_transcribe(model, audios: Sequence[np.ndarray | str], language: Optional[str] = None,
                              batch_size: int = 0, vad_filter: bool = False,
                              max_new_tokens: Optional[int] = None,
                              temperature: Optional[float] = None, pad_audio_to_30s: bool = False) -> list[str]:
    """Transcribe with faster-whisper, greedy (``beam_size=1``), ``without_timestamps=True``, no conditioning on
    previous text; its own temperature fallback and thresholds left at their defaults unless ``temperature`` is
    given.

    Args:
        model: a ``faster_whisper.WhisperModel`` (:func:`faster_whisper_model`).
        audios: 16 kHz mono float32 arrays, or audio file paths (faster-whisper decodes them: ``decode_audio``).
        batch_size: 0: ``WhisperModel.transcribe`` one input at a time; more: its ``BatchedInferencePipeline``,
            which batches the chunks of ONE input (its VAD segments, or the whole input of at most 30 s without
            VAD): on inputs under 30 s every batch holds one chunk.
        vad_filter: faster-whisper's Silero VAD before decoding.
        max_new_tokens: tokens decoded per chunk at most (default: up to the decoder's 448 positions).
        temperature: one temperature, no fallback (``0.0``: one greedy pass, as ``pipeline`` and ``ctranslate2``
            decode); default: faster-whisper's ladder 0.0 ... 1.0, which re-decodes by sampling an output whose
            mean log-probability is below -1 (a weakly trained model's outputs then turn random).
        pad_audio_to_30s: pad an input shorter than 30 s with silence first. faster-whisper pads the normalized
            log-mel features of a short input with zeros, where transformers and OpenAI's Whisper pad the audio with
            silence; a fine-tuned model may never have seen the former and stop early (measured on the new-language
            recipe: padded, faster-whisper's transcripts are CTranslate2's on transformers' features).
    """
    faster_whisper = _need("faster_whisper", "pip install faster-whisper")
    runner = faster_whisper.BatchedInferencePipeline(model) if batch_size else model
    extra = {"batch_size": batch_size} if batch_size else {"condition_on_previous_text": False}
    if max_new_tokens is not None:
        extra["max_new_tokens"] = max_new_tokens
    if temperature is not None:
        extra["temperature"] = temperature
    texts = []
    for audio in audios:
        audio = audio if isinstance(audio, str) else np.asarray(audio, dtype=np.float32)
        if pad_audio_to_30s:
            audio = faster_whisper.decode_audio(audio) if isinstance(audio, str) else audio
            audio = np.pad(audio, (0, max(0, 30 * SAMPLE_RATE - len(audio))))
        segments, _ = runner.transcribe(audio, language=language, beam_size=1, without_timestamps=True,
                                        vad_filter=vad_filter, **extra)
        texts.append(" ".join(segment.text.strip() for segment in segments).strip())
    return texts
