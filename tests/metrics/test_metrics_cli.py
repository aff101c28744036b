"""``speechkit evaluate`` in-process: tables, JSON keys and values, plots, groups, errors."""

import json

import jiwer
import pytest
import sacrebleu

from speechkit.cli import main as speechkit_main


def main(argv: list[str]) -> int:
    """``speechkit evaluate ARGV`` (one-line errors, status 2)."""
    return speechkit_main(["evaluate", *argv])

REFS = {"u1": "Hello, World!", "u2": "the cat sat on the mat", "u3": "", "u4": "I won't go"}
HYPS = {"u1": "hello world", "u2": "the cat sat on mat mat mat mat mat", "u3": "uh", "u4": "i will not go"}


def kaldi(path, texts):
    path.write_text("".join(f"{key} {text}\n" for key, text in texts.items()), encoding="utf-8")
    return str(path)


def test_wer_json_and_plot(tmp_path, capsys):
    out, png = tmp_path / "wer.json", tmp_path / "plots" / "wer.png"
    args = ["wer", "--ref", kaldi(tmp_path / "ref", REFS), "--hyp", kaldi(tmp_path / "hyp", HYPS)]
    assert main([*args, "--json", str(out), "--plot", str(png)]) == 0
    data = json.loads(out.read_text())
    refs, hyps = list(REFS.values()), list(HYPS.values())
    assert data["wer_raw"] == pytest.approx(jiwer.wer(refs, hyps))
    assert data["wer"] < data["wer_raw"] and 0 <= data["wer"] < 1  # fractions, not percent
    assert data["empty_refs_raw"] == 1 and data["normalizer"] == "whisper_en"
    assert data["analysis"]["looping_utterances"] == 1
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    table = capsys.readouterr().out
    assert "raw" in table and "normalized" in table and "empty refs" in table


def test_wer_groups_from_predictions(tmp_path):
    rows = [
        {"id": "a", "ref": "x y", "hyp": "x y", "system": "s1"},
        {"id": "b", "ref": "x y", "hyp": "x z", "system": "s2"},
    ]
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "wer.json"
    assert main(["wer", "--predictions", str(path), "--language", "de", "--json", str(out)]) == 0
    groups = json.loads(out.read_text())["groups"]
    assert groups["s1"]["wer"] == 0.0 and groups["s2"]["wer"] == pytest.approx(0.5)


def test_mismatched_ids_fail_with_the_id(tmp_path, capsys):
    hyps = dict(HYPS)
    del hyps["u4"]
    status = main(["wer", "--ref", kaldi(tmp_path / "ref", REFS), "--hyp", kaldi(tmp_path / "hyp", hyps)])
    assert status == 2
    assert "id 'u4'" in capsys.readouterr().err


def test_bleu_json(tmp_path):
    refs = {"s1": "The cat sat on the mat.", "s2": "A man is riding a horse."}
    hyps = {"s1": "The cat sat on a mat.", "s2": "A man rides a horse."}
    out = tmp_path / "bleu.json"
    assert main(["bleu", "--ref", kaldi(tmp_path / "r", refs), "--hyp", kaldi(tmp_path / "h", hyps), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["bleu"] == pytest.approx(sacrebleu.corpus_bleu(list(hyps.values()), [list(refs.values())]).score)
    assert data["signature"].startswith("nrefs:1")


def test_recall_json_and_plot(tmp_path):
    (tmp_path / "run").write_text("q1 Q0 a 1 3 t\nq1 Q0 b 2 2 t\nq1 Q0 c 3 1 t\nq2 Q0 a 1 3 t\nq2 Q0 b 2 2 t\n")
    (tmp_path / "qrels").write_text("q1 0 c 1\nq2 0 a 1\nq2 0 z 1\n")
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    args = ["recall", "--run", str(tmp_path / "run"), "--qrels", str(tmp_path / "qrels"), "--k", "1", "3"]
    assert main([*args, "--json", str(out), "--plot", str(png)]) == 0
    data = json.loads(out.read_text())
    assert data["recall@1"] == pytest.approx((0 + 1 / 2) / 2) and data["hit@3"] == pytest.approx(1.0)
    assert data["mrr@10"] == pytest.approx((1 / 3 + 1) / 2)
    assert {"map@10", "ndcg@10"} <= set(data) and png.exists()


def test_arabic_script_without_language_is_not_scored_as_english(tmp_path, capsys):
    """Issue 11, defect 10: without --language, Whisper's English normalizer scored Arabic script (ئ -> ي: WER 0)."""
    refs, hyps = {"u1": "زه ئې وایم"}, {"u1": "زه يې وایم"}
    out = tmp_path / "wer.json"
    args = ["wer", "--ref", kaldi(tmp_path / "r", refs), "--hyp", kaldi(tmp_path / "h", hyps)]
    assert main([*args, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["normalizer"] == "basic[arabic script]" and data["wer"] == pytest.approx(1 / 3)
    err = capsys.readouterr().err
    assert "Arabic 100 %" in err and "basic[arabic script]" in err and "--language" in err
    assert main(["wer", "--ref", str(tmp_path / "r"), "--hyp", str(tmp_path / "h"), "--language", "ps"]) == 0
    assert "note" not in capsys.readouterr().err  # a language given: nothing to state


def test_latin_script_without_language_states_english(tmp_path, capsys):
    assert main(["wer", "--ref", kaldi(tmp_path / "r", REFS), "--hyp", kaldi(tmp_path / "h", HYPS)]) == 0
    err = capsys.readouterr().err
    assert "Latin 100 %" in err and "scored as English (whisper_en)" in err


def test_bleu_empty_references_are_reported(tmp_path, capsys):
    refs, hyps = {"s1": "The cat sat on the mat.", "s2": ""}, {"s1": "The cat sat on the mat.", "s2": "a dog"}
    out = tmp_path / "bleu.json"
    args = ["bleu", "--ref", kaldi(tmp_path / "r", refs), "--hyp", kaldi(tmp_path / "h", hyps), "--json", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "empty references: 1 (kept:" in captured.out
    assert "1 of 2 references are empty (s2)" in captured.err
    data = json.loads(out.read_text())
    assert data["empty_refs"] == 1 and data["empty_ref_ids"] == ["s2"] and data["segments_scored"] == 2
    assert main([*args, "--empty-refs", "drop"]) == 0
    assert json.loads(out.read_text())["bleu"] == pytest.approx(100.0)


def test_bom_in_reference_file(tmp_path):
    ref, hyp = tmp_path / "ref", tmp_path / "hyp"
    ref.write_bytes("\ufeffu1 hello world\n".encode())
    hyp.write_text("u1 hello world\n")
    assert main(["wer", "--ref", str(ref), "--hyp", str(hyp), "--json", str(tmp_path / "w.json")]) == 0
    assert json.loads((tmp_path / "w.json").read_text())["wer"] == 0.0


def test_non_utf8_file_is_one_line_naming_it(tmp_path, capsys):
    ref = tmp_path / "ref"
    ref.write_bytes(b"u1 caf\xe9\n")
    assert main(["wer", "--ref", str(ref), "--hyp", str(ref)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{ref}:1: not UTF-8 text (byte 0xe9 at byte offset 6" in err


def test_recall_nan_score_fails_naming_the_line(tmp_path, capsys):
    (tmp_path / "run").write_text("q1 Q0 b 1 1 t\nq1 Q0 a 2 nan t\n")
    (tmp_path / "qrels").write_text("q1 0 b 1\n")
    assert main(["recall", "--run", str(tmp_path / "run"), "--qrels", str(tmp_path / "qrels")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run:2: score 'nan' is not a finite number" in err


def test_unwritable_json_is_one_line_naming_it(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    texts = kaldi(tmp_path / "t", {"u1": "a b"})
    out = blocker / "wer.json"
    assert main(["wer", "--ref", texts, "--hyp", texts, "--language", "en", "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"speechkit evaluate wer: error: --json {out}: cannot write it")
