"""File readers: Kaldi text, predictions.jsonl, TREC run/qrels; errors name the file, line and id."""

import json

import pytest

from speechkit.errors import SpeechkitError
from speechkit.metrics.io import (
    pair_texts,
    read_kaldi_text,
    read_pairs,
    read_predictions,
    read_trec_qrels,
    read_trec_run,
)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_kaldi_text(tmp_path):
    path = write(tmp_path / "text", "u1 hello  world\nu2\tzه ته\n\nu3\n")
    assert read_kaldi_text(path) == {"u1": "hello  world", "u2": "zه ته", "u3": ""}
    with pytest.raises(SpeechkitError, match=r"text:2: duplicate id 'u1'"):
        read_kaldi_text(write(tmp_path / "text", "u1 a\nu1 b\n"))
    with pytest.raises(SpeechkitError, match="no such file"):
        read_kaldi_text(tmp_path / "missing")


def test_mismatched_ids_are_named(tmp_path):
    ref = write(tmp_path / "ref", "u1 a\nu2 b\n")
    hyp = write(tmp_path / "hyp", "u1 a\nu3 c\n")
    with pytest.raises(SpeechkitError, match=r"id 'u2' in .*ref but missing from .*hyp"):
        read_pairs(ref, hyp)
    with pytest.raises(SpeechkitError, match=r"id 'u3' in HYP but missing from REF"):
        pair_texts({"u1": "a"}, {"u1": "a", "u3": "c"})
    pairs = read_pairs(ref, write(tmp_path / "hyp2", "u2 x\nu1 a\n"))
    assert [(p.id, p.ref, p.hyp) for p in pairs] == [("u1", "a", "a"), ("u2", "b", "x")]


def test_predictions_jsonl(tmp_path):
    rows = [{"id": "a", "ref": "x y", "hyp": "x", "system": "s1"}, {"id": "b", "ref": "", "hyp": "z"}]
    path = write(tmp_path / "p.jsonl", "\n".join(json.dumps(row) for row in rows) + "\n")
    predictions = read_predictions(path)
    assert [(p.id, p.ref, p.hyp, p.extra) for p in predictions] == [("a", "x y", "x", {"system": "s1"}), ("b", "", "z", {})]
    with pytest.raises(SpeechkitError, match=r"p.jsonl:1: key 'hyp' missing"):
        read_predictions(write(tmp_path / "p.jsonl", '{"id": "a", "ref": "x"}\n'))
    with pytest.raises(SpeechkitError, match=r"p.jsonl:2: duplicate id 'a'"):
        read_predictions(write(tmp_path / "p.jsonl", '{"id": "a", "ref": "", "hyp": ""}\n' * 2))
    with pytest.raises(SpeechkitError, match=r"p.jsonl:1: not a JSON object"):
        read_predictions(write(tmp_path / "p.jsonl", "a b\n"))
    with pytest.raises(SpeechkitError, match="not both"):
        read_pairs(path, None, path)


def test_trec_files(tmp_path):
    run = write(tmp_path / "run", "q1 Q0 d1 1 2.5 sys\nq1 Q0 d2 2 1.0 sys\nq2 Q0 d1 1 0.3 sys\n")
    qrels = write(tmp_path / "qrels", "q1 0 d1 1\nq1 0 d3 2\nq2 0 d1 0\n")
    assert read_trec_run(run) == {"q1": {"d1": 2.5, "d2": 1.0}, "q2": {"d1": 0.3}}
    assert read_trec_qrels(qrels) == {"q1": {"d1": 1, "d3": 2}, "q2": {"d1": 0}}
    with pytest.raises(SpeechkitError, match=r"run:1: expected 6 columns"):
        read_trec_run(write(tmp_path / "run", "q1 d1 1\n"))
    with pytest.raises(SpeechkitError, match=r"qrels:1: relevance 'x'"):
        read_trec_qrels(write(tmp_path / "qrels", "q1 0 d1 x\n"))
    with pytest.raises(SpeechkitError, match=r"run:2: duplicate docid for query 'q1'"):
        read_trec_run(write(tmp_path / "run", "q1 Q0 d1 1 2 s\nq1 Q0 d1 2 1 s\n"))


def test_bom_is_stripped_not_part_of_the_first_id(tmp_path):
    """Issue 11, defect 10: a UTF-8 BOM became part of the first id ('\\ufeffu1' missing from the other file)."""
    ref = tmp_path / "ref"
    ref.write_bytes(b"\xef\xbb\xbfu1 hello\nu2 world\n")
    assert read_kaldi_text(ref) == {"u1": "hello", "u2": "world"}
    joined = tmp_path / "joined"  # two BOM files joined with cat: the second BOM starts line 2
    joined.write_bytes(b"\xef\xbb\xbfu1 a\n\xef\xbb\xbfu2 b\n")
    assert list(read_kaldi_text(joined)) == ["u1", "u2"]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"id": "a", "ref": "x", "hyp": "x"}\n')
    assert read_predictions(jsonl)[0].id == "a"
    run = tmp_path / "run"
    run.write_bytes(b"\xef\xbb\xbfq1 Q0 d1 1 2.5 sys\n")
    assert read_trec_run(run) == {"q1": {"d1": 2.5}}


def test_non_utf8_names_the_file_line_and_byte_offset(tmp_path):
    path = tmp_path / "hyp"
    path.write_bytes(b"u1 ok\nu2 caf\xe9\n")
    with pytest.raises(SpeechkitError, match=r"hyp:2: not UTF-8 text \(byte 0xe9 at byte offset 12: invalid"):
        read_kaldi_text(path)
    utf16 = tmp_path / "utf16"
    utf16.write_bytes("u1 a\n".encode("utf-16"))
    with pytest.raises(SpeechkitError, match="UTF-16 byte-order mark"):
        read_kaldi_text(utf16)


@pytest.mark.parametrize("score", ["nan", "NaN", "inf", "-inf"])
def test_non_finite_score_is_an_error_naming_the_line(tmp_path, score):
    """Issue 11, defect 10: a NaN score made recall depend on the order of the lines."""
    for text, line in ((f"q1 Q0 a 1 {score} t\nq1 Q0 b 2 1 t\n", 1), (f"q1 Q0 b 1 1 t\nq1 Q0 a 2 {score} t\n", 2)):
        with pytest.raises(SpeechkitError, match=rf"run:{line}: score '{score}' is not a finite number"):
            read_trec_run(write(tmp_path / "run", text))


def test_transcribe_rows_are_read_with_text_as_the_hypothesis(tmp_path):
    """``speechkit transcribe`` on a manifest writes ``ref`` and ``text``: evaluate scores them without a rename."""
    from speechkit.metrics.io import read_predictions

    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"id": "a", "path": "/x.wav", "ref": "one two", "text": "one", "segments": []}) + "\n")
    (row,) = read_predictions(path)
    assert (row.id, row.ref, row.hyp) == ("a", "one two", "one")
    assert "text" not in row.extra and row.extra["path"] == "/x.wav"
