"""Whisper decoding for ``speechkit transcribe``: batched short-form (<= 30 s) and sequential long-form (any length).

Short-form: a batch of inputs (sorted by duration by the caller) goes through the encoder once, padded to 30 s
(stock Whisper) or, for a model trained that way, as variable-length input (``variable_length_input``: only the
batch's longest frames, padded frames masked). The decoder runs batched, greedy or beam search, without timestamps
(one segment spans the input). Whisper's guards (*Robust Speech Recognition via Large-Scale Weak Supervision*,
Radford et al. 2022, section 4.5) run per input: an output whose gzip compression ratio exceeds
``compression_ratio_threshold`` (a loop) or whose mean token log-probability is below ``logprob_threshold`` is
decoded again, sampling at the next temperature of ``temperatures``, reusing the encoder output; an input whose
``<|nospeech|>`` probability exceeds ``no_speech_threshold`` while its log-probability is below
``logprob_threshold`` is silence (empty text). transformers' own fallback cannot run on encoder outputs, hence
this loop.

Long-form: transformers' ``WhisperGenerationMixin.generate`` on the whole input (``truncation=False``,
``padding="longest"``, ``attention_mask``): sequential 30 s windows, each continued from the last timestamp token
it predicts, with the same guards (section 4.5 of the paper), and segments with start and end times.

Language: given, or detected for a multilingual model from the first decoder step's language-token logits on the
input's first 30 s; an English-only model decodes English only. Sampling is seeded (``seed``) before every
``generate`` call, so a run is reproducible on the same machine.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Optional, Sequence

import numpy as np
import torch
from transformers import GenerationConfig, WhisperForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

from speechkit.errors import SpeechkitError
from speechkit.models.transcript import Decoded, Segment
from speechkit.models.ctranslate2 import WhisperBundle
from speechkit.models.whisper_encoder import variable_length_input
from speechkit.models.whisper_language import is_multilingual

SAMPLING_RATE = 16000
FRAMES_PER_SECOND = 100  # Whisper's log-mel hop is 10 ms
WINDOW_SECONDS = 30.0
DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
SAMPLE_LEN = 224  # tokens decoded per 30 s window at most (openai/whisper: n_text_ctx // 2)
# transformers' long-form loop passes generation_config and suppress_tokens together to its own inner generate
# (transformers PR #48108); its deprecation warning is about that internal call, not about what speechkit passes.
_INTERNAL_WARNING = "Passing `generation_config` together with generation-related arguments"


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode; the defaults are Whisper's (greedy, guards on).

    Attributes:
        task: ``transcribe`` or ``translate`` (to English; multilingual models only).
        num_beams: 1 for greedy search, more for beam search (at temperature 0).
        max_new_tokens: tokens decoded per input (short-form) or per 30 s window (long-form) at most.
        temperatures: the fallback ladder; ``(0.0,)`` turns the fallback off.
        compression_ratio_threshold: gzip ratio above which an output is a loop (``None``: not checked).
        logprob_threshold: mean token log-probability below which an output is retried (``None``: not checked).
        no_speech_threshold: ``<|nospeech|>`` probability above which a low-probability output is silence
            (``None``: not checked; it needs ``logprob_threshold``).
        condition_on_prev_tokens: long-form: prompt each window with the text of the previous ones.
        input_length: ``variable`` (encoder input cut to the batch's longest input) or ``30s`` (stock padding).
        seed: seeds torch before every ``generate`` call (sampling at temperature > 0 becomes reproducible).
    """

    task: Literal["transcribe", "translate"] = "transcribe"
    num_beams: int = 1
    max_new_tokens: int = SAMPLE_LEN
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES
    compression_ratio_threshold: Optional[float] = 2.4
    logprob_threshold: Optional[float] = -1.0
    no_speech_threshold: Optional[float] = 0.6
    condition_on_prev_tokens: bool = False
    input_length: Literal["variable", "30s"] = "30s"
    seed: int = 0


def unguarded(options: DecodeOptions) -> DecodeOptions:
    """``options`` with every guard off: one decoding at the first temperature, nothing checked."""
    return dataclasses.replace(options, temperatures=options.temperatures[:1], compression_ratio_threshold=None,
                               logprob_threshold=None, no_speech_threshold=None)


# ------------------------------------------------------------------ model facts
def whisper_of(bundle: WhisperBundle) -> WhisperForConditionalGeneration:
    """The bundle's Whisper model (inside a peft wrapper: the model with its adapters active)."""
    model = bundle.model.get_base_model() if hasattr(bundle.model, "get_base_model") else bundle.model
    if not isinstance(model, WhisperForConditionalGeneration):
        raise SpeechkitError(f"model: a {type(model).__name__}, expected a Whisper model")
    return model


def language_codes(generation_config: GenerationConfig) -> dict[int, str]:
    """``{token id: code}`` of every language the model has (``<|de|>`` -> ``de``; an added ``ky`` too)."""
    codes: dict[int, str] = {}
    for key, token_id in sorted((getattr(generation_config, "lang_to_id", None) or {}).items()):
        codes.setdefault(int(token_id), key[2:-2] if key.startswith("<|") else key)
    return codes


def check_language(bundle: WhisperBundle, language: Optional[str], model_name: str) -> Optional[str]:
    """The language code to decode in: ``"en"`` for an English-only model, ``None`` to detect, else ``language``.

    Args:
        bundle: the model.
        language: a code (``de``), a name transformers knows (``german``), or ``None``.
        model_name: for messages.

    Raises:
        SpeechkitError: a language the model does not have (one line, listing what it has).
    """
    if not is_multilingual(bundle.tokenizer):
        if language is not None and language.strip().lower() not in ("en", "english"):
            raise SpeechkitError(f"language {language!r}: {model_name} is an English-only Whisper (it transcribes "
                                 "English only); use a multilingual model such as ct2:base")
        return "en"
    if language is None:
        return None
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    code = TO_LANGUAGE_CODE.get(language.strip().lower(), language.strip().lower())
    known = sorted(set(language_codes(bundle.generation_config).values()))
    if code not in known:
        raise SpeechkitError(f"language {language!r}: {model_name} has no <|{code}|> token; it has {len(known)} "
                             f"languages: {' '.join(known)}")
    return code


def decoding_config(generation_config: GenerationConfig, max_new_tokens: int, num_beams: int) -> GenerationConfig:
    """A copy of ``generation_config`` that decodes at most ``max_new_tokens`` tokens past the prompt, deterministic
    (greedy for ``num_beams=1``, else beam search).

    The length goes into ``max_length`` (Whisper's ``generate`` counts it past the prompt) and ``max_new_tokens``
    stays unset: the model's config already sets ``max_length``, and setting both makes transformers warn on
    every call. (In long-form, transformers adds the prompt's length to ``max_length`` again at every window, up
    to the decoder's 448 positions: the cap loosens by 1-3 tokens a window without ``condition_on_prev_tokens``.)
    """
    config = copy.deepcopy(generation_config)
    config.update(max_length=max_new_tokens, max_new_tokens=None, num_beams=num_beams, do_sample=False,
                  temperature=None)
    return config


def generation_config_for(bundle: WhisperBundle, options: DecodeOptions) -> GenerationConfig:
    """The model's generation config with the decoding length and beam size of ``options`` (:func:`decoding_config`)."""
    return decoding_config(bundle.generation_config, options.max_new_tokens, options.num_beams)


def frame_mask(lengths: Optional[torch.Tensor], batch_size: int, frames: int, device: torch.device) -> torch.Tensor:
    """``(B, frames)`` mask of each input's real log-mel frames (all of them without ``lengths``): the
    ``attention_mask`` that ``generate`` asks for with a batch (without it transformers warns that the end token
    is also the padding token)."""
    if lengths is None:
        return torch.ones(batch_size, frames, dtype=torch.long, device=device)
    return (torch.arange(frames, device=device)[None, :] < lengths.to(device)[:, None]).long()


def _prompt_kwargs(bundle: WhisperBundle, languages: Sequence[str], task: str) -> dict:
    """``language`` (one per input) and ``task`` for ``generate``; none for an English-only model."""
    if not is_multilingual(bundle.tokenizer):
        return {}
    return {"language": list(languages), "task": task}


class _DropInternalWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_INTERNAL_WARNING)


@contextlib.contextmanager
def quiet_internal_warning() -> Iterator[None]:
    """Hide the one warning transformers raises about its own internal call (see ``_INTERNAL_WARNING``): Whisper's
    ``generate`` always passes ``suppress_tokens`` beside its ``generation_config``, whatever the caller gives."""
    logger, drop = logging.getLogger("transformers.generation.utils"), _DropInternalWarning()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _inputs_on(model: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
    parameter = next(model.parameters())
    return features.to(device=parameter.device, dtype=parameter.dtype)


# ------------------------------------------------------------------ first decoder step: language, no speech
def first_step_logits(whisper: WhisperForConditionalGeneration, hidden: torch.Tensor,
                      generation_config: GenerationConfig) -> torch.Tensor:
    """``(B, V)`` logits of the token after ``<|startoftranscript|>`` (language tokens, ``<|nospeech|>``)."""
    start = torch.full((hidden.shape[0], 1), generation_config.decoder_start_token_id, device=hidden.device)
    output = whisper(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), decoder_input_ids=start,
                     use_cache=False)
    return output.logits[:, 0].float()


def detect_languages(logits: torch.Tensor, generation_config: GenerationConfig) -> list[str]:
    """The most probable language token of each row of ``logits`` ``(B, V)``, as codes."""
    codes = language_codes(generation_config)
    ids = torch.tensor(sorted(codes), device=logits.device)
    return [codes[int(ids[i])] for i in logits[:, ids].argmax(dim=-1)]


def no_speech_probabilities(logits: torch.Tensor, generation_config: GenerationConfig) -> torch.Tensor:
    """``(B,)`` probability of ``<|nospeech|>`` (``<|nocaptions|>``: the id before ``<|notimestamps|>``)."""
    return logits.softmax(dim=-1)[:, generation_config.no_timestamps_token_id - 1]


# ------------------------------------------------------------------ the guards
def compression_ratio(text: str) -> float:
    """``len(utf8) / len(zlib(utf8))``: about 1-2 for speech, large for a loop (openai/whisper's measure)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def is_silence(logprob: float, no_speech: float, options: DecodeOptions) -> bool:
    """Whisper's no-speech rule: ``<|nospeech|>`` likely and the output unlikely."""
    if options.no_speech_threshold is None or options.logprob_threshold is None:
        return False
    return no_speech > options.no_speech_threshold and logprob < options.logprob_threshold


def needs_fallback(text: str, logprob: float, options: DecodeOptions) -> bool:
    """Whether an output fails a guard (a loop, or too unlikely) and should be decoded at the next temperature."""
    ratio = options.compression_ratio_threshold
    if ratio is not None and compression_ratio(text) > ratio:
        return True
    return options.logprob_threshold is not None and logprob < options.logprob_threshold


# ------------------------------------------------------------------ short-form
def short_features(bundle: WhisperBundle, waveforms: Sequence[np.ndarray],
                   input_length: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, n_mels, T)`` log-mel features and ``(B,)`` real frames of 16 kHz waveforms of at most 30 s.

    ``30s``: every input padded to 3000 frames (stock Whisper); ``variable``: to the batch's longest.
    """
    longest = max(len(w) for w in waveforms)
    if longest > WINDOW_SECONDS * SAMPLING_RATE:
        raise SpeechkitError(f"short-form decoding takes at most 30 s; got {longest / SAMPLING_RATE:.2f} s")
    padding = {"padding": "max_length"} if input_length == "30s" else {"padding": "longest"}
    inputs = bundle.feature_extractor(list(waveforms), sampling_rate=SAMPLING_RATE, return_attention_mask=True,
                                      return_tensors="pt", **padding)
    return inputs.input_features, inputs.attention_mask.sum(dim=-1).clamp(min=1)


def _token_logprobs(sequences: torch.Tensor, logits: Sequence[torch.Tensor], eos: int) -> tuple[list, list]:
    """Generated tokens up to the end token and their mean log-probability (the end token counted), per row."""
    steps = torch.stack(logits, dim=1).float().log_softmax(dim=-1)  # (B, S, V)
    generated = sequences[:, -steps.shape[1]:]  # (B, S): the prompt is not in the logits
    chosen = steps.gather(-1, generated[..., None])[..., 0]  # (B, S)
    tokens, means = [], []
    for row, scores in zip(generated.tolist(), chosen):
        end = row.index(eos) + 1 if eos in row else len(row)
        tokens.append([t for t in row[:end] if t != eos])
        means.append(float(scores[:end].mean()))
    return tokens, means


def _generate_short(whisper: WhisperForConditionalGeneration, hidden: torch.Tensor, lengths: Optional[torch.Tensor],
                    config: GenerationConfig, temperature: float, prompt: dict) -> tuple[list, list]:
    """One batched ``generate`` on encoder outputs at one temperature: ``(tokens, mean log-probabilities)``."""
    config = copy.deepcopy(config)
    sample = temperature > 0
    config.update(do_sample=sample, temperature=temperature if sample else None, return_dict_in_generate=True,
                  output_logits=True, **({"num_beams": 1} if sample else {}))
    mask = frame_mask(lengths, hidden.shape[0], hidden.shape[1] * 2, hidden.device)  # encoder input frames (B, T)
    with variable_length_input(whisper, lengths), quiet_internal_warning():
        output = whisper.generate(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), attention_mask=mask,
                                  generation_config=config, **prompt)
    return _token_logprobs(output.sequences, output.logits, config.eos_token_id)


def decode_short(bundle: WhisperBundle, features: torch.Tensor, lengths: torch.Tensor, options: DecodeOptions,
                 language: Optional[str] = None) -> list[Decoded]:
    """Decode a batch of inputs of at most 30 s.

    Args:
        bundle: the model.
        features: ``(B, n_mels, T)`` log-mel features, ``T <= 3000``.
        lengths: ``(B,)`` real frames per input (their durations, at 100 frames a second).
        options: decoding options (``input_length == "30s"``: ``features`` are padded to 3000 frames).
        language: the code to decode in; ``None``: detected per input (multilingual models).

    Returns:
        One :class:`Decoded` per input, in order; one segment spanning the input (none for silence).
    """
    whisper = whisper_of(bundle)
    variable = lengths if options.input_length == "variable" else None
    with torch.no_grad():
        features = _inputs_on(whisper, features)
        with variable_length_input(whisper, variable):
            hidden = whisper.get_encoder()(features).last_hidden_state  # (B, S, D)
            first = first_step_logits(whisper, hidden, bundle.generation_config)
        languages = [language] * len(features) if language else detect_languages(first, bundle.generation_config)
        texts, logprobs = _fallback_loop(bundle, hidden, variable, languages, options)
    no_speech = no_speech_probabilities(first, bundle.generation_config).tolist()
    results = []
    for text, lang, frames, logprob, silence in zip(texts, languages, lengths.tolist(), logprobs, no_speech):
        text = "" if is_silence(logprob, silence, options) else text
        segments = [Segment(0.0, frames / FRAMES_PER_SECOND, text)] if text else []
        results.append(Decoded(text, lang, segments))
    return results


def _fallback_loop(bundle: WhisperBundle, hidden: torch.Tensor, lengths: Optional[torch.Tensor],
                   languages: list[str], options: DecodeOptions) -> tuple[list[str], list[float]]:
    """Decode every input, then again at the next temperature those that fail a guard.

    An input that fails at every temperature keeps its most probable try among those that are not loops
    (faster-whisper's choice; openai/whisper keeps the last, a sample at the highest temperature).
    """
    whisper, config = whisper_of(bundle), generation_config_for(bundle, options)
    tries: list[list[tuple[str, float]]] = [[] for _ in range(len(hidden))]
    pending = list(range(len(hidden)))
    for temperature in options.temperatures:
        torch.manual_seed(options.seed)
        index = torch.tensor(pending, device=hidden.device)
        sub_lengths = None if lengths is None else lengths[index.cpu()]
        prompt = _prompt_kwargs(bundle, [languages[i] for i in pending], options.task)
        tokens, means = _generate_short(whisper, hidden[index], sub_lengths, config, temperature, prompt)
        for i, ids, mean in zip(pending, tokens, means):
            tries[i].append((bundle.tokenizer.decode(ids, skip_special_tokens=True).strip(), mean))
        pending = [i for i in pending if needs_fallback(*tries[i][-1], options)]
        if not pending:
            break
    chosen = [item[-1] if i not in pending else best_try(item, options) for i, item in enumerate(tries)]
    return [text for text, _ in chosen], [logprob for _, logprob in chosen]


def best_try(tries: list[tuple[str, float]], options: DecodeOptions) -> tuple[str, float]:
    """The most probable ``(text, mean log-probability)`` among the tries that are not loops (else among all)."""
    limit = options.compression_ratio_threshold
    no_loop = [t for t in tries if limit is None or compression_ratio(t[0]) <= limit]
    return max(no_loop or tries, key=lambda t: t[1])


# ------------------------------------------------------------------ long-form
def long_features(bundle: WhisperBundle, waveforms: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, n_mels, T)`` features of whole inputs (no truncation, padded to the longest) and ``(B, T)`` mask."""
    inputs = bundle.feature_extractor(list(waveforms), sampling_rate=SAMPLING_RATE, truncation=False,
                                      padding="longest", return_attention_mask=True, return_tensors="pt")
    return inputs.input_features, inputs.attention_mask


def _guard_kwargs(options: DecodeOptions) -> dict:
    """Whisper's long-form guards as ``generate`` takes them (no-speech needs the log-probability threshold)."""
    temperatures = tuple(options.temperatures)
    return dict(
        temperature=temperatures if len(temperatures) > 1 else temperatures[0],
        compression_ratio_threshold=options.compression_ratio_threshold,
        logprob_threshold=options.logprob_threshold,
        no_speech_threshold=options.no_speech_threshold if options.logprob_threshold is not None else None,
        condition_on_prev_tokens=options.condition_on_prev_tokens,
    )


def decode_long(bundle: WhisperBundle, waveforms: Sequence[np.ndarray], options: DecodeOptions,
                language: Optional[str] = None, progress: Optional[Callable[[float], None]] = None) -> list[Decoded]:
    """Decode inputs of any length by Whisper's sequential 30 s windows, with timestamps.

    Args:
        bundle: the model.
        waveforms: 16 kHz mono audio, each longer than 30 s (a batch: similar lengths decode faster).
        options: decoding options and guards.
        language: the code to decode in; ``None``: detected per input on its first 30 s (multilingual models).
        progress: called with the seconds of audio decoded since its last call (at each window; in all, the
            batch's duration).

    Returns:
        One :class:`Decoded` per input, in order, with segments timed from the start of the input.
    """
    whisper = whisper_of(bundle)
    features, mask = long_features(bundle, waveforms)
    features = _inputs_on(whisper, features)
    monitor = _Monitor(progress or (lambda seconds: None))
    with torch.no_grad(), quiet_internal_warning():
        languages = [language] * len(waveforms) if language else _detect_long(bundle, features)
        torch.manual_seed(options.seed)
        output = whisper.generate(
            features, attention_mask=mask.to(features.device), generation_config=generation_config_for(bundle, options),
            return_timestamps=True, return_segments=True, monitor_progress=monitor,
            **_prompt_kwargs(bundle, languages, options.task), **_guard_kwargs(options))
    durations = [len(w) / SAMPLING_RATE for w in waveforms]
    monitor.advance(sum(durations))
    return [_long_result(bundle, segments, lang, seconds)
            for segments, lang, seconds in zip(output["segments"], languages, durations)]


def _detect_long(bundle: WhisperBundle, features: torch.Tensor) -> list[str]:
    whisper = whisper_of(bundle)
    with variable_length_input(whisper, None):
        hidden = whisper.get_encoder()(features[..., : int(WINDOW_SECONDS * FRAMES_PER_SECOND)]).last_hidden_state
        return detect_languages(first_step_logits(whisper, hidden, bundle.generation_config), bundle.generation_config)


class _Monitor:
    """transformers' ``monitor_progress`` hook -> ``progress(seconds decoded since the last call)`` over a batch."""

    def __init__(self, progress: Callable[[float], None]) -> None:
        self.progress, self.done = progress, 0.0

    def __call__(self, state: torch.Tensor) -> None:  # state: (B, 2) = (seek, max_frames), in frames
        self.advance(float(torch.minimum(state[:, 0], state[:, 1]).sum()) / FRAMES_PER_SECOND)

    def advance(self, seconds: float) -> None:
        """Report progress up to ``seconds`` decoded in all."""
        self.progress(seconds - self.done)
        self.done = seconds


def _long_result(bundle: WhisperBundle, segments: list[dict], language: str, seconds: float) -> Decoded:
    """Segments of transformers' long-form output -> text and timed segments (ends clipped to the input)."""
    decode = bundle.tokenizer.decode
    timed = []
    for segment in segments:
        text = decode(segment["tokens"], skip_special_tokens=True).strip()
        if text:
            start = min(float(segment["start"]), seconds)
            timed.append(Segment(start, max(start, min(float(segment["end"]), seconds)), text))
    tokens = [int(t) for segment in segments for t in segment["tokens"]]
    return Decoded(decode(tokens, skip_special_tokens=True).strip(), language, timed)
