"""Dataset distillation by matching training trajectories, with AST's smooth expert trajectories.

*Dataset Distillation by Matching Training Trajectories* (MTT, Cazenavette et al. 2022), eq. 1-2: from an expert's
parameters ``theta*_t`` (epoch t <= T+), N steps of gradient descent on the synthetic set with a learnable rate
``alpha`` give ``theta_N``; the loss ``||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2`` is
back-propagated through the unrolled steps to the synthetic examples and to ``alpha``.

*Efficient Dataset Distillation through Alignment with Smooth and High-Quality Expert Trajectories* (AST, Shen et
al. 2023), section 4: experts trained with a clipping loss and a gradient penalty change their parameters more
smoothly, and their trajectories are easier to match. The paper's exact forms were not found; ours: the expert
loss is ``mean_i min(CE_i, loss_clip)`` (per-example clipping: outliers stop pulling the parameters) plus
``grad_penalty * ||grad_theta CE||^2``. Works on any ``nn.Module`` through ``torch.func.functional_call``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F

from speechkit.errors import SpeechkitError

Params = dict[str, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]  # (outputs, targets) -> per-example losses (N,)


def per_example_ce(outputs: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(outputs, targets, reduction="none")


def parameters_of(model: nn.Module) -> Params:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def flat(params: Params) -> Tensor:
    return torch.cat([p.reshape(-1) for p in params.values()])


@dataclass
class ExpertConfig:
    """How an expert trains: SGD with momentum over ``epochs`` epochs of ``batch_size`` examples (0 = full batch)."""

    epochs: int = 20
    lr: float = 0.01
    momentum: float = 0.0
    batch_size: int = 256
    loss_clip: Optional[float] = None
    grad_penalty: float = 0.0


def expert_loss(model: nn.Module, params: Params, x: Tensor, y: Tensor, loss_clip: Optional[float] = None,
                grad_penalty: float = 0.0, loss_fn: LossFn = per_example_ce) -> Tensor:
    """AST's expert objective (module docstring): clipped mean loss plus the gradient-norm penalty."""
    losses = loss_fn(functional_call(model, params, (x,)), y)
    loss = losses.clamp_max(loss_clip).mean() if loss_clip is not None else losses.mean()
    if grad_penalty > 0:
        grads = torch.autograd.grad(losses.mean(), list(params.values()), create_graph=True)
        loss = loss + grad_penalty * sum((g ** 2).sum() for g in grads)
    return loss


def train_expert(model: nn.Module, x: Tensor, y: Tensor, config: ExpertConfig,
                 generator: Optional[torch.Generator] = None, loss_fn: LossFn = per_example_ce) -> list[Params]:
    """The expert trajectory: the parameters at the start and after every epoch (``epochs + 1`` snapshots), from
    the model's current parameters."""
    if config.epochs < 1:
        raise SpeechkitError(f"epochs: expected >= 1, got {config.epochs}")
    params = {name: p.detach().clone().requires_grad_(True) for name, p in model.named_parameters()}
    velocity = {name: torch.zeros_like(p) for name, p in params.items()}
    trajectory = [{name: p.detach().clone() for name, p in params.items()}]
    batch = config.batch_size or len(x)
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            index = order[start: start + batch]
            loss = expert_loss(model, params, x[index], y[index], config.loss_clip, config.grad_penalty, loss_fn)
            grads = torch.autograd.grad(loss, list(params.values()))
            with torch.no_grad():
                for (name, p), g in zip(params.items(), grads):
                    velocity[name].mul_(config.momentum).add_(g)
                    p.sub_(config.lr * velocity[name])
        trajectory.append({name: p.detach().clone() for name, p in params.items()})
    return trajectory


def matching_loss(model: nn.Module, start: Params, target: Params, syn_x: Tensor, syn_y: Tensor, lr: Tensor,
                  steps: int, loss_fn: LossFn = per_example_ce, batch_size: int = 0,
                  generator: Optional[torch.Generator] = None) -> Tensor:
    """MTT's normalised parameter-matching loss after ``steps`` differentiable SGD steps on the synthetic set."""
    if steps < 1:
        raise SpeechkitError(f"steps: expected >= 1, got {steps}")
    params = {name: p.detach().clone().requires_grad_(True) for name, p in start.items()}
    for _ in range(steps):
        if batch_size and batch_size < len(syn_x):
            index = torch.randperm(len(syn_x), generator=generator)[:batch_size]
            x, y = syn_x[index], syn_y[index]
        else:
            x, y = syn_x, syn_y
        loss = loss_fn(functional_call(model, params, (x,)), y).mean()
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        params = {name: p - lr * g for (name, p), g in zip(params.items(), grads)}
    start_flat, target_flat = flat(start), flat(target)
    return ((flat(params) - target_flat) ** 2).sum() / ((start_flat - target_flat) ** 2).sum().clamp_min(1e-12)


class TrajectoryMatcher:
    """Learns ``syn_x`` (labels ``syn_y`` fixed) and the inner learning rate by matching expert trajectories.

    Args:
        model: the architecture (its parameters are not used; every step starts from an expert snapshot).
        trajectories: expert trajectories (:func:`train_expert`).
        syn_x, syn_y: the synthetic set's initial examples (e.g. real examples drawn per class) and labels.
        syn_steps: N, inner steps per matching.
        expert_epochs: M, epochs between start and target snapshots.
        max_start_epoch: T+, latest start epoch.
        lr_init: the inner learning rate's start (learned in log space).
        lr_syn, lr_lr: Adam learning rates of the synthetic examples and of log alpha (MTT uses SGD; Adam is our
            choice for a few hundred iterations on CPU).
        batch_syn: synthetic examples per inner step (0 = all).
    """

    def __init__(self, model: nn.Module, trajectories: list[list[Params]], syn_x: Tensor, syn_y: Tensor,
                 syn_steps: int = 20, expert_epochs: int = 2, max_start_epoch: int = 10, lr_init: float = 0.01,
                 lr_syn: float = 0.01, lr_lr: float = 1e-3, batch_syn: int = 0, loss_fn: LossFn = per_example_ce,
                 seed: int = 0) -> None:
        if not trajectories:
            raise SpeechkitError("trajectories: no expert trajectory given")
        length = min(len(t) for t in trajectories)
        if max_start_epoch + expert_epochs > length - 1:
            raise SpeechkitError(f"max_start_epoch {max_start_epoch} + expert_epochs {expert_epochs} exceeds the "
                                 f"experts' {length - 1} epochs")
        if len(syn_x) != len(syn_y):
            raise SpeechkitError(f"syn_x has {len(syn_x)} examples, syn_y {len(syn_y)} labels")
        self.model, self.trajectories, self.syn_y = model, trajectories, syn_y
        self.syn_x = syn_x.detach().clone().requires_grad_(True)
        self.log_lr = torch.tensor(float(lr_init)).log().requires_grad_(True)
        self.syn_steps, self.expert_epochs, self.max_start_epoch = syn_steps, expert_epochs, max_start_epoch
        self.batch_syn, self.loss_fn = batch_syn, loss_fn
        self.optimizer = torch.optim.Adam([{"params": [self.syn_x], "lr": lr_syn},
                                           {"params": [self.log_lr], "lr": lr_lr}])
        self.rng = random.Random(seed)
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def lr(self) -> float:
        return float(self.log_lr.detach().exp())

    def step(self) -> float:
        """One matching iteration; returns the loss."""
        trajectory = self.rng.choice(self.trajectories)
        start = self.rng.randint(0, self.max_start_epoch)
        loss = matching_loss(self.model, trajectory[start], trajectory[start + self.expert_epochs], self.syn_x,
                             self.syn_y, self.log_lr.exp(), self.syn_steps, self.loss_fn, self.batch_syn,
                             self.generator)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())
