"""BEIR loader: round trip, TSV and JSONL qrels, and one-line errors for bad sets."""

import json

import pytest

from speechkit.bench.beir import RetrievalSet, load_beir, write_beir
from speechkit.errors import SpeechkitError


def _write(folder, corpus, queries, qrels_lines, qrels_name="qrels/test.tsv"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in queries))
    path = folder / qrels_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(qrels_lines)
    return folder


CORPUS = [{"_id": "d1", "title": "Dogs", "text": "a dog runs"}, {"_id": "d2", "title": "", "text": "a red hat"}]
QUERIES = [{"_id": "q1", "text": "dog running"}, {"_id": "q2", "text": "hat"}, {"_id": "q3", "text": "unjudged"}]


def test_tsv_set_loads_judged_queries_with_titles(tmp_path):
    data = load_beir(_write(tmp_path / "s", CORPUS, QUERIES, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\n"))
    assert data.corpus == {"d1": "Dogs a dog runs", "d2": "a red hat"}
    assert data.queries == {"q1": "dog running", "q2": "hat"}  # q3 has no qrels: not scored
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2}}


def test_jsonl_qrels_and_round_trip(tmp_path):
    rows = [{"query-id": "q1", "corpus-id": "d1", "score": 1}, {"query-id": "q2", "corpus-id": "d2", "score": 1}]
    data = load_beir(_write(tmp_path / "s", CORPUS, QUERIES, "".join(json.dumps(r) + "\n" for r in rows),
                            "qrels.jsonl"))
    again = load_beir(write_beir(data, tmp_path / "copy"))
    assert (again.corpus, again.queries, again.qrels) == (data.corpus, data.queries, data.qrels)


@pytest.mark.parametrize("queries, qrels, message", [
    (QUERIES, "q1\td9\t1\n", "names corpus-id 'd9', which is not in corpus.jsonl"),
    (QUERIES, "q7\td1\t1\n", "query-id 'q7' is not in queries.jsonl"),
    ([{"_id": "q1", "text": "  "}], "q1\td1\t1\n", "query 'q1' is empty"),
    ([{"_id": "q1"}], "q1\td1\t1\n", "expected keys '_id' and 'text'"),
    (QUERIES, "q1\td1\n", "expected 'query-id<TAB>corpus-id<TAB>score'"),
])
def test_bad_sets_are_one_line_errors(tmp_path, queries, qrels, message):
    with pytest.raises(SpeechkitError, match=message) as error:
        load_beir(_write(tmp_path / "s", CORPUS, queries, qrels))
    assert "\n" not in str(error.value)


def test_retrieval_set_checks_itself():
    with pytest.raises(SpeechkitError, match="name document 'd9'"):
        RetrievalSet({"d1": "x"}, {"q1": "y"}, {"q1": {"d9": 1}})
    with pytest.raises(SpeechkitError, match="query 'q1' is empty"):
        RetrievalSet({"d1": "x"}, {"q1": ""}, {"q1": {"d1": 1}})
