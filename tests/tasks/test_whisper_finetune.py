"""WhisperFinetune on a tiny random Whisper saved locally (real loading code, real Whisper tokenizers)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import lightning as L
import pytest
import torch

from speechkit.data import DataConfig, SpeechDataModule
from speechkit.errors import SpeechkitError
from speechkit.tasks.whisper_finetune import WhisperFinetune
from speechkit.testing import tiny_whisper_dir, tone_corpus


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("whisper")
    tone_corpus(root / "data", "train", num_cuts=8, seed=0)
    tone_corpus(root / "data", "dev", num_cuts=4, seed=1)
    return {"en": str(tiny_whisper_dir(root / "en", multilingual=False)),
            "multi": str(tiny_whisper_dir(root / "multi", multilingual=True)), "data": root / "data"}


def data(tiny, **overrides) -> SpeechDataModule:
    options = dict(train_cuts=str(tiny["data"] / "cuts_train.jsonl.gz"), dev_cuts=str(tiny["data"] / "cuts_dev.jsonl.gz"),
                   test_cuts=str(tiny["data"] / "cuts_dev.jsonl.gz"), max_duration=3.0, val_batch_size=2, num_buckets=2)
    options.update(overrides)
    return SpeechDataModule(DataConfig(**options))


def fit(task, dm, steps=2, **trainer_args):
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        use_distributed_sampler=False, num_sanity_val_steps=0, limit_val_batches=0, **trainer_args)
    trainer.fit(task, dm)
    return trainer


def snapshot(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def test_prompt_is_fed_but_masked_out_of_the_loss(tiny):
    task = WhisperFinetune(tiny["multi"], language="de")
    prompt = task.core.prompt
    tok = task.tokenizer.convert_tokens_to_ids
    assert prompt == [tok("<|startoftranscript|>"), tok("<|de|>"), tok("<|transcribe|>"), tok("<|notimestamps|>")]
    dm = data(tiny)
    dm.tokenizer, dm.pad_token_id = task.tokenize, task.pad_token_id
    batch = next(iter(dm.val_dataloader()))
    loss = task(batch)
    # Hand computation: cross-entropy over the text tokens and <|endoftext|> of each row, nothing else.
    from speechkit.models.whisper_encoder import variable_length_input

    with variable_length_input(task.model, batch.input_lens):
        logits = task.model(input_features=batch.inputs.transpose(1, 2), decoder_input_ids=batch.tokens[:, :-1]).logits
    terms = []
    for row, length in enumerate(batch.token_lens.tolist()):
        for position in range(len(prompt) - 1, length - 1):
            terms.append(-torch.log_softmax(logits[row, position], -1)[batch.tokens[row, position + 1]])
    assert loss.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)


@pytest.mark.parametrize("strategy", ["full", "lora", "frozen_encoder"])
def test_strategies_train_what_they_should(tiny, strategy):
    task = WhisperFinetune(tiny["multi"], language="en", strategy=strategy, lr=1e-2, lora_rank=4,
                           frozen_encoder_layers=1, warmup_steps=1)
    before = snapshot(task.model)
    fit(task, data(tiny))
    after = snapshot(task.model)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    if strategy == "lora":
        assert changed and all("lora_" in name for name in changed)
    elif strategy == "frozen_encoder":
        frozen = (".encoder.layers.0.", "encoder.conv1", "encoder.conv2", "encoder.embed_positions")
        assert not any(part in n for n in changed for part in frozen)
        assert any(".encoder.layers.1." in n for n in changed) and any("decoder" in n for n in changed)
    else:
        assert any("encoder.layers.0." in n for n in changed) and any("decoder" in n for n in changed)


def test_test_writes_predictions_with_cut_ids(tiny, tmp_path):
    task = WhisperFinetune(tiny["en"], language="en", max_new_tokens=4, predictions_file=str(tmp_path / "p.jsonl"))
    trainer = L.Trainer(logger=False, enable_progress_bar=False, use_distributed_sampler=False)
    metrics = trainer.test(task, data(tiny))[0]
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == [f"dev_{i:04d}" for i in range(4)]
    assert all(r["ref"].startswith("tone") for r in rows)
    assert {"test_wer", "test_wer_raw", "test_cer"} <= set(metrics)


def test_padded_to_30s_input(tiny):
    task = WhisperFinetune(tiny["en"], language="en", pad_to_30s=True)
    dm = data(tiny)
    dm.tokenizer = task.tokenize
    batch = next(iter(dm.val_dataloader()))
    feats, _ = task.core.features(batch)
    assert feats.shape[-1] == 3000
    assert torch.isfinite(task(batch))


def test_new_language_token_grows_the_vocabulary(tiny):
    base = WhisperFinetune(tiny["multi"], language="de")
    task = WhisperFinetune(tiny["multi"], language="ky", new_language_init_from="mean")
    rows = base.model.get_input_embeddings().weight.shape[0]
    assert task.model.get_input_embeddings().weight.shape[0] == rows + 1
    assert task.core.added_language_id == rows and task.core.prompt[1] == rows
    assert torch.equal(task.model.get_input_embeddings().weight[:rows], base.model.get_input_embeddings().weight)


def test_bad_settings_are_clear_errors(tiny):
    with pytest.raises(SpeechkitError, match="new_language_init_from"):
        WhisperFinetune(tiny["multi"], language="ky")
    with pytest.raises(SpeechkitError, match="strategy"):
        WhisperFinetune(tiny["multi"], language="en", strategy="qlora")
    with pytest.raises(SpeechkitError, match="nonexistent"):
        WhisperFinetune(tiny["multi"], language="en", strategy="lora", lora_target_modules=["nonexistent"])


def test_new_language_checkpoint_exports_to_a_pipeline(tiny, tmp_path):
    """A trained new-language checkpoint -> `speechkit export` -> from_pretrained -> pipeline(language="ky")."""
    import numpy as np
    import transformers

    from speechkit.cli import main

    task = WhisperFinetune(tiny["multi"], language="ky", new_language_init_from="de", max_new_tokens=4)
    trainer = fit(task, data(tiny, allow_language_mismatch=True), steps=1, default_root_dir=str(tmp_path))  # en tones
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    assert main(["export", "--checkpoint", str(tmp_path / "run.ckpt"), "--out", str(tmp_path / "hf")]) == 0
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    generation = transformers.GenerationConfig.from_pretrained(tmp_path / "hf")
    new_id = tokenizer.convert_tokens_to_ids("<|ky|>")
    assert new_id == task.core.added_language_id and generation.lang_to_id["ky"] == new_id
    model = transformers.WhisperForConditionalGeneration.from_pretrained(tmp_path / "hf")
    assert torch.equal(model.get_input_embeddings().weight[new_id], task.model.get_input_embeddings().weight[new_id])
    asr = transformers.pipeline("automatic-speech-recognition", model=str(tmp_path / "hf"))
    out = asr(np.zeros(16000, dtype=np.float32), generate_kwargs={"language": "ky", "max_new_tokens": 3})
    assert isinstance(out["text"], str)


# --------------------------------------------------------------------- language and length checks (issue 11)
def test_an_english_only_whisper_refuses_another_language(tiny):
    """Issue 11, defect 9: language xx on tiny.en trained with only the normalizer changing."""
    for language in ("de", "xx"):
        with pytest.raises(SpeechkitError, match=rf"^language '{language}': .* is an English-only Whisper") as error:
            WhisperFinetune(tiny["en"], language=language)
        assert "\n" not in str(error.value)
    for language in ("en", None, "English"):
        assert WhisperFinetune(tiny["en"], language=language).expected_language in ("en", "English")


def test_an_unknown_language_on_a_multilingual_whisper_is_one_line(tiny):
    expected = r"^language 'xx': Whisper has no <\|xx\|> token; set new_language_init_from"
    with pytest.raises(SpeechkitError, match=expected) as error:
        WhisperFinetune(tiny["multi"], language="xx", new_language_init_from=None)
    assert "\n" not in str(error.value)


def test_a_manifest_in_another_language_is_refused_before_training(tiny):
    """Issue 11, defect 9: `de` manifests on an English model (and the reverse) trained without a word."""
    task = WhisperFinetune(tiny["multi"], language="de")
    train = tiny["data"] / "cuts_train.jsonl.gz"
    with pytest.raises(SpeechkitError, match=rf"^train_cuts: 8 of 8 cuts are not in the configured language 'de': "
                                             rf"cut 'train_0000' \({train} line 1\): supervision language en"):
        fit(task, data(tiny))
    assert task.global_step == 0


def test_a_cut_over_30_s_is_refused_before_training(tiny, tmp_path):
    """Issue 11, defect 6: a cut over 30 s failed at the step that reached it, naming no manifest."""
    long = tone_corpus(tmp_path / "long", "train", num_cuts=1, seed=3, min_duration=30.2, max_duration=30.4)
    cut = next(iter(long))
    task = WhisperFinetune(tiny["en"], language="en")
    assert task.max_input_seconds == 30.0
    manifest = tmp_path / "long" / "cuts_train.jsonl.gz"
    dm = data(tiny, train_cuts=[str(tiny["data"] / "cuts_train.jsonl.gz"), str(manifest)])
    with pytest.raises(SpeechkitError, match=rf"^train_cuts: 1 of 9 cuts are longer than the 30.00 s the model takes: "
                                             rf"cut '{cut.id}' \({manifest} line 1\): {cut.duration:.2f} s > 30.00 s"):
        fit(task, dm)
    assert task.global_step == 0


# --------------------------------------------------------------------- what a run reports (issue 12, item 6)
class Lines(logging.Handler):
    """The messages of one logger."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_dev_wer_before_training_is_a_metric_and_one_rank_zero_line(tiny, tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    task = WhisperFinetune(tiny["en"], language="en", max_new_tokens=3, warmup_steps=1)
    lines, rank_zero = Lines(), logging.getLogger("lightning.pytorch.utilities.rank_zero")
    rank_zero.addHandler(lines)
    try:
        trainer = L.Trainer(max_steps=2, val_check_interval=2, limit_val_batches=1, num_sanity_val_steps=1,
                            logger=CSVLogger(tmp_path), enable_checkpointing=False, enable_progress_bar=False,
                            use_distributed_sampler=False)
        trainer.fit(task, data(tiny))
    finally:
        rank_zero.removeHandler(lines)
    with open(Path(trainer.logger.log_dir) / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    before = [row for row in rows if row.get("val_wer_before")]
    assert len(before) == 1 and before[0]["step"] == "0"  # the sanity pass, which Lightning's self.log drops
    after = [row for row in rows if row.get("val_wer")]
    assert len(after) == 1 and not after[0]["val_wer_before"]
    wer = float(before[0]["val_wer_before"])
    assert f"dev WER before training: {wer:.4f} (raw {float(before[0]['val_wer_raw_before']):.4f})" in lines.messages
    assert any(m.startswith("dev WER at step 2: ") for m in lines.messages)
    assert any(m.startswith("WhisperFinetune[full]: ") for m in lines.messages)

    fresh = L.Trainer(limit_val_batches=1, logger=False, enable_progress_bar=False, use_distributed_sampler=False)
    metrics = fresh.validate(WhisperFinetune(tiny["en"], language="en", max_new_tokens=3), data(tiny))[0]
    assert metrics["val_wer_before"] == metrics["val_wer"]  # a validation at step 0 logs it through self.log


def test_token_steps_accumulate_buckets_into_steps_of_a_token_budget(tiny, one_thread):
    """Issue 23: with ``tokens_per_step`` the optimizer steps once the batches hold that many transcript tokens."""
    task = WhisperFinetune(tiny["multi"], language="en", lr=1e-3, warmup_steps=1, tokens_per_step=20,
                           loss_normalization="tokens", lr_scaling="sqrt")
    dm = data(tiny)
    dm.tokenizer, dm.pad_token_id = task.tokenize, task.pad_token_id
    batch = next(iter(dm.val_dataloader()))
    mean, total = task.core.loss(batch), task.core.loss(batch, reduction="sum")
    assert total.item() == pytest.approx(mean.item() * task.core.target_tokens(batch), rel=1e-5)
    seen: list[tuple[int, int, bool]] = []  # (tokens, global step after the batch, last batch of its epoch)
    task.on_train_batch_end = lambda outputs, batch, batch_idx: seen.append((
        task.core.target_tokens(batch), trainer.global_step, trainer.fit_loop.epoch_loop.batch_progress.is_last_batch))
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        use_distributed_sampler=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(task, dm)
    assert trainer.global_step == 3
    pending, step, stepped = 0, 0, []
    for tokens, global_step, last in seen:
        pending += tokens
        assert global_step == step + (pending >= 20 or last)  # a step exactly when the budget is reached
        if global_step > step:
            stepped.append(pending)
            step, pending = global_step, 0
    assert len(seen) > 3 and max(stepped) >= 20
    assert trainer.callback_metrics["step_tokens"].item() == stepped[-1]
    assert trainer.callback_metrics["lr_factor"].item() == pytest.approx((stepped[-1] / 20) ** 0.5)
