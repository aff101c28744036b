"""``speechkit eval-spoken-answers CKPT CUTS OUT``: one score row per prompt condition, every answer, PNGs; bad input
is a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch

from speechkit.checkpoints import record_task_class
from speechkit.cli import main
from speechkit.data.corpora import spoken_qa_synth
from speechkit.data.manifests import load_cuts
from speechkit.tasks.flow_omni import FlowOmni
from speechkit.testing import shared_data_dir

TINY_LM = dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
               num_key_value_heads=2, max_position_embeddings=256)


@pytest.fixture(scope="module")
def checkpoint_and_cuts(tmp_path_factory) -> tuple[Path, Path]:
    from speechkit.testing import tiny_whisper_dir

    root = tmp_path_factory.mktemp("eval_spoken")
    torch.manual_seed(0)
    task = FlowOmni(str(tiny_whisper_dir(root / "whisper", multilingual=False)), TINY_LM, frames_per_step=2,
                    adapter_stack=2, flow_width=32, flow_blocks=1, max_answer_steps=50)
    with torch.no_grad():
        task.stop_head.bias.fill_(-20.0)  # speech never stops by itself: every answer has max_answer_steps chunks
    checkpoint = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}
    record_task_class(task, checkpoint)
    torch.save(checkpoint, root / "flow.ckpt")
    spoken_qa_synth.prepare(shared_data_dir() / "slurp", root / "data", kinds=["scenario"], max_train=1, max_dev=1,
                            max_test=2, speakers=1)
    return root / "flow.ckpt", root / "data" / "cuts_test.jsonl.gz"


def test_scores_every_condition(checkpoint_and_cuts, tmp_path, one_thread, capsys):
    checkpoint, cuts = checkpoint_and_cuts
    out = tmp_path / "eval"
    assert main(["eval-spoken-answers", str(checkpoint), str(cuts), str(out), "--max_cuts", "1",
                 "--max_answer_steps", "3"]) == 0
    scores = json.loads((out / "scores.json").read_text())["scores"]
    assert [row["condition"] for row in scores] == ["clean", "noisy", "pitch"]
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    manifest = {cut.id: cut.supervisions[0].custom for cut in load_cuts(str(cuts), "cuts")}
    assert len(answers) == 3  # --max_cuts 1 of the 2 prompts per condition
    for row, answer in zip(scores, answers):
        assert row["answers"] == 1 and answer["condition"] == row["condition"]
        assert manifest[answer["id"]]["condition"] == row["condition"] and answer["ref"] == manifest[answer["id"]][
            "answer"]
        assert row["mel_distance"] == pytest.approx(answer["mel_distance"])  # one answer: its own distance
        reference_frames = 100 * sf.info(manifest[answer["id"]]["answer_audio"]).duration  # 10 ms frames
        assert 6 / row["length_ratio"] == pytest.approx(reference_frames, abs=1.5)  # 3 steps x r = 2 frames
        assert (out / f"mel_{row['condition']}.png").read_bytes()[:4] == b"\x89PNG"
    assert "pitch: 1 answers, WER" in capsys.readouterr().out


def test_bad_input_is_one_line(checkpoint_and_cuts, tmp_path, capsys):
    checkpoint, cuts = checkpoint_and_cuts
    assert main(["eval-spoken-answers", str(tmp_path / "none.ckpt"), str(cuts), str(tmp_path / "o")]) != 0
    assert "none.ckpt: no such file (expected a FlowOmni .ckpt)" in capsys.readouterr().err
    assert main(["eval-spoken-answers", str(checkpoint), str(tmp_path / "no.jsonl.gz"), str(tmp_path / "o")]) != 0
    assert "no.jsonl.gz: no such file" in capsys.readouterr().err
    assert main(["eval-spoken-answers", str(checkpoint), str(cuts), str(tmp_path / "o"), "--batch_cuts", "0"]) != 0
    assert "batch_cuts 0 and max_new_tokens 64 must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
