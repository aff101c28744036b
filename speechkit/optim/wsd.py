"""Warmup-Stable-Decay learning-rate schedules, WSD-S, and cosine / linear baselines.

*Understanding Warmup-Stable-Decay Learning Rates: A River Valley Loss Landscape Perspective* (Wen, Li, Wang, Hall,
Liang, Ma 2024). With multiplier ``m(t) = lr(t) / lr_max``, ``T_w`` warm-up steps, decay start ``T_s`` and end ``T``:

    m(t) = t / T_w                                  t < T_w
         = 1                                        T_w <= t < T_s
         = r + (1 - r) f(u),  u = (t - T_s)/(T - T_s)   T_s <= t <= T   (r = min_lr_ratio; m = r after T)

Decay shapes ``f``: linear ``1 - u``, cosine ``(1 + cos pi u)/2``, 1-sqrt ``1 - sqrt(u)`` (Hagele et al. 2024),
exponential (geometric) ``m = r^u`` (needs r > 0; MiniCPM's half-life form with ``r = 0.5^(T - T_s)/T_half``).

* WSD branches: the main run is WSD with its stable phase running to the largest budget; a branch for budget B
  resumes a main-run checkpoint with ``total_steps=B`` (the schedule state saved in a checkpoint holds only the step,
  not the settings, so a resumed branch takes its own settings).
* WSD-S (:class:`WarmupStableDecayS`): one run; before each budget ``b_k`` it decays for ``decay_fraction`` of the
  segment ``b_{k-1}..b_k``, reaches ``min_lr_ratio`` at ``b_k`` (save that checkpoint: the model for budget b_k,
  :class:`StepCheckpoint`), then continues from those decayed weights at ``lr_max``.

For YAML, use the ``LRScheduler`` classes as ``lr_scheduler`` callables of a task whose ``configure_optimizers``
steps them every optimizer step (``"interval": "step"``); LightningCLI's automatic ``--lr_scheduler`` steps once
per epoch.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, get_args

from lightning.pytorch import Callback, LightningModule, Trainer
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from speechkit.errors import SpeechkitError

DecayShape = Literal["linear", "cosine", "1-sqrt", "exponential"]


def decay_multiplier(u: float, shape: DecayShape, min_lr_ratio: float = 0.0) -> float:
    """``m`` at decay progress ``u`` in [0, 1]: 1 at u = 0, ``min_lr_ratio`` at u = 1."""
    u = min(max(u, 0.0), 1.0)
    if shape == "exponential":
        return min_lr_ratio ** u
    f = {"linear": 1.0 - u, "cosine": 0.5 * (1.0 + math.cos(math.pi * u)), "1-sqrt": 1.0 - math.sqrt(u)}[shape]
    return min_lr_ratio + (1.0 - min_lr_ratio) * f


def _check(warmup_steps: int, total_steps: int, decay_fraction: float, shape: str, min_lr_ratio: float) -> None:
    if total_steps < 1:
        raise SpeechkitError(f"total_steps: expected >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise SpeechkitError(f"warmup_steps: expected 0..total_steps ({total_steps}), got {warmup_steps}")
    if not 0.0 <= decay_fraction <= 1.0:
        raise SpeechkitError(f"decay_fraction: expected a fraction in [0, 1], got {decay_fraction}")
    if shape not in get_args(DecayShape):
        raise SpeechkitError(f"shape: expected one of {list(get_args(DecayShape))}, got {shape!r}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise SpeechkitError(f"min_lr_ratio: expected in [0, 1], got {min_lr_ratio}")
    if shape == "exponential" and min_lr_ratio <= 0:
        raise SpeechkitError("min_lr_ratio: the exponential shape decays geometrically to min_lr_ratio, which must "
                             "be > 0")


def _decay_steps(total_steps: int, warmup_steps: int, decay_fraction: float) -> int:
    return min(round(decay_fraction * total_steps), total_steps - warmup_steps)


def wsd_lambda(step: int, warmup_steps: int, total_steps: int, decay_fraction: float = 0.1,
               shape: DecayShape = "1-sqrt", min_lr_ratio: float = 0.0) -> float:
    """WSD multiplier ``lr(step) / lr_max`` (formula in the module docstring).

    Args:
        step: optimizer step (0-based).
        warmup_steps: linear warm-up length T_w.
        total_steps: T; the decay ends there and the multiplier stays at ``min_lr_ratio`` afterwards.
        decay_fraction: decay length as a fraction of ``total_steps`` (typically 0.1-0.2), capped at
            ``total_steps - warmup_steps``.
        shape: linear, cosine, 1-sqrt or exponential.
        min_lr_ratio: final multiplier r.
    """
    _check(warmup_steps, total_steps, decay_fraction, shape, min_lr_ratio)
    if step < warmup_steps:
        return step / warmup_steps
    decay_start = total_steps - _decay_steps(total_steps, warmup_steps, decay_fraction)
    if step < decay_start:
        return 1.0
    if decay_start == total_steps:
        return 1.0 if step < total_steps else min_lr_ratio
    return decay_multiplier((step - decay_start) / (total_steps - decay_start), shape, min_lr_ratio)


def warmup_decay_lambda(step: int, warmup_steps: int, total_steps: int, shape: DecayShape = "cosine",
                        min_lr_ratio: float = 0.0) -> float:
    """Warm-up then decay over all remaining steps: the cosine / linear baselines (WSD without a stable phase)."""
    return wsd_lambda(step, warmup_steps, total_steps, 1.0, shape, min_lr_ratio)


def wsd_s_lambda(step: int, warmup_steps: int, budgets: Sequence[int], decay_fraction: float = 0.1,
                 shape: DecayShape = "1-sqrt", min_lr_ratio: float = 0.0) -> float:
    """WSD-S multiplier: at each budget b_k a decay over ``decay_fraction`` of ``b_k - b_{k-1}`` ending at b_k,
    then back to 1 (the run continues from the decayed weights). After the last budget: ``min_lr_ratio``."""
    budgets = _check_budgets(budgets, warmup_steps)
    _check(warmup_steps, budgets[-1], decay_fraction, shape, min_lr_ratio)
    if step < warmup_steps:
        return step / warmup_steps
    previous = 0
    for budget in budgets:
        if step < budget:
            start = max(budget - round(decay_fraction * (budget - previous)), warmup_steps, previous)
            if step < start:
                return 1.0
            return decay_multiplier((step - start) / (budget - start), shape, min_lr_ratio)
        previous = budget
    return min_lr_ratio


def _check_budgets(budgets: Sequence[int], warmup_steps: int) -> list[int]:
    budgets = [int(b) for b in budgets]
    if not budgets or any(b <= a for a, b in zip(budgets, budgets[1:])) or budgets[0] <= warmup_steps:
        raise SpeechkitError(f"budgets: expected increasing steps after warm-up ({warmup_steps}), got {budgets}")
    return budgets


class _MultiplierScheduler(LRScheduler):
    """``lr = base_lr * multiplier(step)``; the checkpointed state is the step only, never the settings."""

    _settings: tuple[str, ...] = ()

    def multiplier(self, step: int) -> float:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        m = self.multiplier(self.last_epoch)
        return [base_lr * m for base_lr in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().state_dict().items() if k not in self._settings}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict({k: v for k, v in state_dict.items() if k not in self._settings})


class WarmupStableDecay(_MultiplierScheduler):
    """WSD (Wen et al. 2024) as a torch scheduler, stepped once per optimizer step; see :func:`wsd_lambda`.

    Args:
        optimizer: the wrapped optimizer (its lr is lr_max).
        warmup_steps: linear warm-up length.
        total_steps: last step of the decay.
        decay_fraction: decay length / total_steps.
        shape: linear, cosine, 1-sqrt or exponential.
        min_lr_ratio: final lr / lr_max.
        last_epoch: the index of the last step, -1 to start fresh.
    """

    _settings = ("warmup_steps", "total_steps", "decay_fraction", "shape", "min_lr_ratio")

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int, decay_fraction: float = 0.1,
                 shape: DecayShape = "1-sqrt", min_lr_ratio: float = 0.0, last_epoch: int = -1) -> None:
        _check(warmup_steps, total_steps, decay_fraction, shape, min_lr_ratio)
        self.warmup_steps, self.total_steps, self.decay_fraction = warmup_steps, total_steps, decay_fraction
        self.shape, self.min_lr_ratio = shape, min_lr_ratio
        super().__init__(optimizer, last_epoch)

    def multiplier(self, step: int) -> float:
        return wsd_lambda(step, self.warmup_steps, self.total_steps, self.decay_fraction, self.shape,
                          self.min_lr_ratio)


class WarmupDecay(_MultiplierScheduler):
    """Warm-up then decay to ``min_lr_ratio`` at ``total_steps``: ``shape="cosine"`` is the cosine baseline,
    ``"linear"`` linear warm-up + linear decay; see :func:`warmup_decay_lambda`."""

    _settings = ("warmup_steps", "total_steps", "shape", "min_lr_ratio")

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int, shape: DecayShape = "cosine",
                 min_lr_ratio: float = 0.0, last_epoch: int = -1) -> None:
        _check(warmup_steps, total_steps, 1.0, shape, min_lr_ratio)
        self.warmup_steps, self.total_steps, self.shape, self.min_lr_ratio = warmup_steps, total_steps, shape, min_lr_ratio
        super().__init__(optimizer, last_epoch)

    def multiplier(self, step: int) -> float:
        return warmup_decay_lambda(step, self.warmup_steps, self.total_steps, self.shape, self.min_lr_ratio)


class WarmupStableDecayS(_MultiplierScheduler):
    """WSD-S (Wen et al. 2024): one run with a decay before every budget, resumed at lr_max from the decayed
    weights; see :func:`wsd_s_lambda`. Save the model at each budget with :class:`StepCheckpoint`."""

    _settings = ("warmup_steps", "budgets", "decay_fraction", "shape", "min_lr_ratio")

    def __init__(self, optimizer: Optimizer, warmup_steps: int, budgets: list[int], decay_fraction: float = 0.1,
                 shape: DecayShape = "1-sqrt", min_lr_ratio: float = 0.0, last_epoch: int = -1) -> None:
        self.budgets = _check_budgets(budgets, warmup_steps)
        _check(warmup_steps, self.budgets[-1], decay_fraction, shape, min_lr_ratio)
        self.warmup_steps, self.decay_fraction, self.shape, self.min_lr_ratio = warmup_steps, decay_fraction, shape, min_lr_ratio
        super().__init__(optimizer, last_epoch)

    def multiplier(self, step: int) -> float:
        return wsd_s_lambda(step, self.warmup_steps, self.budgets, self.decay_fraction, self.shape, self.min_lr_ratio)


class TimeBudgetDecay(_MultiplierScheduler):
    """WSD with its decay placed in training *time*: for a run limited by a wall-clock budget (``trainer.max_time``,
    a time-to-quality benchmark), where the number of steps is not known in advance.

    ``m = step / warmup_steps`` during warm-up (steps), 1 until ``(1 - decay_fraction) * budget_seconds`` of
    training time, then :func:`decay_multiplier` of ``u = (elapsed / budget - (1 - decay_fraction)) /
    decay_fraction``, reaching ``min_lr_ratio`` at the budget and staying there. *Training and Inference Efficiency
    of Encoder-Decoder Speech Models* (Zelasko et al. 2025) compares systems at equal training time; this puts the
    decay of Wen et al.'s WSD at the end of that time whatever the step rate.

    The clock counts from the scheduler's construction (``clock="wall"``: ``time.perf_counter``; ``"cpu"``:
    ``time.process_time`` of the process, all its threads), or is any ``elapsed()`` callable giving training
    seconds. The elapsed time is saved in the state dict and a resumed run continues from it.

    Args:
        optimizer: the wrapped optimizer (its lr is lr_max).
        budget_seconds: the training time at which the decay ends.
        warmup_steps: linear warm-up length in optimizer steps.
        decay_fraction: the decay's share of the budget.
        shape: linear, cosine, 1-sqrt or exponential.
        min_lr_ratio: final lr / lr_max.
        clock: ``"wall"``, ``"cpu"``, or a callable returning elapsed training seconds.
        last_epoch: the index of the last step, -1 to start fresh.
    """

    _settings = ("budget_seconds", "warmup_steps", "decay_fraction", "shape", "min_lr_ratio", "clock",
                 "_since_start", "_offset")

    def __init__(self, optimizer: Optimizer, budget_seconds: float, warmup_steps: int = 0,
                 decay_fraction: float = 0.2, shape: DecayShape = "1-sqrt", min_lr_ratio: float = 0.0,
                 clock: Literal["wall", "cpu"] | Callable[[], float] = "wall", last_epoch: int = -1) -> None:
        if not budget_seconds > 0:
            raise SpeechkitError(f"budget_seconds: expected > 0, got {budget_seconds}")
        if warmup_steps < 0:
            raise SpeechkitError(f"warmup_steps: expected >= 0, got {warmup_steps}")
        _check(0, 1, decay_fraction, shape, min_lr_ratio)
        if callable(clock):
            self._since_start = clock
        elif clock in ("wall", "cpu"):
            read = time.perf_counter if clock == "wall" else time.process_time
            start = read()
            self._since_start = lambda: read() - start
        else:
            raise SpeechkitError(f"clock: expected 'wall', 'cpu' or a callable, got {clock!r}")
        self._offset = 0.0  # training seconds before a resume (a callable clock keeps its own time)
        self.budget_seconds, self.warmup_steps = float(budget_seconds), warmup_steps
        self.decay_fraction, self.shape, self.min_lr_ratio, self.clock = decay_fraction, shape, min_lr_ratio, clock
        super().__init__(optimizer, last_epoch)

    def elapsed(self) -> float:
        """Training seconds so far."""
        return self._offset + self._since_start()

    def multiplier(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / self.warmup_steps
        return self.time_multiplier(self.elapsed() / self.budget_seconds)

    def time_multiplier(self, fraction: float) -> float:
        """``m`` after warm-up at ``fraction`` of the budget."""
        start = 1.0 - self.decay_fraction
        if fraction < start:
            return 1.0
        if self.decay_fraction == 0.0:
            return 1.0 if fraction < 1.0 else self.min_lr_ratio
        return decay_multiplier((fraction - start) / self.decay_fraction, self.shape, self.min_lr_ratio)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "elapsed_seconds": self.elapsed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        elapsed = state.pop("elapsed_seconds", None)
        super().load_state_dict(state)
        if elapsed is not None and not callable(self.clock):
            self._offset = elapsed - self._since_start()


class StepCheckpoint(Callback):
    """Save a checkpoint when ``trainer.global_step`` reaches each of ``steps`` (WSD-S budgets, WSD branch points).

    Files: ``<dirpath>/step-<N>.ckpt``; ``dirpath`` defaults to ``<trainer.default_root_dir>/budgets``.
    """

    def __init__(self, steps: list[int], dirpath: str | None = None) -> None:
        if not steps or any(s < 1 for s in steps):
            raise SpeechkitError(f"steps: expected a non-empty list of steps >= 1, got {steps}")
        self.steps, self.dirpath, self._last_saved = sorted(set(steps)), dirpath, -1

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step in self.steps and trainer.global_step != self._last_saved:  # once per step
            self._last_saved = trainer.global_step
            directory = Path(self.dirpath or Path(trainer.default_root_dir) / "budgets")
            trainer.save_checkpoint(directory / f"step-{trainer.global_step}.ckpt")
