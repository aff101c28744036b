"""Conditional flow matching on the optimal-transport path, an Euler / midpoint sampler and the MLP velocity head.

*Flow Matching for Generative Modeling* (Lipman et al., ICLR 2023), section 4.1, eq. 20-23: with
``t ~ U[0, 1]`` and ``x_0 ~ N(0, I)``, the OT path ``x_t = (1 - (1 - sigma_min) t) x_0 + t x_1`` has the velocity
``u_t = x_1 - (1 - sigma_min) x_0``, and ``L_CFM = E ||v_theta(x_t, t, c) - u_t||^2``. Sampling solves
``dx/dt = v_theta(x, t, c)`` from ``x_0`` at t = 0 to t = 1.

*Continuous Speech Tokens Makes LLMs Robust Multi-Modality Learners* (Flow-Omni, Yuan et al. 2024), section 3:
a small MLP, conditioned on the language model's hidden state, predicts the next (stacked) mel frames this way,
``L = L_LM + lambda * L_CFM``; the head's exact form is not given: ours is :class:`FlowHead`, residual MLP blocks over
``[x_t ; time embedding ; condition]`` (the MAR-style diffusion head).
"""

from __future__ import annotations

import math
from typing import Callable, Literal, Optional

import torch
from torch import Tensor, nn

from speechkit.errors import SpeechkitError

Velocity = Callable[[Tensor, Tensor, Tensor], Tensor]  # (x_t (B, D), t (B,), cond (B, C)) -> (B, D)


def _broadcast(t: Tensor, like: Tensor) -> Tensor:
    if t.dim() != 1 or t.shape[0] != like.shape[0]:
        raise SpeechkitError(f"t: expected shape ({like.shape[0]},) (one time per example), got {tuple(t.shape)}")
    return t.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def ot_path(x0: Tensor, x1: Tensor, t: Tensor, sigma_min: float = 0.0) -> tuple[Tensor, Tensor]:
    """``(x_t, u_t)`` of the OT path between noise ``x0`` and data ``x1`` (same shape ``(B, ...)``), ``t (B,)``."""
    if x0.shape != x1.shape:
        raise SpeechkitError(f"x0 {tuple(x0.shape)} and x1 {tuple(x1.shape)} must have the same shape")
    if not 0 <= sigma_min < 1:
        raise SpeechkitError(f"sigma_min: expected in [0, 1), got {sigma_min}")
    tt = _broadcast(t, x1)
    return (1 - (1 - sigma_min) * tt) * x0 + tt * x1, x1 - (1 - sigma_min) * x0


def flow_matching_loss(velocity: Velocity, x1: Tensor, cond: Tensor, sigma_min: float = 0.0,
                       generator: Optional[torch.Generator] = None) -> Tensor:
    """``mean_b ||velocity(x_t, t, cond) - u_t||^2`` with ``t ~ U[0, 1]``, ``x_0 ~ N(0, I)`` drawn here."""
    if cond.shape[0] != x1.shape[0]:
        raise SpeechkitError(f"cond: {cond.shape[0]} rows for {x1.shape[0]} targets")
    t = torch.rand(x1.shape[0], generator=generator, dtype=x1.dtype).to(x1.device)  # a CPU generator, if any
    x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype).to(x1.device)
    x_t, u_t = ot_path(x0, x1, t, sigma_min)
    predicted = velocity(x_t, t, cond)
    if predicted.shape != u_t.shape:
        raise SpeechkitError(f"velocity returned shape {tuple(predicted.shape)}, expected {tuple(u_t.shape)}")
    return ((predicted - u_t) ** 2).flatten(1).sum(dim=1).mean()


@torch.no_grad()
def sample_ode(velocity: Velocity, cond: Tensor, dim: int, steps: int = 10,
               method: Literal["euler", "midpoint"] = "euler", generator: Optional[torch.Generator] = None,
               x0: Optional[Tensor] = None) -> Tensor:
    """Integrate ``dx/dt = velocity(x, t, cond)`` from ``x_0 ~ N(0, I)`` (or the given ``x0``) over ``steps`` equal
    steps of ``[0, 1]``: ``(B, dim)`` samples, one per row of ``cond``."""
    if steps < 1:
        raise SpeechkitError(f"steps: expected >= 1, got {steps}")
    if method not in ("euler", "midpoint"):
        raise SpeechkitError(f"method: expected 'euler' or 'midpoint', got {method!r}")
    batch = cond.shape[0]
    if x0 is None:
        x0 = torch.randn(batch, dim, generator=generator).to(device=cond.device, dtype=cond.dtype)
    elif x0.shape != (batch, dim):
        raise SpeechkitError(f"x0: expected shape {(batch, dim)}, got {tuple(x0.shape)}")
    x, h = x0, 1.0 / steps
    for i in range(steps):
        t = torch.full((batch,), i * h, device=x.device, dtype=x.dtype)
        if method == "euler":
            x = x + h * velocity(x, t, cond)
        else:
            middle = x + h / 2 * velocity(x, t, cond)
            x = x + h * velocity(middle, t + h / 2, cond)
    return x


def time_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding ``(B, dim)`` of ``t (B,)`` in [0, 1] (scaled by 1000, as in diffusion models)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000 * t.float()[:, None] * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1).to(t.dtype if t.is_floating_point() else torch.float32)


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class FlowHead(nn.Module):
    """The velocity network ``v(x_t, t, c)``: ``[x_t ; time embedding ; c]`` -> width -> residual blocks -> ``dim``.

    Args:
        dim: size of the predicted vector (``n_mels * r`` for r stacked mel frames).
        cond_dim: size of the condition (the language model's hidden state).
        width: hidden width.
        blocks: residual MLP blocks.
        time_dim: size of the sinusoidal time embedding.
    """

    def __init__(self, dim: int, cond_dim: int, width: int = 256, blocks: int = 3, time_dim: int = 64) -> None:
        super().__init__()
        self.dim, self.cond_dim, self.time_dim = dim, cond_dim, time_dim
        self.input = nn.Linear(dim + time_dim + cond_dim, width)
        self.blocks = nn.Sequential(*[_Block(width) for _ in range(blocks)])
        self.output = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        if x_t.shape[-1] != self.dim or cond.shape[-1] != self.cond_dim:
            raise SpeechkitError(f"FlowHead: expected x_t (B, {self.dim}) and cond (B, {self.cond_dim}), got "
                                 f"{tuple(x_t.shape)} and {tuple(cond.shape)}")
        features = torch.cat([x_t, time_embedding(t, self.time_dim).to(x_t.dtype), cond], dim=-1)
        return self.output(self.blocks(self.input(features)))
