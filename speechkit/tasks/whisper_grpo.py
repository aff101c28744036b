"""``WhisperGRPO``: minimum-WER training of Whisper with GRPO.

*Reinforcement Learning for Reasoning in Large Language Models with One Training Example* (Wang et al. 2025),
section 2: for each utterance G transcripts are sampled (temperature 0.6 in the paper; 1.0 here by default, the
value Whisper's own fallback starts its sampling at), each is rewarded with minus its word error rate against the
reference (a verifiable reward: normalized text, the language's normalizer), and the policy follows the GRPO loss of
:func:`speechkit.rl.grpo_loss` (group-relative advantages, clipped ratio, k3 KL to the starting model, entropy
bonus). One optimisation step per sampled batch, so the ratio is 1 at the step (on-policy, as the paper's verl runs
with PPO mini-batch = batch). ``ce_weight > 0`` adds the reference transcript's cross-entropy (the usual
stabiliser of minimum-WER training). The frozen reference model is rebuilt from the same start on resume and is
not saved in checkpoints.

Strategies and data are those of :class:`speechkit.tasks.whisper_finetune.WhisperFinetune`; start from a fine-tuned
checkpoint with ``init_checkpoint``.
"""

from __future__ import annotations

import copy
from typing import Any, Literal, Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable

from speechkit.checkpoints import record_task_class
from speechkit.data.batches import SpeechBatch
from speechkit.errors import SpeechkitError
from speechkit.losses.checks import check_finite
from speechkit.metrics.wer import edit_counts, resolve_normalizer
from speechkit.models.adaptation import STRATEGIES, Strategy
from speechkit.models.whisper_sampling import encode, sample, score
from speechkit.models.whisper_seq2seq import WhisperCoreTask, WhisperSeq2Seq, metric_language
from speechkit.optim.warmup import adamw_warmup_decay
from speechkit.rl import group_advantages, grpo_loss


def wer_rewards(refs: Sequence[str], hyps: Sequence[str], normalize) -> torch.Tensor:
    """``-errors / max(reference words, 1)`` per (reference, hypothesis) pair, on normalized text."""
    rewards = []
    for ref, hyp in zip(refs, hyps):
        counts = edit_counts([normalize(ref)], [normalize(hyp)])
        rewards.append(-counts.errors / max(counts.ref_len, 1))
    return torch.tensor(rewards)


class WhisperGRPO(WhisperCoreTask, L.LightningModule):
    """GRPO fine-tuning of Whisper with minus WER as the reward.

    Args:
        model_name_or_path, language, new_language_init_from, task, strategy, lora_rank, lora_alpha, lora_dropout,
            lora_target_modules, frozen_encoder_layers, pad_to_30s, num_beams, max_new_tokens, init_checkpoint,
            predictions_file: as :class:`~speechkit.tasks.whisper_finetune.WhisperFinetune`.
        group_size: G transcripts sampled per utterance (paper: 8).
        temperature: sampling temperature (paper: 0.6).
        clip: e of the clipped ratio (0.2).
        kl_coef: beta of the k3 KL to the starting model (paper: 0.001; 0 skips the reference model).
        entropy_coef: entropy bonus (paper: 0.001).
        ce_weight: weight of the reference transcript's cross-entropy added to the loss (0 = pure GRPO).
        lr, weight_decay, warmup_steps, scheduler: AdamW and its schedule (paper: lr 1e-6 for a 1.5B LM).
    """

    checkpoint_fixed_args: tuple[str, ...] = (
        "model_name_or_path", "language", "new_language_init_from", "strategy", "lora_rank", "lora_alpha",
        "lora_dropout", "lora_target_modules")
    checkpoint_source_args: tuple[str, ...] = ("init_checkpoint",)

    def __init__(
        self,
        model_name_or_path: str = "ct2:tiny.en",
        language: Optional[str] = "en",
        new_language_init_from: Optional[str] = None,
        task: Literal["transcribe", "translate"] = "transcribe",
        strategy: Strategy = "full",
        lora_rank: int = 64,
        lora_alpha: float = 128.0,
        lora_dropout: float = 0.05,
        lora_target_modules: list[str] = ["q_proj", "v_proj"],  # noqa: B006 - jsonargparse needs the literal
        frozen_encoder_layers: int = 2,
        pad_to_30s: bool = False,
        group_size: int = 8,
        temperature: float = 1.0,
        clip: float = 0.2,
        kl_coef: float = 1e-3,
        entropy_coef: float = 1e-3,
        ce_weight: float = 0.0,
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        scheduler: Optional[LRSchedulerCallable] = None,
        num_beams: int = 1,
        max_new_tokens: int = 128,
        init_checkpoint: Optional[str] = None,
        predictions_file: Optional[str] = None,
    ) -> None:
        super().__init__()
        if strategy not in STRATEGIES:
            raise SpeechkitError(f"strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
        if group_size < 2:
            raise SpeechkitError(f"group_size: expected >= 2 (advantages are relative to the group), got {group_size}")
        if temperature <= 0 or ce_weight < 0:
            raise SpeechkitError(f"temperature must be > 0 and ce_weight >= 0, got {temperature}, {ce_weight}")
        self.save_hyperparameters(ignore=["scheduler"])
        self.scheduler_factory = scheduler
        self.core = WhisperSeq2Seq.load(model_name_or_path, language, new_language_init_from, task, pad_to_30s,
                                        num_beams, max_new_tokens).adapted(
            strategy, lora_rank, lora_alpha, lora_dropout, lora_target_modules, frozen_encoder_layers, init_checkpoint)
        # the frozen starting policy; in a list so that it is neither a submodule nor in the checkpoint
        self._reference = [self.core.with_model(copy.deepcopy(self.core.model).eval().requires_grad_(False))]
        self.model = self.core.model.train()
        self.normalize = resolve_normalizer(metric_language(language), "auto")
        self.wer = self.core.wer_metric()
        self.predictions: list[dict[str, str]] = []

    @property
    def reference(self) -> WhisperSeq2Seq:
        return self._reference[0]

    def on_fit_start(self) -> None:
        self.reference.model.to(self.device)

    def forward(self, batch: SpeechBatch) -> torch.Tensor:
        """Cross-entropy of the reference transcripts (``val_loss``)."""
        return self.core.loss(batch)

    def training_step(self, batch: SpeechBatch, batch_idx: int) -> torch.Tensor:
        hp = self.hparams
        features, lengths = self.core.features(batch)
        hidden = encode(self.core, features, lengths)  # (B, S, D)
        sequences = sample(self.core, hidden, lengths, hp.group_size, hp.temperature)  # (B * G, U)
        hyps = [text.strip() for text in self.tokenizer.batch_decode(sequences, skip_special_tokens=True)]
        refs = [text for text in batch.texts for _ in range(hp.group_size)]
        rewards = wer_rewards(refs, hyps, self.normalize).to(hidden.device)
        advantages = group_advantages(rewards.view(len(batch), hp.group_size)).flatten()
        scored = score(self.core, hidden, lengths, sequences, hp.temperature)
        reference = None
        if hp.kl_coef > 0:
            with torch.no_grad():
                ref_hidden = encode(self.reference, features, lengths)
                reference = score(self.reference, ref_hidden, lengths, sequences, hp.temperature).log_probs
        out = grpo_loss(scored.log_probs, scored.log_probs.detach(), advantages, scored.mask, reference,
                        scored.entropy, hp.clip, hp.kl_coef, hp.entropy_coef)
        loss = out.loss + hp.ce_weight * self.core.loss(batch) if hp.ce_weight > 0 else out.loss
        check_finite(loss, self.global_step, "training loss")
        size = len(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=size)
        self.log("train_reward", rewards.mean(), prog_bar=True, batch_size=size)
        self.log("train_sample_wer", -rewards.mean(), batch_size=size)
        self.log("train_kl", out.kl, batch_size=size)
        self.log("train_entropy", out.entropy, batch_size=size)
        self.log("audio_s", batch.durations.sum(), reduce_fx="sum", batch_size=size)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        return adamw_warmup_decay(self.model.parameters(), self.trainer.max_steps, hp.lr, hp.weight_decay,
                                  hp.warmup_steps, self.scheduler_factory)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_task_class(self, checkpoint)
