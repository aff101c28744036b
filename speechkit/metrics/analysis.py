"""Error analysis of ASR output: substitution pairs, character confusions, suffix confusions, insertion loops.

"Fine-tuning Whisper for Pashto ASR: strategies and scale" (Rahman, arXiv 2604.06507) names two main error
classes, word-final suffix confusion (masculine -ay vs feminine -a) and confusions of Pashto-specific consonants,
but not how it counted them; the procedure here is speechkit's own
proposal (not the paper's):

1. word-level Levenshtein alignment (jiwer) -> substituted (ref word, hyp word) pairs;
2. for each pair a character alignment (jiwer) -> per-character confusion counts (``""`` marks an insertion or
   deletion), aggregated by character class (``PASHTO_CHAR_CLASSES``: the classes are defined explicitly, since
   the paper's "retroflex /ts/" is ill-specified: څ /ts/ is a dental affricate);
3. a pair is a *suffix confusion* when both words share a stem (common prefix of >= ``min_stem`` chars) and
   differ only in tails of <= ``max_suffix`` chars, made of the language's suffix letters (Pashto: ی ے ۍ ې ه ا ئ);
4. insertion rate I/N, repetition rate (inserted words that repeat one of the ``max_n`` preceding
   hypothesis words, per reference word) and looping utterances (an n-gram repeated ``min_repeats`` times in a row in the
   hypothesis but not in the reference: a decoder that loops).

Feed it normalized text (``speechkit.text.get_normalizer``) so that punctuation and case are not counted.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import jiwer

from speechkit.metrics.wer import check_pairs, error_rate

PASHTO_SUFFIX_CHARS = frozenset("یےۍېهائ")
PASHTO_CHAR_CLASSES: dict[str, str] = {"retroflex": "ټډړڼښږ", "affricate": "څځچج"}
SUFFIX_CHARS: dict[str, frozenset[str]] = {"ps": PASHTO_SUFFIX_CHARS}
CHAR_CLASSES: dict[str, dict[str, str]] = {"ps": PASHTO_CHAR_CLASSES}


def align_words(refs: Sequence[str], hyps: Sequence[str]) -> jiwer.WordOutput:
    """jiwer's word alignment of every (reference, hypothesis) pair."""
    check_pairs(refs, hyps)
    return jiwer.process_words(list(refs), list(hyps))


def substituted_words(out: jiwer.WordOutput) -> list[tuple[str, str]]:
    """Every (ref word, hyp word) pair that the word alignment ``out`` marks as a substitution, in corpus order."""
    pairs = []
    for ref_words, hyp_words, chunks in zip(out.references, out.hypotheses, out.alignments):
        for chunk in chunks:
            if chunk.type == "substitute":
                ref_part = ref_words[chunk.ref_start_idx : chunk.ref_end_idx]
                pairs += zip(ref_part, hyp_words[chunk.hyp_start_idx : chunk.hyp_end_idx])
    return pairs


def char_confusions(pairs: Sequence[tuple[str, str]]) -> Counter[tuple[str, str]]:
    """Character (ref, hyp) counts over the character alignments of substituted word pairs.

    ``(c, "")`` counts a deleted character, ``("", c)`` an inserted one; matches are not counted.
    """
    counts: Counter[tuple[str, str]] = Counter()
    if not pairs:
        return counts
    out = jiwer.process_characters([ref for ref, _ in pairs], [hyp for _, hyp in pairs])
    for ref_chars, hyp_chars, chunks in zip(out.references, out.hypotheses, out.alignments):
        for chunk in chunks:
            ref_part = ref_chars[chunk.ref_start_idx : chunk.ref_end_idx]
            hyp_part = hyp_chars[chunk.hyp_start_idx : chunk.hyp_end_idx]
            if chunk.type == "substitute":
                counts.update(zip(ref_part, hyp_part))
            elif chunk.type == "delete":
                counts.update((char, "") for char in ref_part)
            elif chunk.type == "insert":
                counts.update(("", char) for char in hyp_part)
    return counts


def letter_errors(refs: Sequence[str], hyps: Sequence[str], top: int = 10) -> dict[str, object]:
    """Character-level error classes of whole utterances: substitutions by (ref letter, hyp letter) pair, deletions
    and insertions by letter (the error classes of the Pashto study's error analysis, counted on every utterance,
    not only inside substituted words as ``char_confusions`` of substituted pairs is).

    Args:
        refs: (normalized) reference transcripts.
        hyps: (normalized) hypotheses, same length and order.
        top: how many of the most frequent pairs / letters to list.

    Returns:
        ``{"substitutions", "deletions", "insertions"}`` totals and ``"top_substitutions"`` ``[[ref, hyp, n], ...]``,
        ``"top_deletions"`` / ``"top_insertions"`` ``[[letter, n], ...]``; a space counts as a letter (a deleted
        space joins two words).
    """
    check_pairs(refs, hyps)
    counts = char_confusions(list(zip(refs, hyps)))
    subs = Counter({pair: n for pair, n in counts.items() if pair[0] and pair[1]})
    dels = Counter({ref: n for (ref, hyp), n in counts.items() if not hyp})
    ins = Counter({hyp: n for (ref, hyp), n in counts.items() if not ref})
    return {
        "substitutions": sum(subs.values()), "deletions": sum(dels.values()), "insertions": sum(ins.values()),
        "top_substitutions": [[ref, hyp, n] for (ref, hyp), n in subs.most_common(top)],
        "top_deletions": [[char, n] for char, n in dels.most_common(top)],
        "top_insertions": [[char, n] for char, n in ins.most_common(top)],
    }


def char_class(char: str, classes: Mapping[str, str]) -> str:
    """The name of the class holding ``char``; ``"other"`` for any other character, ``"none"`` for ``""``."""
    if not char:
        return "none"
    return next((name for name, members in classes.items() if char in members), "other")


def class_confusions(confusions: Mapping[tuple[str, str], int], classes: Mapping[str, str]) -> Counter[tuple[str, str]]:
    """Aggregate character confusions into (ref class, hyp class) counts."""
    counts: Counter[tuple[str, str]] = Counter()
    for (ref, hyp), count in confusions.items():
        counts[char_class(ref, classes), char_class(hyp, classes)] += count
    return counts


def suffix_confusion(
    ref: str, hyp: str, suffix_chars: Iterable[str] | None = None, max_suffix: int = 2, min_stem: int = 2
) -> tuple[str, str] | None:
    """The differing (ref tail, hyp tail) when ``ref`` and ``hyp`` share a stem and differ only at the end, else None.

    Args:
        ref: reference word.
        hyp: hypothesis word.
        suffix_chars: letters a tail may contain (None: any).
        max_suffix: longest tail, in characters.
        min_stem: shortest shared stem (common prefix), in characters.
    """
    stem = os.path.commonprefix([ref, hyp])
    ref_tail, hyp_tail = ref[len(stem) :], hyp[len(stem) :]
    if ref_tail == hyp_tail or len(stem) < min_stem or max(len(ref_tail), len(hyp_tail)) > max_suffix:
        return None
    if suffix_chars is not None and not set(ref_tail + hyp_tail) <= set(suffix_chars):
        return None
    return ref_tail, hyp_tail


def has_loop(words: Sequence[str], max_n: int = 4, min_repeats: int = 4) -> bool:
    """True when some n-gram (n <= ``max_n``) occurs ``min_repeats`` times in a row."""
    for n in range(1, max_n + 1):
        span = n * min_repeats
        for start in range(len(words) - span + 1):
            gram = words[start : start + n]
            if all(words[start + r * n : start + (r + 1) * n] == gram for r in range(1, min_repeats)):
                return True
    return False


def repeated_insertions(out: jiwer.WordOutput, max_n: int = 4) -> int:
    """Inserted hypothesis words (in the word alignment ``out``) equal to one of the ``max_n`` words before them."""
    count = 0
    for hyp_words, chunks in zip(out.hypotheses, out.alignments):
        for chunk in chunks:
            if chunk.type == "insert":
                for j in range(chunk.hyp_start_idx, chunk.hyp_end_idx):
                    count += any(hyp_words[j] == hyp_words[j - n] for n in range(1, min(max_n, j) + 1))
    return count


@dataclass(frozen=True)
class ErrorAnalysis:
    """Counts of one corpus; ``to_dict`` gives the JSON form with the ``top`` most frequent entries."""

    substitutions: Counter[tuple[str, str]]
    chars: Counter[tuple[str, str]]
    classes: Counter[tuple[str, str]]
    suffixes: Counter[tuple[str, str]]
    ref_words: int
    insertions: int
    repeated_insertions: int
    looping_utterances: int
    utterances: int

    def to_dict(self, top: int = 10) -> dict[str, object]:
        def rows(counter: Counter[tuple[str, str]]) -> list[list[object]]:
            return [[ref, hyp, count] for (ref, hyp), count in counter.most_common(top)]

        substituted = sum(self.substitutions.values())
        return {
            "top_substitutions": rows(self.substitutions),
            "top_char_confusions": rows(self.chars),
            "char_class_confusions": rows(self.classes),
            "top_suffix_confusions": rows(self.suffixes),
            "suffix_confusions": sum(self.suffixes.values()),
            "suffix_confusion_fraction": error_rate(sum(self.suffixes.values()), substituted),
            "insertion_rate": error_rate(self.insertions, self.ref_words),
            "repetition_rate": error_rate(self.repeated_insertions, self.ref_words),
            "looping_utterances": self.looping_utterances,
            "looping_fraction": self.looping_utterances / self.utterances,
        }


def analyze_errors(refs: Sequence[str], hyps: Sequence[str], language: str = "en", max_n: int = 4) -> ErrorAnalysis:
    """Run the whole analysis on (already normalized) references and hypotheses.

    Args:
        refs: normalized reference transcripts.
        hyps: normalized hypotheses, same length and order.
        language: picks the suffix letters and character classes (Pashto ``ps`` has both; others: any letter,
            no classes).
        max_n: longest n-gram for repetitions and loops.
    """
    from speechkit.text.normalizers import language_code

    code = language_code(language)
    words = align_words(refs, hyps)
    pairs = substituted_words(words)
    chars = char_confusions(pairs)
    suffixes = [suffix_confusion(ref, hyp, SUFFIX_CHARS.get(code)) for ref, hyp in pairs]
    loops = sum(has_loop(hyp.split(), max_n) and not has_loop(ref.split(), max_n) for ref, hyp in zip(refs, hyps))
    return ErrorAnalysis(
        substitutions=Counter(pairs),
        chars=chars,
        classes=class_confusions(chars, CHAR_CLASSES.get(code, {})),
        suffixes=Counter(tail for tail in suffixes if tail is not None),
        ref_words=words.hits + words.substitutions + words.deletions,
        insertions=words.insertions,
        repeated_insertions=repeated_insertions(words, max_n),
        looping_utterances=loops,
        utterances=len(refs),
    )
