"""WhisperGRPO on a tiny random Whisper saved locally: sampling, scoring, the frozen reference, the reward's
direction."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from speechkit.data import DataConfig, SpeechDataModule
from speechkit.errors import SpeechkitError
from speechkit.metrics.wer import resolve_normalizer
from speechkit.models.whisper_sampling import encode, generated_mask, sample, score
from speechkit.tasks.whisper_grpo import WhisperGRPO, wer_rewards
from speechkit.testing import tiny_whisper_dir, tone_corpus


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpo")
    tone_corpus(root / "data", "train", num_cuts=8, seed=0)
    return {"model": str(tiny_whisper_dir(root / "en", multilingual=False)), "data": root / "data"}


def datamodule(tiny, task) -> SpeechDataModule:
    dm = SpeechDataModule(DataConfig(train_cuts=str(tiny["data"] / "cuts_train.jsonl.gz"), max_duration=3.0,
                                     num_buckets=2))
    dm.tokenizer, dm.pad_token_id = task.tokenize, task.pad_token_id
    return dm


class Rewards(Callback):
    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.values.append(float(trainer.callback_metrics["train_reward"]))


def fit(task, dm, steps, callbacks=()):
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False, num_sanity_val_steps=0,
                        limit_val_batches=0, callbacks=list(callbacks))
    trainer.fit(task, dm)


def test_wer_rewards_hand_values():
    normalize = resolve_normalizer("en", "auto")
    rewards = wer_rewards(["turn on the light", "hello", ""], ["turn the light on", "Hello.", "noise"], normalize)
    assert rewards.tolist() == pytest.approx([-0.5, 0.0, -1.0])


def test_generated_mask_runs_from_the_prompt_to_the_first_end():
    eot = 9
    sequences = torch.tensor([[1, 2, 5, 6, eot, eot, eot], [1, 2, eot, eot, eot, eot, eot], [1, 2, 5, 5, 5, 5, 5]])
    assert generated_mask(sequences, prompt_length=2, eot=eot).tolist() == [
        [0, 1, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0], [0, 1, 1, 1, 1, 1]]


def test_scores_are_the_teacher_forced_log_probs_of_the_sampled_tokens(tiny, one_thread):
    task = WhisperGRPO(tiny["model"], language="en", group_size=3, max_new_tokens=6)
    dm = datamodule(tiny, task)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    features, lengths = task.core.features(batch)
    hidden = encode(task.core, features, lengths)
    torch.manual_seed(0)
    sequences = sample(task.core, hidden, lengths, 3, temperature=1.0)
    assert sequences.shape[0] == 3 * len(batch)
    assert (sequences[:, : len(task.core.prompt)] == torch.tensor(task.core.prompt)).all()
    scored = score(task.core, hidden, lengths, sequences)
    # the same log-probabilities through the core's own teacher forcing, one utterance at a time
    row = 4
    utterance = row // 3
    logits = task.core.logits(features[utterance: utterance + 1, :, : lengths[utterance]], lengths[utterance:utterance + 1],
                              sequences[row: row + 1, :-1])
    expected = torch.log_softmax(logits, -1)[0].gather(-1, sequences[row, 1:, None])[:, 0]
    keep = scored.mask[row].bool()
    assert torch.allclose(scored.log_probs[row][keep], expected[keep], atol=1e-4)
    # sampling is stochastic: the group's transcripts are not all the same
    assert len({tuple(s.tolist()) for s in sequences}) > len(batch)


def test_step_trains_the_policy_not_the_reference(tiny, one_thread):
    task = WhisperGRPO(tiny["model"], language="en", group_size=4, max_new_tokens=5, lr=1e-3, kl_coef=0.1)
    before = {k: v.clone() for k, v in task.reference.model.state_dict().items()}
    policy_before = {k: v.clone() for k, v in task.model.state_dict().items()}
    fit(task, datamodule(tiny, task), steps=2)
    assert all(torch.equal(before[k], v) for k, v in task.reference.model.state_dict().items())
    assert not all(torch.equal(policy_before[k], v) for k, v in task.model.state_dict().items())
    assert not any(p.requires_grad for p in task.reference.model.parameters())
    assert not any(key.startswith("_reference") for key in task.state_dict())  # not saved in checkpoints


def test_reward_rises(tiny, one_thread):
    """40 GRPO steps raise the sampled transcripts' reward (minus WER): the random model's junk transcripts of the
    tones get shorter (fewer insertions), from about -1.8 to about -1.0."""
    torch.manual_seed(0)
    task = WhisperGRPO(tiny["model"], language="en", group_size=8, max_new_tokens=5, lr=3e-3, kl_coef=0.0)
    rewards = Rewards()
    fit(task, datamodule(tiny, task), steps=40, callbacks=[rewards])
    first, last = sum(rewards.values[:5]) / 5, sum(rewards.values[-10:]) / 10
    assert last > first + 0.3, (first, last)


@pytest.mark.parametrize("bad, match", [({"group_size": 1}, "group_size"), ({"temperature": 0.0}, "temperature")])
def test_bad_arguments_are_clear(tiny, bad, match):
    with pytest.raises(SpeechkitError, match=match):
        WhisperGRPO(tiny["model"], language="en", **bad)
