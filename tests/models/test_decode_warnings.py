"""Decoding through a Whisper task's validation, test and predict paths makes transformers warn about nothing:
``generate`` is given what it asks for (the length as ``max_length`` only, the input's frame mask, a language and
task), instead of its warnings being filtered. transformers logs through its own ``transformers`` logger (which
does not propagate to the root), and some messages only once per process, so the capture attaches to that logger
and forgets what was already said."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Iterator

import lightning as L
import pytest
import torch

from speechkit.data import DataConfig, SpeechDataModule
from speechkit.tasks.whisper_finetune import WhisperFinetune
from speechkit.testing import tiny_whisper_dir, tone_corpus

pytestmark = pytest.mark.usefixtures("one_thread")


class Records(logging.Handler):
    """Every record of WARNING and above that reaches the logger it is attached to."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


@contextlib.contextmanager
def transformers_warnings() -> Iterator[list[str]]:
    """What transformers says inside the block: its logger's warnings (``warning_once`` forgotten first) and the
    Python warnings raised from its code."""
    said: list[str] = []
    logger, records = logging.getLogger("transformers"), Records()
    logging.Logger.warning_once.cache_clear()  # transformers' once-per-process warnings count here too
    logger.addHandler(records)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield said
    finally:
        logger.removeHandler(records)
    said += records.messages
    said += [f"{w.category.__name__}: {w.message}" for w in caught if f"{Path('transformers')}" in w.filename]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("decode_warnings")
    tone_corpus(root / "data", "dev", num_cuts=5, seed=1)
    return {"en": str(tiny_whisper_dir(root / "en", multilingual=False)),
            "multi": str(tiny_whisper_dir(root / "multi", multilingual=True)), "data": root / "data"}


def data(tiny) -> SpeechDataModule:
    dev = str(tiny["data"] / "cuts_dev.jsonl.gz")
    return SpeechDataModule(DataConfig(dev_cuts=dev, test_cuts=dev, val_batch_size=2, allow_language_mismatch=True))


def trainer() -> L.Trainer:
    return L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False)


@pytest.mark.parametrize("model,language,pad_to_30s,num_beams", [
    ("en", "en", False, 1), ("en", "en", True, 2), ("multi", "de", False, 2), ("multi", "ky", True, 1)])
def test_validation_test_and_predict_decode_without_a_warning(tiny, tmp_path, model, language, pad_to_30s, num_beams):
    task = WhisperFinetune(tiny[model], language=language, new_language_init_from="kk", pad_to_30s=pad_to_30s,
                           num_beams=num_beams, max_new_tokens=3, predictions_file=str(tmp_path / "test.jsonl"))
    with transformers_warnings() as said:
        trainer().validate(task, data(tiny))  # 3 batches: a warning per batch would show 3 times
        trainer().test(task, data(tiny))
        rows = trainer().predict(task, data(tiny))
    assert said == []
    assert len(rows) == 3 and (tmp_path / "test.jsonl").is_file()


def test_the_capture_hears_what_transformers_says(tiny):
    """The control: ``generate`` called the way it warns (no frame mask, ``max_new_tokens`` beside the config's
    ``max_length``) is heard, so an empty capture above means silence, not deafness."""
    task = WhisperFinetune(tiny["en"], language="en", max_new_tokens=3)
    dm = data(tiny)
    dm.tokenizer, dm.pad_token_id = task.tokenize, task.pad_token_id
    batch = next(iter(dm.val_dataloader()))
    with transformers_warnings() as said, torch.no_grad():
        task.model.generate(input_features=task.core.features(batch)[0], max_new_tokens=3)
    assert any("max_new_tokens" in message for message in said)
    assert any("attention mask" in message for message in said)
