"""Dynamic loss-based sample re-weighting (Sow et al., "Dynamic Loss-Based Sample Reweighting for Improved Large
Language Model Pretraining", ICLR 2025; code ``sowmaster/Sample-Level-Loss-Reweighting-ICLR-2025``, src/trainer.py).

Per-sample losses ``l_i`` are mapped to ``x_i`` in [-delta, delta] (min -> -delta, max -> delta), scored by a
strategy ``g`` and turned into weights ``w = softmax(g / r)`` (no gradient through w); the loss is
``sum_i w_i l_i``, a weighted mean. Strategies: LinUpper ``min(x + delta, delta)`` (down-weights the easiest,
equal weight for the upper half), Quadratic ``1 - x^2 / delta^2`` (medium losses), Extremes ``|x|`` (both ends),
Upper ``x/2 + delta/2``, and ``uniform`` (plain mean, the baseline). Before ``warmup_steps`` (the paper's
"burn-out" phase, high r) the plain mean is used.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor, nn

from speechkit.errors import SpeechkitError

Strategy = Literal["linupper", "quadratic", "extremes", "upper", "uniform"]


def _scores(x: Tensor, strategy: str, delta: float) -> Tensor:
    if strategy == "linupper":
        return torch.clamp(x + delta, max=delta)
    if strategy == "quadratic":
        return 1.0 - x * x / (delta * delta)
    if strategy == "extremes":
        return x.abs()
    if strategy == "upper":
        return 0.5 * x + 0.5 * delta
    return torch.zeros_like(x)  # uniform


def sample_weights(losses: Tensor, strategy: Strategy = "linupper", delta: float = 1.0, r: float = 0.4) -> Tensor:
    """Weights (B,) summing to 1 for per-sample ``losses`` (B,); not differentiated.

    Args:
        losses: (B,) per-sample losses.
        strategy: linupper, quadratic, extremes, upper or uniform.
        delta: half-width of the normalised loss range (paper: 1).
        r: softmax temperature (paper: 0.4); r -> inf gives uniform weights.
    """
    if strategy not in get_args(Strategy):
        raise SpeechkitError(f"strategy: expected one of {list(get_args(Strategy))}, got {strategy!r}")
    if delta <= 0:
        raise SpeechkitError(f"delta: expected > 0, got {delta}")
    if r <= 0:
        raise SpeechkitError(f"r: expected > 0, got {r}")
    if losses.dim() != 1 or losses.numel() == 0:
        raise SpeechkitError(f"losses: expected a non-empty (B,) tensor of per-sample losses, got {tuple(losses.shape)}")
    losses = losses.detach()
    low, high = losses.min(), losses.max()
    span = high - low
    if span > 0:
        x = 2 * delta * losses / span - delta * (high + low) / span  # [low, high] -> [-delta, delta]
    else:
        x = torch.zeros_like(losses)  # all equal: every strategy gives equal weights
    return torch.softmax(_scores(x, strategy, delta) / r, dim=0)


def _gather(losses: Tensor) -> tuple[Tensor, int, int]:
    """All ranks' losses (variable batch sizes allowed), this rank's offset in them, and the world size."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return losses, 0, 1
    world = dist.get_world_size()
    size = torch.tensor([losses.numel()], device=losses.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    padded = torch.zeros(max(sizes), dtype=losses.dtype, device=losses.device)
    padded[: losses.numel()] = losses.detach()
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    rank = dist.get_rank()
    return torch.cat([p[:s] for p, s in zip(parts, sizes)]), sum(sizes[:rank]), world


class LossReweighter(nn.Module):
    """Per-sample losses -> one re-weighted loss (Sow et al. 2025), a switch for any task.

    Under DDP the weights are computed over the global batch (all ranks' losses are gathered) and each rank
    returns ``world_size * sum_{i local} w_i l_i``, so that DDP's gradient averaging yields the global weighted sum.

    Args:
        strategy: linupper (paper default), quadratic, extremes, upper or uniform.
        delta: half-width of the normalised range.
        r: softmax temperature.
        warmup_steps: steps of plain averaging before re-weighting starts (paper: 1000 burn-out steps).
        gather: gather losses across DDP ranks.
    """

    def __init__(self, strategy: Strategy = "linupper", delta: float = 1.0, r: float = 0.4, warmup_steps: int = 0,
                 gather: bool = True) -> None:
        super().__init__()
        sample_weights(torch.zeros(1), strategy, delta, r)  # validates the settings now, not at the first step
        if warmup_steps < 0:
            raise SpeechkitError(f"warmup_steps: expected >= 0, got {warmup_steps}")
        self.strategy, self.delta, self.r, self.warmup_steps, self.gather = strategy, delta, r, warmup_steps, gather

    def forward(self, losses: Tensor, step: int | None = None) -> Tensor:
        """losses (B,) per-sample, with gradient; step = global step (None: past the warm-up)."""
        if losses.dim() != 1 or losses.numel() == 0:
            raise SpeechkitError(f"losses: expected a non-empty (B,) tensor, got {tuple(losses.shape)}")
        strategy = "uniform" if step is not None and step < self.warmup_steps else self.strategy
        every, offset, world = _gather(losses) if self.gather else (losses, 0, 1)
        weights = sample_weights(every, strategy, self.delta, self.r)[offset: offset + losses.numel()]
        return world * (weights.to(losses.dtype) * losses).sum()
