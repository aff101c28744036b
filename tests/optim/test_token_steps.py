"""TokenSteps: token-budget accumulation, per-token loss and lr scaling, checked against hand-computed SGD updates."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.optim.token_steps import TokenSteps, TokenStepsMixin

SIZES = [3, 4, 5, 2, 6]  # target tokens of the five micro-batches
DIM = 3


def make_batches(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, DIM, generator=generator), torch.randn(n, generator=generator)) for n in SIZES]


class Regression(TokenStepsMixin, L.LightningModule):
    """``loss = sum_i (w . x_i - y_i)^2``: one token per row; SGD lr 1, so an update is ``-lr * gradient``."""

    def __init__(self, token_steps: TokenSteps, lr: float = 1.0) -> None:
        super().__init__()
        self.token_steps = token_steps
        self.lr = lr
        self.w = torch.nn.Parameter(torch.zeros(DIM))
        self.history: list[torch.Tensor] = []
        self.scheduler_steps = 0

    def batch_target_tokens(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        return len(batch[1])

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return self.token_steps.training_loss(((x @ self.w - y) ** 2).sum(), len(y))

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.history.append(self.w.detach().clone())

    def configure_optimizers(self):
        optimizer = torch.optim.SGD([self.w], lr=self.lr)

        def count(step: int) -> float:
            self.scheduler_steps = step
            return 1.0

        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, count), "interval": "step"}}


def fit(token_steps: TokenSteps, lr: float = 1.0, max_steps: int = -1) -> tuple[Regression, L.Trainer]:
    module = Regression(token_steps, lr)
    trainer = L.Trainer(max_epochs=1, max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, torch.utils.data.DataLoader(make_batches(), batch_size=None))
    return module, trainer


def gradient_sum(w: torch.Tensor, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """``d/dw sum_i (w . x_i - y_i)^2`` over all rows of ``batches``."""
    return sum(2 * x.T @ (x @ w - y) for x, y in batches)


def test_accumulation_steps_when_the_token_budget_is_reached_and_at_the_epoch_end(one_thread):
    module, trainer = fit(TokenSteps(tokens_per_step=7))
    assert trainer.global_step == 3  # 3+4 = 7, 5+2 = 7, then the last batch (6) alone
    assert module.scheduler_steps == 3  # the schedule advances per optimizer step, not per batch
    unchanged = [torch.equal(module.history[i], module.history[i - 1]) for i in range(1, 5)]
    assert unchanged == [False, True, False, False]  # batch 0 and 2 only accumulate (batch 0 vs zeros is checked below)
    assert torch.equal(module.history[0], torch.zeros(DIM))
    module, trainer = fit(TokenSteps(tokens_per_step=7), max_steps=2)
    assert trainer.global_step == 2 and len(module.history) == 4  # max_steps counts optimizer steps, not batches


def test_tokens_normalization_weighs_every_token_of_a_step_alike(one_thread):
    module, _ = fit(TokenSteps(tokens_per_step=7, loss_normalization="tokens"))
    batches = make_batches()
    w = torch.zeros(DIM)
    for group in ([0, 1], [2, 3], [4]):
        chunk = [batches[i] for i in group]
        w = w - gradient_sum(w, chunk) / sum(len(y) for _, y in chunk)
        torch.testing.assert_close(module.history[group[-1]], w)


def test_batch_mean_normalization_averages_the_micro_batch_means(one_thread):
    module, _ = fit(TokenSteps(tokens_per_step=7, loss_normalization="batch_mean"))
    batches = make_batches()
    w = torch.zeros(DIM)
    for group in ([0, 1], [2, 3], [4]):
        means = [gradient_sum(w, [batches[i]]) / len(batches[i][1]) for i in group]
        w = w - sum(means) / len(group)
        torch.testing.assert_close(module.history[group[-1]], w)


@pytest.mark.parametrize("rule,power", [("sqrt", 0.5), ("linear", 1.0)])
def test_lr_scaling_multiplies_the_step_by_tokens_over_reference(one_thread, rule, power):
    lr = 0.1
    module, trainer = fit(TokenSteps(loss_normalization="tokens", lr_scaling=rule, reference_tokens=4), lr=lr)
    assert trainer.global_step == 5  # no budget: every batch steps
    batches, w = make_batches(), torch.zeros(DIM)
    for i, (x, y) in enumerate(batches):
        w = w - lr * (len(y) / 4) ** power * gradient_sum(w, [(x, y)]) / len(y)
        torch.testing.assert_close(module.history[i], w)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(lr)  # the schedule's value is restored


def test_inactive_options_leave_lightning_one_step_per_batch(one_thread):
    module, trainer = fit(TokenSteps())
    assert trainer.global_step == 5 and module.scheduler_steps == 5
    batches, w = make_batches(), torch.zeros(DIM)
    for i, (x, y) in enumerate(batches):
        w = w - gradient_sum(w, [(x, y)]) / len(y)
        torch.testing.assert_close(module.history[i], w)


def test_arithmetic_and_bad_options():
    steps = TokenSteps(tokens_per_step=100, lr_scaling="sqrt")
    assert steps.lr_factor(400) == pytest.approx(2.0) and steps.lr_factor(25) == pytest.approx(0.5)
    assert not steps.step_due(99) and steps.step_due(100)
    assert TokenSteps(loss_normalization="tokens").gradient_scale(50, 3, world_size=4) == pytest.approx(4 / 50)
    assert TokenSteps().gradient_scale(50, 4) == pytest.approx(0.25)
    assert math.isclose(TokenSteps(lr_scaling="linear", reference_tokens=10).lr_factor(30), 3.0)
    for bad, message in [(dict(tokens_per_step=0), "tokens_per_step=0"),
                         (dict(lr_scaling="sqrt"), "needs reference_tokens"),
                         (dict(loss_normalization="sum"), "loss_normalization='sum'"),
                         (dict(lr_scaling="cube", reference_tokens=3), "lr_scaling='cube'")]:
        with pytest.raises(SpeechkitError, match=message):
            TokenSteps(**bad)
