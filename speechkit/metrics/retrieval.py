"""Retrieval metrics over TREC-style ``run`` and ``qrels`` dicts, with ``trec_eval`` / ``pytrec_eval`` conventions.

``run = {qid: {docid: score}}`` (higher score = better; ties broken by docid, descending, as trec_eval does),
``qrels = {qid: {docid: relevance}}`` (relevance > 0 is relevant; graded values feed nDCG). For a query with the
set R of relevant items and ranked list d_1, d_2, ...:

* ``recall@k = |R ∩ top k| / |R|``  (pytrec_eval ``recall_k``);
* ``hit@k = 1[R ∩ top k ≠ ∅]``  (the "R@k" of audio-text retrieval papers);
* ``AP@k = (1/|R|) Σ_{i≤k, d_i∈R} precision@i``  (trec_eval ``map_cut_k``: divided by all of R, not min(k, |R|));
* ``nDCG@k = DCG@k / IDCG@k``, ``DCG@k = Σ_{i≤k} rel_i / log2(i + 1)`` with linear gain, as trec_eval
  ``ndcg_cut`` (Järvelin & Kekäläinen, "Cumulated gain-based evaluation of IR techniques", TOIS 2002, Sec. 2.2);
* ``RR@k = 1 / rank of the first relevant item`` within the top k, else 0.

Scores are means over queries. pytrec_eval is not a dependency; these few lines are written by hand and tested
against hand-computed values.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from speechkit.errors import SpeechkitError
from speechkit.metrics.io import check_same_ids

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def rank(scores: Mapping[str, float]) -> list[str]:
    """Docids by decreasing score; ties by decreasing docid (trec_eval's order)."""
    return sorted(scores, key=lambda docid: (scores[docid], docid), reverse=True)


def recall_at_k(ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    relevant = {docid for docid, rel in relevance.items() if rel > 0}
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def hit_at_k(ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    return float(any(relevance.get(docid, 0) > 0 for docid in ranking[:k]))


def average_precision_at_k(ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    num_relevant = sum(1 for rel in relevance.values() if rel > 0)
    found, total = 0, 0.0
    for position, docid in enumerate(ranking[:k], start=1):
        if relevance.get(docid, 0) > 0:
            found += 1
            total += found / position
    return total / num_relevant


def ndcg_at_k(ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    def dcg(gains: Sequence[int]) -> float:
        return sum(gain / math.log2(position + 1) for position, gain in enumerate(gains[:k], start=1))

    ideal = dcg(sorted((rel for rel in relevance.values() if rel > 0), reverse=True))
    return dcg([max(relevance.get(docid, 0), 0) for docid in ranking]) / ideal


def reciprocal_rank_at_k(ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    for position, docid in enumerate(ranking[:k], start=1):
        if relevance.get(docid, 0) > 0:
            return 1.0 / position
    return 0.0


def check_finite_scores(run: Run, name: str = "run") -> None:
    """Raise ``SpeechkitError`` naming the first query and document whose score is NaN or infinite.

    ``sorted`` with a NaN key gives an order that depends on the input order, so a NaN would make every metric
    depend on the order of the lines; an infinite score usually means a broken similarity.
    """
    for qid, scores in run.items():
        for docid, score in scores.items():
            if not math.isfinite(score):
                raise SpeechkitError(f"{name}: query {qid!r}, document {docid!r}: score {score} is not a finite number")


def _check_ks(ks: Sequence[int]) -> None:
    if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
        raise SpeechkitError(f"k={list(ks)!r}: expected one or more positive integers")


def retrieval_metrics(run: Run, qrels: Qrels, ks: Sequence[int] = (1, 5, 10), cutoff: int = 10) -> dict[str, float]:
    """Mean ``recall@k`` and ``hit@k`` for every k in ``ks``, and ``map@cutoff``, ``ndcg@cutoff``, ``mrr@cutoff``.

    Args:
        run: ``{qid: {docid: score}}``.
        qrels: ``{qid: {docid: relevance}}``; every run query must be here and vice versa.
        ks: cut-offs for recall and hit.
        cutoff: cut-off for mAP, nDCG and MRR.

    Returns:
        The means, plus ``queries`` (scored) and ``queries_without_relevant`` (in the qrels with no relevant
        item: excluded from the means, where recall is undefined; trec_eval does the same).

    Raises:
        SpeechkitError: a query in one of run/qrels only, a NaN or infinite score, or bad cut-offs.
    """
    _check_ks([*ks, cutoff])
    check_same_ids(run, qrels, "run", "qrels")
    check_finite_scores(run)
    scored = [qid for qid in run if any(rel > 0 for rel in qrels[qid].values())]
    if not scored:
        raise SpeechkitError("qrels: no query has a relevant item (relevance > 0)")
    functions = {f"recall@{k}": (recall_at_k, k) for k in ks} | {f"hit@{k}": (hit_at_k, k) for k in ks}
    functions |= {
        f"map@{cutoff}": (average_precision_at_k, cutoff),
        f"ndcg@{cutoff}": (ndcg_at_k, cutoff),
        f"mrr@{cutoff}": (reciprocal_rank_at_k, cutoff),
    }
    rankings = {qid: rank(run[qid]) for qid in scored}
    out = {
        name: sum(function(rankings[qid], qrels[qid], k) for qid in scored) / len(scored)
        for name, (function, k) in functions.items()
    }
    return out | {"queries": len(scored), "queries_without_relevant": len(run) - len(scored)}


def run_from_scores(
    scores: Sequence[Sequence[float]], query_ids: Sequence[str], doc_ids: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Turn a similarity matrix (e.g. audio x caption embeddings) into a ``run`` for ``retrieval_metrics``.

    Args:
        scores: ``(Q, D)`` nested sequence or tensor (``.tolist()`` is applied when present); higher = better.
        query_ids: Q query ids.
        doc_ids: D document ids.
    """
    rows = scores.tolist() if hasattr(scores, "tolist") else scores
    if len(rows) != len(query_ids) or any(len(row) != len(doc_ids) for row in rows):
        raise SpeechkitError(f"scores: expected shape ({len(query_ids)}, {len(doc_ids)}) = (queries, documents)")
    run = {qid: dict(zip(doc_ids, map(float, row))) for qid, row in zip(query_ids, rows)}
    check_finite_scores(run, "scores")
    return run
