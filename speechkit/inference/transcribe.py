"""``speechkit transcribe MODEL INPUT... --out FILE``: audio files, folders and manifests to transcripts.

The typed signature and ``Args:`` of :func:`transcribe` are the command's options and its ``--help``
(jsonargparse, as litgpt's ``__main__.py``). Inputs are sorted by duration and decoded in batches: inputs of at
most 30 s batched short-form, longer ones long-form (30 s windows with timestamps); see
:mod:`speechkit.models.whisper_decode`. A progress bar (audio seconds, ETA) goes to stderr; an input that cannot be read
or decoded is listed on stderr with its reason and the others are still transcribed.

Exit status: 0 when at least one input was transcribed (even if others failed: they are listed, counted and, with
``--save_errors``, written to ``<out>.errors.jsonl``); 1 when none could be (the output is then not written, so a
previous one is not replaced by an empty file); 2 for a usage error (a bad option, an unknown model or language).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

import torch

from speechkit.errors import SpeechkitError
from speechkit.models.whisper_decode import (
    SAMPLING_RATE,
    WINDOW_SECONDS,
    DecodeOptions,
    check_language,
    decode_long,
    decode_short,
    short_features,
    unguarded,
)
from speechkit.inference.inputs import (
    AudioItem,
    Failure,
    Inputs,
    collect_inputs,
    load_waveform,
)
from speechkit.inference.models import InferenceModel, load_model
from speechkit.models.transcript import Decoded, Segment, Transcript
from speechkit.inference.writers import (
    OutputFormat,
    write_text_atomic,
    write_transcripts,
)
from speechkit.models.whisper_language import is_multilingual

EXAMPLE = """examples:
  speechkit transcribe ct2:tiny.en clips/ --out clips.jsonl
  speechkit transcribe runs/ky/last.ckpt talk.wav --format srt --out talk.srt
  speechkit transcribe ct2:base data/cuts_test.jsonl.gz --language de --out test.jsonl --save_errors true

exit status: 0 if at least one input was transcribed (inputs that failed are listed on stderr and counted), 1 if
none could be (nothing is written), 2 for a usage error (an option, the model or the language)."""


@dataclass
class Summary:
    """What a run did: counts, languages, speed and the files written."""

    transcribed: int = 0
    failures: list[Failure] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    languages: Counter = field(default_factory=Counter)
    written: list[Path] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        """0 if anything was transcribed, else 1."""
        return 0 if self.transcribed else 1

    def line(self, language_source: str) -> str:
        """The last line on stderr."""
        speed = self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0
        languages = ", ".join(f"{code} {n}" for code, n in self.languages.most_common())
        return (f"transcribed {self.transcribed} of {self.transcribed + len(self.failures)} inputs "
                f"({self.audio_seconds:.1f} audio-s in {self.wall_seconds:.1f} s: {speed:.1f} audio-s/s); "
                f"errors: {len(self.failures)}; language ({language_source}): {languages or '-'}")


class _Run:
    """One ``transcribe`` run: batches, progress and failures."""

    def __init__(self, model: InferenceModel, options: DecodeOptions, language: Optional[str], batch_size: int,
                 log: Callable[[str], None]) -> None:
        self.model, self.options, self.language, self.batch_size, self.log = model, options, language, batch_size, log
        self.results: dict[int, Transcript] = {}
        self.failures: list[Failure] = []

    def batches(self, items: list[AudioItem]) -> list[list[int]]:
        """Item indices by duration (longest first), in batches; short and long inputs never share a batch."""
        order = sorted(range(len(items)), key=lambda i: -items[i].duration)
        long = [i for i in order if items[i].duration > WINDOW_SECONDS]
        short = [i for i in order if items[i].duration <= WINDOW_SECONDS]
        size = self.batch_size
        return [group[k: k + size] for group in (long, short) for k in range(0, len(group), size)]

    def load(self, items: list[AudioItem], batch: list[int]) -> dict[int, object]:
        """Waveforms of a batch; an input that cannot be decoded becomes a failure."""
        waveforms = {}
        for index in batch:
            try:
                waveforms[index] = load_waveform(items[index], SAMPLING_RATE)
            except SpeechkitError as error:
                self.fail(Failure(items[index].path, str(error), items[index].id))
        return waveforms

    def fail(self, failure: Failure) -> None:
        self.failures.append(failure)
        self.log(f"failed: {failure.reason}")

    def decode(self, items: list[AudioItem], batch: list[int], progress: Callable[[float], None]) -> None:
        """Decode one batch (inputs over 30 s once decoded go long-form) and keep the transcripts."""
        waveforms = self.load(items, batch)
        limit = WINDOW_SECONDS * SAMPLING_RATE
        short = [i for i in batch if i in waveforms and len(waveforms[i]) <= limit]
        long = [i for i in batch if i in waveforms and len(waveforms[i]) > limit]
        bundle = self.model.bundle
        if short:
            features, lengths = short_features(bundle, [waveforms[i] for i in short], self.options.input_length)
            self.keep(items, short, waveforms, decode_short(bundle, features, lengths, self.options, self.language))
        if long:
            decoded = decode_long(bundle, [waveforms[i] for i in long], self.options, self.language, progress)
            self.keep(items, long, waveforms, decoded)

    def keep(self, items: list[AudioItem], indices: list[int], waveforms: dict, decoded: list[Decoded]) -> None:
        for index, result in zip(indices, decoded):
            item = items[index]
            seconds = len(waveforms[index]) / SAMPLING_RATE
            segments = [Segment(s.start, min(s.end, seconds), s.text) for s in result.segments]  # frames -> samples
            self.results[index] = Transcript(item.id, item.path, result.text, result.language, segments, seconds,
                                             item.ref)


def _progress_bar(total: float, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="audio-s", desc="transcribe", file=sys.stderr, disable=not enabled,
                dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} audio-s [{elapsed}<{remaining}, "
                "{rate_fmt}{postfix}]")


def _run_batches(run: _Run, items: list[AudioItem], show_progress: bool, failed_before: int = 0) -> None:
    """Decode every batch under one progress bar (audio seconds, with the files done and the errors)."""
    with _progress_bar(sum(item.duration for item in items), show_progress) as bar:
        run.log = bar.write if show_progress else run.log
        done = 0.0
        for batch in run.batches(items):
            end = done + sum(items[i].duration for i in batch)
            run.decode(items, batch, lambda seconds: bar.update(max(0.0, min(seconds, end - bar.n))))
            done = end
            bar.n = min(done, bar.total)  # exact at every batch's end, whatever the windows reported
            bar.set_postfix(files=f"{len(run.results)}/{len(items)}", errors=failed_before + len(run.failures))


def _decode_options(
    input_length: str, model: InferenceModel, guards: bool, **fields: object
) -> DecodeOptions:
    if input_length == "auto":
        input_length = "variable" if model.variable_length else "30s"
    options = DecodeOptions(input_length=input_length, **fields)  # type: ignore[arg-type]
    for key in ("num_beams", "max_new_tokens"):
        if getattr(options, key) < 1:
            raise SpeechkitError(f"--{key} {getattr(options, key)}: must be at least 1")
    if not options.temperatures or any(t < 0 for t in options.temperatures):
        raise SpeechkitError(f"--temperatures {list(options.temperatures)}: expected one or more, each 0 or more")
    if options.task == "translate" and not is_multilingual(model.bundle.tokenizer):
        raise SpeechkitError(f"--task translate: {model.name} is an English-only Whisper; it only transcribes")
    return options if guards else unguarded(options)


def _resolve_language(model: InferenceModel, language: Optional[str]) -> tuple[Optional[str], str]:
    """The language to decode in (``None``: detect) and where it comes from, for the summary."""
    if language is None and model.default_language is not None:
        return check_language(model.bundle, model.default_language, model.name), "the model's"
    code = check_language(model.bundle, None if language == "auto" else language, model.name)
    if code is None:
        return None, "detected"
    return code, ("given" if language not in (None, "auto") else "English-only model")


def transcribe(
    model: str,
    inputs: list[str],
    *,
    out: str,
    format: Literal["jsonl", "txt", "srt", "vtt"] = "jsonl",
    language: Optional[str] = None,
    task: Literal["transcribe", "translate"] = "transcribe",
    batch_size: int = 16,
    num_beams: int = 1,
    max_new_tokens: int = 224,
    input_length: Literal["auto", "variable", "30s"] = "auto",
    guards: bool = True,
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    compression_ratio_threshold: Optional[float] = 2.4,
    logprob_threshold: Optional[float] = -1.0,
    no_speech_threshold: Optional[float] = 0.6,
    condition_on_prev_tokens: bool = False,
    seed: int = 0,
    device: Optional[str] = None,
    save_errors: bool = False,
    progress: bool = True,
) -> Summary:
    """Transcribe audio files, folders and Lhotse manifests with a Whisper model.

    Args:
        model: ``ct2:tiny.en`` / ``ct2:base`` (packaged weights), a ``.ckpt`` of ``speechkit fit``, a Hugging Face
            folder (``speechkit export``) or a CTranslate2 folder.
        inputs: audio files, folders (searched recursively for audio extensions, any case) and Lhotse cut or
            recording manifests (``.jsonl`` / ``.jsonl.gz``).
        out: the output file (``srt`` / ``vtt`` with several inputs: a folder of ``<id>.srt`` / ``<id>.vtt``).
        format: ``jsonl`` (``id, path, text, language, segments, duration`` a line), ``txt`` (``<id> <text>``),
            ``srt`` or ``vtt`` subtitles.
        language: language code (``de``) to decode in; default: a checkpoint's training language, English for an
            English-only model, otherwise detected per input (``auto`` forces detection).
        task: ``transcribe``, or ``translate`` to English (multilingual models).
        batch_size: inputs decoded together (sorted by duration).
        num_beams: 1 for greedy search, more for beam search.
        max_new_tokens: tokens per input of at most 30 s, or per 30 s window of a longer one.
        input_length: encoder input of short inputs: ``variable`` (the batch's longest; only for models trained
            that way), ``30s`` (stock padding), ``auto`` (variable when the model was trained on it).
        guards: Whisper's guards against loops and hallucinations; ``false`` turns all of them off.
        temperatures: the fallback ladder: an output failing a guard is decoded again at the next temperature.
        compression_ratio_threshold: an output whose gzip compression ratio is above this is a loop.
        logprob_threshold: an output whose mean token log-probability is below this is retried.
        no_speech_threshold: an unlikely output whose no-speech probability is above this is silence.
        condition_on_prev_tokens: long inputs: prompt each 30 s window with the previous windows' text.
        seed: random seed of the sampling at temperatures above 0 (a run is reproducible).
        device: ``cpu``, ``cuda``, ``cuda:1`` ...; default: ``cuda`` if available.
        save_errors: also write the inputs that failed to ``<out>.errors.jsonl``.
        progress: show a progress bar on stderr.

    Returns:
        The run's summary (counts, speed, files written).
    """
    log = _stderr
    if batch_size < 1:
        raise SpeechkitError(f"--batch_size {batch_size}: must be at least 1")
    loaded = load_model(model)
    code, source = _resolve_language(loaded, language)
    options = _decode_options(input_length, loaded, guards, task=task, num_beams=num_beams,
                              max_new_tokens=max_new_tokens, temperatures=tuple(temperatures),
                              compression_ratio_threshold=compression_ratio_threshold,
                              logprob_threshold=logprob_threshold, no_speech_threshold=no_speech_threshold,
                              condition_on_prev_tokens=condition_on_prev_tokens, seed=seed)
    found = collect_inputs(inputs)
    if not found.items and not found.failures:
        raise SpeechkitError(f"{' '.join(inputs)}: no audio files found (audio extensions are matched in any case)")
    for note in found.notes():
        log(note)
    loaded.bundle.model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return _transcribe_found(loaded, found, options, code, source, batch_size, out, format, save_errors, progress, log)


def _transcribe_found(loaded: InferenceModel, found: Inputs, options: DecodeOptions, code: Optional[str],
                      source: str, batch_size: int, out: str, fmt: OutputFormat, save_errors: bool, progress: bool,
                      log: Callable[[str], None]) -> Summary:
    for failure in found.failures:
        log(f"failed: {failure.reason}")
    run = _Run(loaded, options, code, batch_size, log)
    start = time.perf_counter()
    _run_batches(run, found.items, progress, len(found.failures))
    run.log = log
    summary = Summary(len(run.results), found.failures + run.failures, wall_seconds=time.perf_counter() - start)
    transcripts = [run.results[i] for i in sorted(run.results)]
    summary.audio_seconds = sum(t.duration for t in transcripts)
    summary.languages.update(t.language for t in transcripts)
    if transcripts:
        summary.written = write_transcripts(transcripts, out, fmt)
    if save_errors and summary.failures:
        rows = [f.to_json() for f in summary.failures]
        summary.written.append(write_text_atomic(f"{out}.errors.jsonl", _json_lines(rows)))
    log(summary.line(source))
    log(f"wrote {', '.join(map(str, summary.written))}" if summary.written else "nothing written: no input could be "
        "transcribed")
    return summary


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _json_lines(rows: list[dict]) -> str:
    import json

    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def build_parser():
    """The jsonargparse parser of :func:`transcribe`: options and help from its signature and docstring."""
    import argparse

    import docstring_parser
    from jsonargparse import ArgumentParser, DefaultHelpFormatter

    class Help(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
        """jsonargparse's help, with the description (the examples) kept as written."""

    parser = ArgumentParser(prog="speechkit transcribe", description=f"{transcribe.__doc__.splitlines()[0]}\n\n"
                            f"{EXAMPLE}", exit_on_error=False, formatter_class=Help)
    parser.add_function_arguments(transcribe, as_positional=True, skip={"inputs"})
    helps = {p.arg_name: p.description for p in docstring_parser.parse(transcribe.__doc__).params}
    parser.add_argument("inputs", nargs="+", type=str, metavar="INPUT", help=helps["inputs"])
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``speechkit transcribe MODEL INPUT... --out FILE [options]``: 0 if anything was transcribed, else 1."""
    from transformers.utils import logging as transformers_logging

    config = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    transformers_logging.disable_progress_bar()  # "Loading weights" bars of from_pretrained: one bar is ours
    arguments = {key: value for key, value in vars(config).items() if not key.startswith("__")}
    return transcribe(**arguments).exit_status
