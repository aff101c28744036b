"""Captioning metrics against several references per audio: CIDEr-D and exact-match METEOR (written here), BLEU.

CIDEr-D: Vedantam, Zitnick, Parikh, "CIDEr: Consensus-based Image Description Evaluation", CVPR 2015, eq. (2)-(4),
with the "-D" changes of the MS-COCO evaluation code (coco-caption ``cider_scorer.py``, which aac-metrics also
follows): n-grams n = 1..4, TF-IDF vectors with document frequencies counted over the references of the scored
corpus (one document per audio), the clipped product ``min(g_hyp, g_ref) * g_ref`` over the norms, a Gaussian
length penalty ``exp(-(l_hyp - l_ref)^2 / (2 * 6^2))``, averaged over n and references, times 10. As in that code,
the "length" is the count of bigrams (``n == 1`` in its 0-based index).

Why by hand: the maintained package, ``aac-metrics`` (Labbé), installs ``msclap``, ``sentence-transformers`` and
``transformers`` models for its other metrics and tokenizes with the Java Stanford PTB tokenizer; METEOR (Java +
the METEOR 1.5 jar and paraphrase tables) and SPICE (Java + Stanford CoreNLP, about 1 GB) download their data on
first use, FENSE / SPIDEr-FL download sentence-BERT and an error detector. None of those downloads is possible
here, so METEOR 1.5, SPICE, SPIDEr (= (CIDEr-D + SPICE) / 2) and SPIDEr-FL are not computed. Captions are
tokenized with ``speechkit.text.words.normalize_caption`` (lower case, punctuation removed) instead of the PTB
tokenizer; on punctuation-free lower-case text the two agree. CIDEr-D's values here equal aac-metrics' ``cider_d`` on the same
tokens (checked once by hand; aac-metrics is not a dependency).

METEOR-like: METEOR 1.0 with the exact-match module only (Banerjee and Lavie, "METEOR: An Automatic Metric for MT
Evaluation with Improved Correlation with Human Judgments", ACL 2005 workshop, section 2): unigrams matched one to
one, ``P = m / |hyp|``, ``R = m / |ref|``, ``Fmean = 10 P R / (R + 9 P)``, ``penalty = 0.5 (chunks / m)^3``,
``score = Fmean (1 - penalty)``, the best reference per audio, the corpus score the mean. The alignment keeps the
matches in runs where it can (a match continues the previous one's run when the next reference word fits), a
greedy stand-in for METEOR's fewest-chunks search. No stemming, synonyms or paraphrases and not METEOR 1.5's tuned
parameters, so its values are below the METEOR of aac-metrics and of papers: compare runs with it, not papers.

BLEU: sacrebleu's corpus BLEU-4 (Papineni et al. 2002) with every reference of each audio (``None`` pads a shorter
reference list, which sacrebleu ignores), on the normalized captions, 0-100. It is not coco-caption's BLEU (which
takes the closest reference length per sentence and its own tokenizer); use it to compare runs, not papers.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from sacrebleu.metrics import BLEU

from speechkit.errors import SpeechkitError
from speechkit.text.words import normalize_caption

CIDER_N = 4
CIDER_SIGMA = 6.0


def check_captions(hyps: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    """One hypothesis per audio and at least one non-empty reference each, or an error naming the audio."""
    if len(hyps) != len(references):
        raise SpeechkitError(f"captions: {len(hyps)} hypotheses but {len(references)} reference lists; expected one "
                             "list of references per hypothesis")
    if not hyps:
        raise SpeechkitError("captions: nothing to score (no hypothesis)")
    for index, refs in enumerate(references):
        if isinstance(refs, str) or not refs or any(not normalize_caption(r) for r in refs):
            raise SpeechkitError(f"captions: audio {index} needs a list of non-empty references, got {refs!r}")


def ngram_counts(words: Sequence[str], n: int = CIDER_N) -> Counter:
    """Counts of every 1..n-gram of ``words`` (tuples)."""
    return Counter(tuple(words[i:i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def _tfidf(counts: Counter, document_frequency: Counter, log_documents: float) -> tuple[list[dict], list[float], int]:
    vectors: list[dict] = [{} for _ in range(CIDER_N)]
    norms = [0.0] * CIDER_N
    length = 0
    for gram, tf in counts.items():
        k = len(gram) - 1
        value = tf * (log_documents - math.log(max(1.0, document_frequency[gram])))
        vectors[k][gram] = value
        norms[k] += value * value
        length += tf if k == 1 else 0  # coco-caption's "length": the bigram count
    return vectors, [math.sqrt(v) for v in norms], length


def _similarity(hyp: tuple, ref: tuple) -> list[float]:
    (hyp_vec, hyp_norm, hyp_len), (ref_vec, ref_norm, ref_len) = hyp, ref
    penalty = math.exp(-((hyp_len - ref_len) ** 2) / (2 * CIDER_SIGMA**2))
    out = []
    for k in range(CIDER_N):
        value = sum(min(v, ref_vec[k].get(g, 0.0)) * ref_vec[k].get(g, 0.0) for g, v in hyp_vec[k].items())
        if hyp_norm[k] and ref_norm[k]:
            value /= hyp_norm[k] * ref_norm[k]
        out.append(value * penalty)
    return out


def cider_d(hyps: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
    """Corpus CIDEr-D (the mean) and each audio's score; document frequencies from these references.

    Args:
        hyps: one caption per audio.
        references: every reference caption of each audio.
    """
    check_captions(hyps, references)
    ref_counts = [[ngram_counts(normalize_caption(r).split()) for r in refs] for refs in references]
    document_frequency: Counter = Counter(g for counts in ref_counts for g in set().union(*counts))
    log_documents = math.log(float(len(hyps)))
    scores = []
    for hyp, refs in zip(hyps, ref_counts):
        hyp_vec = _tfidf(ngram_counts(normalize_caption(hyp).split()), document_frequency, log_documents)
        total = [0.0] * CIDER_N
        for counts in refs:
            sims = _similarity(hyp_vec, _tfidf(counts, document_frequency, log_documents))
            total = [t + s for t, s in zip(total, sims)]
        scores.append(sum(total) / CIDER_N / len(refs) * 10.0)
    return sum(scores) / len(scores), scores


def meteor_exact_sentence(hyp: Sequence[str], ref: Sequence[str]) -> float:
    """Exact-match METEOR 1.0 of one tokenized hypothesis against one reference (see the module docstring)."""
    used: set[int] = set()
    aligned: list[int] = []  # reference position of each matched hypothesis word, in hypothesis order
    previous = None
    for i, word in enumerate(hyp):
        free = [j for j, r in enumerate(ref) if r == word and j not in used]
        if not free:
            previous = None
            continue
        following = hyp[i + 1] if i + 1 < len(hyp) else None
        starts_run = [j for j in free if j + 1 < len(ref) and ref[j + 1] == following and j + 1 not in used]
        j = previous + 1 if previous is not None and previous + 1 in free else (starts_run or free)[0]
        used.add(j)
        aligned.append(j)
        previous = j
    matches = len(aligned)
    if matches == 0:
        return 0.0
    chunks = 1 + sum(1 for a, b in zip(aligned, aligned[1:]) if b != a + 1)
    precision, recall = matches / len(hyp), matches / len(ref)
    fmean = 10 * precision * recall / (recall + 9 * precision)
    return fmean * (1 - 0.5 * (chunks / matches) ** 3)


def meteor_exact(hyps: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean over audios of the best exact-match METEOR against its references."""
    check_captions(hyps, references)
    scores = [max(meteor_exact_sentence(normalize_caption(h).split(), normalize_caption(r).split()) for r in refs)
              for h, refs in zip(hyps, references)]
    return sum(scores) / len(scores)


def caption_bleu(hyps: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """sacrebleu corpus BLEU-4 (0-100) of the normalized captions against every reference of each audio."""
    check_captions(hyps, references)
    streams = max(len(refs) for refs in references)
    ref_streams = [[normalize_caption(refs[i]) if i < len(refs) else None for refs in references]
                   for i in range(streams)]
    return BLEU().corpus_score([normalize_caption(h) for h in hyps], ref_streams).score


def captioning_metrics(hyps: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """``cider_d`` (CIDEr-D as published: 0-10), ``bleu4`` (0-100) and ``meteor_exact`` (0-1) of a corpus."""
    return {"cider_d": cider_d(hyps, references)[0], "bleu4": caption_bleu(hyps, references),
            "meteor_exact": meteor_exact(hyps, references)}
