"""Retrieval metrics against hand-computed values."""

import math

import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.metrics.retrieval import (
    average_precision_at_k,
    ndcg_at_k,
    rank,
    reciprocal_rank_at_k,
    retrieval_metrics,
    run_from_scores,
)

# relevant items r1..r5; r1 at rank 1, r2 at rank 3, the others not retrieved
RANKING = ["r1", "n1", "r2", "n2", "n3", "n4"]
RELEVANCE = {f"r{i}": 1 for i in range(1, 6)}


def test_map_at_10_hand_value():
    assert average_precision_at_k(RANKING, RELEVANCE, 10) == pytest.approx((1 / 1 + 2 / 3) / 5)
    assert average_precision_at_k(RANKING, RELEVANCE, 2) == pytest.approx(1 / 5)


def test_ndcg_graded_hand_value():
    ranking = ["a", "b", "c", "d"]
    relevance = {"a": 3, "c": 2, "d": 1, "e": 2}  # b is not relevant; e is never retrieved
    dcg = 3 / math.log2(2) + 2 / math.log2(4) + 1 / math.log2(5)
    ideal = 3 / math.log2(2) + 2 / math.log2(3) + 2 / math.log2(4) + 1 / math.log2(5)
    assert ndcg_at_k(ranking, relevance, 4) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(ranking, relevance, 1) == pytest.approx(1.0)


def test_run_level_recall_hit_mrr():
    run = {
        "q1": {"r1": 0.9, "n1": 0.8, "r2": 0.7, "n2": 0.6},  # relevant at ranks 1 and 3 of 2
        "q2": {"n1": 0.9, "n2": 0.8, "r1": 0.1},  # relevant at rank 3 of 1
    }
    qrels = {"q1": {"r1": 1, "r2": 1}, "q2": {"r1": 1, "n1": 0}, "q3": {"x": 0}}
    run["q3"] = {"x": 1.0}  # a query with no relevant item: counted, not scored
    result = retrieval_metrics(run, qrels, ks=(1, 2, 5), cutoff=10)
    assert result["recall@1"] == pytest.approx((1 / 2 + 0) / 2)
    assert result["recall@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert result["recall@5"] == pytest.approx(1.0)
    assert result["hit@1"] == pytest.approx(0.5) and result["hit@5"] == pytest.approx(1.0)
    assert result["mrr@10"] == pytest.approx((1 + 1 / 3) / 2)
    assert result["map@10"] == pytest.approx(((1 + 2 / 3) / 2 + 1 / 3) / 2)
    assert result["queries"] == 2 and result["queries_without_relevant"] == 1
    assert reciprocal_rank_at_k(["n1", "n2", "r1"], {"r1": 1}, 2) == 0.0


def test_ties_broken_by_docid_descending():
    assert rank({"a": 1.0, "b": 1.0, "c": 2.0}) == ["c", "b", "a"]


def test_query_missing_from_qrels_is_named():
    with pytest.raises(SpeechkitError, match="'q9' in run but missing from qrels"):
        retrieval_metrics({"q1": {"a": 1.0}, "q9": {"a": 1.0}}, {"q1": {"a": 1}})
    with pytest.raises(SpeechkitError, match="k="):
        retrieval_metrics({"q1": {"a": 1.0}}, {"q1": {"a": 1}}, ks=(0,))


def test_run_from_similarity_matrix():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8]])  # (Q=2 audio clips, D=3 captions)
    run = run_from_scores(scores, ["a0", "a1"], ["c0", "c1", "c2"])
    qrels = {"a0": {"c0": 1}, "a1": {"c1": 1}}
    result = retrieval_metrics(run, qrels, ks=(1, 2))
    assert result["hit@1"] == pytest.approx(0.5) and result["hit@2"] == pytest.approx(1.0)
    with pytest.raises(SpeechkitError, match="expected shape"):
        run_from_scores(scores, ["a0"], ["c0", "c1", "c2"])


def test_non_finite_scores_are_refused():
    """sorted() with a NaN key depends on the input order: the metrics would too."""
    qrels = {"q1": {"b": 1}}
    for run in ({"q1": {"a": math.nan, "b": 1.0}}, {"q1": {"b": 1.0, "a": math.nan}}):
        with pytest.raises(SpeechkitError, match=r"run: query 'q1', document 'a': score nan is not a finite number"):
            retrieval_metrics(run, qrels, ks=[1])
    with pytest.raises(SpeechkitError, match=r"scores: query 'q2', document 'd1': score inf"):
        run_from_scores([[0.1, 0.2], [math.inf, 0.0]], ["q1", "q2"], ["d1", "d2"])
