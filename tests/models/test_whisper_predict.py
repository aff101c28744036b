"""``speechkit predict`` on a Whisper task writes the JSONL of ``speechkit transcribe`` (tiny random Whisper)."""

from __future__ import annotations

import json

import lightning as L
import pytest
import yaml

from speechkit.cli import main
from speechkit.data import DataConfig, SpeechDataModule
from speechkit.models.whisper_decode import DecodeOptions, unguarded
from speechkit.models.whisper_predict import predict_rows
from speechkit.tasks.whisper_finetune import WhisperFinetune
from speechkit.testing import tiny_whisper_dir, tone_corpus

pytestmark = pytest.mark.usefixtures("one_thread")
KEYS = {"id", "path", "text", "language", "segments", "duration", "ref"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    tone_corpus(root / "data", "test", num_cuts=5, seed=1)
    model = tiny_whisper_dir(root / "en", multilingual=False)
    return {"model": str(model), "cuts": root / "data" / "cuts_test.jsonl.gz"}


def test_predict_writes_transcribe_rows(tiny, tmp_path):
    task = WhisperFinetune(tiny["model"], max_new_tokens=4, predictions_file=str(tmp_path / "p.jsonl"))
    data = SpeechDataModule(DataConfig(test_cuts=str(tiny["cuts"]), val_batch_size=2))
    trainer = L.Trainer(logger=False, enable_progress_bar=False, use_distributed_sampler=False)
    returned = trainer.predict(task, data)
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == [f"test_{i:04d}" for i in range(5)]
    assert all(set(r) == KEYS and r["path"] is None and r["language"] == "en" for r in rows)
    assert all(r["ref"].startswith("tone") and r["duration"] > 0 for r in rows)
    assert [r for batch in returned for r in batch] == rows  # also returned, in order


def test_predict_rows_decode_as_transcribe_does(tiny):
    """Variable-length input (the task trained that way) and the task's limits; the guards can be turned off."""
    task = WhisperFinetune(tiny["model"], max_new_tokens=3)
    data = SpeechDataModule(DataConfig(test_cuts=str(tiny["cuts"]), val_batch_size=5))
    data.tokenizer = task.tokenize
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    rows = predict_rows(task.core, batch, unguarded(DecodeOptions(max_new_tokens=3, input_length="variable")))
    for row, cut_id, seconds in zip(rows, batch.cut_ids, batch.durations.tolist()):
        assert row["id"] == cut_id and row["duration"] == round(seconds, 3)
        assert len(row["text"].split()) <= 3  # max_new_tokens=3
        assert row["segments"] == ([{"start": 0.0, "end": row["segments"][0]["end"], "text": row["text"]}]
                                   if row["text"] else [])


def test_speechkit_predict_with_a_config(tiny, tmp_path):
    config = {
        "model": {"class_path": "speechkit.tasks.whisper_finetune.WhisperFinetune",
                  "init_args": {"model_name_or_path": tiny["model"], "max_new_tokens": 3,
                                "predictions_file": str(tmp_path / "out.jsonl")}},
        "data": {"class_path": "speechkit.data.SpeechDataModule",
                 "init_args": {"config": {"test_cuts": str(tiny["cuts"]), "val_batch_size": 3}}},
        "trainer": {"logger": False, "enable_progress_bar": False, "default_root_dir": str(tmp_path)},
    }
    (tmp_path / "predict.yaml").write_text(yaml.safe_dump(config))
    assert main(["predict", "-c", str(tmp_path / "predict.yaml")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and all(set(r) == KEYS for r in rows)
