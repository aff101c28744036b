"""``speechkit export`` of any Whisper task: a Minitron-pruned student becomes a Hugging Face folder that
``from_pretrained`` loads and that decodes the student's tokens; a student Hugging Face cannot express is refused."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import transformers

from speechkit.checkpoints import load_checkpoint
from speechkit.data import DataConfig, SpeechDataModule
from speechkit.drivers.export import export_checkpoint
from speechkit.errors import SpeechkitError
from speechkit.tasks.whisper_distill import WhisperDistill
from speechkit.testing import tiny_whisper_dir, tone_corpus

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    tone_corpus(root / "data", "train", num_cuts=8, seed=0)
    tone_corpus(root / "data", "dev", num_cuts=4, seed=1)
    return {"whisper": tiny_whisper_dir(root / "whisper", multilingual=False), "data": root / "data"}


def data(tiny: dict[str, Path]) -> SpeechDataModule:
    return SpeechDataModule(DataConfig(train_cuts=str(tiny["data"] / "cuts_train.jsonl.gz"),
                                       dev_cuts=str(tiny["data"] / "cuts_dev.jsonl.gz"), max_duration=3.0,
                                       val_batch_size=4, num_buckets=2, seed=0))


def distilled(tiny: dict[str, Path], out: Path, **surgery) -> tuple[WhisperDistill, SpeechDataModule, Path]:
    """A student pruned on calibration batches in ``setup`` (as ``speechkit fit`` does), one step, saved."""
    torch.manual_seed(0)
    task = WhisperDistill(str(tiny["whisper"]), calibration_batches=2, pad_to_30s=True, max_new_tokens=4, gamma=1.0,
                          **surgery)
    dm = data(tiny)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False, num_sanity_val_steps=0,
                        limit_val_batches=0, default_root_dir=str(out))
    trainer.fit(task, dm)
    trainer.save_checkpoint(out / "student.ckpt")
    return task.eval(), dm, out / "student.ckpt"


def test_a_minitron_student_exports_to_a_folder_that_decodes_its_tokens(tiny, tmp_path):
    task, dm, ckpt = distilled(tiny, tmp_path, remove_decoder_layers=1, decoder_ffn_keep=16, encoder_ffn_keep=48)
    assert load_checkpoint(ckpt)["speechkit_task_class"] == "speechkit.tasks.whisper_distill.WhisperDistill"
    folder = export_checkpoint(ckpt, tmp_path / "hf")
    hf = transformers.WhisperForConditionalGeneration.from_pretrained(folder).eval()
    assert (hf.config.decoder_layers, hf.config.decoder_ffn_dim, hf.config.encoder_ffn_dim) == (1, 16, 48)
    student = task.model.state_dict()
    assert student.keys() == hf.state_dict().keys()
    assert all(torch.equal(tensor, student[name]) for name, tensor in hf.state_dict().items())

    batch = next(iter(dm.val_dataloader()))
    feats, lens = task.core.features(batch)  # (B, 80, 3000): stock Whisper input
    inputs, _ = task.core.shift_labels(batch)
    generation = transformers.GenerationConfig.from_pretrained(folder)
    with torch.no_grad():
        logits = hf(input_features=feats, decoder_input_ids=inputs).logits  # (B, U-1, V)
        assert torch.allclose(logits, task.core.logits(feats, lens, inputs), atol=1e-5)
        exported = hf.generate(input_features=feats, generation_config=generation, max_new_tokens=4)
    assert torch.equal(exported, task.core.generate(batch))
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    assert tokenizer.batch_decode(exported, skip_special_tokens=True) == \
        task.core.tokenizer.batch_decode(task.core.generate(batch), skip_special_tokens=True)


def test_a_student_with_pruned_heads_is_refused_in_one_line(tiny, tmp_path):
    _, _, ckpt = distilled(tiny, tmp_path, decoder_heads_keep=1)
    with pytest.raises(SpeechkitError, match=r"^export: model.decoder.layers.0.self_attn.k_proj.weight is \(16, 32\) "
                                             r".*attention heads pruned") as error:
        export_checkpoint(ckpt, tmp_path / "hf")
    assert "\n" not in str(error.value) and not (tmp_path / "hf").exists()


def test_a_task_that_is_not_whisper_is_named(tmp_path):
    from speechkit.tasks.classify import AudioClassifier

    task = AudioClassifier(labels=["a", "b"], num_mel_bins=40, hidden=8, num_layers=1)
    checkpoint = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}
    task.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "classifier.ckpt")
    with pytest.raises(SpeechkitError, match=r"classifier.ckpt: a AudioClassifier checkpoint, not a Whisper task"):
        export_checkpoint(tmp_path / "classifier.ckpt", tmp_path / "hf")
