"""BEIR-format retrieval sets: ``corpus.jsonl``, ``queries.jsonl`` and qrels as TSV or JSONL.

The layout of BEIR (Thakur et al., 2021) and of SQuTR (Li et al., 2026, section 3.1: "corpora + qrels unchanged"):
``corpus.jsonl`` lines ``{"_id", "title", "text"}``, ``queries.jsonl`` lines ``{"_id", "text"}``, and relevance
judgements in ``qrels/<split>.tsv`` (``query-id  corpus-id  score`` with a header line, BEIR) or ``qrels.jsonl`` /
``qrels/<split>.jsonl`` (``{"query-id", "corpus-id", "score"}`` a line, SQuTR). Only the queries the qrels judge are
scored (BEIR's ``queries.jsonl`` holds every split's queries); their number is logged. Everything else that is
wrong (a duplicate id, an empty query, a judgement naming an unknown document or query) is a one-line error naming
the file and line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from speechkit.errors import SpeechkitError
from speechkit.inference.writers import write_text_atomic

log = logging.getLogger(__name__)
QREL_KEYS = ("query-id", "corpus-id", "score")


@dataclass(frozen=True)
class RetrievalSet:
    """A retrieval benchmark: documents, the judged queries and their relevance judgements.

    Attributes:
        corpus: document id -> text (BEIR's ``title`` and ``text`` joined by a space).
        queries: query id -> text; only queries with a judgement.
        qrels: query id -> {document id: relevance}.
        name: where it came from (for reports).
    """

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    name: str = ""

    def __post_init__(self) -> None:
        check_retrieval_set(self.corpus, self.queries, self.qrels, self.name or "retrieval set")

    def subset(self, max_queries: int) -> "RetrievalSet":
        """The first ``max_queries`` queries (in file order) with their qrels; 0 keeps all."""
        if max_queries <= 0 or max_queries >= len(self.queries):
            return self
        kept = list(self.queries)[:max_queries]
        return RetrievalSet(self.corpus, {q: self.queries[q] for q in kept}, {q: self.qrels[q] for q in kept},
                            self.name)


def check_retrieval_set(corpus: Mapping[str, str], queries: Mapping[str, str],
                        qrels: Mapping[str, Mapping[str, int]], name: str) -> None:
    """Raise a one-line ``SpeechkitError`` for an empty query, a judgement of an unknown document or query, or a
    query without any relevant document."""
    if not corpus:
        raise SpeechkitError(f"{name}: the corpus has no documents")
    if not queries:
        raise SpeechkitError(f"{name}: no query has a relevance judgement")
    for qid, text in queries.items():
        if not text.strip():
            raise SpeechkitError(f"{name}: query {qid!r} is empty; expected the text of a question")
    for qid, judged in qrels.items():
        if qid not in queries:
            raise SpeechkitError(f"{name}: qrels name query {qid!r}, which is not among the queries")
        unknown = [doc for doc in judged if doc not in corpus]
        if unknown:
            raise SpeechkitError(f"{name}: qrels of query {qid!r} name document {unknown[0]!r}, which is not in "
                                 "the corpus")
        if not any(rel > 0 for rel in judged.values()):
            raise SpeechkitError(f"{name}: query {qid!r} has no relevant document (every score is 0)")
    missing = [qid for qid in queries if qid not in qrels]
    if missing:
        raise SpeechkitError(f"{name}: query {missing[0]!r} has no qrels")


def _json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` of a JSONL file; a bad line is an error naming the file and line."""
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise SpeechkitError(f"{path}:{number}: not JSON ({error.msg})") from None
            if not isinstance(value, dict):
                raise SpeechkitError(f"{path}:{number}: expected a JSON object")
            yield number, value


def _read_texts(path: Path, text_field: str, with_title: bool) -> dict[str, str]:
    """``_id`` -> text of ``corpus.jsonl`` or ``queries.jsonl``."""
    if not path.is_file():
        raise SpeechkitError(f"{path}: no such file (a BEIR set has corpus.jsonl and queries.jsonl)")
    texts: dict[str, str] = {}
    for number, row in _json_lines(path):
        if "_id" not in row or text_field not in row:
            raise SpeechkitError(f"{path}:{number}: expected keys '_id' and {text_field!r}, got {sorted(row)}")
        key = str(row["_id"])
        if key in texts:
            raise SpeechkitError(f"{path}:{number}: duplicate _id {key!r}")
        text = str(row[text_field] or "")
        title = str(row.get("title") or "") if with_title else ""
        texts[key] = f"{title} {text}".strip() if title else text
    return texts


def find_qrels(folder: Path, split: str) -> Path:
    """The qrels file of ``split``: ``qrels/<split>.tsv``, ``qrels/<split>.jsonl``, ``qrels.tsv`` or ``qrels.jsonl``."""
    candidates = [folder / "qrels" / f"{split}.tsv", folder / "qrels" / f"{split}.jsonl", folder / "qrels.tsv",
                  folder / "qrels.jsonl"]
    for path in candidates:
        if path.is_file():
            return path
    raise SpeechkitError(f"{folder}: no qrels; expected one of {', '.join(str(p.relative_to(folder)) for p in candidates)}")


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``{query-id: {corpus-id: score}}`` from a BEIR TSV (header optional) or a JSONL qrels file."""
    qrels: dict[str, dict[str, int]] = {}
    for number, (qid, docid, score) in _qrel_rows(path):
        try:
            value = int(float(score))
        except ValueError:
            raise SpeechkitError(f"{path}:{number}: score {score!r} is not a number") from None
        qrels.setdefault(qid, {})[docid] = value
    if not qrels:
        raise SpeechkitError(f"{path}: no judgements")
    return qrels


def _qrel_rows(path: Path) -> Iterator[tuple[int, tuple[str, str, str]]]:
    if path.suffix == ".jsonl":
        for number, row in _json_lines(path):
            if any(key not in row for key in QREL_KEYS):
                raise SpeechkitError(f"{path}:{number}: expected keys {list(QREL_KEYS)}, got {sorted(row)}")
            yield number, (str(row["query-id"]), str(row["corpus-id"]), str(row["score"]))
        return
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            fields = line.rstrip("\n").split("\t")
            if not line.strip() or (number == 1 and fields[0] == "query-id"):
                continue
            if len(fields) != 3:
                raise SpeechkitError(f"{path}:{number}: expected 'query-id<TAB>corpus-id<TAB>score'")
            yield number, (fields[0], fields[1], fields[2])


def load_beir(folder: str | Path, split: str = "test") -> RetrievalSet:
    """Read a BEIR-format set (NQ, HotpotQA, FiQA as BEIR ships them, or one written by :func:`write_beir`).

    Args:
        folder: holds ``corpus.jsonl``, ``queries.jsonl`` and the qrels (see :func:`find_qrels`).
        split: the qrels split (``qrels/<split>.tsv``).

    Raises:
        SpeechkitError: a missing file, a bad line, an empty judged query, qrels naming an unknown document or
            query (one line, naming the file).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SpeechkitError(f"{folder}: no such folder (expected a BEIR set: corpus.jsonl, queries.jsonl, qrels)")
    corpus = _read_texts(folder / "corpus.jsonl", "text", with_title=True)
    all_queries = _read_texts(folder / "queries.jsonl", "text", with_title=False)
    qrels_path = find_qrels(folder, split)
    qrels = read_qrels(qrels_path)
    for qid, judged in qrels.items():
        if qid not in all_queries:
            raise SpeechkitError(f"{qrels_path}: query-id {qid!r} is not in queries.jsonl")
        unknown = next((doc for doc in judged if doc not in corpus), None)
        if unknown is not None:
            raise SpeechkitError(f"{qrels_path}: query {qid!r} names corpus-id {unknown!r}, which is not in "
                                 "corpus.jsonl")
    queries = {qid: text for qid, text in all_queries.items() if qid in qrels}
    for qid, text in queries.items():
        if not text.strip():
            raise SpeechkitError(f"{folder / 'queries.jsonl'}: query {qid!r} is empty; a judged query needs text")
    if len(queries) < len(all_queries):
        log.info("%s: %d of %d queries have qrels in %s and are scored", folder, len(queries), len(all_queries),
                 qrels_path.name)
    return RetrievalSet(corpus, queries, qrels, str(folder))


def write_beir(data: RetrievalSet, folder: str | Path, split: str = "test") -> Path:
    """Write ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` into ``folder``, each atomically."""
    folder = Path(folder)
    corpus = "".join(json.dumps({"_id": k, "title": "", "text": v}, ensure_ascii=False) + "\n"
                     for k, v in data.corpus.items())
    queries = "".join(json.dumps({"_id": k, "text": v}, ensure_ascii=False) + "\n" for k, v in data.queries.items())
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(
        f"{qid}\t{doc}\t{rel}\n" for qid, judged in data.qrels.items() for doc, rel in judged.items())
    for path, text in ((folder / "corpus.jsonl", corpus), (folder / "queries.jsonl", queries),
                       (folder / "qrels" / f"{split}.tsv", qrels)):
        write_text_atomic(path, text)
    return folder

