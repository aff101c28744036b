"""Offline speech synthesis with eSpeak NG, for corpora that have text but no audio.

eSpeak NG ships with the ``espeakng-loader`` wheel (shared library + voice data, about 110 languages); we drive its
C API through ``ctypes``: ``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS)``, ``espeak_SetSynthCallback``,
``espeak_SetVoiceByName``, ``espeak_SetParameter``, ``espeak_Synth``. Output is 22,050 Hz, 16-bit, mono.

Determinism: eSpeak keeps synthesis state in static variables (pitch flutter index, filter memories) that survive
``espeak_Terminate``/``espeak_Initialize`` and ``espeak_ng_SetRandSeed``: the same text synthesized twice in one
process differs by a few samples. We therefore load a fresh copy of the library for every utterance and unload
it afterwards (``dlclose``), which costs about 10 ms and makes each utterance depend on (text, style) only, in any
order, process or cache state. This assumes nothing else in the process keeps ``libespeak-ng`` loaded. The
breath noise of some variants (f1-f5 ...) comes from eSpeak's own random generator, which ``espeak_Initialize``
seeds from the clock: we reseed it with ``espeak_ng_SetRandSeed(0)`` after every initialization.

Phoneme timings: ``synthesize_with_phonemes`` initializes eSpeak with ``espeakINITIALIZE_PHONEME_EVENTS``; the
synth callback then receives, with each block of samples, a list of ``espeak_EVENT`` (``speak_lib.h``) ended by
type 0, among them one ``espeakEVENT_PHONEME`` (7) per phoneme with its start (``audio_position``, ms) and its
mnemonic (``id.string``). The samples are the same as ``synthesize`` gives.

Speaker variety comes from eSpeak's voice variants (``en+m3``, ``en+f2``), speaking rate, pitch and pitch range,
drawn from a seeded ``random.Random`` (``draw_styles``).
"""

from __future__ import annotations

import _ctypes
import ctypes
import difflib
import hashlib
import json
import os
import random
import threading
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from speechkit.errors import SpeechkitError

ESPEAK_SAMPLE_RATE = 22050
AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_CHARS_UTF8 = 1
POS_CHARACTER = 1
EE_OK, EE_NOT_FOUND = 0, 2
INITIALIZE_PHONEME_EVENTS = 0x0001  # espeakINITIALIZE_PHONEME_EVENTS
EVENT_LIST_TERMINATED, EVENT_PHONEME = 0, 7  # espeak_EVENT_TYPE
PARAM_RATE, PARAM_PITCH, PARAM_RANGE = 1, 3, 4
# Variants that sound like a human speaker (male m1-m8, female f1-f5); eSpeak has ~100 more (robots, croak ...).
HUMAN_VARIANTS = tuple(f"m{i}" for i in range(1, 9)) + tuple(f"f{i}" for i in range(1, 6))
RATE_RANGE = (140, 200)  # words per minute (eSpeak default 175)
PITCH_RANGE = (30, 70)  # 0-100 (default 50)
INTONATION_RANGE = (30, 70)  # pitch range 0-100 (default 50); 0 = monotone

_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_LOCK = threading.Lock()  # eSpeak is one global state per process: one utterance at a time


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from ``speak_lib.h``."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of the output
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    """``espeak_VOICE`` from ``speak_lib.h``."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # packed list, read by _languages
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


@dataclass(frozen=True)
class SpeakerStyle:
    """One synthetic speaker: an eSpeak voice, a variant and prosody settings.

    Args:
        voice: eSpeak voice (language) name, e.g. ``"en"``, ``"de"``, ``"ur"``.
        variant: voice variant (``"m3"``, ``"f2"``), ``""`` for the voice's own.
        rate: speaking rate in words per minute (80-450).
        pitch: base pitch, 0-100.
        pitch_range: pitch range (intonation), 0-100.
    """

    voice: str = "en"
    variant: str = ""
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50

    def __post_init__(self) -> None:
        for name, (low, high) in (("rate", (80, 450)), ("pitch", (0, 100)), ("pitch_range", (0, 100))):
            if not low <= getattr(self, name) <= high:
                raise SpeechkitError(f"speaker style {name}={getattr(self, name)} is outside {low}-{high}")

    @property
    def espeak_name(self) -> str:
        """The name ``espeak_SetVoiceByName`` takes: ``voice+variant``."""
        return f"{self.voice}+{self.variant}" if self.variant else self.voice

    @property
    def name(self) -> str:
        """A readable speaker id, e.g. ``en+m3_r160_p45_g50``."""
        return f"{self.espeak_name.replace('/', '-')}_r{self.rate}_p{self.pitch}_g{self.pitch_range}"


def speakable(text: str) -> bool:
    """Whether ``text`` has a letter or digit in any script: punctuation alone gives a click, not speech."""
    return any(char.isalnum() for char in text)


def draw_styles(voice: str, count: int, seed: int, variants: tuple[str, ...] = HUMAN_VARIANTS) -> list[SpeakerStyle]:
    """``count`` distinct speaker styles of ``voice`` drawn from ``random.Random(seed)``."""
    if count < 1:
        raise SpeechkitError(f"speakers must be >= 1, got {count}")
    rng, styles = random.Random(seed), []
    while len(styles) < count:
        style = SpeakerStyle(
            voice=voice,
            variant=rng.choice(variants),
            rate=rng.randint(*RATE_RANGE),
            pitch=rng.randint(*PITCH_RANGE),
            pitch_range=rng.randint(*INTONATION_RANGE),
        )
        if style not in styles:
            styles.append(style)
    return styles


@lru_cache(maxsize=1)
def _paths() -> tuple[str, str]:
    try:
        import espeakng_loader
    except ImportError as error:
        raise SpeechkitError("speech synthesis needs the package espeakng-loader (pip install espeakng-loader)") \
            from error
    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


class Synthesizer:
    """Text to 22,050 Hz mono float32 audio with eSpeak NG; deterministic per (text, style).

    One instance per process is enough; calls are serialized by a process-wide lock.
    """

    sample_rate: int = ESPEAK_SAMPLE_RATE

    def __init__(self) -> None:
        self.library_path, self.data_path = _paths()
        self.variants = frozenset(p.name for p in (Path(self.data_path) / "voices" / "!v").iterdir())

    def _load(self, options: int = 0) -> ctypes.CDLL:
        lib = ctypes.CDLL(self.library_path)
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(), options)
        if rate != ESPEAK_SAMPLE_RATE:
            raise SpeechkitError(f"eSpeak NG at {self.library_path} failed to initialize (returned {rate})")
        lib.espeak_ng_SetRandSeed(ctypes.c_long(0))  # Initialize seeds breath noise from the clock
        return lib

    @staticmethod
    def _unload(lib: ctypes.CDLL) -> None:
        lib.espeak_Terminate()
        _ctypes.dlclose(lib._handle)  # the next load starts from fresh static state (see module docstring)

    def version(self) -> str:
        """The eSpeak NG version string, e.g. ``1.52.0``."""
        with _LOCK:
            lib = self._load()
            try:
                lib.espeak_Info.restype = ctypes.c_char_p
                return lib.espeak_Info(None).decode()
            finally:
                self._unload(lib)

    def list_voices(self) -> list[str]:
        """The language names ``synthesize`` accepts as ``voice`` (``"en"``, ``"en-us"``, ``"de"`` ...), sorted."""
        return _list_voices(self)

    def check_style(self, style: SpeakerStyle) -> None:
        """Raise ``SpeechkitError`` naming the voice or variant if eSpeak does not have it."""
        if style.variant and style.variant not in self.variants:
            close = difflib.get_close_matches(style.variant, sorted(self.variants), n=5, cutoff=0.3)
            close = close or sorted(HUMAN_VARIANTS)
            raise SpeechkitError(f"unknown eSpeak voice variant {style.variant!r}; valid variants include {close}")
        voices = self.list_voices()
        if style.voice not in voices:
            close = difflib.get_close_matches(style.voice, voices, n=5, cutoff=0.3)
            close += [v for v in ("en", "de", "fr", "es", "ur", "fa") if v not in close][: 6 - len(close)]
            raise SpeechkitError(
                f"unknown eSpeak voice {style.voice!r}; valid voices include {', '.join(close)} "
                f"({len(voices)} in all, see Synthesizer().list_voices())"
            )

    def synthesize(
        self,
        text: str,
        voice: str = "en",
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        variant: str = "",
    ) -> np.ndarray:
        """Speak ``text``; returns float32 samples in [-1, 1] at 22,050 Hz, shape ``(T,)``.

        Args:
            text: the utterance (plain text, UTF-8; not SSML).
            voice: eSpeak voice name (see ``list_voices``).
            rate: words per minute.
            pitch: base pitch 0-100.
            pitch_range: intonation range 0-100.
            variant: voice variant (``"m3"``, ``"f2"``), ``""`` for none.
        """
        return self._checked_speak(text, SpeakerStyle(voice, variant, rate, pitch, pitch_range), None)

    def synthesize_with_phonemes(
        self, text: str, style: SpeakerStyle = SpeakerStyle()
    ) -> tuple[np.ndarray, list[tuple[float, str]]]:
        """Speak ``text`` as ``style``; returns the samples ``synthesize`` gives and the phonemes' timings.

        Returns:
            ``(samples, [(start_seconds, phoneme), ...])``: float32 ``(T,)`` at 22,050 Hz, and one entry per
            eSpeak phoneme event in order of time, ``phoneme`` being eSpeak's mnemonic (``"t"``, ``"u:"``, ``"_:"``
            for a pause). Each phoneme lasts until the next one starts; the last until the end of the audio.
        """
        phonemes: list[tuple[float, str]] = []
        return self._checked_speak(text, style, phonemes), phonemes

    def _checked_speak(self, text: str, style: SpeakerStyle, phonemes: list | None) -> np.ndarray:
        self.check_style(style)
        if not text.strip():
            raise SpeechkitError("cannot synthesize an empty text")
        if not speakable(text):
            raise SpeechkitError(f"cannot synthesize {text[:40]!r}: it has no letter or digit")
        with _LOCK:
            samples = self._speak(text, style, phonemes)
        if samples.size == 0:
            raise SpeechkitError(f"eSpeak produced no audio for {text!r} with voice {style.espeak_name!r}")
        return samples.astype(np.float32) / 32768.0

    def _speak(self, text: str, style: SpeakerStyle, phonemes: list | None = None) -> np.ndarray:
        """Samples as int16; with a ``phonemes`` list, eSpeak's phoneme events are appended to it."""
        chunks: list[np.ndarray] = []

        def collect(wav, count, events) -> int:  # called by eSpeak with each block of samples
            if count > 0:
                chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
            if phonemes is not None and events:
                _read_phonemes(ctypes.cast(events, ctypes.POINTER(_Event)), phonemes)
            return 0

        callback = _CALLBACK_TYPE(collect)
        lib = self._load(0 if phonemes is None else INITIALIZE_PHONEME_EVENTS)
        try:
            lib.espeak_SetSynthCallback(callback)
            if lib.espeak_SetVoiceByName(style.espeak_name.encode()) != EE_OK:
                raise SpeechkitError(f"eSpeak could not load voice {style.espeak_name!r}")
            lib.espeak_SetParameter(PARAM_RATE, style.rate, 0)
            lib.espeak_SetParameter(PARAM_PITCH, style.pitch, 0)
            lib.espeak_SetParameter(PARAM_RANGE, style.pitch_range, 0)
            data = text.encode("utf-8")
            size = ctypes.c_size_t(len(data) + 1)
            status = lib.espeak_Synth(data, size, 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
            if status != EE_OK or lib.espeak_Synchronize() != EE_OK:
                raise SpeechkitError(f"eSpeak failed (status {status}) on {text!r}")
        finally:
            self._unload(lib)
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def _read_phonemes(events: ctypes._Pointer[_Event], phonemes: list[tuple[float, str]]) -> None:
    """Append the phoneme events of one callback's event list (ended by type 0) as ``(seconds, mnemonic)``."""
    i = 0
    while events[i].type != EVENT_LIST_TERMINATED:
        if events[i].type == EVENT_PHONEME:
            name = events[i].id.string.decode("utf-8", errors="replace")
            phonemes.append((events[i].audio_position / 1000.0, name))
        i += 1


@lru_cache(maxsize=1)
def _list_voices(synth: Synthesizer) -> list[str]:
    """Language names of the installed voices that eSpeak accepts by name and whose dictionary is installed."""
    with _LOCK:
        lib = synth._load()
        try:
            lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
            table, names, i = lib.espeak_ListVoices(None), set(), 0
            while table[i]:
                voice = table[i].contents
                if _has_dictionary(Path(synth.data_path), voice.identifier.decode()):
                    names.update(_languages(voice.languages))
                i += 1
            names = {name for name in names if lib.espeak_SetVoiceByName(name.encode()) == EE_OK}
        finally:
            synth._unload(lib)
    return sorted(names)


def _has_dictionary(data_path: Path, identifier: str) -> bool:
    """Whether the voice file's dictionary (``dictionary`` line, else its language code) is installed."""
    # The wheel lists some voices (fo, kaa, xex) whose *_dict is missing; eSpeak then speaks silence.
    for folder in ("voices", "lang"):
        voice_file = data_path / folder / identifier
        if voice_file.is_file():
            break
    else:
        return False
    dictionary = None
    for line in voice_file.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "dictionary":
            dictionary = value.strip()
        elif key == "language" and dictionary is None:
            dictionary = value.split()[0].split("-")[0]
    return dictionary is not None and (data_path / f"{dictionary}_dict").is_file()


def _languages(address: int | None) -> list[str]:
    """Decode ``espeak_VOICE.languages``: (priority byte, name, NUL) repeated, ended by a zero priority byte."""
    names = []
    while address and ctypes.string_at(address, 1) != b"\0":
        name = ctypes.string_at(address + 1)
        names.append(name.decode())
        address += len(name) + 2
    return names


def style_key(text: str, style: SpeakerStyle, sample_rate: int, version: str) -> str:
    """The cache key of one synthesized file: a hash of everything that determines its bytes."""
    payload = json.dumps({"text": text, "style": asdict(style), "sr": sample_rate, "espeak": version}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``), deterministic; ``(T,) -> (T',)``."""
    if source_rate == target_rate:
        return samples
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(source_rate, target_rate)
    return resample_poly(samples, target_rate // g, source_rate // g).astype(np.float32)


def synthesize_to_file(
    synth: Synthesizer, text: str, style: SpeakerStyle, audio_dir: str | Path, sample_rate: int = 16000
) -> Path:
    """Synthesize ``text`` as ``style`` into ``<audio_dir>/<key>.flac`` (16-bit) unless that file exists (cache)."""
    import soundfile

    path = Path(audio_dir) / f"{style_key(text, style, sample_rate, _version(synth))}.flac"
    if path.is_file():
        return path
    samples = resample(synth.synthesize(text, style.voice, style.rate, style.pitch, style.pitch_range, style.variant),
                       ESPEAK_SAMPLE_RATE, sample_rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    soundfile.write(partial, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="FLAC")
    os.replace(partial, path)  # a crash never leaves a truncated file under the cache name
    return path


@lru_cache(maxsize=1)
def _version(synth: Synthesizer) -> str:
    return synth.version()
