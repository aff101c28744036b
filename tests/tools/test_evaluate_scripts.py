"""tools/evaluate_{wer,bleu,recall}.py as a user runs them: subprocesses on small files, numbers checked."""

import json
import subprocess
import sys
from pathlib import Path

import jiwer
import pytest
import sacrebleu

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def run_tool(name, *args):
    return subprocess.run([sys.executable, str(TOOLS / name), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_evaluate_wer_script(tmp_path):
    refs = {"a": "زه ښوونځي ته ځم", "b": "کِتاب لوی دی", "c": ""}
    hyps = {"c": "هو", "a": "زه ښوونځی ته ځم", "b": "کتاب لویه دی"}
    (tmp_path / "ref").write_text("".join(f"{k} {v}\n" for k, v in refs.items()), encoding="utf-8")
    (tmp_path / "hyp").write_text("".join(f"{k} {v}\n" for k, v in hyps.items()), encoding="utf-8")
    out = tmp_path / "wer.json"
    done = run_tool("evaluate_wer.py", "--ref", tmp_path / "ref", "--hyp", tmp_path / "hyp", "--language", "ps", "--json", out)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    ordered = [hyps[k] for k in refs]
    assert data["wer_raw"] == pytest.approx(jiwer.wer(list(refs.values()), ordered))
    # normalized: کِتاب == کتاب, the rest are real errors: ی/ي (1 sub), لوی/لویه (1 sub), هو (1 ins) over 7 words
    assert (data["substitutions"], data["insertions"], data["ref_words"]) == (2, 1, 7)
    assert data["wer"] == pytest.approx(3 / 7)
    assert data["empty_refs"] == 1 and data["analysis"]["suffix_confusions"] == 1
    assert "normalized" in done.stdout


def test_evaluate_wer_script_names_missing_id(tmp_path):
    (tmp_path / "ref").write_text("a x\nb y\n")
    (tmp_path / "hyp").write_text("a x\n")
    done = run_tool("evaluate_wer.py", "--ref", tmp_path / "ref", "--hyp", tmp_path / "hyp")
    assert done.returncode == 2 and "id 'b'" in done.stderr


def test_evaluate_bleu_script(tmp_path):
    rows = [("s1", "Ein Mann fährt Fahrrad.", "Ein Mann fährt ein Fahrrad."), ("s2", "Zwei Hunde laufen.", "Zwei Hunde rennen.")]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"id": i, "ref": r, "hyp": h}) + "\n" for i, r, h in rows))
    out = tmp_path / "bleu.json"
    done = run_tool("evaluate_bleu.py", "--predictions", tmp_path / "p.jsonl", "--json", out)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    hyps, refs = [h for _, _, h in rows], [r for _, r, _ in rows]
    assert data["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert data["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert "tok:13a" in data["signature"]


def test_evaluate_recall_script(tmp_path):
    # q1: relevant r1..r5, retrieved r1 at rank 1 and r2 at rank 3 -> AP@10 = (1/1 + 2/3) / 5
    run = ["q1 Q0 r1 1 0.9 t", "q1 Q0 n1 2 0.8 t", "q1 Q0 r2 3 0.7 t", "q1 Q0 n2 4 0.6 t"]
    (tmp_path / "run").write_text("\n".join(run) + "\n")
    (tmp_path / "qrels").write_text("".join(f"q1 0 r{i} 1\n" for i in range(1, 6)))
    out = tmp_path / "recall.json"
    done = run_tool("evaluate_recall.py", "--run", tmp_path / "run", "--qrels", tmp_path / "qrels", "--k", 1, 2, 3, "--json", out)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["map@10"] == pytest.approx((1 / 1 + 2 / 3) / 5)
    assert (data["recall@1"], data["recall@2"], data["recall@3"]) == pytest.approx((1 / 5, 1 / 5, 2 / 5))
    assert data["hit@1"] == 1.0 and data["mrr@10"] == 1.0
