"""Optimizer steps sized in target tokens: bucket-aware gradient accumulation, per-token loss, lr scaled with tokens.

Duration buckets with per-bucket batch sizes (*Training and Inference Efficiency of Encoder-Decoder Speech Models*,
Żelasko et al. 2025, section 3) make batches of very different size: one 11 s sentence, or 36 digits. Taken one
optimizer step per batch with a batch-mean loss, the tokens of a 2-sentence batch weigh 30 times those of a
60-sentence batch and the steps are as noisy as the smallest batch. Three options fix that, each on its own:

- ``tokens_per_step``: accumulate micro-batches until the step holds at least this many target tokens (summed over
  ranks), then step. Lightning's ``accumulate_grad_batches`` counts batches, not tokens, so this is written here:
  the :class:`TokenStepsMixin` hooks run every batch's forward and backward, and call ``optimizer.step`` (with
  clipping and the scheduler) only when the budget is reached or the epoch ends.
- ``loss_normalization``: ``batch_mean`` (each micro-batch's loss is its mean per token; an accumulated step is the
  mean of its micro-batches, as Lightning does) or ``tokens`` (each micro-batch returns its *sum* of token losses
  and the step's gradient is divided by the step's target tokens, fairseq's ``sample_size`` normalization: every
  token of the step weighs alike, whatever batch it came in).
- ``lr_scaling``: the step's learning rate is ``lr * (step_tokens / reference_tokens) ** p`` with ``p`` = 0
  (``none``), 1/2 (``sqrt``, the square-root rule for Adam of Malladi et al. 2022, *On the SDEs and Scaling Rules
  for Adaptive Gradient Algorithms*, section 4) or 1 (``linear``, Goyal et al. 2017, for SGD), applied on top of
  the schedule for that step only.

DDP: the token count that decides a step is summed over ranks (every rank steps together); DDP averages gradients
over ``W`` ranks, so ``tokens`` scales them by ``W / step_tokens``. A checkpoint written between two micro-batches
of one step (a validation-triggered save) does not hold the partial gradient sum: resuming from it restarts that
step; ``every_n_train_steps`` saves come right after a step and resume exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional

import torch

from speechkit.errors import SpeechkitError

LossNormalization = Literal["batch_mean", "tokens"]
LrScaling = Literal["none", "sqrt", "linear"]
LR_SCALING_POWER: dict[str, float] = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}


@dataclass(frozen=True)
class TokenSteps:
    """How micro-batches become optimizer steps (see the module docstring).

    Args:
        tokens_per_step: accumulate until a step holds at least this many target tokens; ``None``: every batch steps.
        loss_normalization: ``batch_mean`` or ``tokens``.
        lr_scaling: ``none``, ``sqrt`` or ``linear`` in ``step_tokens / reference_tokens``.
        reference_tokens: the step size (target tokens) at which the configured lr applies; defaults to
            ``tokens_per_step``.
    """

    tokens_per_step: Optional[int] = None
    loss_normalization: LossNormalization = "batch_mean"
    lr_scaling: LrScaling = "none"
    reference_tokens: Optional[int] = None

    def __post_init__(self) -> None:
        if self.tokens_per_step is not None and self.tokens_per_step < 1:
            raise SpeechkitError(f"tokens_per_step={self.tokens_per_step}: expected a positive number of tokens")
        if self.loss_normalization not in ("batch_mean", "tokens"):
            raise SpeechkitError(f"loss_normalization={self.loss_normalization!r}: expected 'batch_mean' or 'tokens'")
        if self.lr_scaling not in LR_SCALING_POWER:
            raise SpeechkitError(f"lr_scaling={self.lr_scaling!r}: expected one of {', '.join(LR_SCALING_POWER)}")
        if self.reference_tokens is not None and self.reference_tokens < 1:
            raise SpeechkitError(f"reference_tokens={self.reference_tokens}: expected a positive number of tokens")
        if self.lr_scaling != "none" and self.reference is None:
            raise SpeechkitError(f"lr_scaling={self.lr_scaling!r} needs reference_tokens (or tokens_per_step)")

    @property
    def reference(self) -> Optional[int]:
        return self.reference_tokens if self.reference_tokens is not None else self.tokens_per_step

    @property
    def active(self) -> bool:
        """Whether any option departs from Lightning's one step per batch with a batch-mean loss."""
        return self.tokens_per_step is not None or self.loss_normalization != "batch_mean" or self.lr_scaling != "none"

    def step_due(self, pending_tokens: int) -> bool:
        """Whether the accumulated micro-batches (``pending_tokens`` target tokens over all ranks) make a step."""
        return self.tokens_per_step is None or pending_tokens >= self.tokens_per_step

    def lr_factor(self, step_tokens: int) -> float:
        """``(step_tokens / reference_tokens) ** p``: the multiplier of the scheduled lr for this step."""
        power = LR_SCALING_POWER[self.lr_scaling]
        return 1.0 if power == 0.0 else (max(step_tokens, 1) / self.reference) ** power

    def gradient_scale(self, step_tokens: int, micro_batches: int, world_size: int = 1) -> float:
        """What the summed gradients of a step are multiplied by: ``W / step_tokens`` for ``tokens`` (the loss was a
        sum per rank and DDP averaged over ``W`` ranks), ``1 / micro_batches`` for ``batch_mean``."""
        if self.loss_normalization == "tokens":
            return world_size / max(step_tokens, 1)
        return 1.0 / max(micro_batches, 1)

    def training_loss(self, token_loss_sum: torch.Tensor, tokens: int | torch.Tensor) -> torch.Tensor:
        """What ``training_step`` returns for backward: the sum (``tokens``) or the mean (``batch_mean``)."""
        if self.loss_normalization == "tokens":
            return token_loss_sum
        return token_loss_sum / torch.as_tensor(tokens).clamp(min=1).to(token_loss_sum)


class TokenStepsMixin:
    """LightningModule hooks that carry out :class:`TokenSteps` under automatic optimization.

    The module sets ``self.token_steps`` (a :class:`TokenSteps`) and ``self.batch_target_tokens`` (``batch -> int``:
    the target tokens its loss is taken over) and returns ``self.token_steps.training_loss(sum, tokens)`` from
    ``training_step``. Put the mixin before ``LightningModule`` in the bases. Inactive options leave every hook to
    Lightning.
    """

    token_steps: TokenSteps
    batch_target_tokens: Callable[[Any], int]
    _pending_tokens: int = 0
    _pending_batches: int = 0
    _scheduler_due: bool = False
    _scheduled_lrs: Optional[list[float]] = None

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> Optional[int]:
        if self.token_steps.active:
            tokens = torch.tensor(float(self.batch_target_tokens(batch)), device=self.device)
            if self.trainer.world_size > 1:
                tokens = self.trainer.strategy.reduce(tokens, reduce_op="sum")
            self._pending_tokens += int(tokens.item())
            self._pending_batches += 1
        return super().on_train_batch_start(batch, batch_idx)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        if not self.token_steps.active:
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        last = self.trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        if not (self.token_steps.step_due(self._pending_tokens) or last):
            optimizer_closure()  # forward + backward only: the gradients add up
            self._uncount_step()
            return None
        optimizer.step(closure=optimizer_closure)  # closure, on_before_optimizer_step, clipping, step
        if self._scheduled_lrs is not None:
            for group, lr in zip(optimizer.param_groups, self._scheduled_lrs):
                group["lr"] = lr  # the schedule's own value, for the scheduler and the next step
            self._scheduled_lrs = None
        optimizer.zero_grad(set_to_none=True)
        self._pending_tokens = self._pending_batches = 0
        self._scheduler_due = True
        return None

    def _uncount_step(self) -> None:
        """Automatic optimization counts every ``optimizer_step`` call as a step (``trainer.global_step``, what
        ``max_steps`` and step-based checkpoints read): take back the one Lightning adds after this call returns.
        Private Lightning state (2.6); ``tests/optim/test_token_steps.py`` checks ``global_step`` against it."""
        step = self.trainer.fit_loop.epoch_loop.automatic_optimization.optim_progress.optimizer.step
        for tracker in (step.total, step.current):
            tracker.ready -= 1
            tracker.completed -= 1

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        if self.token_steps.active:
            scale = self.token_steps.gradient_scale(self._pending_tokens, self._pending_batches, self.trainer.world_size)
            for group in optimizer.param_groups:
                for param in group["params"]:
                    if param.grad is not None:
                        param.grad.mul_(scale)
            factor = self.token_steps.lr_factor(self._pending_tokens)
            if factor != 1.0:
                self._scheduled_lrs = [group["lr"] for group in optimizer.param_groups]
                for group in optimizer.param_groups:
                    group["lr"] *= factor
            self.log("step_tokens", float(self._pending_tokens), batch_size=1)
            self.log("lr_factor", factor, batch_size=1)
        return super().on_before_optimizer_step(optimizer)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Any) -> None:
        if not self.token_steps.active:
            super().optimizer_zero_grad(epoch, batch_idx, optimizer)
        # active: gradients are cleared right after each step (optimizer_step), never between micro-batches

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        if self.token_steps.active:
            if not self._scheduler_due:
                return  # no optimizer step since the last scheduler step
            self._scheduler_due = False
        super().lr_scheduler_step(scheduler, metric)

    def on_validation_model_zero_grad(self) -> None:
        if self.token_steps.active and self._pending_batches:
            return  # a validation between two micro-batches of one step keeps the partial sum
        super().on_validation_model_zero_grad()
