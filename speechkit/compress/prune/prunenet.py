"""PruneNet: calibration-free FFN pruning with a learned policy (Sengupta et al., ICLR 2025, "You Only Prune
Once"; official ``trainable_activation_sparsity.py``).

State: an FFN up/gate weight ``W (I, H)``. Policy: ``alpha = sigmoid(Proj(W) r)`` with ``Proj: Linear(H -> I)``
applied row-wise (``Proj(W)`` is ``(I, I)``) and a learnable ``r (I, 1)``. Relaxed-Bernoulli keep probabilities
``o = sigmoid(log eps - log(1 - eps) + log alpha - log(1 - alpha))``, ``eps ~ U(0, 1)``; action: sample
``(1 - s) I`` rows without replacement from ``o``. Reward: ``1 / KS(sigma(W), sigma(W_pruned))``, the two-sample
Kolmogorov-Smirnov statistic between the singular values (99999 when KS = 0). REINFORCE over the layers of an
episode with ``R_i <- gamma^i R_i``: ``loss_i = -sum_(j in rows) log o_j R_i``. The learned policy is reused
for any compression ratio; deployment keeps the ``(1 - s) I`` rows of largest ``alpha`` [D].
"""

from __future__ import annotations

from typing import Sequence

import torch
from scipy.stats import ks_2samp
from torch import Tensor, nn

from speechkit.compress.prune.magnitude import check_sparsity
from speechkit.errors import SpeechkitError

MAX_REWARD = 99999.0


class PolicyNet(nn.Module):
    """``alpha = sigmoid(Proj(W) r)`` for an FFN weight ``W (inter, hidden)``; returns ``(inter,)``."""

    def __init__(self, hidden: int, inter: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden, inter)
        self.r = nn.Parameter(torch.randn(inter, 1) / inter**0.5)

    def forward(self, weight: Tensor) -> Tensor:
        if weight.shape != (self.r.shape[0], self.proj.in_features):
            raise SpeechkitError(f"weight must be ({self.r.shape[0]}, {self.proj.in_features}), "
                                 f"got {tuple(weight.shape)}")
        return torch.sigmoid(self.proj(weight) @ self.r).squeeze(-1)  # (I,)


def relaxed_keep_probabilities(alpha: Tensor, generator: torch.Generator | None = None, eps: float = 1e-6) -> Tensor:
    """``o = sigmoid(logit(u) + logit(alpha))`` with ``u ~ U(0, 1)`` (relaxed Bernoulli, temperature 1)."""
    u = torch.rand(alpha.shape, generator=generator).clamp(eps, 1 - eps)
    a = alpha.clamp(eps, 1 - eps)
    return torch.sigmoid(torch.log(u) - torch.log1p(-u) + torch.log(a) - torch.log1p(-a))


def spectral_ks_reward(singular_values: Tensor, pruned_weight: Tensor) -> float:
    """``1 / KS(sigma_orig, sigma(pruned))``; ``MAX_REWARD`` when the spectra are identical."""
    pruned = torch.linalg.svdvals(pruned_weight.detach().double()).numpy()
    statistic = float(ks_2samp(singular_values.detach().double().numpy(), pruned, method="asymp").statistic)
    return MAX_REWARD if statistic == 0 else 1.0 / statistic


def n_keep(rows: int, sparsity: float) -> int:
    """Rows kept at ``sparsity``: ``round((1 - s) rows)``, at least 1."""
    return max(1, round((1 - check_sparsity(sparsity)) * rows))


def policy_loss(keep_prob: Tensor, rows: Tensor, reward: float) -> Tensor:
    """REINFORCE term ``-sum_(j in rows) log o_j * R``."""
    return -torch.log(keep_prob[rows].clamp_min(1e-12)).sum() * reward


def train_policy(weights: Sequence[Tensor], sparsity: float, episodes: int = 20, lr: float = 1e-3,
                 gamma: float = 0.99, seed: int = 0) -> PolicyNet:
    """Learn one policy over the FFN weights ``(I, H)`` of all layers (same shape), one episode = all layers.

    Args:
        weights: up/gate weights of every layer.
        sparsity: fraction of rows removed while training the policy, in [0, 1).
        episodes: passes over the layers.
        lr: Adam learning rate.
        gamma: per-layer reward discount.
        seed: sampling seed.
    """
    if not weights:
        raise SpeechkitError("weights must hold at least one FFN weight")
    shape = weights[0].shape
    if any(w.shape != shape for w in weights):
        raise SpeechkitError(f"all weights must share one shape, got {[tuple(w.shape) for w in weights]}")
    torch.manual_seed(seed)
    policy = PolicyNet(shape[1], shape[0])
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    spectra = [torch.linalg.svdvals(w.detach().double()) for w in weights]
    k = n_keep(shape[0], sparsity)
    for _ in range(episodes):
        optimizer.zero_grad()
        loss = torch.zeros(())
        for i, (w, sv) in enumerate(zip(weights, spectra)):
            o = relaxed_keep_probabilities(policy(w.detach().float()), generator)
            rows = torch.multinomial(o.detach(), k, replacement=False, generator=generator)
            reward = gamma**i * spectral_ks_reward(sv, w.detach()[torch.sort(rows).values])
            loss = loss + policy_loss(o, rows, reward)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
    return policy


@torch.no_grad()
def select_rows(policy: PolicyNet, weight: Tensor, sparsity: float) -> Tensor:
    """Sorted indices of the ``(1 - s) I`` rows with the largest ``alpha`` (deterministic deployment) [D]."""
    alpha = policy(weight.float())
    return torch.sort(torch.topk(alpha, n_keep(weight.shape[0], sparsity)).indices).values
