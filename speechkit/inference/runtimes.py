"""The deployment clients an exported model is run with: ``transformers.pipeline``, ``ctranslate2.models.Whisper``
and faster-whisper, each called as its own documentation shows, on 16 kHz mono float32 arrays.

Used to check an export against what users run (tests, ``recipes/new_language/compare_runtimes.py``) and to time
speechkit's decoding against them (``benchmarks/whisper_inference.py``). Each returns one text a clip. The clients
are optional packages (``ctranslate2`` from the ``deploy`` extra, ``faster-whisper`` installed by hand); a missing
one is a one-line error.
"""

from __future__ import annotations

import json
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


def pipeline_transcribe(hf_dir: str | Path, audios: Sequence[np.ndarray], language: Optional[str] = None,
                        batch_size: int = 8) -> list[str]:
    """``transformers.pipeline("automatic-speech-recognition")`` on a Hugging Face folder (greedy; the folder's
    default language unless ``language`` is given)."""
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(hf_dir), device="cpu")
    kwargs = {"language": language} if language else {}
    outputs = asr([np.asarray(a, dtype=np.float32) for a in audios], batch_size=batch_size,
                  generate_kwargs={"num_beams": 1, **kwargs})
    return [output["text"].strip() for output in outputs]


def _ctranslate2_defaults(ct2_dir: Path) -> dict:
    return json.loads((ct2_dir / "config.json").read_text()).get("speechkit") or {}


def ctranslate2_transcribe(ct2_dir: str | Path, audios: Sequence[np.ndarray], prompt: Optional[list[str]] = None,
                           compute_type: str = "default", batch_size: int = 8, max_length: int = 448) -> list[str]:
    """``ctranslate2.models.Whisper.generate`` on 30 s log-mel windows (the folder's feature extractor), greedy.

    Args:
        prompt: decoder prompt tokens; default: the one ``speechkit export`` records in ``config.json``
            (``speechkit.prompt``), which names the training language.
    """
    ctranslate2 = _need("ctranslate2", 'pip install "speechkit[deploy]"')
    from transformers import WhisperFeatureExtractor, WhisperTokenizerFast

    folder = Path(ct2_dir)
    prompt = prompt or _ctranslate2_defaults(folder).get("prompt")
    if not prompt:
        raise SpeechkitError(f"{folder}: no decoder prompt given and none recorded in config.json (speechkit.prompt)")
    extractor = WhisperFeatureExtractor.from_pretrained(folder)
    tokenizer = WhisperTokenizerFast.from_pretrained(folder)
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type=compute_type)
    texts = []
    for start in range(0, len(audios), batch_size):
        chunk = [np.asarray(a, dtype=np.float32) for a in audios[start:start + batch_size]]
        features = extractor(chunk, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
        results = model.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)),
                                 [prompt] * len(chunk), beam_size=1, max_length=max_length)
        # The sequences start with the prompt after <|startoftranscript|> (special tokens, skipped by decode).
        texts += [tokenizer.decode(r.sequences_ids[0], skip_special_tokens=True).strip() for r in results]
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


def faster_whisper_transcribe(model, audios: Sequence[np.ndarray], language: Optional[str] = None,
                              batch_size: int = 0) -> list[str]:
    """Transcribe with faster-whisper: ``WhisperModel.transcribe`` clip by clip (``batch_size`` 0), or its
    ``BatchedInferencePipeline`` (its fastest mode); greedy, no VAD, no conditioning on previous text."""
    faster_whisper = _need("faster_whisper", "pip install faster-whisper")
    runner = faster_whisper.BatchedInferencePipeline(model) if batch_size else model
    extra = {"batch_size": batch_size} if batch_size else {"condition_on_previous_text": False}
    texts = []
    for audio in audios:
        segments, _ = runner.transcribe(np.asarray(audio, dtype=np.float32), language=language, beam_size=1,
                                        without_timestamps=True, **extra)
        texts.append(" ".join(segment.text.strip() for segment in segments).strip())
    return texts
