"""``speechkit bench squtr``: how spoken-query retrieval degrades in noise (Li et al., 2026, "SQuTR: A Robustness
Benchmark for Spoken Query to Text Retrieval under Acoustic Noise").

The protocol (section 3-4 of the paper): every judged query of a BEIR-format set is spoken by a TTS (here eSpeak NG,
several speaker styles, or a user's callable), noise is mixed in at each SNR of the protocol (clean, 20, 10, 0 dB)
with Lhotse (:mod:`speechkit.bench.noise`), every ASR transcribes every condition, every text retriever searches
with the transcripts, and each end-to-end speech retriever searches with the audio itself. Each (condition, ASR,
retriever) is scored by nDCG@10 (the main score), MRR@10 and recall@10 (``speechkit.metrics.retrieval``) and the
ASR by WER (``speechkit.metrics.wer``, Whisper's English normalizer); the ``text`` condition searches with the
written queries. Synthesized speech, mixed audio and transcripts are cached under ``--cache_dir``, so a second run
(another retriever, one more ASR) redoes only what is new; transcripts are saved in chunks as they finish, so an
interrupted run resumes where it stopped.

Output: ``OUT`` (JSON: ``rows``, one object per condition x ASR x retriever with the keys ``condition`` (``text``,
``clean``, ``20``, ``10``, ``0``), ``asr``, ``retriever``, ``ndcg@10``, ``mrr@10``, ``recall@10``, ``wer``; ``asr``
and ``wer`` are ``null`` for the text condition and for end-to-end retrievers) and ``OUT`` with ``.png``: nDCG@10
against the condition, one line per system.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from speechkit.bench.asr import Recognizer, SpokenQuery, make_recognizer, read_audio
from speechkit.bench.beir import RetrievalSet, load_beir
from speechkit.bench.noise import build_noise_set, mix_noise
from speechkit.bench.retrievers import DenseRetriever, Retriever, make_retriever
from speechkit.data.noise_mix import load_noise_cuts
from speechkit.errors import SpeechkitError
from speechkit.metrics.retrieval import retrieval_metrics
from speechkit.metrics.wer import score_wer

log = logging.getLogger(__name__)
SAMPLE_RATE = 16000
PROTOCOL_CONDITIONS = ("clean", "20", "10", "0")
TEXT = "text"
ROW_KEYS = ("condition", "asr", "retriever", "ndcg@10", "mrr@10", "recall@10", "wer")
TRANSCRIBE_CHUNK = 64  # queries transcribed between two saves of the partial transcripts
TTS = Callable[[str, str], np.ndarray]  # (text, query id) -> 16 kHz float32 waveform


def parse_conditions(snrs: Sequence[str]) -> list[str]:
    """The audio conditions of ``--snrs``: ``clean`` or a number of dB each (``20``, ``-5``, ``7.5``), in order.

    Raises:
        SpeechkitError: an entry that is neither (``text`` included: the text condition is always scored), a
            repeated one, or none.
    """
    conditions: list[str] = []
    for value in snrs:
        text = str(value).strip()
        if text.lower() == "clean":
            name = "clean"
        else:
            try:
                number = float(text)
            except ValueError:
                raise SpeechkitError(f"--snrs: {text!r} is not an SNR; expected 'clean' or a number of dB such as "
                                     "20 (the text condition is always scored)") from None
            if not np.isfinite(number):
                raise SpeechkitError(f"--snrs: {text!r} is not a finite number of dB")
            name = f"{number:g}"
        if name in conditions:
            raise SpeechkitError(f"--snrs: {name} is given twice")
        conditions.append(name)
    if not conditions:
        raise SpeechkitError("--snrs: expected at least one condition (clean, 20, 10, 0 ...)")
    return conditions


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


class EspeakTTS:
    """eSpeak NG speech (``speechkit.data.synth``), the speaker style drawn per query from ``speakers`` styles."""

    def __init__(self, speakers: int = 4, seed: int = 0, voice: str = "en") -> None:
        from speechkit.data.synth import Synthesizer, draw_styles

        self.synth, self.styles = Synthesizer(), draw_styles(voice, speakers, seed)
        self.name = f"espeak:{voice}:{speakers}:{seed}"

    def style_of(self, query_id: str):
        return self.styles[int(_digest(query_id), 16) % len(self.styles)]

    def to_file(self, text: str, query_id: str, folder: Path) -> Path:
        from speechkit.data.synth import synthesize_to_file

        return synthesize_to_file(self.synth, text, self.style_of(query_id), folder, SAMPLE_RATE)


def _read_partial(path: Path) -> dict[str, str]:
    """``{query id: transcript}`` of the finished chunks of an interrupted run (a torn last line is dropped)."""
    texts: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line being written when the run stopped: its query is transcribed again
            texts[row["id"]] = row["text"]
    return texts


def _write_flac(path: Path, samples: np.ndarray) -> Path:
    """16-bit FLAC written atomically; a waveform peaking above 0.99 is scaled down (the SNR is unchanged)."""
    import soundfile

    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak > 0.99:
        samples = samples * (0.99 / peak)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    soundfile.write(partial, samples, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    os.replace(partial, path)
    return path


@dataclass
class SqutrRun:
    """One benchmark run: the set, the systems, the audio and transcript caches, the progress bar."""

    data: RetrievalSet
    conditions: list[str]
    cache_dir: Path
    noise: Optional[list] = None
    seed: int = 0
    progress: bool = True
    bar: object = None
    rows: list[dict] = field(default_factory=list)

    def queries(self) -> list[str]:
        return list(self.data.queries)

    # ------------------------------------------------------------------ audio
    def speak(self, tts) -> dict[str, Path]:
        """Clean speech of every query (cached)."""
        folder = self.cache_dir / "speech" / _digest(getattr(tts, "name", repr(tts)))[:8]
        paths = {}
        for qid, text in self.data.queries.items():
            self._stage(f"synthesize {qid}")
            if hasattr(tts, "to_file"):
                paths[qid] = tts.to_file(text, qid, folder)
            else:
                path = folder / f"{_digest(text, qid)}.flac"
                paths[qid] = path if path.is_file() else _write_flac(path, np.asarray(tts(text, qid), np.float32))
            self._advance(1)
        return paths

    def mix(self, speech: dict[str, Path], condition: str) -> dict[str, Path]:
        """The queries at ``condition`` (``clean``: the speech itself), mixed audio cached per file and SNR."""
        if condition == "clean":
            return speech
        from lhotse import Recording

        noise_key = _digest(*sorted(cut.id for cut in self.noise))
        paths = {}
        for qid, clean in speech.items():
            key = _digest(clean.name, qid, noise_key, condition, self.seed)  # qid: the noise draw is per query
            path = self.cache_dir / "mixed" / condition / f"{key}.flac"
            if not path.is_file():
                rng = random.Random(f"squtr:{self.seed}:{qid}:{condition}")
                mixed = mix_noise(Recording.from_file(clean).to_cut(), self.noise, float(condition), rng)
                _write_flac(path, mixed.load_audio()[0])
            paths[qid] = path
            self._advance(1)
        return paths

    # ------------------------------------------------------------------ systems
    def transcribe(self, asr: Recognizer, condition: str, audio: dict[str, Path]) -> dict[str, str]:
        """Transcripts of one condition, cached per ASR and audio files. Chunks of :data:`TRANSCRIBE_CHUNK` queries
        are appended to ``<cache>.partial.jsonl`` as they finish: an interrupted run resumes after the last chunk."""
        from speechkit.inference.writers import write_text_atomic

        key = _digest(asr.cache_key, condition, *(audio[q].name for q in self.queries()))
        path = self.cache_dir / "transcripts" / f"{condition}-{key}.json"
        if path.is_file():
            self._advance(len(audio))
            return json.loads(path.read_text(encoding="utf-8"))
        self._stage(f"{asr.name} {condition}")
        partial = path.with_suffix(".partial.jsonl")
        partial.parent.mkdir(parents=True, exist_ok=True)
        texts = _read_partial(partial)
        self._advance(len(texts))
        todo = [q for q in self.queries() if q not in texts]
        for start in range(0, len(todo), TRANSCRIBE_CHUNK):
            chunk = todo[start:start + TRANSCRIBE_CHUNK]
            hyps = asr([SpokenQuery(q, self.data.queries[q], audio[q]) for q in chunk], self._advance)
            with open(partial, "a", encoding="utf-8") as file:
                file.write("".join(json.dumps({"id": q, "text": h}, ensure_ascii=False) + "\n"
                                   for q, h in zip(chunk, hyps)))
            texts.update(zip(chunk, hyps))
        texts = {q: texts[q] for q in self.queries()}
        write_text_atomic(path, json.dumps(texts, ensure_ascii=False, indent=0))
        partial.unlink(missing_ok=True)
        return texts

    def score(self, condition: str, asr: Optional[str], retriever: str, run: dict, wer: Optional[float]) -> dict:
        """One row (the keys of :data:`ROW_KEYS`)."""
        metrics = retrieval_metrics(run, self.data.qrels, ks=(10,), cutoff=10)
        row = {"condition": condition, "asr": asr, "retriever": retriever, "ndcg@10": metrics["ndcg@10"],
               "mrr@10": metrics["mrr@10"], "recall@10": metrics["recall@10"], "wer": wer}
        self.rows.append(row)
        return row

    # ------------------------------------------------------------------ progress
    def _stage(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def _advance(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)


def run_squtr(data: RetrievalSet, recognizers: Sequence[Recognizer], retrievers: Sequence[Retriever],
              conditions: Sequence[str], cache_dir: str | Path, tts=None, noise: Optional[list] = None,
              speech_retrievers: Sequence[str] = (), seed: int = 0, progress: bool = True) -> list[dict]:
    """Run the protocol; returns the rows (see the module docstring).

    Args:
        data: the retrieval set.
        recognizers: ASR systems (``speechkit.bench.asr``).
        retrievers: text retrievers (``speechkit.bench.retrievers``), indexed here.
        conditions: audio conditions from :func:`parse_conditions` (``clean``, SNRs in dB).
        cache_dir: synthesized and mixed audio, transcripts.
        tts: an :class:`EspeakTTS` (default, 4 styles) or a callable ``(text, query id) -> 16 kHz waveform``.
        noise: noise cuts at 16 kHz (default: the offline noise set, built in ``cache_dir/noise``).
        speech_retrievers: end-to-end speech embedder checkpoints (``speechkit bench squtr-train-e2e``).
        seed: the noise draws.
        progress: a progress bar (utterances, ETA) on stderr.
    """
    from speechkit.progress import progress_bar

    conditions = parse_conditions(conditions)
    cache_dir = Path(cache_dir)
    needs_audio = bool(recognizers) or bool(speech_retrievers)
    snrs = [c for c in conditions if c != "clean"]
    if needs_audio and snrs and noise is None:
        noise = list(build_noise_set(cache_dir / "noise", seed=seed))
    embedders = [EndToEnd.load(path, retrievers) for path in speech_retrievers]
    for dense in [r for r in retrievers if isinstance(r, DenseRetriever)] + [e.dense for e in embedders]:
        dense.cache_dir = dense.cache_dir or cache_dir / "embeddings"
    for retriever in retrievers:
        retriever.index(data.corpus)
    for embedder in embedders:
        if embedder.owned:
            embedder.dense.index(data.corpus)
    n = len(data.queries)
    total = n * (1 + len(snrs) + len(conditions) * (len(recognizers) + len(embedders))) if needs_audio else 0
    state = SqutrRun(data, conditions, cache_dir, noise, seed, progress)
    for retriever in retrievers:
        state.score(TEXT, None, retriever.name, retriever.search(data.queries), None)
    if not needs_audio:
        return state.rows
    with progress_bar(desc="squtr", total=total, unit="utt", enabled=progress) as bar:
        state.bar = bar
        speech = state.speak(tts if tts is not None else EspeakTTS(seed=seed))
        audio = {condition: state.mix(speech, condition) for condition in conditions}
        for condition in conditions:
            for asr in recognizers:
                hyps = state.transcribe(asr, condition, audio[condition])
                wer = score_wer([data.queries[q] for q in data.queries], [hyps[q] for q in data.queries],
                                language="en").wer
                for retriever in retrievers:
                    state.score(condition, asr.name, retriever.name, retriever.search(hyps), wer)
            for embedder in embedders:
                state._stage(f"{embedder.name} {condition}")
                state.score(condition, None, embedder.name, embedder.search(audio[condition], state._advance), None)
    return state.rows


@dataclass
class EndToEnd:
    """An end-to-end speech retriever: its row name, its speech embedder and the dense index it searches."""

    name: str
    model: object
    dense: DenseRetriever
    owned: bool  # its index is built here (its text retriever is not among the cascade's)

    @classmethod
    def load(cls, path: str, retrievers: Sequence[Retriever]) -> "EndToEnd":
        """A checkpoint of ``speechkit bench squtr-train-e2e``; the text retriever it was distilled from is reused
        when it is among ``retrievers``."""
        from speechkit.bench.speech_retriever import load_speech_embedder

        model, text_model = load_speech_embedder(path)
        dense = next((r for r in retrievers if isinstance(r, DenseRetriever) and r.name == text_model), None)
        return cls(f"e2e:{Path(path).name}", model, dense or make_retriever(text_model), dense is None)

    def search(self, audio: dict[str, Path], advance: Callable[[int], None]) -> dict:
        from speechkit.bench.speech_retriever import embed_speech

        embeddings = embed_speech(self.model, [read_audio(path) for path in audio.values()])
        advance(len(audio))
        return self.dense.search_embeddings(list(audio), embeddings)


def system_name(row: dict) -> str:
    """``ct2:tiny.en + bm25``, ``bm25`` (text), ``e2e:model.pt``: one line of the plot and the table."""
    return row["retriever"] if row["asr"] is None else f"{row['asr']} + {row['retriever']}"


def table(rows: Sequence[dict], conditions: Sequence[str]) -> str:
    """A Markdown table: one line per system, ``nDCG@10 / MRR@10 (WER %)`` per condition. A cascade's text column
    is its retriever's text row (the same for every ASR); an end-to-end retriever has none."""
    columns = [TEXT, *conditions]
    header = ["system", *[c if c in (TEXT, "clean") else f"{c} dB" for c in columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    text_rows = {row["retriever"]: row for row in rows if row["condition"] == TEXT}

    def cell(row: Optional[dict]) -> str:
        if row is None:
            return "–"
        wer = f" ({100 * row['wer']:.1f})" if row["wer"] is not None else ""
        return f"{row['ndcg@10']:.4f} / {row['mrr@10']:.4f}{wer}"

    for name in dict.fromkeys(system_name(row) for row in rows if row["condition"] != TEXT):
        by_condition = {r["condition"]: r for r in rows if r["condition"] != TEXT and system_name(r) == name}
        retriever = next(iter(by_condition.values()))["retriever"]
        cells = [cell(text_rows.get(retriever) if " + " in name else None)]
        cells += [cell(by_condition.get(condition)) for condition in conditions]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if not any(row["condition"] != TEXT for row in rows):
        lines += [f"| {name} | {cell(row)} |" + " – |" * len(conditions) for name, row in text_rows.items()]
    return "\n".join(lines)


def plot_ndcg(rows: Sequence[dict], conditions: Sequence[str], path: str | Path, title: str) -> Path:
    """nDCG@10 against the condition (text, clean, then decreasing SNR), one line per system; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [TEXT, *conditions]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    text_rows = {row["retriever"]: row["ndcg@10"] for row in rows if row["condition"] == TEXT}
    for name in dict.fromkeys(system_name(row) for row in rows if row["condition"] != TEXT):
        values = {r["condition"]: r["ndcg@10"] for r in rows if r["condition"] != TEXT and system_name(r) == name}
        retriever = name.split(" + ")[-1]
        if retriever in text_rows:
            values[TEXT] = text_rows[retriever]
        xs = [i for i, c in enumerate(columns) if c in values]
        axis.plot(xs, [values[columns[i]] for i in xs], marker="o", label=name,
                  linestyle="--" if name.startswith("e2e:") else "-")
    axis.set_xticks(range(len(columns)), [c if c in (TEXT, "clean") else f"{c} dB" for c in columns])
    axis.set_xlabel("query condition")
    axis.set_ylabel("nDCG@10")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    path = Path(path)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.partial.png")
    figure.tight_layout()
    figure.savefig(partial, dpi=120)
    plt.close(figure)
    os.replace(partial, path)
    return path


def squtr(
    data: str,
    out: str,
    asr: Sequence[str] = ("oracle",),
    retriever: Sequence[str] = ("bm25", "dense"),
    snrs: Sequence[str] = PROTOCOL_CONDITIONS,
    speech_retriever: Sequence[str] = (),
    noise: Optional[str] = None,
    speakers: int = 4,
    tts: Optional[str] = None,
    split: str = "test",
    max_queries: int = 0,
    seed: int = 0,
    cache_dir: Optional[str] = None,
    batch_size: int = 16,
    language: str = "en",
    progress: bool = True,
) -> None:
    """Score spoken-query retrieval under noise (SQuTR): every ASR x retriever at text, clean, 20, 10, 0 dB.

    Writes OUT (JSON rows: condition, asr, retriever, ndcg@10, mrr@10, recall@10, wer) and OUT's .png (nDCG@10
    against the condition), and prints the table.

    Args:
        data: a BEIR-format folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv or qrels.jsonl).
        out: the JSON file to write.
        asr: ASR systems: oracle, drop:<rate> (simulated), ct2:tiny.en, ct2:base, a speechkit checkpoint, a Hugging
            Face or CTranslate2 Whisper folder.
        retriever: text retrievers: bm25, dense (all-MiniLM-L6-v2), dense:<sentence-transformers folder>.
        snrs: audio conditions: clean and SNRs in dB.
        speech_retriever: end-to-end speech retriever checkpoints (speechkit bench squtr-train-e2e).
        noise: a Lhotse cut or recording manifest of noise (speechkit prepare musan); default: the offline set
            (babble, pink, brown, tones) built in the cache.
        speakers: eSpeak NG speaker styles the queries are spread over.
        tts: a TTS callable "module:function" taking (text, query id) and returning a 16 kHz waveform, instead of
            eSpeak NG.
        split: the qrels split.
        max_queries: score only the first N judged queries (0: all).
        seed: speaker styles and noise draws.
        cache_dir: synthesized and mixed audio, transcripts (default: OUT without .json, plus .cache).
        batch_size: Whisper batch size.
        language: the language Whisper decodes in.
        progress: progress bar on stderr.

    Examples:
        speechkit bench squtr exp/squtr/set exp/squtr/results.json --asr ct2:tiny.en ct2:base \\
            --retriever bm25 dense --speech_retriever exp/squtr/e2e.pt
    """
    from speechkit.commands import load
    from speechkit.inference.writers import write_text_atomic

    start = time.perf_counter()
    conditions = parse_conditions(snrs)
    if speakers < 1:
        raise SpeechkitError(f"--speakers {speakers}: must be at least 1")
    dataset = load_beir(data, split).subset(max_queries)
    recognizers = [make_recognizer(spec, batch_size, language) for spec in asr]
    retrievers = [make_retriever(spec) for spec in retriever]
    noise_cuts = load_noise_cuts(noise, SAMPLE_RATE) if noise else None
    voice = load(tts) if tts else EspeakTTS(speakers, seed)
    cache = Path(cache_dir) if cache_dir else Path(out).with_suffix(".cache")
    rows = run_squtr(dataset, recognizers, retrievers, conditions, cache, voice, noise_cuts, speech_retriever, seed,
                     progress)
    result = {"benchmark": "squtr", "data": str(data), "documents": len(dataset.corpus),
              "queries": len(dataset.queries), "conditions": [TEXT, *conditions], "noise": noise or "offline",
              "tts": tts or voice.name, "seed": seed, "wall_seconds": round(time.perf_counter() - start, 1),
              "rows": rows}
    write_text_atomic(out, json.dumps(result, indent=1) + "\n")
    png = plot_ndcg(rows, conditions, Path(out).with_suffix(".png"),
                    f"SQuTR protocol: {len(dataset.queries)} queries, {len(dataset.corpus)} documents")
    print(table(rows, conditions))
    print(f"wrote {out} and {png} ({result['wall_seconds']:.0f} s)")
